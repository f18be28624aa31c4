"""Cost of a GAN training step against a PSNR step, per network, measured side by side.

    python bench/gan_step.py [--steps 6] [--rounds 2] [--batch 4] [--precision 32] [--threads 1]

For each network (the default ``shallow`` at x2, a small ``rrdbnet`` at x4) it times, through
``Trainer.fit`` as ``train.py`` runs them (the datamodule on the bundled photos, logging off,
validation off), the median per step after 2 warm-up steps of the process's CPU time (on one
torch thread by default: on a shared machine wall time swings 5x between rounds, CPU time does
not) and of the wall time:

- ``psnr``: ``SRLitModule`` with ``loss=l1`` (one forward, backward and Adam step);
- ``gan, no VGG``: ``SRGANModule`` with ESRGAN's pixel + RaGAN terms and the ``vgg128``
  discriminator (generator step with the discriminator frozen, then the discriminator's step);
- ``gan (ESRGAN)``: the same plus the VGG19 conv5_4 perceptual term (``losses=esrgan``).

Every configuration trains on 128x128 HR patches (the discriminator's input): LR 64 at x2, 32 at
x4. The VGG weights do not change the cost: random ones are used (no file needed). The variants
alternate within each round so that machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path
from tempfile import TemporaryDirectory

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")
logging.getLogger("lightning").setLevel(logging.ERROR)
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

from sr_experiments.hardware import cpu_model  # noqa: E402

NETWORKS = {
    "shallow (x2)": ["model=shallow", "scale=2", "data.patch_size=64"],
    "rrdbnet small (x4: width 32, 4 RRDBs, growth 16)": ["model=rrdbnet", "scale=4", "model.width=32", "model.depth=4",
                                                          "model.growth=16", "data.patch_size=32"],
}
GAN = ["losses=esrgan", "discriminator=vgg128", "losses.percep.pretrained=false"]
VARIANTS = {"psnr": [], "gan, no VGG": [*GAN, "~losses.percep"], "gan (ESRGAN)": GAN}


class StepTimer(L.Callback):
    """(CPU time, wall time) at the start of each step and at the end."""

    def __init__(self) -> None:
        self.stamps: list[tuple[float, float]] = []

    def on_train_batch_start(self, *args) -> None:
        self.stamps.append((time.process_time(), time.perf_counter()))

    def on_train_end(self, *args) -> None:
        self.stamps.append((time.process_time(), time.perf_counter()))


def step_seconds(overrides: list[str], steps: int, precision: str, out: Path) -> tuple[float, float, int, int]:
    with initialize_config_dir(config_dir=str(ROOT / "sr_experiments" / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["data=sample", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.data.patches_per_epoch = max(cfg.data.patches_per_epoch, steps * cfg.data.batch_size)
    L.seed_everything(0, verbose=False)
    module = instantiate(cfg.module, _recursive_=False)
    module.set_channels_last(False, "bench")
    timer = StepTimer()
    trainer = L.Trainer(accelerator="cpu", devices=1, precision=precision, max_steps=steps, limit_val_batches=0,
                        num_sanity_val_steps=0, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, logger=False, callbacks=[timer], default_root_dir=str(out))
    trainer.fit(module, datamodule=instantiate(cfg.data))
    cpu = [b[0] - a[0] for a, b in zip(timer.stamps, timer.stamps[1:])]
    wall = [b[1] - a[1] for a, b in zip(timer.stamps, timer.stamps[1:])]
    d_params = sum(p.numel() for p in module.net_d.parameters()) if hasattr(module, "net_d") else 0
    return statistics.median(cpu[2:]), statistics.median(wall[2:]), module.num_params, d_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--precision", default="32")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {cpu_model()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"lightning {L.__version__}; precision {args.precision}, batch {args.batch}, HR patch 128, "
          f"{args.rounds} rounds x {args.steps} steps (median after 2 warm-up steps)")
    rows = []
    with TemporaryDirectory() as tmp:
        for net, net_overrides in NETWORKS.items():
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            walls: dict[str, list[float]] = {v: [] for v in VARIANTS}
            params = {}
            for r in range(args.rounds):
                for variant, extra in VARIANTS.items():
                    c, w, g, d = step_seconds([*net_overrides, f"data.batch_size={args.batch}", *extra], args.steps,
                                              args.precision, Path(tmp) / f"{len(rows)}_{r}_{variant}")
                    times[variant].append(c)
                    walls[variant].append(w)
                    params[variant] = (g, d)
            base = statistics.median(times["psnr"])
            for variant, ts in times.items():
                m = statistics.median(ts)
                rows.append((net, variant, params[variant], m, ts, m / base, statistics.median(walls[variant])))
    print("\n| network | step | G / D params | CPU ms / step | rounds | x PSNR step | wall ms / step |\n"
          "|---|---|---|---|---|---|---|")
    for net, variant, (g, d), m, ts, ratio, wall in rows:
        print(f"| {net} | {variant} | {g:,} / {d:,} | {m * 1000:.0f} | {', '.join(f'{t * 1000:.0f}' for t in ts)} | "
              f"{ratio:.1f}x | {wall * 1000:.0f} |")


if __name__ == "__main__":
    main()
