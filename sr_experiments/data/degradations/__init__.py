"""On-the-fly degradations for blind ("real-world") SR: HR batch -> LR batch on the training device.

``degradation=bicubic`` (the default) is the classic pairs (no pipeline); ``realesrgan`` is
Real-ESRGAN's second-order model (``realesrgan.py``), ``bsrgan`` BSRGAN's shuffled one
(``bsrgan.py``). Kernels: ``kernels.py``; the operations (kornia's filtering and JPEG, the noise
models, USM): ``ops.py``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any, Protocol

import torch

from sr_experiments.config_values import plain
from sr_experiments.data.degradations.base import Degraded, check_switches
from sr_experiments.data.sampler import derived_seed

__all__ = ["Degraded", "Degradation", "NAMES", "build_degradation", "degrade_image", "image_generator"]

NAMES = ("bicubic", "realesrgan", "bsrgan")
# Keys of the ``degradation`` config node that are not the pipeline's settings.
RUN_KEYS = ("name", "seed")


class Degradation(Protocol):
    name: str
    scale: int

    def __call__(self, hr: torch.Tensor, generator: torch.Generator) -> Degraded: ...


def build_degradation(cfg: Mapping[str, Any] | str | None, scale: int) -> Degradation | None:
    """The pipeline of a ``degradation`` config node (or a bare name); ``None`` for ``bicubic``."""
    if cfg is None:
        return None
    spec = {"name": cfg} if isinstance(cfg, str) else dict(plain(cfg) or {})
    name = spec.get("name", "bicubic")
    settings = {k: v for k, v in spec.items() if k not in RUN_KEYS}
    if name == "bicubic":
        return None
    if name == "realesrgan":
        from sr_experiments.data.degradations.realesrgan import RealESRGANDegradation as cls
    elif name == "bsrgan":
        from sr_experiments.data.degradations.bsrgan import BSRGANDegradation as cls
    else:
        raise ValueError(f"degradation={name!r}: use one of {', '.join(NAMES)}")
    import inspect

    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "scale")]
    for key in settings:
        if key not in accepted:
            raise ValueError(f"degradation.{key} is not a setting of degradation={name} (settings: {', '.join(accepted)})")
    params = inspect.signature(cls.__init__).parameters
    check_switches(settings, {k: p.annotation for k, p in params.items()}, "degradation")
    return cls(int(scale), **settings)


def image_generator(seed: int, name: str) -> torch.Generator:
    """The generator that degrades the image called ``name`` (its file stem) under ``seed``: the
    same LR for that image whatever the order, the set or the model (eval.py, degrade.py)."""
    return torch.Generator().manual_seed(derived_seed(int(seed), zlib.crc32(name.encode())))


def degrade_image(hr: torch.Tensor, degradation: Degradation, seed: int, name: str) -> Degraded:
    """One image ((3, H, W) or (1, 3, H, W) in [0, 1]) degraded with the draws of ``(seed, name)``,
    after cropping it to a multiple of the scale (as the benchmark protocol mod-crops the HR)."""
    x = hr if hr.dim() == 4 else hr[None]
    s = degradation.scale
    h, w = x.shape[-2] // s * s, x.shape[-1] // s * s
    if h == 0 or w == 0:
        raise ValueError(f"{name}: {x.shape[-1]}x{x.shape[-2]} is smaller than the scale {s}")
    return degradation(x[..., :h, :w].float(), image_generator(seed, name))
