"""Training step time of every precision/layout mode and of the default (``auto``), side by side.

    python bench/train_speed.py [--models shallow,edsr,swinir_light] [--steps 12] [--rounds 3]
                                [--compile] [hydra overrides ...]

For each model, in one process: first the calibration that ``trainer.precision=auto
model.channels_last=auto`` runs on a first use (into an empty cache folder; its seconds are
reported), then rounds that alternate, so that load from other processes hits all alike:
- auto: ``Trainer.fit`` with the composed default config (the mode the calibration chose, read
  from the cache);
- each candidate mode forced (``trainer.precision=32|bf16-mixed model.channels_last=false|true``;
  on CUDA also fp16), the same way;
- with ``--compile``, auto again with ``model.compile=true``.
Same batches and initial weights; validation, checkpoints and the progress bar off. Each loop's
figure is the median step time of its steps after the third; a mode's figure is the median over
rounds. The ratio of auto to the fastest mode is also taken within each round (loops run minutes
apart at most) and its median reported, which load that comes and goes between rounds moves less.
Batch 16 and the default LR patch (32) unless overridden.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import warnings
from pathlib import Path
from tempfile import TemporaryDirectory

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_overhead import compose_cfg, framework_loop  # noqa: E402

from sr_experiments.speed import Mode, candidate_modes, machine_name  # noqa: E402
from sr_experiments.runs.run import choose_speed  # noqa: E402

warnings.filterwarnings("ignore")


def forced(mode: Mode) -> list[str]:
    return [f"trainer.precision={mode.precision}", f"model.channels_last={str(mode.channels_last).lower()}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="shallow,edsr,swinir_light")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time auto with model.compile=true")
    args, overrides = parser.parse_known_args()
    base = ["data.batch_size=16", "logger=none", *overrides]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"machine: {machine_name(device)}; {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"lightning {L.__version__}", flush=True)
    summary = []
    with TemporaryDirectory() as tmp:
        os.environ["SR_CACHE_DIR"] = str(Path(tmp) / "cache")  # a fresh calibration, as on a first run
        for name in args.models.split(","):
            cfg = compose_cfg([f"model={name}", *base], Path(tmp))
            with open_dict(cfg):
                cfg.data.patches_per_epoch = max(cfg.data.patches_per_epoch, (args.steps + 12) * cfg.data.batch_size)
            L.seed_everything(cfg.seed, verbose=False)
            module = instantiate(cfg.module, _recursive_=False)
            choice = choose_speed(cfg, module, instantiate(cfg.data))
            print(f"{name}: auto chose {choice.mode.name} after a {choice.calibration_s:.1f} s calibration "
                  f"({choice.reason})", flush=True)
            variants = {"auto": cfg} | {m.name: compose_cfg([f"model={name}", *base, *forced(m)], Path(tmp))
                                        for m in candidate_modes(device)}
            if args.compile:
                variants["auto+compile"] = compose_cfg([f"model={name}", "model.compile=true", *base], Path(tmp))
            times: dict[str, list[float]] = {k: [] for k in variants}
            for r in range(args.rounds):
                for label, vcfg in variants.items():
                    with open_dict(vcfg):
                        vcfg.data.patches_per_epoch = cfg.data.patches_per_epoch
                    steps = args.steps + (10 if "compile" in label else 0)
                    times[label].append(framework_loop(vcfg, steps, Path(tmp) / f"{name}-{label}-{r}"))
            med = {k: statistics.median(v) for k, v in times.items()}
            fastest = min((k for k in med if k not in ("auto", "auto+compile")), key=med.get)
            bs, patch = cfg.data.batch_size, cfg.data.patch_size
            print(f"\n{name} (batch {bs}, LR patch {patch}, x{cfg.scale}), {args.rounds} alternating rounds x "
                  f"{args.steps} steps, ms/step (rounds):")
            for k, v in times.items():
                tag = " <- auto's choice" if k == choice.mode.name else ""
                print(f"  {k:>12}: {1000 * med[k]:8.1f}  ({', '.join(f'{1000 * x:.1f}' for x in v)})  "
                      f"{bs / med[k]:6.1f} patches/s{tag}", flush=True)
            ratio = med[fastest] / med["auto"]
            per_round = statistics.median(min(times[k][r] for k in times if "auto" not in k) / times["auto"][r]
                                          for r in range(args.rounds))
            print(f"  auto = {choice.mode.name}: {100 * ratio:.1f}% of the speed of the fastest mode measured here "
                  f"({fastest}); per round (median): {100 * per_round:.1f}% of that round's fastest; "
                  f"calibration {choice.calibration_s:.1f} s\n", flush=True)
            summary.append((name, choice.mode.name, fastest, ratio, per_round, choice.calibration_s))
    print("| model | auto chose | fastest here | auto speed / fastest (medians) | per round | calibration |")
    print("|---|---|---|---:|---:|---:|")
    for name, chose, fastest, ratio, per_round, cal in summary:
        print(f"| `{name}` | {chose} | {fastest} | {100 * ratio:.1f}% | {100 * per_round:.1f}% | {cal:.1f} s |")


if __name__ == "__main__":
    main()
