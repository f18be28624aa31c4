"""CPU time per image of each evaluation metric on Set5 (bicubic x2 outputs), through eval.py's code.

    python bench/perceptual_metrics.py [--data DIR] [--scale 2] [--repeats 3] [--threads 1] [--metrics lpips dists niqe]

The weights are random stand-ins written to a temporary folder (``write_random_weights``): the
networks have the real shapes, so the time is the real one, but the values are meaningless. NIQE
needs pyiqa (the ``perceptual`` extra) and is left out without it. Per metric: the time to build
it (load its weights), the first image (one-off kernel set-up included) and the mean per image
after that, over ``--repeats`` passes of the five images: CPU time of the process (steady on a
shared machine; with one torch thread it is the wall time of a quiet machine) and wall time.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sr_experiments.imaging.io import load_rgb  # noqa: E402
from sr_experiments.data.pairs import load_pair  # noqa: E402
from sr_experiments.evaluation.metrics import sr_psnr_ssim  # noqa: E402
from sr_experiments.evaluation.perceptual import PerceptualScorer, write_random_weights  # noqa: E402
from sr_experiments.evaluation.protocol import resolve_eval_sources  # noqa: E402
from sr_experiments.hardware import cpu_model  # noqa: E402
from sr_experiments.models.bicubic import Bicubic  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("SR_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--metrics", nargs="+", default=["lpips", "lpips_vgg", "dists", "niqe"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    scale = args.scale
    pairs = []
    for source in resolve_eval_sources(str(Path(args.data) / "Set5"), scale):
        pair = load_pair(source, scale, load_rgb(source.gt), lr_key="eval.lr_source")
        gt = pair.gt[None].float() / 255
        with torch.inference_mode():
            sr = Bicubic(scale)(pair.lq[None].float() / 255).clamp(0, 1)
        pairs.append((source.name, sr, gt, pair.gray))
    sizes = ", ".join(f"{n} {tuple(g.shape[-2:])}" for n, _, g, _ in pairs)
    print(f"Set5 x{scale}, bicubic outputs: {sizes}")
    print(f"CPU: {cpu_model()}; {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, torch {torch.__version__}")

    def timed(fn) -> tuple[float, float, float]:
        """(first image CPU, mean CPU per image over the passes after it, mean wall) in ms."""
        c = time.process_time()
        fn(*pairs[0][1:])
        first = (time.process_time() - c) * 1e3
        cpu, wall = [], []
        for _ in range(args.repeats):
            for _, sr, gt, gray in pairs:
                c, t = time.process_time(), time.perf_counter()
                fn(sr, gt, gray)
                cpu.append((time.process_time() - c) * 1e3)
                wall.append((time.perf_counter() - t) * 1e3)
        return first, statistics.fmean(cpu), statistics.fmean(wall)

    rows = [("psnr+ssim (Y)", 0.0, *timed(lambda sr, gt, gray: sr_psnr_ssim(sr, gt, scale, torch.tensor([gray]))))]
    with TemporaryDirectory() as weights:
        for name in args.metrics:
            if name == "niqe" and importlib.util.find_spec("pyiqa") is None:
                print("niqe: left out, pyiqa is not installed (pip install 'sr-experiments[perceptual]')")
                continue
            write_random_weights(weights, [name])
            c = time.process_time()
            scorer = PerceptualScorer([name], weights_dir=weights)
            build = (time.process_time() - c) * 1e3
            rows.append((name, build, *timed(lambda sr, gt, gray: scorer(sr, gt, scale))))

    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("\n| metric | build, CPU (ms) | first image, CPU (ms) | per image, CPU, mean (ms) | per image, wall, mean (ms) |")
    print("|---|---:|---:|---:|---:|")
    for name, build, first, cpu, wall in rows:
        print(f"| {name} | {build:.0f} | {first:.0f} | {cpu:.0f} | {wall:.0f} |")


if __name__ == "__main__":
    main()
