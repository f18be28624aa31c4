"""Video clips: the standard layouts (REDS, Vimeo-90K septuplets, Vid4), frame checks, and the
per-frame LR degradations of the video SR papers (BI: MATLAB bicubic, BD: Gaussian blur sigma 1.6
then every ``scale``-th pixel).

A clip is decoded once and cached as uint8 ``(T, 3, H, W)`` tensors (GT, and LR when the files
hold one, else made here). The synthetic clips of the embedded default live in ``clips_synthetic``;
the patch datasets and the datamodule in ``clips_datamodule``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sr_experiments.imaging.io import list_images, load_rgb
from sr_experiments.imaging.imresize import imresize

# REDS4: the four REDS training clips every paper holds out for testing (EDVR, BasicVSR, ...).
REDS4 = ("000", "011", "015", "020")
LAYOUTS = ("reds", "vimeo90k", "vid4", "synthetic")
DEGRADATIONS = ("BI", "BD")


class ClipError(ValueError):
    """A clip on disk is unusable (missing frames, frames of different sizes, LR that does not match)."""


@dataclass(frozen=True)
class ClipSource:
    """One clip on disk: its GT frame files in order and, when present, the LR files beside them."""

    name: str
    gt: tuple[Path, ...]
    lq: tuple[Path, ...] | None = None


@dataclass
class Clip:
    """A decoded clip: uint8 ``gt`` (T, 3, H, W) and ``lq`` (T, 3, H/s, W/s); ``flow_fwd`` /
    ``flow_bwd`` (T-1, 2, h, w) float32 are the true LR motion (x, y) from frame t to t+1 and from
    t+1 to t, known only for synthetic clips."""

    name: str
    gt: torch.Tensor
    lq: torch.Tensor
    flow_fwd: torch.Tensor | None = field(default=None, repr=False)
    flow_bwd: torch.Tensor | None = field(default=None, repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.gt.shape[0])


# Degradations ---------------------------------------------------------------------------------


def degrade_bi(gt: torch.Tensor, scale: int) -> torch.Tensor:
    """BI: MATLAB ``imresize(gt, 1/scale, 'bicubic')`` on uint8 frames (..., 3, H, W)."""
    return imresize(gt, scale=1 / scale)


@lru_cache(maxsize=8)
def bd_kernel_1d(sigma: float = 1.6) -> torch.Tensor:
    """The 1-D factor of the BD Gaussian of mmagic's
    ``tools/dataset_converters/vimeo90k/preprocess_vimeo90k_dataset.py`` (``bd_downsample``):
    size ``ceil(3 sigma) * 2 + 2`` (12 for sigma 1.6) on the half-integer grid -5.5..5.5, variance
    ``sigma**2`` in float32 as there, normalised. The 2-D isotropic kernel is its outer product."""
    size = math.ceil(sigma * 3) * 2 + 2
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    var = float(np.float32(sigma**2))
    k = torch.exp(-0.5 * coords**2 / var)
    return k / k.sum()


def degrade_bd(gt: torch.Tensor, scale: int = 4, sigma: float = 1.6) -> torch.Tensor:
    """BD: Gaussian blur then every ``scale``-th pixel, as mmagic's ``bd_downsample``: correlation
    with the 12x12 kernel anchored at index 5 (``cv2.filter2D``, replicated borders) on [0, 1]
    floats, rows/columns ``scale/2 - 1, scale/2 - 1 + scale, ...`` (``[1:-1:4]`` at x4: each LR
    pixel sits at the centre of its 4x4 block), clipped and rounded to uint8."""
    k = bd_kernel_1d(float(sigma))
    size, anchor = k.numel(), (k.numel() - 1) // 2
    lead = gt.shape[:-3]
    x = gt.reshape(-1, *gt.shape[-3:]).to(torch.float64) / 255.0
    c = x.shape[1]
    x = F.pad(x, (anchor, size - 1 - anchor, anchor, size - 1 - anchor), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    start = scale // 2 - 1
    h, w = gt.shape[-2] // scale, gt.shape[-1] // scale
    x = x[..., start : start + h * scale : scale, start : start + w * scale : scale]
    out = torch.floor(x.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    return out.reshape(*lead, c, h, w)


def degrade(gt: torch.Tensor, scale: int, kind: str = "BI") -> torch.Tensor:
    """LR frames of uint8 ``gt`` (..., 3, H, W) by ``kind``: ``BI`` or ``BD``."""
    kind = str(kind).upper()
    if kind == "BI":
        return degrade_bi(gt, scale)
    if kind == "BD":
        return degrade_bd(gt, scale)
    raise ValueError(f"data degradation must be BI or BD, got {kind!r}")


# Layouts --------------------------------------------------------------------------------------


def _frames(folder: Path, what: str) -> tuple[Path, ...]:
    """The frames of one clip folder in order (``order_frames``)."""
    files = list_images(folder)
    if not files:
        raise ClipError(f"{folder}: no frames (png, jpg, ...) in this {what} folder")
    return order_frames(files, folder)


def order_frames(files: list[Path], folder: Path) -> tuple[Path, ...]:
    """The frame files of one clip (in ``folder``) in order: by the last number in their names when
    every name has one, and those numbers must be consecutive (a gap is a missing frame, named);
    else by name."""
    files = sorted(files)
    numbers = [re.findall(r"\d+", f.stem) for f in files]
    if all(numbers):
        idx = [int(n[-1]) for n in numbers]
        order = sorted(range(len(files)), key=lambda i: idx[i])
        files, idx = [files[i] for i in order], [idx[i] for i in order]
        for a, b, f in zip(idx, idx[1:], files[1:]):
            if b != a + 1:
                raise ClipError(f"{folder}: frame(s) {a + 1}..{b - 1} missing before '{f.name}'; the clip must be complete")
    return tuple(files)


def _pair_frames(name: str, gt_dir: Path, lq_dir: Path | None) -> ClipSource:
    gt = _frames(gt_dir, "GT")
    if lq_dir is None:
        return ClipSource(name, gt)
    lq = _frames(lq_dir, "LR")
    if [f.stem for f in lq] != [f.stem for f in gt]:
        missing = sorted({f.stem for f in gt} - {f.stem for f in lq}) or sorted({f.stem for f in lq} - {f.stem for f in gt})
        raise ClipError(f"{lq_dir}: LR frames do not match the GT frames of '{gt_dir}' (first difference: {missing[:1]})")
    return ClipSource(name, gt, lq)


def _lr_dir(path: Path, lr_source: str, key: str) -> Path | None:
    if lr_source == "generate":
        return None
    if path.is_dir():
        return path
    if lr_source == "folder":
        raise FileNotFoundError(f"{key}: lr_source=folder but '{path}' does not exist")
    return None


def _clip_dirs(root: Path, key: str) -> list[Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"{key}: folder '{root}' does not exist; point paths.data_dir (or SR_DATA) at the data sets")
    dirs = sorted(d for d in root.iterdir() if d.is_dir())
    if not dirs:
        raise FileNotFoundError(f"{key}: no clip folders in '{root}'")
    return dirs


def reds_sources(root: Path, split: str, scale: int, lr_source: str, key: str) -> list[ClipSource]:
    """REDS: ``train_sharp/<clip>/<frame>.png``, LR ``train_sharp_bicubic/X{s}/<clip>/...``.
    ``split``: ``train`` (all clips but REDS4), ``reds4`` (000, 011, 015, 020) or ``all``."""
    if split not in ("train", "reds4", "all"):
        raise ValueError(f"{key}.split for layout reds must be train, reds4 or all, got {split!r}")
    sources = []
    for d in _clip_dirs(root / "train_sharp", key):
        if (split == "train" and d.name in REDS4) or (split == "reds4" and d.name not in REDS4):
            continue
        lq = _lr_dir(root / "train_sharp_bicubic" / f"X{scale}" / d.name, lr_source, key)
        sources.append(_pair_frames(d.name, d, lq))
    if not sources:
        raise FileNotFoundError(f"{key}: no {split} clips under '{root / 'train_sharp'}'")
    return sources


def vimeo_sources(root: Path, split: str, lr_source: str, degradation: str, key: str) -> list[ClipSource]:
    """Vimeo-90K septuplets: ``sequences/<a>/<b>/im1..7.png`` listed in the official
    ``sep_trainlist.txt`` (``split=train``) / ``sep_testlist.txt`` (``split=test``: Vimeo-90K-T);
    LR in mmagic's layout ``BIx4/<a>/<b>/im*.png`` or ``BDx4/...``."""
    if split not in ("train", "test"):
        raise ValueError(f"{key}.split for layout vimeo90k must be train or test, got {split!r}")
    listing = root / f"sep_{split}list.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"{listing}: the official Vimeo-90K list is missing (it ships with vimeo_septuplet)")
    names = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
    sources = []
    for n in names:
        gt_dir = root / "sequences" / n
        gt = tuple(gt_dir / f"im{i}.png" for i in range(1, 8))
        absent = [f for f in gt if not f.is_file()]
        if absent:
            raise ClipError(f"{absent[0]}: missing frame of septuplet {n} (listed in {listing.name})")
        lq_dir = _lr_dir(root / f"{degradation.upper()}x4" / n, lr_source, key)
        lq = tuple(lq_dir / f.name for f in gt) if lq_dir is not None else None
        if lq is not None and not all(f.is_file() for f in lq):
            raise ClipError(f"{next(f for f in lq if not f.is_file())}: missing LR frame of septuplet {n}")
        sources.append(ClipSource(n, gt, lq))
    return sources


def vid4_sources(root: Path, lr_source: str, degradation: str, key: str) -> list[ClipSource]:
    """Vid4: ``GT/<clip>/*.png`` with LR in ``BIx4/<clip>`` or ``BDx4/<clip>``."""
    return [
        _pair_frames(d.name, d, _lr_dir(root / f"{degradation.upper()}x4" / d.name, lr_source, key))
        for d in _clip_dirs(root / "GT", key)
    ]


def resolve_clip_sources(spec: dict, scale: int, lr_source: str = "auto", degradation: str = "BI",
                         key: str = "data") -> list[ClipSource]:
    """Clips of ``spec`` = ``{layout, root, split}`` (layout reds | vimeo90k | vid4). LR files are
    used where present (``lr_source=auto``), required (``folder``) or ignored (``generate``); the
    file layouts hold x4 LR only (``BIx4``/``BDx4``, ``X4``) except REDS's ``X{s}``."""
    layout = str(spec.get("layout", ""))
    if layout not in LAYOUTS or layout == "synthetic":
        raise ValueError(f"{key}.layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if lr_source not in ("auto", "folder", "generate"):
        raise ValueError(f"data.lr_source must be auto, folder or generate, got {lr_source!r}")
    if str(degradation).upper() not in DEGRADATIONS:
        raise ValueError(f"data.degradation must be BI or BD, got {degradation!r}")
    if layout != "reds" and scale != 4 and lr_source != "generate":
        lr_source = "generate"  # the published LR folders are x4 only
    root = Path(str(spec.get("root", ""))).expanduser()
    split = str(spec.get("split") or {"reds": "train", "vimeo90k": "train", "vid4": "all"}[layout])
    if layout == "reds":
        if str(degradation).upper() == "BD" and lr_source != "generate":
            lr_source = "generate"  # REDS ships bicubic LR only
        return reds_sources(root, split, scale, lr_source, key)
    if layout == "vimeo90k":
        return vimeo_sources(root, split, lr_source, degradation, key)
    return vid4_sources(root, lr_source, degradation, key)


# Decoding -------------------------------------------------------------------------------------


def _load_stack(files: tuple[Path, ...]) -> torch.Tensor:
    frames, size = [], None
    for f in files:
        img, _ = load_rgb(f)
        if size is None:
            size = img.shape[:2]
        elif img.shape[:2] != size:
            raise ClipError(f"{f}: frame is {img.shape[1]}x{img.shape[0]} but the clip's first frame is "
                            f"{size[1]}x{size[0]}; all frames of a clip must have one size")
        frames.append(torch.from_numpy(img.transpose(2, 0, 1).copy()))
    return torch.stack(frames)


def load_clip(source: ClipSource, scale: int, degradation: str = "BI", max_frames: int | None = None) -> Clip:
    """Decode a clip (the first ``max_frames`` frames): GT mod-cropped to ``scale``, LR from its
    files (checked against the GT size) or made per frame by ``degradation``."""
    gt_files = source.gt[:max_frames] if max_frames else source.gt
    gt = _load_stack(gt_files)
    h, w = gt.shape[-2] - gt.shape[-2] % scale, gt.shape[-1] - gt.shape[-1] % scale
    if h < scale or w < scale:
        raise ClipError(f"{gt_files[0]}: frames of {gt.shape[-1]}x{gt.shape[-2]} are smaller than the scale x{scale}")
    gt = gt[..., :h, :w].contiguous()
    if source.lq is None:
        lq = degrade(gt, scale, degradation)
    else:
        lq_files = source.lq[: len(gt_files)]
        lq = _load_stack(lq_files)
        if tuple(lq.shape[-2:]) != (h // scale, w // scale):
            raise ClipError(f"{lq_files[0]}: LR frame is {lq.shape[-1]}x{lq.shape[-2]} but its GT needs "
                            f"{w // scale}x{h // scale} at x{scale}; check the scale or use data.lr_source=generate")
    return Clip(source.name, gt, lq.contiguous())
