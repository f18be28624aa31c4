"""Small clip folders in the standard layouts (REDS, Vimeo-90K) for the clip preparation, streaming
and video resume tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

TRAIN_CLIPS = ("001", "002", "003", "004", "005", "006")  # "000" is REDS4: held out by split=train
FRAMES, SIZE = 10, (32, 48)  # per clip; HR (height, width): x4 LR 8x12


def make_reds(root: Path, clips: tuple[str, ...] = ("000", *TRAIN_CLIPS), frames: int = FRAMES,
              size: tuple[int, int] = SIZE) -> Path:
    """REDS's layout (``train_sharp/<clip>/<8-digit frame>.png``): a textured scene panning one pixel
    per frame, a different scene per clip."""
    h, w = size
    for c, name in enumerate(clips):
        rng = np.random.default_rng(c)
        yy, xx = np.mgrid[0:h + frames, 0:w + frames]
        scene = np.stack([(xx * (c + 3)) % 256, (yy * 5 + 40 * c) % 256, (xx + 2 * yy) % 256], -1).astype(float)
        scene = np.clip(scene + rng.normal(0, 20, scene.shape), 0, 255).astype(np.uint8)
        folder = root / "train_sharp" / name
        folder.mkdir(parents=True)
        for t in range(frames):
            Image.fromarray(scene[t:t + h, t:t + w]).save(folder / f"{t:08d}.png")
    return root


def make_vimeo(root: Path, names: tuple[str, ...] = ("00001/0001", "00001/0002"), size=(32, 48)) -> Path:
    """Vimeo-90K septuplets (``sequences/<a>/<b>/im1..7.png``) listed in ``sep_trainlist.txt``."""
    scenes = make_reds(root / "tmp", tuple(f"x{k}" for k in range(len(names))), 7, size) / "train_sharp"
    for k, name in enumerate(names):
        src = scenes / f"x{k}"
        folder = root / "sequences" / name
        folder.mkdir(parents=True)
        for t in range(7):
            shutil.copy(src / f"{t:08d}.png", folder / f"im{t + 1}.png")
    shutil.rmtree(root / "tmp")
    (root / "sep_trainlist.txt").write_text("\n".join(names) + "\n")
    return root
