"""Per-step cost of the framework versus a bare PyTorch loop, and data-pipeline headroom.

    python bench/train_overhead.py [--steps 40] [--rounds 3] [hydra overrides ...]

Both loops train the default model (or the one the overrides pick) from the same initial
weights with the same optimizer and schedule. The bare loop steps over batches drawn from the
datamodule beforehand (tensors already in memory), with the precision and memory format the
framework chose (so the difference is the framework's own cost); the framework runs ``Trainer.fit`` with the
datamodule, the Lightning loop, logging and the LR schedule, validation off. Rounds alternate
bare / framework so that machine noise hits both alike; medians are reported.
"""

from __future__ import annotations

import argparse
import copy
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

from sr_experiments.runs.run import choose_speed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

warnings.filterwarnings("ignore")


class StepTimer(L.Callback):
    """Wall time of each training step, batch fetch included (start of one step to the next)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_start(self, *args) -> None:
        self.stamps.append(time.perf_counter())

    def on_train_end(self, *args) -> None:
        self.stamps.append(time.perf_counter())


def compose_cfg(overrides: list[str], out: Path):
    with initialize_config_dir(config_dir=str(ROOT / "sr_experiments" / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


def bare_loop(module, batches: list[dict], steps: int, dtype: torch.dtype | None) -> float:
    """Median seconds per step of forward + loss + backward + optimizer + scheduler step."""
    net = copy.deepcopy(module.net)
    optimizer = instantiate(module.hparams.optimizer)(params=net.parameters())
    scheduler = instantiate(module.hparams.scheduler)(optimizer=optimizer, total_steps=steps)
    loss_fn = module.loss_fn
    times = []
    for i in range(steps):
        b = batches[i % len(batches)]
        t = time.perf_counter()
        lq, gt = b["lq"].float().div_(255), b["gt"].float().div_(255)
        if module.channels_last:
            lq = lq.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            sr = net(lq)
        loss = loss_fn(sr.float(), gt)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times[3:])


def framework_loop(cfg, steps: int, out: Path) -> float:
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    module = instantiate(cfg.module, _recursive_=False)
    speed = choose_speed(cfg, module, datamodule)  # as train.py: measured, or read from the cache
    timer = StepTimer()
    loggers = [instantiate(c) for c in cfg.logger.values()] if cfg.get("logger") else []  # as train.py
    # Validation, checkpoints and the progress bar are per-epoch or cosmetic: off, so the median
    # step is the per-step cost of the loop, the datamodule, logging and the schedule.
    trainer = instantiate(
        cfg.trainer, precision=speed.precision.precision,
        default_root_dir=str(out), max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[timer], logger=loggers or False,
    )
    trainer.fit(module, datamodule=datamodule)
    deltas = [b - a for a, b in zip(timer.stamps, timer.stamps[1:])]
    return statistics.median(deltas[3:])


def data_rate(datamodule, batches: int) -> float:
    """Patches per second the training DataLoader delivers on its own."""
    loader = datamodule.train_dataloader()
    it = iter(loader)
    next(it)  # start-up (worker spawn) excluded
    t = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            b = next(it)
        n += len(b["lq"])
    return n / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args, overrides = parser.parse_known_args()
    with TemporaryDirectory() as tmp:
        out = Path(tmp)
        cfg = compose_cfg(overrides, out)
        with open_dict(cfg):
            cfg.data.patches_per_epoch = max(cfg.data.patches_per_epoch, args.steps * cfg.data.batch_size)
        L.seed_everything(cfg.seed, verbose=False)
        datamodule = instantiate(cfg.data)
        datamodule.setup("fit")
        module = instantiate(cfg.module, _recursive_=False)
        precision = choose_speed(cfg, module, datamodule).precision
        batches = [b for _, b in zip(range(16), datamodule.train_dataloader())]
        bare, framework = [], []
        for r in range(args.rounds):
            bare.append(bare_loop(module, batches, args.steps, precision.autocast_dtype))
            framework.append(framework_loop(cfg, args.steps, out / f"r{r}"))
        patches_per_s = data_rate(datamodule, 200)
    b, f = statistics.median(bare), statistics.median(framework)
    bs = cfg.data.batch_size
    consume = bs / f
    print(f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}, lightning {L.__version__}")
    print(f"precision: {precision.precision} ({precision.reason}); channels_last: {module.channels_last}")
    print(f"model: {cfg.model.name} {dict((k, v) for k, v in cfg.model.items() if k != 'name')}, batch {bs}, "
          f"LR patch {cfg.data.patch_size}, x{cfg.scale}, {args.rounds} rounds x {args.steps} steps")
    print(f"bare PyTorch step:  {b * 1000:8.1f} ms  (rounds: {', '.join(f'{x * 1000:.1f}' for x in bare)})")
    print(f"framework step:     {f * 1000:8.1f} ms  (rounds: {', '.join(f'{x * 1000:.1f}' for x in framework)})")
    print(f"framework overhead: {100 * (f / b - 1):+8.1f} %")
    print(f"data pipeline:      {patches_per_s:8.0f} patches/s (num_workers={datamodule.num_workers}) vs model "
          f"{consume:.0f} patches/s -> {patches_per_s / consume:.1f}x headroom")


if __name__ == "__main__":
    main()
