"""16-bit RGB/RGBA PNG, which Pillow cannot keep: it reads them as 8-bit RGB and cannot write them.

Pixels go through OpenCV's libpng (``cv2.imdecode``/``imencode`` with ``IMREAD_UNCHANGED``: every
row filter, interlacing, 16 bits kept); only the ICC profile (``iCCP``), which OpenCV neither
returns nor writes, is read and inserted here. Every other PNG goes through Pillow.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # colour type -> channels (truecolour, truecolour + alpha)
# zlib level of written files: 6 is libpng's and zlib's default (OpenCV's own default, 1, makes
# files about 10% larger for little time saved next to the network).
COMPRESSION = 6


def png_header(path: str | Path) -> tuple[int, int] | None:
    """(bit depth, colour type) of a PNG file, or None for any other file."""
    with open(path, "rb") as f:
        head = f.read(29)
    if len(head) < 29 or not head.startswith(SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def is_png16_color(path: str | Path) -> bool:
    header = png_header(path)
    return header is not None and header[0] == 16 and header[1] in _CHANNELS


def _chunks(data: bytes):
    """(kind, body, offset of the chunk) of each chunk up to IEND; only lengths are read."""
    pos = len(SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise OSError("truncated PNG chunk")
        yield kind, body, pos
        if kind == b"IEND":
            return
        pos += 12 + length


def _icc_profile(data: bytes) -> bytes | None:
    for kind, body, _ in _chunks(data):
        if kind == b"iCCP":
            try:
                return zlib.decompress(body[body.index(b"\0") + 2 :])
            except (ValueError, zlib.error):
                return None  # a damaged profile costs the colour tag, not the image
        if kind == b"IDAT":  # iCCP must come before the image data
            return None
    return None


def read_png16(path: str | Path) -> tuple[np.ndarray, bytes | None]:
    """``(H, W, 3|4)`` uint16 array (RGB, RGBA order) and the ICC profile (or None) of a 16-bit RGB(A) PNG."""
    import cv2

    data = Path(path).read_bytes()
    header = png_header(path)
    if header is None or header[0] != 16 or header[1] not in _CHANNELS:
        raise OSError(f"not a 16-bit RGB(A) PNG (depth {header[0] if header else '?'}, colour type "
                      f"{header[1] if header else '?'})")
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    channels = _CHANNELS[header[1]]
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] != channels:
        raise OSError("corrupt or truncated PNG: its image data cannot be decoded")
    arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGBA)
    return arr, _icc_profile(data)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_png16(path: str | Path, arr: np.ndarray, icc_profile: bytes | None = None) -> None:
    """Write an ``(H, W, 3|4)`` uint16 array (RGB, RGBA order) as a 16-bit RGB(A) PNG."""
    import cv2

    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"write_png16 takes an (H, W, 3|4) array, not {arr.shape}")
    channels = arr.shape[2]
    bgr = cv2.cvtColor(np.ascontiguousarray(arr, dtype=np.uint16),
                       cv2.COLOR_RGB2BGR if channels == 3 else cv2.COLOR_RGBA2BGRA)
    ok, encoded = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, COMPRESSION])
    if not ok:
        raise OSError(f"OpenCV could not encode a {arr.shape} 16-bit PNG for {path}")
    data = encoded.tobytes()
    if icc_profile:
        # After IHDR, before the image data, as the format requires.
        ihdr_end = len(SIGNATURE) + 12 + struct.unpack(">I", data[8:12])[0]
        data = data[:ihdr_end] + _chunk(b"iCCP", b"icc\0\0" + zlib.compress(icc_profile)) + data[ihdr_end:]
    Path(path).write_bytes(data)
