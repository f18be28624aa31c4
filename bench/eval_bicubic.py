"""Wall time of the bicubic baseline on Set5 + Set14 at x2, x3, x4 through the evaluation code.

    python bench/eval_bicubic.py [--data DIR] [--repeats 3]

Everything a user waits for is timed: PNG decoding, LR from the MATLAB-made files, the
MATLAB-compatible upscale, the metric protocol and the result files; Python start-up and
imports are not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sr_experiments.evaluation.run import run_eval  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("SR_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times = []
    for _ in range(args.repeats):
        with TemporaryDirectory() as out, initialize_config_dir(config_dir=str(ROOT / "sr_experiments" / "conf"), version_base="1.3"):
            cfg = compose(
                config_name="eval",
                overrides=["model=bicubic", f"paths.data_dir={args.data}", "eval.sets=[Set5,Set14]", "eval.scales=[2,3,4]"],
            )
            with open_dict(cfg):
                cfg.paths.output_dir = out
            t = time.perf_counter()
            rows = run_eval(cfg)
            times.append(time.perf_counter() - t)
    print(f"\nmachine: {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"bicubic on Set5+Set14 x2/x3/x4 ({len(rows)} rows, {sum(r.images for r in rows)} images): "
          f"median {statistics.median(times):.2f} s over {args.repeats} runs ({', '.join(f'{x:.2f}' for x in times)})")


if __name__ == "__main__":
    main()
