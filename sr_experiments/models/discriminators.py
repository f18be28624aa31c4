"""Discriminators for adversarial training, registered by name (``discriminator=vgg128|unet_sn``).

Copies of BasicSR's ``basicsr/archs/discriminator_arch.py`` with the same module names, so its
``net_d`` state dicts load with ``strict=True``:

- ``vgg128``: ``VGGStyleDiscriminator`` (SRGAN/ESRGAN): strided convs with batch norm, then two
  linear layers; one logit per image; 128x128 inputs (``input_size=256``: 256x256).
- ``unet_sn``: ``UNetDiscriminatorSN`` (Real-ESRGAN): a U-Net with spectral norm (torch's
  ``spectral_norm``, so keys are ``weight_orig``/``weight_u``/``weight_v`` as BasicSR's); one logit
  per pixel; any input size.

Kept apart from the generator registry (``models/registry.py``): a discriminator is not an SR
network (``model=``, ``info.py``, the zoo tests).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import spectral_norm

DISCRIMINATORS: dict[str, type[nn.Module]] = {}


def register_discriminator(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if name in DISCRIMINATORS:
            raise ValueError(f"discriminator {name!r} is already registered")
        DISCRIMINATORS[name] = cls
        return cls

    return decorator


def build_discriminator(spec: Mapping[str, Any]) -> nn.Module:
    """``{"name": "vgg128", **constructor args}`` -> the discriminator; a bad key is named."""
    kwargs = dict(spec)
    name = kwargs.pop("name", None)
    if name not in DISCRIMINATORS:
        raise ValueError(f"discriminator.name={name!r} is not known; choose one of {', '.join(sorted(DISCRIMINATORS))}")
    try:
        return DISCRIMINATORS[name](**kwargs)
    except TypeError as e:
        raise ValueError(f"discriminator {name}: {e}") from None


@register_discriminator("vgg128")
class VGGStyleDiscriminator(nn.Module):
    """ESRGAN's discriminator: 5 stages (conv3 + strided conv4, BN, LeakyReLU 0.2), each halving the
    size, to 4x4 x 8*num_feat, then linear 100 and linear 1. 14.5 M parameters at num_feat=64."""

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, input_size: int = 128) -> None:
        super().__init__()
        if input_size not in (128, 256):
            raise ValueError(f"vgg128: input_size must be 128 or 256, not {input_size}")
        self.input_size = input_size
        f = num_feat
        # BasicSR's names (conv{stage}_{k}, bn{stage}_{k}), so its checkpoints load; registered in a
        # loop over the stages: the first has a biased conv without norm in front of its strided conv.
        self.conv0_0 = nn.Conv2d(num_in_ch, f, 3, 1, 1, bias=True)
        widths = [f, f * 2, f * 4, f * 8, f * 8] + ([f * 8] if input_size == 256 else [])
        self.conv_bn: list[str] = []  # the conv+BN+LeakyReLU steps after conv0_0, in order
        for stage, width in enumerate(widths):
            if stage:
                self._add_conv_bn(f"{stage}_0", nn.Conv2d(widths[stage - 1], width, 3, 1, 1, bias=False))
            self._add_conv_bn(f"{stage}_1", nn.Conv2d(width, width, 4, 2, 1, bias=False))
        self.linear1 = nn.Linear(f * 8 * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def _add_conv_bn(self, name: str, conv: nn.Conv2d) -> None:
        setattr(self, f"conv{name}", conv)
        setattr(self, f"bn{name}", nn.BatchNorm2d(conv.out_channels, affine=True))
        self.conv_bn.append(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"discriminator vgg128 takes {self.input_size}x{self.input_size} HR patches, got "
                f"{x.shape[-2]}x{x.shape[-1]}: set data.patch_size={self.input_size}//scale, or use discriminator=unet_sn (any size)"
            )
        feat = self.lrelu(self.conv0_0(x))
        for name in self.conv_bn:
            feat = self.lrelu(getattr(self, f"bn{name}")(getattr(self, f"conv{name}")(feat)))
        feat = self.lrelu(self.linear1(feat.flatten(1)))
        return self.linear2(feat)


@register_discriminator("unet_sn")
class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's U-Net discriminator with spectral norm: three strided convs down, three
    bilinear x2 + conv up with skip additions, two more convs, one logit per pixel.

    Any input size: each upsampling goes to its skip's size (for sizes divisible by 8, exactly
    BasicSR's ``scale_factor=2``; others, which BasicSR refuses, also work)."""

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        self.skip_connection = skip_connection
        f = num_feat
        self.conv0 = nn.Conv2d(num_in_ch, f, kernel_size=3, stride=1, padding=1)
        self.conv1 = spectral_norm(nn.Conv2d(f, f * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(f * 2, f * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(f * 4, f * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(f * 8, f * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(f * 4, f * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(f * 2, f, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    @staticmethod
    def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] * 2 == like.shape[-2] and x.shape[-1] * 2 == like.shape[-1]:
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = F.leaky_relu(self.conv0(x), negative_slope=0.2, inplace=True)
        x1 = F.leaky_relu(self.conv1(x0), negative_slope=0.2, inplace=True)
        x2 = F.leaky_relu(self.conv2(x1), negative_slope=0.2, inplace=True)
        x3 = F.leaky_relu(self.conv3(x2), negative_slope=0.2, inplace=True)
        x4 = F.leaky_relu(self.conv4(self._up(x3, x2)), negative_slope=0.2, inplace=True)
        if self.skip_connection:
            x4 = x4 + x2
        x5 = F.leaky_relu(self.conv5(self._up(x4, x1)), negative_slope=0.2, inplace=True)
        if self.skip_connection:
            x5 = x5 + x1
        x6 = F.leaky_relu(self.conv6(self._up(x5, x0)), negative_slope=0.2, inplace=True)
        if self.skip_connection:
            x6 = x6 + x0
        out = F.leaky_relu(self.conv7(x6), negative_slope=0.2, inplace=True)
        out = F.leaky_relu(self.conv8(out), negative_slope=0.2, inplace=True)
        return self.conv9(out)
