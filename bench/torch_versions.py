"""The same training and inference work under two Python environments (two torch builds), side by side.

    python bench/torch_versions.py --python /path/to/old/venv/bin/python[@/path/to/old/checkout] \
        --python .venv/bin/python [--models shallow,edsr] [--rounds 3] [--steps 8]

``PYTHON@CHECKOUT`` runs that environment's worker on the code of another checkout (e.g. the commit
before a dependency change, whose code the old environment can import).

Each round runs one worker per environment, alternating, so that load from other processes hits
both alike. A worker (this file with --worker, in that environment) times, per model: a training
step (Adam, L1, batch 16 of 32x32 LR patches, the model's scale x2) in fp32 and in bf16 autocast,
median over ``--steps`` steps after 3 warm-up steps; and one inference on a 256x256 LR image in
fp32 (median of 3). Figures are medians over rounds; the ratio new/old is taken within each round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"shallow": {"name": "edsr", "depth": 4, "width": 32},
          "edsr": {"name": "edsr", "depth": 16, "width": 64}}


def worker(models: list[str], steps: int) -> dict:
    import torch

    sys.path.insert(0, os.environ.get("SR_BENCH_CHECKOUT", str(ROOT)))
    from sr_experiments.models import build_network

    torch.manual_seed(0)
    out: dict = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    for name in models:
        spec = {**MODELS[name], "scale": 2}
        lq, gt = torch.rand(16, 3, 32, 32), torch.rand(16, 3, 64, 64)
        for mode in ("fp32", "bf16"):
            net = build_network(spec)
            opt = torch.optim.Adam(net.parameters(), 1e-4)
            times = []
            for i in range(steps + 3):
                t = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
                    loss = torch.nn.functional.l1_loss(net(lq).float(), gt)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if i >= 3:
                    times.append(time.perf_counter() - t)
            out[f"{name} train {mode} s/step"] = statistics.median(times)
        net = build_network(spec).eval()
        x = torch.rand(1, 3, 256, 256)
        times = []
        with torch.no_grad():
            net(x)
            for _ in range(3):
                t = time.perf_counter()
                net(x)
                times.append(time.perf_counter() - t)
        out[f"{name} infer 256x256 fp32 s"] = statistics.median(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", action="append", required=True, help="interpreter of an environment (twice)")
    parser.add_argument("--models", default="shallow,edsr")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args()
    models = args.models.split(",")
    if args.worker:
        print(json.dumps(worker(models, args.steps)))
        return
    results: list[list[dict]] = [[] for _ in args.python]
    for r in range(args.rounds):
        for i, spec in enumerate(args.python):
            python, _, checkout = spec.partition("@")
            cmd = [python, __file__, "--worker", "--models", args.models, "--steps", str(args.steps),
                   "--python", python]
            env = {**os.environ, "SR_BENCH_CHECKOUT": checkout or str(ROOT)}
            if checkout:
                env["PYTHONPATH"] = checkout
            done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT, env=env)
            results[i].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}, {results[i][-1]['torch']}: done", file=sys.stderr, flush=True)
    from sr_experiments.hardware import cpu_model

    print(f"machine: {cpu_model()}; rounds: {args.rounds}")
    keys = [k for k in results[0][0] if k not in ("torch", "threads")]
    versions = [res[0]["torch"] for res in results]
    print("| | " + " | ".join(f"torch {v}" for v in versions) + " | ratio (last / first, median of rounds) |")
    print("|---|" + "---:|" * (len(versions) + 1))
    for k in keys:
        meds = [statistics.median(x[k] for x in res) for res in results]
        ratio = statistics.median(results[-1][r][k] / results[0][r][k] for r in range(args.rounds))
        print(f"| {k} | " + " | ".join(f"{m:.3f}" for m in meds) + f" | {ratio:.2f} |")


if __name__ == "__main__":
    main()
