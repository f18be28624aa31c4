"""EDSR: Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution", CVPRW 2017.

A copy of BasicSR's ``basicsr/archs/edsr_arch.py`` (its ``ResidualBlockNoBN`` and ``Upsample``
are in ``blocks.py``): module names match, so BasicSR's released EDSR state dicts load with
``strict=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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

    @classmethod
    def spec_from_state_dict(cls, state: Mapping[str, Any]) -> dict[str, Any] | None:
        """The spec whose keys and shapes ``state`` (BasicSR's layout) may have, or None: width
        from ``conv_first``, depth from ``body``, scale from the upsampler's convs (one 9C conv:
        x3, else one 4C conv per doubling). ``res_scale`` leaves no trace in the weights: BasicSR's
        released EDSR_L sizes (32 blocks of 256) are ``edsr_large`` (0.1), others ``edsr`` (1)."""
        first = state.get("conv_first.weight")
        ups = [v for k, v in state.items() if k.startswith("upsample.") and k.endswith(".weight")]
        if not isinstance(first, torch.Tensor) or first.dim() != 4 or not ups:
            return None
        width = int(first.shape[0])
        depth = sum(1 for k in state if k.startswith("body.") and k.endswith(".conv1.weight"))
        scale = 3 if len(ups) == 1 and ups[0].shape[0] == 9 * width else 2 ** len(ups)
        name = "edsr_large" if (depth, width) == (32, 256) else "edsr"
        return {"name": name, "scale": scale, "depth": depth, "width": width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_first(self.mean_shift.sub(x))
        res = self.conv_after_body(self.body(x))
        res += x
        return self.mean_shift.add(self.conv_last(self.upsample(res)))
