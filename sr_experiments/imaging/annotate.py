"""Text labels over the tiles of a side-by-side picture (validation panel, ``upscale compare=true``).

Pillow's bundled default font (FreeType, any size): nothing to download.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def font_size(tile_width: int) -> int:
    """Readable on a 128-pixel crop and on a full-size photo alike."""
    return max(10, min(48, tile_width // 16))


def label_strip(width: int, tiles: list[tuple[int, int, str]], size: int) -> np.ndarray:
    """A white ``(h, width, 3)`` uint8 strip with each ``(x0, x1, text)`` label centred over
    columns ``x0..x1`` and clipped to them, so a long label never runs into its neighbour."""
    font = ImageFont.load_default(size=size)
    height = size + max(4, size // 3)
    strip = Image.new("RGB", (width, height), "white")
    for x0, x1, text in tiles:
        cell = Image.new("RGB", (x1 - x0, height), "white")
        left, top, right, bottom = font.getbbox(text)
        ImageDraw.Draw(cell).text((max(0, (x1 - x0 - (right - left)) // 2) - left, (height - (bottom - top)) // 2 - top),
                                  text, fill="black", font=font)
        strip.paste(cell, (x0, 0))
    return np.asarray(strip)


def with_labels(row: np.ndarray, tiles: list[tuple[int, int, str]]) -> np.ndarray:
    """``row`` (H, W, 3) uint8 with a label strip on top (see ``label_strip``)."""
    widest = max(x1 - x0 for x0, x1, _ in tiles)
    return np.concatenate([label_strip(row.shape[1], tiles, font_size(widest)), row], axis=0)


def detail_box(a: np.ndarray, b: np.ndarray, side: int) -> tuple[int, int, int]:
    """``(y, x, side)`` of the square where two same-size (H, W, C) images differ most (mean
    absolute difference; an integral image scores every position at once). ``side`` is clipped to
    the images."""
    h, w = a.shape[:2]
    side = max(1, min(side, h, w))
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).mean(axis=-1)
    s = np.pad(diff.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = s[side:, side:] - s[:-side, side:] - s[side:, :-side] + s[:-side, :-side]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y), int(x), side


def outline(img: np.ndarray, box: tuple[int, int, int], colour: tuple[float, ...], width: int = 2) -> np.ndarray:
    """A copy of ``img`` with the square ``box`` (y, x, side) outlined in ``colour``."""
    y, x, side = box
    out = img.copy()
    for ys, xs in ((slice(y, y + width), slice(x, x + side)), (slice(y + side - width, y + side), slice(x, x + side)),
                   (slice(y, y + side), slice(x, x + width)), (slice(y, y + side), slice(x + side - width, x + side))):
        out[ys, xs] = colour
    return out
