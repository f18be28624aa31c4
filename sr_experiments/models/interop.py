"""Ecosystem interop through spandrel: running spandrel's own modules (architectures not in the
zoo), writing the official layout spandrel-based tools read, and checking a written file the way
chaiNNer loads it. Detection (spandrel's and the zoo's by keys) is in ``detection.py``; reading
files in ``weights.py``.

Zoo networks take part through optional class members: ``SPANDREL_ID`` (spandrel's architecture
id) with ``spec_from_spandrel(model) -> spec | None``, ``spec_from_state_dict(state) -> spec |
None`` for the ones spandrel does not know, and, where our state-dict layout differs from the
official one, ``official_state_dict()`` / ``from_official_state_dict()``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sr_experiments.models.detection import detect_with_spandrel, official_layout

__all__ = ["foreign_module", "official_state_dict", "check_with_spandrel"]


def foreign_module(module: nn.Module) -> nn.Module:
    """spandrel's module, made safe to call: some (RCAN, ...) scale their input in place."""
    if not getattr(module, "_sr_clones_input", False):
        module.register_forward_pre_hook(lambda _m, args: (args[0].clone(), *args[1:]))
        module._sr_clones_input = True
    return module


def official_state_dict(net: nn.Module) -> dict[str, torch.Tensor]:
    """``net``'s weights in the official layout (what spandrel and the authors' code load)."""
    state = official_layout(net)
    # safetensors refuses shared storage; files hold plain contiguous fp32 tensors
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def check_with_spandrel(net: nn.Module, state: Mapping[str, Any], path: Path, spec: Mapping[str, Any],
                        tolerance: float = 1e-5) -> str:
    """Reload ``state`` (the bare state dict read back from the written ``path``) the way chaiNNer
    does and compare outputs; returns a line, raises on disagreement."""
    expected_id = getattr(type(net), "SPANDREL_ID", None) or spec.get("architecture")
    if expected_id is None:
        return (f"spandrel does not know {spec['name']}: the file loads here (model={spec['name']}, "
                "or by itself: its network spec is stored in it), not in spandrel-based tools")
    detected = detect_with_spandrel(state, str(path))
    if detected.architecture != expected_id or detected.scale != int(spec["scale"]):
        raise ValueError(f"{path}: spandrel reads {detected.architecture} x{detected.scale}, "
                         f"expected {expected_id} x{spec['scale']}")
    # Odd sizes exercise the padding, except where ours pads on purpose unlike spandrel (SwinIR's
    # pad_mode=symmetric, the official test script's): there a size both leave alone.
    size, note = (37, 29), ""
    if getattr(net, "pad_mode", "reflect") != "reflect":
        size, note = (48, 64), f" (on a 48x64 input: pad_mode={net.pad_mode} pads other sizes unlike spandrel)"
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        try:
            theirs = detected.module.float()(x.clone())
        except RuntimeError:  # spandrel's DRCT does not pad to its window (ours does): a size it takes
            x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
            theirs, note = detected.module.float()(x.clone()), f" (on a 48x64 input: spandrel's {expected_id} takes no 37x29)"
        diff = float((theirs - net.float().eval()(x.clone())).abs().max())
    if not diff <= tolerance or math.isnan(diff):
        raise ValueError(f"{path}: spandrel's {expected_id} disagrees with this network by {diff:.3g} (max abs)")
    return f"spandrel reads it as {expected_id} x{detected.scale}, output max abs difference {diff:.1e}{note}"
