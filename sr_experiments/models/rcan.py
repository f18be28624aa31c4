"""RCAN: Zhang et al., "Image Super-Resolution Using Very Deep Residual Channel Attention Networks", ECCV 2018.

A copy of BasicSR's ``basicsr/archs/rcan_arch.py`` (``ChannelAttention``, ``RCAB``,
``ResidualGroup``, ``RCAN``, with arch_util's ``Upsample``): module names match, so state dicts
in BasicSR's layout load with ``strict=True``. The authors' own checkpoints (EDSR-PyTorch layout:
``head``/``body``/``tail``, ``sub_mean``/``add_mean``) need their keys renamed first.
"""

from __future__ import annotations

import torch
from torch import nn

from sr_experiments.models.blocks import MeanShift, Upsample
from sr_experiments.models.registry import check_scale, register


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: global average pool, 1x1 conv down by ``squeeze``, ReLU, 1x1 up, sigmoid gate."""

    def __init__(self, num_feat: int, squeeze: int = 16) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(num_feat, num_feat // squeeze, 1, padding=0),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_feat // squeeze, num_feat, 1, padding=0),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class RCAB(nn.Module):
    """Residual channel attention block: x + res_scale * CA(conv(ReLU(conv(x))))."""

    def __init__(self, num_feat: int, squeeze: int = 16, res_scale: float = 1.0) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.rcab = nn.Sequential(
            nn.Conv2d(num_feat, num_feat, 3, 1, 1),
            nn.ReLU(True),
            nn.Conv2d(num_feat, num_feat, 3, 1, 1),
            ChannelAttention(num_feat, squeeze),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rcab(x) * self.res_scale + x


class ResidualGroup(nn.Module):
    """``num_block`` RCABs and a closing conv, with a short skip connection around them."""

    def __init__(self, num_feat: int, num_block: int, squeeze: int = 16, res_scale: float = 1.0) -> None:
        super().__init__()
        self.residual_group = nn.Sequential(*(RCAB(num_feat, squeeze, res_scale) for _ in range(num_block)))
        self.conv = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.residual_group(x)) + x


@register("rcan", scales=(2, 3, 4, 8))
class RCAN(nn.Module):
    """RCAN (BasicSR's layout). The defaults are the paper's: 15.44 M parameters at x2, 15.59 M at x4.

    Args:
        scale: upscaling factor, 2, 3, 4 or 8 (BasicSR ``upscale``).
        width: feature channels (BasicSR ``num_feat``, paper C = 64).
        groups: residual groups (BasicSR ``num_group``, paper G = 10).
        depth: RCABs per residual group (BasicSR ``num_block``, paper B = 20; BasicSR's default is 16).
        squeeze: channel-attention reduction ratio (BasicSR ``squeeze_factor``, paper r = 16).
        res_scale: residual branch scaling inside each RCAB (BasicSR ``res_scale``; 1 in the paper).
    """

    def __init__(
        self,
        scale: int,
        width: int = 64,
        groups: int = 10,
        depth: int = 20,
        squeeze: int = 16,
        res_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.scale = check_scale(type(self), scale)
        if width // squeeze < 1:
            raise ValueError(f"rcan: width {width} // squeeze {squeeze} leaves no channel-attention channels")
        self.mean_shift = MeanShift(img_range=255.0)
        self.conv_first = nn.Conv2d(3, width, 3, 1, 1)
        self.body = nn.Sequential(*(ResidualGroup(width, depth, squeeze, res_scale) for _ in range(groups)))
        self.conv_after_body = nn.Conv2d(width, width, 3, 1, 1)
        self.upsample = Upsample(scale, width)
        self.conv_last = nn.Conv2d(width, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_first(self.mean_shift.sub(x))
        res = self.conv_after_body(self.body(x))  # long skip connection around all groups
        res += x
        return self.mean_shift.add(self.conv_last(self.upsample(res)))
