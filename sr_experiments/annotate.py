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
