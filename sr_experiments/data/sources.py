"""Where images come from: folders in the standard SR layout, or the embedded sample photos."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sr_experiments.imaging.io import list_images

SAMPLE_PREFIX = "sample:"
# Real photos that ship inside scikit-image's wheel, so `data=sample` needs no download.
# coffee and chelsea are held out for validation; motorcycle_right is left out because it is
# the stereo twin of motorcycle_left.
SAMPLE_SPLITS = {
    "train": [
        "astronaut.png",
        "hubble_deep_field.jpg",
        "ihc.png",
        "motorcycle_left.png",
        "retina.jpg",
        "rocket.jpg",
        "camera.png",
        "brick.png",
        "grass.png",
        "gravel.png",
    ],
    "val": ["chelsea.png", "coffee.png"],
}


@dataclass(frozen=True)
class ImageSource:
    """One HR image and, when a MATLAB-made LR file exists for it, that file."""

    gt: Path
    lq: Path | None = None

    @property
    def name(self) -> str:
        return self.gt.stem


def sample_dir() -> Path:
    import skimage.data

    return Path(os.path.dirname(skimage.data.__file__))


def resolve_sources(spec: str, scale: int, lr_source: str = "auto", key: str = "data") -> list[ImageSource]:
    """Images of one set.

    ``spec`` is ``sample:train`` / ``sample:val``, or a folder: either a set root in the standard
    layout (``<root>/HR/*.png`` with optional ``<root>/LR_bicubic/X{s}/<name>x{s}.png``) or a
    folder of images. ``lr_source``: ``auto`` uses LR files where they exist, ``folder`` requires
    them, ``generate`` always makes LR with the MATLAB-compatible downscale.
    """
    if lr_source not in ("auto", "folder", "generate"):
        raise ValueError(f"{key.rsplit('.', 1)[0]}.lr_source must be auto, folder or generate, got {lr_source!r}")
    spec = str(spec)
    if spec.startswith(SAMPLE_PREFIX):
        split = spec[len(SAMPLE_PREFIX) :]
        if split not in SAMPLE_SPLITS:
            raise ValueError(f"{key}: unknown sample split {spec!r}; use sample:train or sample:val")
        root = sample_dir()
        return [ImageSource(root / n) for n in SAMPLE_SPLITS[split]]
    root = Path(spec).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"{key}: folder '{root}' does not exist. Point paths.data_dir (or the SR_DATA environment "
            f"variable) at the folder that holds the data sets, or set {key} to an image folder."
        )
    if (root / "data.mdb").is_file():
        raise ValueError(f"{key}: '{root}' is an LMDB, not an image folder: train from it with data=lmdb "
                         f"data.train_dir={root} (README: BasicSR LMDBs)")
    hr_dir = root / "HR" if (root / "HR").is_dir() else root
    hr_files = list_images(hr_dir)
    if not hr_files:
        raise FileNotFoundError(f"{key}: no images (png, jpg, bmp, tif, webp) in '{hr_dir}'")
    lr_dir = root / "LR_bicubic" / f"X{scale}"
    sources = []
    for gt in hr_files:
        lq = lr_dir / f"{gt.stem}x{scale}{gt.suffix}"
        if lr_source == "generate" or (lr_source == "auto" and not lq.is_file()):
            lq = None
        elif lr_source == "folder" and not lq.is_file():
            raise FileNotFoundError(f"{key}: lr_source=folder but '{lq}' (the LR of '{gt}') does not exist")
        sources.append(ImageSource(gt, lq))
    return sources
