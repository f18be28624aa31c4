"""Building blocks shared by several networks.

Named and laid out as in BasicSR's ``basicsr/archs/arch_util.py`` (and the official SwinIR code,
which copies it): the child indices of the ``nn.Sequential`` upsamplers are part of the released
state dicts' keys (``upsample.0.weight``), so the layouts here must not change.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DIV2K_RGB_MEAN", "MeanShift", "ResidualBlockNoBN", "Upsample", "UpsampleOneStep"]

# The mean RGB of DIV2K's training images, which EDSR, RCAN and SwinIR subtract from their input.
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


class MeanShift(nn.Module):
    """Subtracts the DIV2K mean and scales to ``img_range`` (``sub``), and undoes it (``add``).

    It has no parameters or buffers, so it adds no state-dict key: the mean is a plain attribute,
    as in BasicSR and the official SwinIR, whose state dicts have no ``mean`` key.

    Args:
        img_range: pixel range the network body works in (255 for EDSR and RCAN, 1 for SwinIR).
        channels: image channels; the DIV2K mean is for RGB, other channel counts get a zero mean.
    """

    def __init__(self, img_range: float, channels: int = 3) -> None:
        super().__init__()
        self.img_range = img_range
        self.mean = torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1) if channels == 3 else torch.zeros(1, 1, 1, 1)

    def _mean_like(self, x: torch.Tensor) -> torch.Tensor:
        # Not moved by .to()/.cuda() since it is no buffer, so follow the input here.
        return self.mean.to(device=x.device, dtype=x.dtype)

    def sub(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._mean_like(x)) * self.img_range

    def add(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.img_range + self._mean_like(x)

    def extra_repr(self) -> str:
        return f"img_range={self.img_range}"


class ResidualBlockNoBN(nn.Module):
    """conv-ReLU-conv with an identity shortcut and no batch norm; the branch is scaled by ``res_scale``.

    Args:
        num_feat: channels of the input, both convs and the output.
        res_scale: factor on the residual branch (EDSR: 1 baseline, 0.1 for the large model).
    """

    def __init__(self, num_feat: int = 64, res_scale: float = 1.0) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


class Upsample(nn.Sequential):
    """Sub-pixel upsampler: log2(scale) x [conv(C, 4C), PixelShuffle(2)], or one (9C, 3) step for x3.

    Args:
        scale: upscaling factor, a power of two or 3.
        num_feat: channels in (and out).
    """

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


class UpsampleOneStep(nn.Sequential):
    """One conv(C, scale^2 * out) + PixelShuffle(scale): the cheap tail of lightweight networks.

    Args:
        scale: upscaling factor, any integer >= 2.
        num_feat: channels in.
        num_out_ch: channels out (3 for RGB).
    """

    def __init__(self, scale: int, num_feat: int, num_out_ch: int) -> None:
        super().__init__(nn.Conv2d(num_feat, scale**2 * num_out_ch, 3, 1, 1), nn.PixelShuffle(scale))
