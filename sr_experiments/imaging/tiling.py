"""A network over a whole image: tiling with overlap (bounded memory) and the x8 geometric
self-ensemble. Only torch: evaluation, ZSSR and inference all run networks through it."""

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


Tile = int | tuple[int, int]  # a square side, or (height, width)


def _sides(tile: Tile) -> tuple[int, int]:
    return (tile, tile) if isinstance(tile, int) else (int(tile[0]), int(tile[1]))


def count_tiles(height: int, width: int, tile: Tile, overlap: int) -> int:
    """Number of tiles ``tiled_forward`` runs for an ``height`` x ``width`` input."""
    th, tw = _sides(tile)
    return len(_tile_plan(height, th, overlap)) * len(_tile_plan(width, tw, overlap))


def fit_tiles(height: int, width: int, max_tile: int, overlap: int) -> tuple[int, int]:
    """(tile height, tile width) of at most ``max_tile**2`` pixels that cover the image with the
    least computed area: equal tiles that just fit, instead of a last tile mostly overlapping its
    neighbour (a 1080-row image in 720-row tiles computes 1440 rows; in two 556-row tiles, 1112)."""
    if height * width <= max_tile * max_tile:
        return height, width
    best: tuple[int, int, int] | None = None
    for n_h in range(1, max(1, -(-height // max(1, max_tile - overlap))) + 2):
        th = min(height, -(-(height - overlap) // n_h) + overlap) if n_h > 1 else height
        tw_max = (max_tile * max_tile) // th
        if tw_max <= overlap + 8:
            continue
        n_w = 1 if tw_max >= width else -(-(width - overlap) // (tw_max - overlap))
        tw = width if n_w == 1 else -(-(width - overlap) // n_w) + overlap
        cost = count_tiles(height, width, (th, tw), overlap) * th * tw
        if best is None or cost < best[0]:
            best = (cost, th, tw)
    return (best[1], best[2]) if best else (max_tile, max_tile)


def tiled_forward(
    net: Net,
    lq: torch.Tensor,
    scale: int,
    tile: Tile,
    overlap: int,
    tile_batch: int = 1,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """``net(lq)`` computed tile by tile: equal to the untiled output when the network's
    receptive field (in LR pixels) is smaller than ``overlap``.

    Args:
        net: maps (N, C, h, w) to (N, C, h*scale, w*scale).
        lq: (N, C, H, W) input.
        tile: LR tile side (or (height, width)), context included.
        overlap: LR pixels shared by neighbouring tiles (must be < tile).
        tile_batch: tiles run through the network at once.
        progress: called with the number of tiles just done.

    The output is float32 even when the network runs in bf16/fp16 (autocast): stitching into a
    low-precision buffer would round every pixel a second time.
    """
    tile_h, tile_w = _sides(tile)
    n, c, h, w = lq.shape
    # An axis the tile covers whole is not split: no overlap needed there.
    if overlap < 0 or any(overlap >= t and t < length for t, length in ((tile_h, h), (tile_w, w))):
        raise ValueError(f"eval.tile_overlap must be in [0, tile), got overlap={overlap} for tile={tile}")
    out: torch.Tensor | None = None
    jobs = [(ys, xs) for ys in _tile_plan(h, tile_h, overlap) for xs in _tile_plan(w, tile_w, overlap)]
    th, tw = min(tile_h, h), min(tile_w, w)
    for i in range(0, len(jobs), tile_batch):
        chunk = jobs[i : i + tile_batch]
        crops = torch.cat([lq[..., y0 : y0 + th, x0 : x0 + tw] for (y0, _, _), (x0, _, _) in chunk])
        sr = net(crops)
        if out is None:
            # Every output pixel is owned by exactly one tile, so no zero fill; keep the network's
            # memory layout so that stitching copies without transposing.
            layout = torch.channels_last if sr.dim() == 4 and sr.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
            out = torch.empty(
                n, sr.shape[1], h * scale, w * scale,
                dtype=torch.promote_types(sr.dtype, torch.float32), device=sr.device, memory_format=layout,
            )
        for k, ((y0, ya, yb), (x0, xa, xb)) in enumerate(chunk):
            part = sr[k * n : (k + 1) * n]
            out[..., ya * scale : yb * scale, xa * scale : xb * scale] = part[
                ..., (ya - y0) * scale : (yb - y0) * scale, (xa - x0) * scale : (xb - x0) * scale
            ]
        if progress is not None:
            progress(len(chunk))
    assert out is not None
    return out


def self_ensemble(net: Net, lq: torch.Tensor) -> torch.Tensor:
    """The x8 geometric self-ensemble (EDSR+): mean over the 4 rotations x 2 flips, each undone."""
    acc = None
    for k in range(4):
        for flip in (False, True):
            x = torch.rot90(lq, k, dims=(-2, -1))
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
    lq: torch.Tensor,
    scale: int,
    tile: Tile | None = None,
    overlap: int = 32,
    ensemble: bool = False,
    tile_batch: int = 1,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Inference with the options users combine: tiling inside, self-ensemble outside."""
    forward: Net = net
    if tile:
        forward = lambda x: tiled_forward(net, x, scale, tile, overlap, tile_batch, progress)  # noqa: E731
    with torch.inference_mode():
        return self_ensemble(forward, lq) if ensemble else forward(lq)
