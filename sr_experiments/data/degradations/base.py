"""What every degradation pipeline returns, and the checked reading of its config keys."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Degraded:
    """One degraded batch.

    ``lq``: (B, 3, H/s, W/s) LR on the 8-bit grid. ``gt``: the training target (the HR, or its
    USM-sharpened version where ``usm_gt``). ``params``: for each image, every parameter drawn
    (JSON-ready). ``kernels``: the (B, k, k) kernels applied, by stage name.
    """

    lq: torch.Tensor
    gt: torch.Tensor
    params: list[dict[str, Any]] = field(default_factory=list)
    kernels: dict[str, torch.Tensor] = field(default_factory=dict)


def config_from(cls: type, values: Mapping[str, Any] | None, where: str) -> Any:
    """``cls(**values)`` for a dataclass, naming an unknown key as ``where.key`` in one line."""
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]} is not a setting of this degradation (settings: {', '.join(sorted(names))})")
    check_switches(values, {f.name: f.type for f in dataclasses.fields(cls)}, where)
    return cls(**values)


def check_switches(values: Mapping[str, Any], annotations: Mapping[str, Any], where: str) -> None:
    """Settings annotated ``bool`` must be true or false: ``bool("maybe")`` is True, so a typo
    (``first.noise=maybe``, ``noise=flase``) would silently switch a step on."""
    for key, value in values.items():
        if annotations.get(key) in ("bool", bool) and not isinstance(value, bool):
            raise ValueError(f"{where}.{key}={value!r}: must be true or false")


def check_range(value: Any, where: str, low: float = 0.0) -> tuple[float, float]:
    """A [low, high] pair of numbers, low <= high."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a [low, high] pair of numbers, got {value!r}") from None
    if not low <= lo <= hi:
        raise ValueError(f"{where} must be a [low, high] pair with {low} <= low <= high, got {value!r}")
    return lo, hi


def check_prob(value: Any, where: str) -> float:
    p = float(value)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{where} must be a probability in [0, 1], got {value!r}")
    return p


def device_generator(g: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded by one draw of ``g`` (a CPU generator): the noise of a batch
    is drawn where the batch is, from the pipeline's seed."""
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    return torch.Generator(device=device).manual_seed(seed)
