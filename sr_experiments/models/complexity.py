"""Size of a network: parameters, and multiply-accumulates for a 1280x720 output (``info.py``,
the W&B run summary).

MACs are counted by torch's ``FlopCounterMode`` (convolutions, linear layers, matmuls and
attention; element-wise ops are not counted, as in the SR literature) on the meta device: no
memory is allocated and nothing is computed, so a 40M-parameter network is counted instantly.
Video networks (``is_multi_frame``) run on a clip and are reported per output frame; their
deformable convolutions (torchvision's op) count as the dense conv of the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision.deform_conv2d)
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, flop_registry, register_flop_formula

from sr_experiments.models import build_network, count_parameters, is_multi_frame, model_label

OUTPUT_720P = (720, 1280)  # (height, width) of the output MACs are reported for
CLIP_FRAMES = 7  # clip length recurrent video networks are counted on (a sliding window: its num_frame)

if torch.ops.torchvision.deform_conv2d not in flop_registry:  # FlopCounterMode has no formula for it

    @register_flop_formula(torch.ops.torchvision.deform_conv2d)
    def _deform_conv_flop(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        """A deformable conv's multiply-adds are its dense conv's (the sampling is element-wise)."""
        return conv_flop_count(list(x_shape), list(w_shape), list(out_shape), transposed=False)


def count_macs(spec: Mapping[str, Any], lr_size: tuple[int, int]) -> int:
    """Multiply-accumulates of one forward pass on a (1, 3, *lr_size) input."""
    with torch.device("meta"):
        return _macs(build_network(spec).eval(), lr_size)


def _macs(net: torch.nn.Module, lr_size: tuple[int, int]) -> int:
    """``net``'s MACs on a (1, 3, *lr_size) input; ``net`` is on the meta device, and so is the
    forward (called inside ``torch.device("meta")``): what a network builds on the fly, such as
    shifted-window attention masks for the input size, is not computed either."""
    counter = FlopCounterMode(display=False)
    frames = (getattr(net, "num_frame", None) or CLIP_FRAMES) if is_multi_frame(net) else 0
    with counter, torch.no_grad():
        net(torch.empty(1, frames, 3, *lr_size) if frames else torch.empty(1, 3, *lr_size))
    per = frames if frames and getattr(net, "frames_out", "all") == "all" else 1  # MACs per output frame
    return counter.get_total_flops() // 2 // per


def lr_size_720p(scale: int) -> tuple[int, int]:
    """LR (height, width) whose x``scale`` output covers 1280x720: ``ceil(720 / s) x ceil(1280 / s)``."""
    return math.ceil(OUTPUT_720P[0] / scale), math.ceil(OUTPUT_720P[1] / scale)


def network_info(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``{"model", "network", "scale", "params", "macs_720p", "lr_size_720p"}`` for a network spec
    (``model``: its label, ``shallow``; ``network``: the registered architecture, ``edsr``).

    The LR input is ``ceil(720 / s) x ceil(1280 / s)``: exactly 1280x720 out at x2 and x4,
    1281x720 at x3 (1280 is not a multiple of 3).
    """
    scale = int(spec["scale"])
    lr_size = lr_size_720p(scale)
    with torch.device("meta"):
        net = build_network(spec).eval()
        params, macs = count_parameters(net), _macs(net, lr_size)
        video = is_multi_frame(net)
    return {"model": model_label(spec), "network": spec["name"], "scale": scale, "params": params,
            "macs_720p": macs, "lr_size_720p": list(lr_size), "macs_per": "output frame" if video else "image"}
