"""EDSR: Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution", CVPRW 2017.

A copy of BasicSR's ``basicsr/archs/edsr_arch.py`` (with its ``ResidualBlockNoBN`` and
``Upsample``): module names match, so BasicSR's released EDSR state dicts load with
``strict=True``.
"""

from __future__ import annotations

import torch
from torch import nn

from sr_experiments.models.registry import check_scale, register


class ResidualBlockNoBN(nn.Module):
    """conv-ReLU-conv with an identity shortcut and no batch norm; the branch is scaled by ``res_scale``."""

    def __init__(self, num_feat: int = 64, res_scale: float = 1.0) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class Upsample(nn.Sequential):
    """Sub-pixel upsampler: log2(scale) x [conv(C, 4C), PixelShuffle(2)], or one (9C, 3) step for x3."""

    def __init__(self, scale: int, num_feat: int) -> None:
        layers: list[nn.Module] = []
        if scale & (scale - 1) == 0:  # power of two
            for _ in range(scale.bit_length() - 1):
                layers += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"scale {scale} is not supported; supported scales: 2^n and 3")
        super().__init__(*layers)


@register("edsr")
class EDSR(nn.Module):
    """EDSR (BasicSR's layout). The defaults are the paper's EDSR-baseline (1.37 M parameters at x2).

    Args:
        scale: upscaling factor, 2, 3, 4 or 8 (BasicSR ``upscale``).
        depth: number of residual blocks (BasicSR ``num_block``, paper B; 16 baseline, 32 full).
        width: feature channels (BasicSR ``num_feat``, paper F; 64 baseline, 256 full).
        res_scale: residual branch scaling (BasicSR ``res_scale``; 1 baseline, 0.1 full).
    """

    def __init__(self, scale: int, depth: int = 16, width: int = 64, res_scale: float = 1.0) -> None:
        super().__init__()
        self.scale = check_scale("edsr", scale, supported=(2, 3, 4, 8))
        self.img_range = 255.0
        # A plain attribute as in BasicSR, not a buffer: its state dicts have no "mean" key.
        self.mean = torch.tensor((0.4488, 0.4371, 0.4040)).view(1, 3, 1, 1)
        self.conv_first = nn.Conv2d(3, width, 3, 1, 1)
        self.body = nn.Sequential(*(ResidualBlockNoBN(width, res_scale) for _ in range(depth)))
        self.conv_after_body = nn.Conv2d(width, width, 3, 1, 1)
        self.upsample = Upsample(scale, width)
        self.conv_last = nn.Conv2d(width, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Not moved by .to()/.cuda() since it is no buffer, so follow the input here.
        mean = self.mean.to(device=x.device, dtype=x.dtype)
        x = (x - mean) * self.img_range
        x = self.conv_first(x)
        res = self.conv_after_body(self.body(x))
        res += x
        x = self.conv_last(self.upsample(res))
        return x / self.img_range + mean
