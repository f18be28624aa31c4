"""Every model config: parameters, MACs for a 720p output, and CPU inference time.

    python bench/zoo.py [--size 256] [--scale 2] [--out FILE.md] [--models NAME ...] [--cpu-time --threads 1]

One row per ``sr_experiments/conf/model/NAME.yaml`` (each network's paper model, and the presets
such as ``shallow``, ``hat_s``, ``dat_light``), composed as ``model=NAME scale=S``; ``--models``
runs only the named ones. Inference: fp32, ``torch.inference_mode``, one ``size`` x ``size`` LR
image at ``scale``; a warm-up on a small input first, then the median of 3 runs (1 run for
networks above 500 GMACs at 720p, which take tens of seconds each on 2 cores). ``--cpu-time``
reports the process's CPU seconds instead of wall seconds: with ``--threads 1`` a figure that other
jobs on the machine barely move (they take cores, not this thread's instructions).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sr_experiments import CONF_DIR  # noqa: E402
from sr_experiments.models.complexity import network_info  # noqa: E402
from sr_experiments.models import build_network, supports_scale  # noqa: E402

MODEL_CONFIGS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


def model_spec(config: str, scale: int) -> dict:
    """The ``model`` node of ``model=CONFIG scale=SCALE``, as train.py composes it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={config}", f"scale={scale}"])
    return OmegaConf.to_container(cfg.model, resolve=True)


def time_inference(spec: dict, size: int, repeats: int, clock=time.perf_counter) -> float:
    torch.manual_seed(0)
    net = build_network(spec).eval()
    with torch.inference_mode():
        net(torch.rand(1, 3, 32, 32))
        times = []
        for _ in range(repeats):
            x = torch.rand(1, 3, size, size)
            t = clock()
            net(x)
            times.append(clock() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--models", nargs="+", choices=MODEL_CONFIGS, default=MODEL_CONFIGS, metavar="NAME",
                        help="model configs to run (default: all)")
    parser.add_argument("--cpu-time", action="store_true", help="CPU seconds of this process, not wall seconds")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock, unit = (time.process_time, "CPU s") if args.cpu_time else (time.perf_counter, "s")
    rows = [f"| model | params | GMACs (720p out, x{args.scale}) | {unit} / {args.size}x{args.size} LR (x{args.scale}) |",
            "|---|---:|---:|---:|"]
    for config in args.models:
        spec = model_spec(config, args.scale)
        if not supports_scale(spec["name"], args.scale):
            continue
        info = network_info(spec)
        seconds = time_inference(spec, args.size, 1 if info["macs_720p"] > 500e9 else 3, clock)
        label = f"`{config}`" if config == spec["name"] else f"`{config}` ({spec['name']})"
        rows.append(f"| {label} | {info['params']:,} | {info['macs_720p'] / 1e9:,.1f} | {seconds:.2f} |")
        print(rows[-1], flush=True)
    text = f"torch {torch.__version__}, {torch.get_num_threads()} threads\n\n" + "\n".join(rows) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
