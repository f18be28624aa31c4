"""The prepared-dataset format: HR sub-images and their LR, in litdata chunks.

A prepared folder (``prepare.py``) holds litdata's ``index.json`` and ``chunk-*.bin`` files and
``sr_manifest.json`` (what it was made from and how). Each item is one sub-image:

- ``name``: ``<image stem>_s<NNN>`` (BasicSR's ``extract_subimages.py`` names, NNN from 001, row-major),
- ``gt``: the HR sub-image, PNG bytes (lossless, 8-bit RGB),
- ``lq_x<s>``: its LR at scale ``s``, PNG bytes, for every scale the folder was prepared for.

A folder prepared from clips (``prepare.py kind=clips``, format ``CLIP_FORMAT``) holds one item
per clip window instead: ``name`` (``<clip>_t<first frame>_s<NNN>``), ``frames`` (T), and ``gt`` /
``lq_x<s>`` the T frames stacked top to bottom in one PNG (``encode_frames``): lossless, and one
field whatever T, so every item has litdata's one data format.

Any other source of sub-images (an LMDB reader, say) plugs into ``SubImageStream`` by yielding the
same ``{"name", "gt", "lq_x<s>"}`` dicts of PNG bytes, or by giving decoded ``ImagePair``s to
``sample_patch`` (datasets.py). PNG rather than raw arrays: 2-3x smaller chunks for ~4 ms of
decoding per 480x480 sub-image (bench/data_scale.py measures what that costs per worker).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

MANIFEST = "sr_manifest.json"
FORMAT = "sr-experiments/subimages"
CLIP_FORMAT = "sr-experiments/clips"
FORMAT_VERSION = 1
# What each format holds and the data preset that trains from it (named when the other one is given).
KINDS = {FORMAT: ("sub-images", "data=stream"), CLIP_FORMAT: ("clips", "data=stream_clips")}


class PreparedDataError(ValueError):
    """A prepared folder that cannot be used as asked; the message is one line naming it."""


def tile_starts(size: int, crop: int, step: int, thresh_size: int = 0) -> list[int]:
    """Start offsets of the crops along one side, BasicSR's rule (extract_subimages.py): every
    ``step`` from 0 while a whole crop fits, plus one crop flush with the far border when more than
    ``thresh_size`` pixels would be left over. A side shorter than ``crop`` gets no crop."""
    if size < crop:
        return []
    starts = list(range(0, size - crop + 1, step))
    if size - (starts[-1] + crop) > thresh_size:
        starts.append(size - crop)
    return starts


def subimage_boxes(height: int, width: int, crop: int, step: int, thresh_size: int = 0) -> list[tuple[int, int]]:
    """Top-left corners ``(y, x)`` of the sub-images, row by row (BasicSR's numbering order)."""
    return [(y, x) for y in tile_starts(height, crop, step, thresh_size)
            for x in tile_starts(width, crop, step, thresh_size)]


def scales_lcm(scales: list[int]) -> int:
    """Crops, steps and the HR mod-crop are multiples of this, so every LR crop is aligned."""
    return math.lcm(*scales)


CODECS = ("png", "raw")


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) as ``load_rgb`` will decode it (EXIF rotation applied), from the header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            turned = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise PreparedDataError(f"input: {path}: not a readable image ({e}); remove it or re-save it as PNG") from None
    return (w, h) if turned else (h, w)


def encode_png(rgb: np.ndarray, level: int = 1) -> bytes:
    """Lossless PNG bytes of an (H, W, 3) uint8 RGB array (level 1: BasicSR's LMDB choice, fast)."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, int(level)])
    if not ok:
        raise ValueError(f"PNG encoding failed for an array of shape {rgb.shape}")
    return buf.tobytes()


def encode_image(rgb: np.ndarray, codec: str = "png", level: int = 1) -> bytes | np.ndarray:
    """A sub-image as stored: PNG bytes (about a third of the disk), or ``raw``: the uint8 array itself
    (litdata's numpy serializer), which a loader worker reads without decoding. PNG decoding is
    most of a worker's time (BENCHMARKS.md: Data at scale)."""
    if codec == "raw":
        return np.ascontiguousarray(rgb, dtype=np.uint8)
    return encode_png(rgb, level)


def decode_png(data: bytes, where: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB from PNG bytes; ``where`` names the item for the error."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        raise PreparedDataError(f"{where}: the stored image cannot be decoded (a corrupt chunk?); run prepare.py "
                                "again into a new folder")
    return img[..., ::-1]


def decode_image(value: bytes | np.ndarray, where: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a stored sub-image, either codec (``encode_image``)."""
    if isinstance(value, np.ndarray):
        if value.dtype != np.uint8 or value.ndim != 3 or value.shape[2] != 3:
            raise PreparedDataError(f"{where}: the stored array is {value.dtype} {tuple(value.shape)}, not an RGB "
                                    "uint8 image (a corrupt chunk?); run prepare.py again into a new folder")
        return value
    return decode_png(value, where)


def encode_frames(frames: np.ndarray, level: int = 1) -> bytes:
    """Lossless PNG bytes of (T, H, W, 3) uint8 RGB frames, stacked top to bottom."""
    t, h, w, c = frames.shape
    return encode_png(frames.reshape(t * h, w, c), level)


def decode_frames(data: bytes, frames: int, where: str) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames from ``encode_frames``' bytes."""
    img = decode_png(data, where)
    if frames < 1 or img.shape[0] % frames:
        raise PreparedDataError(f"{where}: {img.shape[0]} stored rows are not {frames} frames (a corrupt chunk?); "
                                "run prepare.py again into a new folder")
    return np.ascontiguousarray(img.reshape(frames, img.shape[0] // frames, *img.shape[1:]))


def read_manifest(folder: str | Path, key: str = "data.train_dir", fmt: str = FORMAT) -> dict[str, Any]:
    """The manifest of a prepared folder (local), refusing anything that is not a complete one of
    format ``fmt`` (``FORMAT``: sub-images, ``CLIP_FORMAT``: clips)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise PreparedDataError(f"{key}: folder '{folder}' does not exist; make it with prepare.py input=... "
                                f"output={folder}")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        hint = "its preparation did not finish: run the same prepare.py again to complete it" if (
            folder / ".parts").is_dir() else "make it with prepare.py (data=stream reads prepared folders only)"
        raise PreparedDataError(f"{key}: '{folder}' is not a prepared dataset (no {MANIFEST}): {hint}") from None
    except (OSError, ValueError) as e:
        raise PreparedDataError(f"{key}: '{path}' is unreadable ({e}); prepare the data again") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in KINDS:
        raise PreparedDataError(f"{key}: '{path}' is not an sr-experiments manifest")
    if manifest["format"] != fmt:
        (held, preset), (wanted, _) = KINDS[manifest["format"]], KINDS[fmt]
        raise PreparedDataError(f"{key}: '{folder}' holds prepared {held}, not {wanted}: train from it with {preset}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise PreparedDataError(f"{key}: '{folder}' has format version {manifest.get('format_version')}, this "
                                f"version reads {FORMAT_VERSION}; prepare it again")
    return manifest
