"""Decode any image file into the 8-bit RGB array the framework works on, deliberately.

PIL's ``convert("RGB")`` silently drops alpha, maps 16-bit images through a clip, and ignores EXIF
orientation; each case is handled on purpose here instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageLoadError(ValueError):
    """An input file could not be decoded; the message names the file."""


def load_rgb(path: str | Path) -> tuple[np.ndarray, bool]:
    """Read ``path`` as an ``(H, W, 3)`` uint8 RGB array.

    Returns the array and whether the *file* is single-channel (grayscale), which the metric
    protocol needs (gray files are measured on their gray values, not on BT.601 Y).

    Conversions: grayscale is replicated to three channels; alpha (RGBA, LA, palette with
    transparency) is composited over white, the way viewers show such images, so transparent
    pixels do not leak arbitrary colours into training; 16-bit images are scaled to 8 bits
    (round(v / 257)); CMYK and other modes go through PIL's colour conversion; EXIF orientation
    is applied.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: no such file") from None
    except Image.DecompressionBombError as e:
        raise ImageLoadError(
            f"{path}: {e.args[0] if e.args else e} Refused as a possible decompression bomb; "
            "if the file is trusted, split it into tiles or raise PIL.Image.MAX_IMAGE_PIXELS"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageLoadError(f"{path}: not a readable image ({e}); remove it or re-save it as PNG") from None
    return _to_rgb8(im, path)


def _to_rgb8(im: Image.Image, path: Path) -> tuple[np.ndarray, bool]:
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if a.max(initial=0) > 255 or mode.startswith("I;16") else 255.0
        g = np.clip(np.floor(a * (255.0 / peak) + 0.5), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2), True
    if mode in ("1", "L"):
        g = np.asarray(im.convert("L"), dtype=np.uint8)
        return np.repeat(g[..., None], 3, axis=2), True
    if mode in ("LA", "La", "RGBA", "RGBa", "PA"):
        gray = mode in ("LA", "La")
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float64)
        alpha = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return np.clip(np.floor(rgb + 0.5), 0, 255).astype(np.uint8), gray
    if mode == "F":
        raise ImageLoadError(f"{path}: floating-point images (mode F) are not supported; save it as 8- or 16-bit PNG")
    if mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8)), False


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
