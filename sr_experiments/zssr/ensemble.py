"""ZSSR's test time (official ``ZSSR.final_test``): the network on the 8 rotations/flips of the
input, each output back-projected onto the input, their median, back-projected once more.

Back-projection (Irani and Peleg 1991) pulls an SR image towards LR consistency: it adds the
upscaled residual ``lr - downscale(sr)`` ``iters`` times, clipping to [0, 1] after each.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sr_experiments.imaging.imresize import imresize
from sr_experiments.zssr.pairs import (
    Factor,
    dihedral,
    downscale,
    factor_pair,
    undo_dihedral,
)

Net = Callable[[torch.Tensor], torch.Tensor]


def back_project(
    sr: torch.Tensor, lr: torch.Tensor, scale: Factor, iters: int = 10, kernel: torch.Tensor | None = None
) -> torch.Tensor:
    """``sr`` made consistent with ``lr``: ``sr += upscale(lr - downscale(sr))``, clipped, ``iters``
    times (official ``back_projection``: down with the son kernel, up with bicubic; a fractional
    per-axis factor samples with its scale and takes the shapes given, as the official code)."""
    up_scale = None if isinstance(scale, int) else factor_pair(scale)
    for _ in range(iters):
        residual = lr - downscale(sr, scale, kernel, size=None if up_scale is None else tuple(lr.shape[-2:]))
        sr = (sr + imresize(residual, scale=up_scale, size=tuple(sr.shape[-2:]))).clamp(0, 1)
    return sr


def lr_consistency(sr: torch.Tensor, lr: torch.Tensor, scale: Factor, kernel: torch.Tensor | None = None) -> float:
    """RMS of ``downscale(sr) - lr``: how far ``sr`` is from explaining the input."""
    size = None if isinstance(scale, int) else tuple(lr.shape[-2:])
    return float((downscale(sr.float(), scale, kernel, size=size) - lr.float()).pow(2).mean().sqrt())


def ensemble_upscale(
    net: Net,
    lr: torch.Tensor,
    scale: Factor,
    *,
    flips: bool = True,
    back_projection_iters: int = 10,
    kernel: torch.Tensor | None = None,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """SR of ``lr`` (1, 3, H, W) by ``net``: x8 geometric self-ensemble (``flips``) combined by the
    per-pixel median, with back-projection of each output and of the median (official
    ``output_flip = True``, ``back_projection_iters = [10]``). A factor that differs per axis takes
    the 4 transforms that keep the axes (official: 180-degree steps)."""
    sy, sx = factor_pair(scale)
    outputs = []
    for k in range(0, 8 if flips else 1, 1 if sy == sx else 2):
        out = undo_dihedral(net(dihedral(lr, k)).float(), k)
        outputs.append(back_project(out.clamp(0, 1), lr.float(), scale, back_projection_iters, kernel))
        if progress is not None:
            progress(1)
    # torch.median of an even count is the lower middle value; numpy's (official) is the mean of
    # the two middle ones: the latter, as the official code.
    # (torch.quantile refuses tensors over 16M elements, a 1.4 MP output's 8 copies.)
    ordered = torch.stack(outputs).sort(dim=0).values
    n = len(outputs)
    sr = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return back_project(sr, lr.float(), scale, back_projection_iters, kernel)
