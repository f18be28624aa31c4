"""SPAN: Wan et al., "Swift Parameter-free Attention Network for Efficient Super-Resolution",
CVPR Workshops (NTIRE) 2024.

Official code: github.com/hongyuanyu/SPAN. Architecture code: spandrel's (``spandrel.architectures.SPAN``),
see ``community.py``. Defaults: 48 feature channels, the official code's default and its released
``spanx*_ch48`` files; the paper's table counts the re-parameterised network: 426K at x4 (and 498K
for its 52-channel model).
"""

from __future__ import annotations

from typing import Any

from spandrel.architectures.SPAN import SPAN as _SPAN

from sr_experiments.models.community import SpandrelNetwork
from sr_experiments.models.registry import register


@register("span")
class SPAN(SpandrelNetwork, _SPAN):
    """Six parameter-free-attention blocks of re-parameterisable convolutions; one-step
    pixel-shuffle tail, so any integer scale. Each ``Conv3XC`` trains a 1x1-3x3-1x1 chain plus a
    1x1 skip and, in eval mode, runs them merged into one 3x3 ``eval_conv``, recomputed from them
    on every eval forward: so ``eval_conv`` is derived, not trained (``requires_grad=False``; the
    parameter counts here are the trained ones, 1,840,488 at x4)."""

    SPANDREL_ID = "SPAN"
    DEFAULTS = dict(feature_channels=48, bias=True, norm=True, img_range=255.0, rgb_mean=[0.4488, 0.4371, 0.404])

    def _build(self, scale: int, hyperparameters: dict[str, Any]) -> None:
        super()._build(scale, hyperparameters)
        for module in self.modules():
            if hasattr(module, "eval_conv"):
                module.eval_conv.requires_grad_(False)
