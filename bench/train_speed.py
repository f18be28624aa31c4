"""Training throughput of the framework's defaults versus a plain fp32 PyTorch loop.

    python bench/train_speed.py [--models espcn,edsr,swinir_light] [--steps 12] [--rounds 2]
                                [--compile] [hydra overrides ...]

For each model, in one process and alternating so that machine noise hits all alike:
- plain: the loop a researcher writes first: fp32, contiguous tensors, Adam, L1, eager;
- framework: ``Trainer.fit`` with the composed default config (precision and memory format
  chosen by the framework for this device, logging, LR schedule; validation off);
- with ``--compile``, the framework again with ``model.compile=true``.
Same batches (batch 16, 48x48 LR patches, x2 unless overridden), same initial weights.
Patches/s = batch size / median step time (compile warm-up steps excluded).

It also says how close each loop runs to the hardware: achieved GMAC/s (a training step taken as
3x the forward MACs: forward, input gradients, weight gradients) against the machine's peak,
a large 3x3 64-channel conv timed in this run in fp32 (contiguous) and in bf16 (channels_last),
before and after the models (the higher of the two samples is used). The bf16/fp32 ratio of the
peaks bounds what precision and layout can give a convolutional network on this device.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from tempfile import TemporaryDirectory

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_overhead import compose_cfg, framework_loop  # noqa: E402

from sr_experiments.hardware import choose_precision, peak_conv_gmacs  # noqa: E402
from sr_experiments.tools.info import count_macs  # noqa: E402
from sr_experiments.models import build_network  # noqa: E402

warnings.filterwarnings("ignore")


def plain_fp32_loop(spec: dict, batches: list[dict], steps: int, seed: int) -> float:
    """Median seconds per step of the textbook loop: fp32, NCHW, eager, Adam."""
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = build_network(spec).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-4)
    times = []
    for i in range(steps):
        b = batches[i % len(batches)]
        t = time.perf_counter()
        lr, hr = b["lr"].to(device).float().div_(255), b["hr"].to(device).float().div_(255)
        loss = torch.nn.functional.l1_loss(net(lr), hr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="espcn,edsr,swinir_light")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time the framework with model.compile=true")
    args, overrides = parser.parse_known_args()
    base = ["data.patch_size=48", "data.batch_size=16", "logger=none", *overrides]
    choice = choose_precision("auto", "cpu" if not torch.cuda.is_available() else "cuda")
    print(f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}, lightning {L.__version__}; "
          f"framework precision on this device: {choice.precision} ({choice.reason})", flush=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    peaks = [peak_conv_gmacs(device, torch.float32, channels_last=False), peak_conv_gmacs(device, torch.bfloat16)]
    rows = []
    with TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            variants = {"framework": []} | ({"framework+compile": []} if args.compile else {})
            cfg = compose_cfg([f"model={name}", *base], Path(tmp))
            steps = args.steps + (10 if args.compile else 0)
            with open_dict(cfg):
                cfg.data.patches_per_epoch = max(cfg.data.patches_per_epoch, (steps + 2) * cfg.data.batch_size)
            L.seed_everything(cfg.seed, verbose=False)
            datamodule = instantiate(cfg.data)
            datamodule.setup("fit")
            batches = [b for _, b in zip(range(8), datamodule.train_dataloader())]
            spec = {k: v for k, v in dict(cfg.model).items() if k not in ("compile", "channels_last", "pretrained")}
            plain = []
            for r in range(args.rounds):
                plain.append(plain_fp32_loop(spec, batches, args.steps, cfg.seed))
                variants["framework"].append(framework_loop(cfg, args.steps, Path(tmp) / f"{name}{r}"))
                if args.compile:
                    ccfg = compose_cfg([f"model={name}", "model.compile=true", *base], Path(tmp))
                    with open_dict(ccfg):
                        ccfg.data.patches_per_epoch = cfg.data.patches_per_epoch
                    variants["framework+compile"].append(framework_loop(ccfg, steps, Path(tmp) / f"{name}c{r}"))
            bs = cfg.data.batch_size
            p = statistics.median(plain)
            step_gmac = 3 * bs * count_macs(spec, (cfg.data.patch_size, cfg.data.patch_size)) / 1e9
            line = f"{name:>13}: plain fp32 {bs / p:7.1f} patches/s ({step_gmac / p:5.0f} GMAC/s)"
            for label, times in variants.items():
                t = statistics.median(times)
                line += f" | {label} {bs / t:7.1f} patches/s ({step_gmac / t:5.0f} GMAC/s) = {p / t:4.2f}x"
                rows.append((name, label, bs / p, bs / t, p / t))
            print(line + f"  (rounds: plain {', '.join(f'{x:.3f}' for x in plain)} s/step; "
                  + "; ".join(f"{k} {', '.join(f'{x:.3f}' for x in v)}" for k, v in variants.items()) + ")",
                  flush=True)
    peaks += [peak_conv_gmacs(device, torch.float32, channels_last=False), peak_conv_gmacs(device, torch.bfloat16)]
    fp32_peak, bf16_peak = max(peaks[0], peaks[2]), max(peaks[1], peaks[3])
    print(f"conv peak (3x3, 64 ch): fp32 contiguous {fp32_peak:.0f} GMAC/s, bf16 channels_last {bf16_peak:.0f} GMAC/s "
          f"= {bf16_peak / fp32_peak:.2f}x (samples before/after: {peaks[0]:.0f}/{peaks[2]:.0f}, {peaks[1]:.0f}/{peaks[3]:.0f})")


if __name__ == "__main__":
    main()
