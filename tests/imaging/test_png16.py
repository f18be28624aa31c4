"""16-bit RGB(A) PNG through OpenCV: exact values, channel order, every row filter, ICC profile, errors."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from sr_experiments.imaging.png16 import is_png16_color, read_png16, write_png16

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _filter_row(kind: int, row: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """The PNG encoder side of row filter ``kind`` (an independent writer for the reader's test)."""
    x, up = row.astype(np.int32), prev.astype(np.int32)
    left = np.concatenate([np.zeros(bpp, np.int32), x[:-bpp]])
    upleft = np.concatenate([np.zeros(bpp, np.int32), up[:-bpp]])
    if kind == 0:
        pred = np.zeros_like(x)
    elif kind == 1:
        pred = left
    elif kind == 2:
        pred = up
    elif kind == 3:
        pred = (left + up) // 2
    else:
        p = left + up - upleft
        pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
        pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    return ((x - pred) % 256).astype(np.uint8)


def handmade_png16(arr: np.ndarray) -> bytes:
    """A 16-bit RGB(A) PNG whose rows cycle through all five filters (as other encoders mix them)."""
    h, w, c = arr.shape
    rows = arr.astype(">u2").view(np.uint8).reshape(h, w * c * 2)
    prev, raw = np.zeros(w * c * 2, np.uint8), b""
    for y in range(h):
        kind = y % 5
        raw += bytes([kind]) + _filter_row(kind, rows[y], prev, 2 * c).tobytes()
        prev = rows[y]
    ihdr = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[c], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


@pytest.mark.parametrize("channels", [3, 4])
def test_round_trip_is_exact_with_the_icc_profile(tmp_path: Path, channels: int) -> None:
    arr = np.random.default_rng(channels).integers(0, 65536, (23, 17, channels)).astype(np.uint16)
    arr[0, 0] = 0
    arr[-1, -1] = 65535
    write_png16(tmp_path / "a.png", arr, icc_profile=SRGB)
    assert is_png16_color(tmp_path / "a.png")
    back, icc = read_png16(tmp_path / "a.png")
    assert back.dtype == np.uint16 and back.shape == arr.shape and np.array_equal(back, arr)
    assert icc == SRGB
    with Image.open(tmp_path / "a.png") as im:  # a valid file for other readers, profile included
        assert im.info.get("icc_profile") == SRGB


@pytest.mark.parametrize("channels", [3, 4])
def test_reads_every_row_filter_of_an_independent_encoder(tmp_path: Path, channels: int) -> None:
    arr = np.random.default_rng(10 + channels).integers(0, 65536, (11, 9, channels)).astype(np.uint16)
    (tmp_path / "h.png").write_bytes(handmade_png16(arr))
    back, icc = read_png16(tmp_path / "h.png")
    assert np.array_equal(back, arr) and icc is None


def test_channel_order_is_rgb_as_other_readers_see_it(tmp_path: Path) -> None:
    arr = np.zeros((4, 6, 4), np.uint16)
    arr[..., 0], arr[..., 1], arr[..., 2], arr[..., 3] = 65535, 32896, 0, 65535  # orange, opaque
    write_png16(tmp_path / "o.png", arr)
    with Image.open(tmp_path / "o.png") as im:  # Pillow reads the 16-bit file as 8-bit RGBA
        assert im.mode == "RGBA" and im.getpixel((0, 0)) == (255, 128, 0, 255)
    back, _ = read_png16(tmp_path / "o.png")
    assert tuple(back[0, 0]) == (65535, 32896, 0, 65535)


def test_corrupt_and_wrong_files_are_oserrors(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 65536, (32, 32, 3)).astype(np.uint16)
    data = handmade_png16(arr)
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match="corrupt or truncated"):
        read_png16(tmp_path / "t.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "8.png")
    with pytest.raises(OSError, match="not a 16-bit RGB"):
        read_png16(tmp_path / "8.png")
    with pytest.raises(ValueError, match=r"\(H, W, 3\|4\)"):
        write_png16(tmp_path / "g.png", np.zeros((4, 4), np.uint16))
