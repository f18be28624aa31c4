"""The hand-written 16-bit RGB(A) PNG codec that sr_experiments/imaging/png16.py used before OpenCV,
kept only as the baseline of bench/png16.py (zlib + the five PNG row filters in numpy, one
Python-level loop per row and, for Average/Paeth rows, per pixel)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

# The chunk reader is the package's (the codec compared is the pixel decoding, not the chunk walk).
from sr_experiments.imaging.png16 import _CHANNELS, SIGNATURE, _chunks


def read_png16(path: str | Path) -> tuple[np.ndarray, bytes | None]:
    """``(H, W, 3|4)`` uint16 array and the ICC profile (or None) of a 16-bit RGB(A) PNG."""
    data = Path(path).read_bytes()
    idat, icc, header = [], None, None
    for kind, body, _ in _chunks(data):
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"iCCP":
            icc = zlib.decompress(body[body.index(b"\0") + 2 :])
        elif kind == b"IEND":
            break
    if header is None or not idat:
        raise OSError("truncated PNG: no image data")
    width, height, depth, ctype, _, _, interlace = header
    if depth != 16 or ctype not in _CHANNELS:
        raise OSError(f"not a 16-bit RGB(A) PNG (depth {depth}, colour type {ctype})")
    if interlace:
        raise OSError("interlaced 16-bit RGB PNG is not supported; re-save it non-interlaced")
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as e:
        raise OSError(f"corrupt PNG data ({e})") from None
    bpp = 2 * _CHANNELS[ctype]
    stride = width * bpp
    if len(raw) < height * (stride + 1):
        raise OSError("truncated PNG: image data ends early")
    rows = np.frombuffer(raw, np.uint8, height * (stride + 1)).reshape(height, stride + 1)
    out = np.empty((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        out[y] = prev = _unfilter(int(rows[y, 0]), rows[y, 1:], prev, bpp)
    arr = out.view(">u2").reshape(height, width, _CHANNELS[ctype]).astype(np.uint16)
    return arr, icc


def _unfilter(kind: int, line: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    if kind == 0:
        return line.copy()
    if kind == 1:  # Sub: running sum over pixels, per byte position
        return (np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint64) % 256).astype(np.uint8).reshape(-1)
    if kind == 2:
        return line + prev
    if kind not in (3, 4):
        raise OSError(f"corrupt PNG: unknown row filter {kind}")
    # Average and Paeth depend on the reconstructed left pixel: sequential, one pixel at a time.
    cur = np.zeros(len(line) + bpp, np.int32)
    up = np.concatenate([np.zeros(bpp, np.int32), prev.astype(np.int32)])
    filt = line.astype(np.int32)
    for x in range(0, len(line), bpp):
        a, b, c = cur[x : x + bpp], up[x + bpp : x + 2 * bpp], up[x : x + bpp]
        if kind == 3:
            pred = (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
            pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        cur[x + bpp : x + 2 * bpp] = (filt[x : x + bpp] + pred) & 0xFF
    return cur[bpp:].astype(np.uint8)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_png16(path: str | Path, arr: np.ndarray, icc_profile: bytes | None = None) -> None:
    """Write an ``(H, W, 3|4)`` uint16 array as a 16-bit RGB(A) PNG (row filter Up: smaller files)."""
    h, w, c = arr.shape
    ctype = {3: 2, 4: 6}[c]
    rows = np.ascontiguousarray(arr.astype(">u2")).view(np.uint8).reshape(h, w * c * 2)
    filtered = rows.copy()
    filtered[1:] -= rows[:-1]  # Up filter, wraps mod 256 as the format says
    raw = np.concatenate([np.full((h, 1), 2, np.uint8), filtered], axis=1).tobytes()
    parts = [SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))]
    if icc_profile:
        parts.append(_chunk(b"iCCP", b"icc\0\0" + zlib.compress(icc_profile)))
    parts += [_chunk(b"IDAT", zlib.compress(raw, 6)), _chunk(b"IEND", b"")]
    Path(path).write_bytes(b"".join(parts))
