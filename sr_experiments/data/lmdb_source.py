"""Training pairs read lazily from BasicSR-style LMDBs (``*.lmdb`` folders), so a user brings the
DIV2K/DF2K LMDBs they already made with BasicSR's ``scripts/data_preparation/create_lmdb.py``.

The layout (BasicSR ``basicsr/utils/lmdb_util.py``, ``make_lmdb_from_imgs``)::

    DIV2K_train_HR_sub.lmdb/
        data.mdb, lock.mdb      the LMDB: key (file name without extension) -> PNG bytes (cv2.imencode)
        meta_info.txt           one line per image: ``0001_s001.png (480,480,3) 1`` = name, (h,w,c), PNG level

An HR and an LR LMDB pair up by key (BasicSR's ``paired_paths_from_lmdb``: its sub-image script drops
the ``x4`` of the LR names, so both hold ``0001_s001``). Nothing is decoded up front: the sizes come
from ``meta_info.txt``, and each item decodes one HR and one LR sub-image, so memory does not grow
with the data set. Each process opens its own read-only environment on first use (after the
DataLoader forked its workers; an environment must not cross a fork), without the lock file
(``lock=False``: nothing writes while training reads) and without readahead (random reads).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from sr_experiments.data.datasets import PairedPatchDataset
from sr_experiments.imaging.io import ImageLoadError, pil_to_rgb8
from sr_experiments.data.pairs import ImagePair, mod_crop, to_chw
from sr_experiments.imaging.imresize import imresize

META_INFO = "meta_info.txt"
# ``0001_s001.png (480,480,3) 1``; the compression level is optional (some forks leave it out).
_META_LINE = re.compile(r"^(?P<name>\S+)\s+\(\s*(?P<h>\d+)\s*,\s*(?P<w>\d+)\s*,\s*(?P<c>\d+)\s*\)(?:\s+\d+)?\s*$")
_MADE_BY = "make it with BasicSR's scripts/data_preparation/create_lmdb.py"


class LmdbError(ValueError):
    """An LMDB that cannot be used as given; the message is one line naming the path."""


# Open environments of this process, one per LMDB path (py-lmdb refuses to open a path twice in one
# process). LMDB forbids using an environment across fork(): all are closed just before a fork, in
# the parent, which reopens on its next read; a DataLoader worker opens its own on its first read.
_ENVS: dict[str, object] = {}


def close_all() -> None:
    """Close every LMDB environment this process holds open."""
    for env in _ENVS.values():
        env.close()
    _ENVS.clear()


os.register_at_fork(before=close_all)


def _environment(path: Path, key: str):
    import lmdb

    real = os.path.realpath(path)
    env = _ENVS.get(real)
    if env is None:
        try:
            env = lmdb.open(real, readonly=True, lock=False, readahead=False, meminit=False, max_readers=512)
        except lmdb.Error as e:
            raise LmdbError(f"{key}: '{path}' cannot be opened as an LMDB ({e}); {_MADE_BY}") from None
        _ENVS[real] = env
    return env


def read_meta_info(folder: Path, key: str) -> dict[str, tuple[int, int]]:
    """``{lmdb key: (height, width)}`` from ``folder/meta_info.txt``, in file order; refuses (one
    line) a folder that is not an LMDB, a missing or unreadable meta_info, a duplicate key."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{key}: LMDB folder '{folder}' does not exist")
    if not (folder / "data.mdb").is_file():
        raise LmdbError(f"{key}: '{folder}' is not an LMDB (no data.mdb in it); {_MADE_BY}")
    meta = folder / META_INFO
    if not meta.is_file():
        raise LmdbError(f"{key}: '{folder}' has no {META_INFO} (the image list BasicSR writes beside data.mdb); {_MADE_BY}")
    sizes: dict[str, tuple[int, int]] = {}
    try:
        lines = meta.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise LmdbError(f"{key}: {meta} cannot be read ({e}); {_MADE_BY}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        m = _META_LINE.match(line)
        if m is None:
            raise LmdbError(f"{key}: {meta} line {number} is {line[:80]!r}, not 'name.png (h,w,c) level'; the file is "
                            f"corrupt or not BasicSR's; {_MADE_BY}")
        name = m["name"].rsplit(".", 1)[0] if "." in m["name"] else m["name"]  # BasicSR: key = name without .png
        if name in sizes:
            raise LmdbError(f"{key}: {meta} line {number} repeats the key {name!r}")
        sizes[name] = (int(m["h"]), int(m["w"]))
    if not sizes:
        raise LmdbError(f"{key}: {meta} lists no images")
    return sizes


class LmdbImages:
    """One read-only LMDB of PNG-encoded images (its environment: ``_environment``).

    Args:
        path: the ``*.lmdb`` folder.
        key: the config key that names it (for messages).
    """

    def __init__(self, path: str | Path, key: str = "data.train_dir") -> None:
        self.path, self.key = Path(path).expanduser(), key
        self.sizes = read_meta_info(self.path, key)
        entries = _environment(self.path, key).stat()["entries"]
        if entries != len(self.sizes):
            raise LmdbError(f"{key}: {self.path / META_INFO} lists {len(self.sizes)} images but data.mdb holds "
                            f"{entries}: the LMDB is incomplete or meta_info.txt belongs to another; {_MADE_BY}")

    def read(self, name: str) -> tuple[np.ndarray, bool]:
        """The image ``name`` as ``load_rgb`` returns a file: (H, W, 3) uint8 RGB and the gray flag."""
        with _environment(self.path, self.key).begin(write=False) as txn:
            data = txn.get(name.encode("ascii"))
        where = f"{self.path}[{name}]"
        if data is None:
            raise LmdbError(f"{self.key}: key {name!r} is in {self.path / META_INFO} but not in data.mdb; {_MADE_BY}")
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                rgb, gray = pil_to_rgb8(im, Path(where))
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise ImageLoadError(f"{where}: not a readable image ({e}); the LMDB is corrupt, {_MADE_BY} again") from None
        if rgb.shape[:2] != self.sizes[name]:
            raise LmdbError(f"{where}: decoded {rgb.shape[1]}x{rgb.shape[0]} but {META_INFO} says "
                            f"{self.sizes[name][1]}x{self.sizes[name][0]}; the LMDB is corrupt")
        return rgb, gray


@dataclass(frozen=True)
class _Entry:
    hr: LmdbImages
    lr: LmdbImages | None
    name: str


def _check_pair(hr: LmdbImages, lr: LmdbImages, scale: int) -> None:
    """Same keys in both, each LR exactly the HR (mod-cropped to ``scale``) divided by ``scale``."""
    if set(hr.sizes) != set(lr.sizes):
        only_hr, only_lr = sorted(set(hr.sizes) - set(lr.sizes)), sorted(set(lr.sizes) - set(hr.sizes))
        example = f"{only_hr[0]!r} only in the HR" if only_hr else f"{only_lr[0]!r} only in the LR"
        raise LmdbError(f"{lr.key}: the keys of '{lr.path}' ({len(lr.sizes)}) and of {hr.key} '{hr.path}' "
                        f"({len(hr.sizes)}) differ ({example}); make both from the same sub-images")
    for name, (h, w) in hr.sizes.items():
        if lr.sizes[name] != (h // scale, w // scale):
            lh, lw = lr.sizes[name]
            raise LmdbError(f"{lr.key}: '{lr.path}' is not x{scale} of '{hr.path}': {name!r} is {lw}x{lh} at LR and "
                            f"{w}x{h} at HR (x{scale} needs {w // scale}x{h // scale}); set scale= to the LMDBs' "
                            f"factor or point {lr.key} at the X{scale} LMDB")


class LmdbPairs(Sequence[ImagePair]):
    """(LR, HR) pairs of one or more HR LMDBs, each with its LR LMDB or ``None`` (LR made from the HR
    with the MATLAB-compatible downscale, as for folders): item ``i`` is decoded when asked for.

    Args:
        hr_dirs: HR ``*.lmdb`` folders (e.g. DIV2K and Flickr2K sub-images for DF2K).
        lr_dirs: an LR ``*.lmdb`` per HR folder, or empty to generate every LR.
        scale: upscaling factor; every LR must be its HR (mod-cropped) divided by it.
    """

    def __init__(self, hr_dirs: Sequence[str], lr_dirs: Sequence[str], scale: int) -> None:
        if lr_dirs and len(lr_dirs) != len(hr_dirs):
            raise LmdbError(f"data.lr_dir names {len(lr_dirs)} LMDBs but data.train_dir {len(hr_dirs)}: give one LR "
                            "LMDB per HR LMDB, or none (data.lr_dir=null) to make the LR from the HR")
        self.scale, self.entries = int(scale), []
        for i, hr_dir in enumerate(hr_dirs):
            hr = LmdbImages(hr_dir, "data.train_dir")
            lr = LmdbImages(lr_dirs[i], "data.lr_dir") if lr_dirs else None
            if lr is not None:
                _check_pair(hr, lr, self.scale)
            # BasicSR sorts the keys (paired_paths_from_lmdb); so does a folder listing.
            self.entries += [_Entry(hr, lr, name) for name in sorted(hr.sizes)]

    def __len__(self) -> int:
        return len(self.entries)

    def lr_size(self, i: int) -> tuple[int, int]:
        """LR (height, width) of item ``i``, from meta_info.txt (nothing decoded)."""
        h, w = self.entries[i].hr.sizes[self.entries[i].name]
        return h // self.scale, w // self.scale

    def subset(self, indices: Sequence[int]) -> LmdbPairs:
        out = object.__new__(LmdbPairs)
        out.scale, out.entries = self.scale, [self.entries[i] for i in indices]
        return out

    def __getitem__(self, i: int) -> ImagePair:  # type: ignore[override]
        e = self.entries[i]
        gt_np, gray = e.hr.read(e.name)
        gt = to_chw(mod_crop(gt_np, self.scale))
        lq = imresize(gt, scale=1 / self.scale) if e.lr is None else to_chw(e.lr.read(e.name)[0])
        return ImagePair(e.name, lq.contiguous(), gt.contiguous(), gray)


class LmdbPatchDataset(PairedPatchDataset):
    """``PairedPatchDataset`` over ``LmdbPairs``: item ``n`` is the patch the in-memory dataset gives
    for the same images and seed (same crop, same flips; exact resume and DDP unchanged), decoded
    from the LMDB when asked for. Sub-images smaller than the LR patch are left out by their
    meta_info size, without decoding them."""

    def __init__(
        self, pairs: LmdbPairs, scale: int, patch_size: int, length: int, augment: bool = True, seed: int = 0
    ) -> None:
        # The parent's __init__ reads every pair's size from its tensors: that would decode the whole LMDB.
        usable = [i for i in range(len(pairs)) if min(pairs.lr_size(i)) >= patch_size]
        if not usable:
            raise ValueError(f"no training image is at least {patch_size}x{patch_size} pixels at LR; lower data.patch_size")
        if length < 1:
            raise ValueError(f"data.patches_per_epoch must be positive, got {length}")
        self.pairs, self.scale, self.patch_size = pairs.subset(usable), scale, patch_size
        self.length, self.augment, self.seed = length, augment, int(seed)
        kept = set(usable)
        self.skipped = [pairs.entries[i].name for i in range(len(pairs)) if i not in kept]

