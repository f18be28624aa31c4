"""16-bit RGB PNG read/write: the old hand-written codec (bench/png16_python_codec.py) against
sr_experiments/imaging/png16.py (OpenCV's libpng), side by side on a 0.25 MP and a 2 MP image.

    python bench/png16.py [--repeats 3]

The images are scikit-image's `astronaut` resized (bicubic) to 512x512 and 1920x1080, in 16 bits
with low-bit noise so that all 16 bits carry data. "read (libpng file)" reads a file written with
libpng's adaptive row filters (Sub/Up/Average/Paeth mixed, as other tools write them: the old
codec's slow path); "read (Up-filter file)" a file the old writer made (Up rows only: its fast
path). Each figure is the median of ``--repeats`` runs, one thread, after one untimed run; both
readers' outputs are checked equal.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import png16_python_codec as old  # noqa: E402

from sr_experiments.imaging import png16 as new  # noqa: E402

SIZES = {"0.25 MP (512x512)": (512, 512), "2 MP (1920x1080)": (1080, 1920)}


def test_image(h: int, w: int) -> np.ndarray:
    from PIL import Image
    from skimage import data

    rgb = Image.fromarray(data.astronaut()).resize((w, h), Image.BICUBIC)
    noise = np.random.default_rng(0).integers(0, 256, (h, w, 3))
    return (np.asarray(rgb).astype(np.int64) * 257 ^ noise).clip(0, 65535).astype(np.uint16)


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(1)
    print("| image | operation | old codec (s) | OpenCV (s) | speed-up |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, (h, w) in SIZES.items():
            arr = test_image(h, w)
            libpng_file, up_file = Path(tmp) / "libpng.png", Path(tmp) / "up.png"
            new.write_png16(libpng_file, arr)
            old.write_png16(up_file, arr)
            for f in (libpng_file, up_file):
                assert np.array_equal(old.read_png16(f)[0], arr) and np.array_equal(new.read_png16(f)[0], arr)
            rows = [
                ("read (libpng file)", lambda: old.read_png16(libpng_file), lambda: new.read_png16(libpng_file)),
                ("read (Up-filter file)", lambda: old.read_png16(up_file), lambda: new.read_png16(up_file)),
                ("write", lambda: old.write_png16(Path(tmp) / "o.png", arr),
                 lambda: new.write_png16(Path(tmp) / "n.png", arr)),
            ]
            for op, old_fn, new_fn in rows:
                t_old, t_new = timed(old_fn, args.repeats), timed(new_fn, args.repeats)
                print(f"| {label} | {op} | {t_old:.3f} | {t_new:.3f} | {t_old / t_new:.0f}x |", flush=True)


if __name__ == "__main__":
    main()
