"""EDSR: Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution", CVPRW 2017.

A copy of BasicSR's ``basicsr/archs/edsr_arch.py`` (its ``ResidualBlockNoBN`` and ``Upsample``
are in ``blocks.py``): module names match, so BasicSR's released EDSR state dicts load with
``strict=True``.
"""

from __future__ import annotations

import torch
from torch import nn

from sr_experiments.models.blocks import MeanShift, ResidualBlockNoBN, Upsample
from sr_experiments.models.registry import check_scale, register


@register("edsr", scales=(2, 3, 4, 8))
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
        self.scale = check_scale(type(self), scale)
        self.mean_shift = MeanShift(img_range=255.0)
        self.conv_first = nn.Conv2d(3, width, 3, 1, 1)
        self.body = nn.Sequential(*(ResidualBlockNoBN(width, res_scale) for _ in range(depth)))
        self.conv_after_body = nn.Conv2d(width, width, 3, 1, 1)
        self.upsample = Upsample(scale, width)
        self.conv_last = nn.Conv2d(width, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_first(self.mean_shift.sub(x))
        res = self.conv_after_body(self.body(x))
        res += x
        return self.mean_shift.add(self.conv_last(self.upsample(res)))
