"""Whole-image inference: tiling with overlap (bounded memory) and the x8 geometric self-ensemble."""

from __future__ import annotations

from collections.abc import Callable

import torch

Net = Callable[[torch.Tensor], torch.Tensor]


def _tile_plan(length: int, tile: int, overlap: int) -> list[tuple[int, int, int]]:
    """Per axis: (tile start, first owned pixel, end of owned pixels) for each tile.

    Tiles of ``tile`` pixels step by ``tile - overlap``; neighbours split their overlap in the
    middle, so every owned pixel has at least ``overlap // 2`` pixels of context on each side
    (except at the image border, where the untiled network has none either).
    """
    if tile >= length:
        return [(0, 0, length)]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride)) + [length - tile]
    plan, owned_from = [], 0
    for i, s in enumerate(starts):
        owned_to = length if i == len(starts) - 1 else (starts[i + 1] + s + tile) // 2
        plan.append((s, owned_from, owned_to))
        owned_from = owned_to
    return plan


def tiled_forward(net: Net, lr: torch.Tensor, scale: int, tile: int, overlap: int, tile_batch: int = 1) -> torch.Tensor:
    """``net(lr)`` computed tile by tile: equal to the untiled output when the network's
    receptive field (in LR pixels) is smaller than ``overlap``.

    Args:
        net: maps (N, C, h, w) to (N, C, h*scale, w*scale).
        lr: (N, C, H, W) input.
        tile: LR tile side, context included.
        overlap: LR pixels shared by neighbouring tiles (must be < tile).
        tile_batch: tiles run through the network at once.
    """
    if overlap < 0 or overlap >= tile:
        raise ValueError(f"eval.tile_overlap must be in [0, tile), got overlap={overlap} for tile={tile}")
    n, c, h, w = lr.shape
    out: torch.Tensor | None = None
    jobs = [(ys, xs) for ys in _tile_plan(h, tile, overlap) for xs in _tile_plan(w, tile, overlap)]
    for i in range(0, len(jobs), tile_batch):
        chunk = jobs[i : i + tile_batch]
        th, tw = min(tile, h), min(tile, w)
        crops = torch.cat([lr[..., y0 : y0 + th, x0 : x0 + tw] for (y0, _, _), (x0, _, _) in chunk])
        sr = net(crops)
        if out is None:
            out = sr.new_zeros(n, sr.shape[1], h * scale, w * scale)
        for k, ((y0, ya, yb), (x0, xa, xb)) in enumerate(chunk):
            part = sr[k * n : (k + 1) * n]
            out[..., ya * scale : yb * scale, xa * scale : xb * scale] = part[
                ..., (ya - y0) * scale : (yb - y0) * scale, (xa - x0) * scale : (xb - x0) * scale
            ]
    assert out is not None
    return out


def self_ensemble(net: Net, lr: torch.Tensor) -> torch.Tensor:
    """The x8 geometric self-ensemble (EDSR+): mean over the 4 rotations x 2 flips, each undone."""
    acc = None
    for k in range(4):
        for flip in (False, True):
            x = torch.rot90(lr, k, dims=(-2, -1))
            if flip:
                x = x.flip(-1)
            y = net(x)
            if flip:
                y = y.flip(-1)
            y = torch.rot90(y, -k, dims=(-2, -1))
            acc = y if acc is None else acc + y
    return acc / 8


def upscale(
    net: Net,
    lr: torch.Tensor,
    scale: int,
    tile: int | None = None,
    overlap: int = 32,
    ensemble: bool = False,
    tile_batch: int = 1,
) -> torch.Tensor:
    """Inference with the options users combine: tiling inside, self-ensemble outside."""
    forward: Net = net
    if tile:
        forward = lambda x: tiled_forward(net, x, scale, tile, overlap, tile_batch)  # noqa: E731
    with torch.inference_mode():
        return self_ensemble(forward, lr) if ensemble else forward(lr)
