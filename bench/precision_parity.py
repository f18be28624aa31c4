"""Quality parity: the CPU recipe with the fast defaults versus the same recipe in fp32.

    python bench/precision_parity.py [--steps 3000] [--parallel] [--out DIR] [--only NAME] [--report]
                                     [hydra overrides ...]

Trains ``experiment=cpu_x2_fast`` (T91+BSD200 -> Set5 x2) twice from the same seed and the same
number of steps: once with the defaults (precision and memory format measured fastest on this
machine: ``speed_choice`` in its metrics.json), once forced to fp32 / contiguous. Where the
defaults resolve to fp32 the two runs train in the same precision and the check is trivially met. ``trainer.max_time`` is lifted so that both stop at the same
step. Prints the validation PSNR/SSIM on Set5 x2 of each (best and final), the difference, and
the wall time of each. ``--parallel`` runs both at once, one torch thread each (PSNR only; the
times then say nothing about speed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "defaults": [],
    "fp32": ["trainer.precision=32", "model.channels_last=false"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--parallel", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench" / "precision_parity")
    parser.add_argument("--only", choices=list(VARIANTS), help="train this variant only")
    parser.add_argument("--report", action="store_true", help="train nothing: compare the runs already in --out")
    args, overrides = parser.parse_known_args()
    common = [
        "experiment=cpu_x2_fast", f"trainer.max_steps={args.steps}", "trainer.max_time=null",
        "trainer.enable_progress_bar=false", "logger=csv", *overrides,
    ]
    env = dict(os.environ, **({"OMP_NUM_THREADS": "1"} if args.parallel else {}))
    procs, started = {}, {}
    todo = {} if args.report else {k: v for k, v in VARIANTS.items() if args.only in (None, k)}
    for name, extra in todo.items():
        out = args.out / name
        cmd = [sys.executable, str(ROOT / "train.py"), *common, *extra, f"hydra.run.dir={out}"]
        print("$", " ".join(cmd[1:]), flush=True)
        started[name] = time.perf_counter()
        procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if not args.parallel:
            _wait(name, procs[name], started)
    for name, proc in procs.items():
        if proc.returncode is None:
            _wait(name, proc, started)
    if args.only:
        return
    results = {name: json.loads((args.out / name / "metrics.json").read_text()) for name in VARIANTS}
    print(f"\nexperiment=cpu_x2_fast, {args.steps} steps, validation Set5 x2 "
          f"({'runs read from ' + str(args.out) if args.report else 'parallel' if args.parallel else 'sequential'})")
    for name, r in results.items():
        mode = (r.get("speed_choice") or {}).get("mode", "-")
        print(f"{name:>9}: precision {r['precision']:>10}, channels_last {str(r['channels_last']):>5} ({mode}) | "
              f"best {r['best']['psnr']:.3f} dB / {r['best']['ssim']:.4f} | final {r['final']['psnr']:.3f} dB / "
              f"{r['final']['ssim']:.4f} | {r['train_seconds']:.0f} s")
    d, f = results["defaults"], results["fp32"]
    print(f"difference (defaults - fp32): best {d['best']['psnr'] - f['best']['psnr']:+.3f} dB, "
          f"final {d['final']['psnr'] - f['final']['psnr']:+.3f} dB; time ratio fp32/defaults "
          f"{f['train_seconds'] / d['train_seconds']:.2f}x")


def _wait(name: str, proc: subprocess.Popen, started: dict[str, float]) -> None:
    _, err = proc.communicate()
    if proc.returncode:
        sys.exit(f"{name} run failed (exit {proc.returncode}):\n{err[-3000:]}")
    print(f"{name} done in {time.perf_counter() - started[name]:.0f} s", flush=True)


if __name__ == "__main__":
    main()
