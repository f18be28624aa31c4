"""Omni-SR: Wang et al., "Omni Aggregation Networks for Lightweight Image Super-Resolution", CVPR 2023.

Official code: github.com/Francis0625/Omni-SR. Architecture code: spandrel's
(``spandrel.architectures.OmniSR``), see ``community.py``. Defaults: the paper's model
(``train_yamls/train_OmniSR_X4_DF2K.yaml``: 64 channels, 5 OSAG groups of 1 block, window 8),
805,376 parameters at x4 by the official code (the paper's table: 792K).
"""

from __future__ import annotations

from typing import Any

from spandrel.architectures.OmniSR import OmniSR as _OmniSR

from sr_experiments.models.community import SpandrelNetwork
from sr_experiments.models.registry import register


def _drop_profiler_counters(module: Any, state_dict: dict, *args: Any) -> None:
    # Released files carry thop's per-module "total_ops" / "total_params" buffers (spandrel drops them too).
    for key in [k for k in state_dict if k.endswith(("total_ops", "total_params"))]:
        del state_dict[key]


@register("omnisr")
class OmniSR(SpandrelNetwork, _OmniSR):
    """Omni self-attention (spatial and channel, block and grid) with ESA groups; one-step
    pixel-shuffle tail, so any integer scale. Inputs are zero-padded to the window (as officially)
    and to at least 16 pixels (the ESA pooling needs it). The profiler counters in released files
    (thop's ``total_ops`` / ``total_params`` buffers) are dropped on load."""

    SPANDREL_ID = "OmniSR"
    DEFAULTS = dict(num_feat=64, block_num=1, pe=True, window_size=8, res_num=5, bias=True)
    PAD_MULTIPLE = "window_size"
    MIN_SIZE = 16
    PAD_MODE = "constant"

    def _build(self, scale: int, hyperparameters: dict[str, Any]) -> None:
        super()._build(scale, hyperparameters)
        self.register_load_state_dict_pre_hook(_drop_profiler_counters)
