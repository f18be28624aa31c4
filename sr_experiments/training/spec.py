"""The ``model`` config node split into what builds (and a checkpoint rebuilds) the network and how
the run executes it (``compile``, ``channels_last``, ``ema_decay``): the runtime keys are not part
of the network, so a checkpoint trained compiled or in channels_last loads either way."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sr_experiments.config_values import plain
from sr_experiments.models.weights import FROM_FILE, resolve_from_file


@dataclass
class NetworkSpec:
    """``build``: the constructor spec (``pretrained`` included); ``saved``: what the checkpoint
    records (without the pretrained file the run started from); the runtime switches beside them."""

    build: dict[str, Any]
    saved: dict[str, Any]
    compile: bool
    channels_last: Any
    ema_decay: float


def split_network_spec(network: Mapping[str, Any], scale: int, ema_decay: float | None) -> NetworkSpec:
    """The ``model`` node checked against the top-level ``scale`` and split; ``ema_decay`` given to
    the module wins over ``model.ema_decay``. A ``from_file`` spec becomes the detected architecture."""
    spec = dict(plain(network))
    compile_net = bool(spec.pop("compile", False))
    channels_last = spec.pop("channels_last", "auto")
    spec_ema = spec.pop("ema_decay", None)
    decay = float(ema_decay if ema_decay is not None else (spec_ema or 0.0))
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"model.ema_decay={decay}: must be in [0, 1) (0: no EMA)")
    if int(spec.get("scale", scale)) != int(scale):
        raise ValueError(f"model.scale={spec['scale']} differs from scale={scale}; set the top-level scale only")
    spec["scale"] = int(scale)
    if spec.get("name") == FROM_FILE:  # the detected architecture is what the checkpoint rebuilds
        spec = resolve_from_file(spec)
    saved = {k: v for k, v in spec.items() if k not in ("pretrained", "pretrained_key")}
    return NetworkSpec(spec, saved, compile_net, channels_last, decay)


def set_memory_format(nets: list[nn.Module | None], channels_last: bool) -> None:
    """Weights of every network in ``nets`` (None skipped) in channels_last or contiguous layout."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for net in nets:
        if net is not None:
            net.to(memory_format=fmt)
