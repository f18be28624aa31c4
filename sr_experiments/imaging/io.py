"""Image files in and out, the two ways the framework needs them.

``load_rgb`` (training, evaluation, data preparation): any file becomes the 8-bit RGB array the
metric protocol works on, deliberately. PIL's ``convert("RGB")`` silently drops alpha, maps
16-bit images through a clip, and ignores EXIF orientation; each case is handled on purpose.

``read_picture`` / ``write_picture`` (``upscale.py``, ``degrade.py``): what comes in goes out in the
same kind. Grayscale stays grayscale, alpha is kept apart (and upscaled on its own), 16-bit stays
16-bit (colour 16-bit PNG through ``png16.py``), the ICC profile is carried over, EXIF orientation
is applied. Palette images come back as RGB (RGBA with transparency): an upscaled image has new
colours. Multi-frame files (animated GIF/PNG/WebP, multi-page TIFF) are read frame by frame and
written back as an animation (APNG or animated WebP) with their frame durations and loop count.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sr_experiments.imaging.png16 import is_png16_color, read_png16, write_png16
from sr_experiments.imaging.video import is_video, video_output_path
from sr_experiments.outputs import atomic_write, check_output_folder, check_targets

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
INPUT_SUFFIXES = (*IMAGE_SUFFIXES, ".gif")  # what upscale.py and degrade.py take
FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}


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
    return pil_to_rgb8(im, path)


def pil_to_rgb8(im: Image.Image, path: Path) -> tuple[np.ndarray, bool]:
    """A decoded PIL image as ``load_rgb`` returns it; ``path`` names the source in errors."""
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


def list_images(folder: str | Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files directly inside ``folder`` (by their ``suffixes``), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in suffixes)


class ImageFileError(ValueError):
    """An input could not be used; the message is one line and names the reason, not the path."""


@dataclass
class Picture:
    """An image as the network sees it, plus what is needed to write it back in kind."""

    rgb: np.ndarray  # (H, W, 3) float32 in [0, 1]; gray files replicated to three channels
    alpha: np.ndarray | None  # (H, W) float32 in [0, 1], or None
    gray: bool
    bits: int  # 8 or 16
    icc_profile: bytes | None
    mode: str  # the file's PIL mode ("RGB;16" for 16-bit truecolour PNG)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL says it."""
        return self.rgb.shape[1], self.rgb.shape[0]


def find_inputs(spec: str | Path, suffixes: tuple[str, ...] = INPUT_SUFFIXES) -> list[Path]:
    """A file, every file with one of ``suffixes`` directly inside a folder (upscale.py adds
    ``video.VIDEO_SUFFIXES``), or the files a glob matches (sorted)."""
    path = Path(spec)
    if path.is_dir():
        return list_images(path, suffixes)
    if path.is_file():
        return [path]
    matches = sorted(Path(p) for p in glob.glob(str(spec), recursive=True) if Path(p).is_file())
    if not matches:
        raise FileNotFoundError(f"input={spec}: no such file or folder, and no file matches it as a glob")
    return matches


@dataclass
class Animation:
    """The frames of a multi-frame file, as viewers show them, and how they play."""

    frames: list[Picture]
    durations: list[int]  # milliseconds per frame
    loop: int  # plays (0: forever)


def read_picture(path: str | Path, max_pixels: int) -> Picture | Animation:
    """Decode ``path`` keeping its mode (every frame of a multi-frame file); ``max_pixels`` is
    checked before the pixels are decoded."""
    path = Path(path)
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own limit below, with a message that says what to do
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageFileError(
                    f"{w}x{h} = {w * h / 1e6:.1f} MP is over max_pixels={max_pixels} (a decompression bomb "
                    "guard; raise max_pixels if the image is genuine)"
                )
            icc = im.info.get("icc_profile")
            # A camera's MPO JPEG holds a preview (or depth map) after the photo: not an animation.
            if getattr(im, "n_frames", 1) > 1 and im.format != "MPO":
                return _read_frames(im, icc)
            if im.format == "PNG" and is_png16_color(path):
                arr, icc16 = read_png16(path)
                return _from_uint16_color(arr, icc16 or icc)
            im = ImageOps.exif_transpose(im)
            im.load()
            return _from_pil(im, icc)
    except UnidentifiedImageError:
        raise ImageFileError("not an image file (PIL cannot identify it)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        if isinstance(e, ImageFileError):
            raise
        raise ImageFileError(f"cannot decode ({e}); the file is truncated or corrupt") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _read_frames(im: Image.Image, icc: bytes | None) -> Animation:
    frames, durations = [], []
    for i in range(im.n_frames):
        im.seek(i)  # GIF/APNG frames come composited over the previous ones, as they are shown
        im.load()  # WebP sets the frame's duration on load
        if frames and im.size != frames[0].size:
            raise ImageFileError(f"frame {i + 1} of {im.n_frames} is {im.size[0]}x{im.size[1]}, the first "
                                 f"{frames[0].size[0]}x{frames[0].size[1]}: pages of different sizes make no animation")
        frames.append(_from_pil(im.convert("RGBA"), icc))
        durations.append(int(im.info.get("duration") or 100))
    if all(f.alpha is None or f.alpha.min() == 1 for f in frames):
        frames = [Picture(f.rgb, None, False, 8, icc, "RGB") for f in frames]
    return Animation(frames, durations, int(im.info.get("loop", 1)))


def _from_uint16_color(arr: np.ndarray, icc: bytes | None) -> Picture:
    # EXIF orientation inside a 16-bit PNG (an eXIf chunk, rare) is not applied by our codec.
    f = arr.astype(np.float32) / 65535
    return Picture(f[..., :3], f[..., 3] if f.shape[2] == 4 else None, False, 16, icc, "RGB;16")


def _from_pil(im: Image.Image, icc: bytes | None) -> Picture:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I"):
        a = np.asarray(im, dtype=np.float32) / 65535
        return Picture(np.repeat(a[..., None], 3, axis=2), None, True, 16, icc, mode)
    if mode == "F":
        raise ImageFileError("floating-point images (mode F) are not supported; save it as 8- or 16-bit PNG")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("1", "L", "LA", "La"):
        im = im.convert("LA" if mode in ("LA", "La") else "L")
    elif mode not in ("RGB", "RGBA"):
        if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            icc = None  # a CMYK/Lab profile does not describe the RGB pixels written back
        im = im.convert("RGBA" if mode in ("PA", "RGBa") else "RGB")
    a = np.asarray(im, dtype=np.float32) / 255
    if a.ndim == 2:
        a = a[..., None]
    gray = im.mode in ("L", "LA")
    color, alpha = (a[..., :1], a[..., 1]) if im.mode == "LA" else (a[..., :3], a[..., 3] if im.mode == "RGBA" else None)
    rgb = np.repeat(color, 3, axis=2) if gray else color
    return Picture(np.ascontiguousarray(rgb), alpha, gray, 8, icc, mode)


def output_path(out_dir: Path, src: Path, fmt: str) -> Path:
    ext = "jpg" if FORMATS[fmt] == "JPEG" else fmt
    return out_dir / f"{src.stem}.{ext}"


def plan_outputs(
    inputs: list[Path], out_dir: Path, fmt: str, extras: tuple[str, ...] = (), overwrite: bool = False,
    command: str = "upscale", spec: str | Path | None = None,
) -> dict[Path, Path]:
    """Input -> output path, every output name checked before anything is computed
    (``outputs.check_output_folder`` and ``outputs.check_targets``): ``out_dir`` is not the input
    folder ``spec`` nor another command's run folder; no output is an input file (the originals are
    never overwritten), no two outputs share a name (``a.png``, ``a.jpg``), and none exists already
    unless ``overwrite``. ``extras``: further files written per input image, ``<stem><extra>`` (``"_compare.png"``).
    A video is written as a video (``video.video_output_path``: its container, whatever ``fmt``)."""
    check_output_folder(out_dir, command, [spec] if spec is not None else [])
    plan = {src: video_output_path(out_dir, src) if is_video(src) else output_path(out_dir, src, fmt) for src in inputs}
    further = [(out_dir / f"{src.stem}{extra}", src) for src in inputs for extra in extras if not is_video(src)]
    check_targets([*plan.values(), *(t for t, _ in further)], inputs, overwrite,
                  made_from=[*plan, *(src for _, src in further)])
    return plan


def _quantise(x: np.ndarray, bits: int) -> np.ndarray:
    peak = 65535 if bits == 16 else 255
    q = np.floor(np.clip(x, 0, 1) * peak + 0.5)
    return q.astype(np.uint16 if bits == 16 else np.uint8)


def write_picture(path: Path, pic: Picture, fmt: str = "png", quality: int = 95, overwrite: bool = True) -> None:
    """Write ``pic`` as ``fmt`` in the kind it came in, atomically (``outputs.atomic_write``: a full
    disk leaves no partial file; ``overwrite=False`` never replaces a file that appeared meanwhile).
    JPEG has no alpha or 16 bits, WebP no 16 bits: alpha is then composited over white and 16-bit
    data rounded to 8 bits."""
    with atomic_write(path, overwrite) as tmp:
        _save_picture(tmp, pic, fmt, quality)


def _save_picture(path: Path, pic: Picture, fmt: str, quality: int) -> None:
    kind = FORMATS[fmt]
    rgb, alpha, bits = pic.rgb, pic.alpha, pic.bits
    if kind != "PNG":
        bits = 8
        if kind == "JPEG" and alpha is not None:
            rgb, alpha = rgb * alpha[..., None] + (1 - alpha[..., None]), None
    save_args = {"icc_profile": pic.icc_profile} if pic.icc_profile else {}
    if kind != "PNG":
        save_args["quality"] = int(quality)
    if pic.gray:
        g = rgb.mean(axis=2)  # the network's three near-equal channels, back to one
        if bits == 16:
            Image.fromarray(_quantise(g, 16)).save(path, kind, **save_args)  # mode I;16
            return
        im = Image.fromarray(_quantise(g if alpha is None else np.stack([g, alpha], axis=2), 8))  # L or LA
        if kind == "WEBP":
            im = im.convert("RGBA" if alpha is not None else "RGB")
        im.save(path, kind, **save_args)
        return
    full = rgb if alpha is None else np.concatenate([rgb, alpha[..., None]], axis=2)
    if bits == 16:
        write_png16(path, _quantise(full, 16), pic.icc_profile)
        return
    Image.fromarray(_quantise(full, 8)).save(path, kind, **save_args)


def check_frames(n_frames: int, fmt: str) -> None:
    """Refuse, before anything is computed, several frames in a format that holds one."""
    if n_frames > 1 and FORMATS[fmt] == "JPEG":
        raise ImageFileError(f"{n_frames} frames, and JPEG holds one: use format=png (APNG) or format=webp")


def write_animation(
    path: Path, frames: Iterable[Picture], like: Animation, fmt: str = "png", quality: int = 95, overwrite: bool = True
) -> Picture:
    """``frames`` with the durations and loop count of ``like``, as APNG (``png``) or animated WebP.

    Each frame is made 8-bit as it comes (an x4 animation in float32 would take 16x its input's
    memory); returns the first, full-precision. Written atomically, as ``write_picture``."""
    check_frames(len(like.frames), fmt)
    kind = FORMATS[fmt]
    first: Picture | None = None
    images = []
    for f in frames:
        first = first or f
        images.append(Image.fromarray(_quantise(f.rgb if f.alpha is None else np.dstack([f.rgb, f.alpha]), 8)))
    assert first is not None
    save_args = {"icc_profile": first.icc_profile} if first.icc_profile else {}
    if kind == "WEBP":
        save_args["quality"] = int(quality)
    with atomic_write(path, overwrite) as tmp:
        images[0].save(tmp, kind, save_all=True, append_images=images[1:], duration=like.durations, loop=like.loop,
                       **save_args)
    return first
