"""Cost of tOF (evaluation/temporal.py) per frame pair at Vid4's frame size, through eval.py's code.

    python bench/tof.py [--size 576 720] [--frames 10] [--repeats 3] [--threads 1 2]

A generated clip (a smooth texture panning a pixel per frame; the SR is it plus new noise on every
frame, so the flow has work to do) of ``--frames`` frames at ``--size`` (H W; Vid4 is 576 x 720).
Per OpenCV thread count: the time of one clip's tOF divided by its pairs (two Farneback flows, the
gray conversion and the distance), the best of ``--repeats``, wall and CPU time of the process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sr_experiments.evaluation.temporal import CUT_FRAMES, tof_pairs  # noqa: E402
from sr_experiments.hardware import cpu_model  # noqa: E402


def clip(frames: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(SR, GT) float clips in [0, 1], (T, 3, H, W)."""
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.normal(0, 1, (height + frames, width + frames, 3)).astype(np.float32), (0, 0), 2.0)
    big = np.clip(128 + 60 * big / big.std(), 0, 255)
    gt = np.stack([big[frames - t : frames - t + height, frames - t : frames - t + width] for t in range(frames)])
    sr = np.clip(gt + rng.normal(0, 8, gt.shape), 0, 255)
    as_tensor = lambda a: torch.from_numpy(np.round(a).astype(np.float32) / 255).permute(0, 3, 1, 2)  # noqa: E731
    return as_tensor(sr), as_tensor(gt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[576, 720], metavar=("H", "W"))
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="OpenCV thread counts to time")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sr, gt = clip(args.frames, *args.size)
    pairs = len(tof_pairs(sr, gt))
    print(f"{cpu_model()}; OpenCV {cv2.__version__}; {args.frames} frames of {args.size[0]}x{args.size[1]}, "
          f"{CUT_FRAMES} cut at each end: {pairs} pairs")
    for threads in args.threads:
        cv2.setNumThreads(threads)
        wall, cpu = [], []
        for _ in range(args.repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            tof_pairs(sr, gt)
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
        print(f"cv2 threads {threads}: {1000 * min(wall) / pairs:.1f} ms/pair wall, "
              f"{1000 * min(cpu) / pairs:.1f} ms/pair CPU")


if __name__ == "__main__":
    main()
