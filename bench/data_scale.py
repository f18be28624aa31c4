"""Training data at DIV2K size: the in-memory backend against data=stream (litdata).

    python bench/data_scale.py [--sizes 50 100 200] [--memory-sizes 50 100 200] [--work DIR]

Makes DIV2K-size images (2040x1356 PNG) from the shared benchmark photos (BSD200, then T91),
resized, in a temporary folder (never in the repository), prepares each size with prepare.py's
code (x4, sub-images of 480 every 240), and measures, each backend and size in a fresh process:

- RSS growth from after the imports to the first training step, and after 30 more steps
  (anonymous memory separately: the streamed chunks are memory-mapped files, reclaimable);
- the time from the process start (interpreter included) to the end of the first training step.

Then: streamed patches/s with 0, 1 and 2 loader workers (loading only), and the CPU model's step
time (EDSR 4x32, x4, batch 16, LR patch 48) with the in-memory backend (no worker, the CPU default)
and streaming with one worker, in alternating blocks of one process. Figures: BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("SR_DATA", ROOT.parent / "shared" / "data"))
SIZE = (2040, 1356)
BATCH, PATCH, SCALE = 16, 48, 4


def memory_mb() -> dict[str, float]:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {k: int(status[k].split()[0]) / 1024 for k in ("VmRSS", "RssAnon", "RssFile")}


def make_images(folder: Path, n: int) -> None:
    from PIL import Image

    photos = sorted((DATA / "BSD200" / "HR").glob("*.png")) + sorted((DATA / "T91" / "HR").glob("*.png"))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        out = folder / f"{i:04d}.png"
        if not out.exists():
            im = Image.open(photos[i % len(photos)]).convert("RGB")
            im = im.transpose(Image.Transpose.ROTATE_90) if im.height > im.width else im
            im.resize(SIZE, Image.Resampling.BICUBIC).save(out, compress_level=1)


def link_images(work: Path, n: int) -> Path:
    """``hr_<n>``: the first ``n`` images (links), the in-memory backend's folder and prepare's input."""
    hr = work / f"hr_{n}"
    hr.mkdir(exist_ok=True)
    for i in range(n):
        link = hr / f"{i:04d}.png"
        if not link.exists():
            link.symlink_to(work / "hr" / f"{i:04d}.png")
    return hr


def prepare_size(work: Path, n: int) -> tuple[Path, float]:
    from omegaconf import OmegaConf

    from sr_experiments.data.prepare import run_prepare

    hr = link_images(work, n)
    t = time.perf_counter()
    cfg = OmegaConf.create({"input": str(hr), "output": str(work / f"prepared_{n}"), "scale": [SCALE], "lr_dirs": None,
                            "crop_size": 480, "step": 240, "thresh_size": 0, "png_level": 1, "num_workers": "auto",
                            "part_size": 32, "chunk_bytes": "128MB"})
    return run_prepare(cfg), time.perf_counter() - t


def datamodule(backend: str, work: Path, n: int, workers: int):
    from sr_experiments.data import SRDataModule
    from sr_experiments.data.stream import StreamDataModule

    common = dict(val_dir=str(DATA / "Set5"), scale=SCALE, patch_size=PATCH, batch_size=BATCH, num_workers=workers,
                  seed=0, pin_memory=False)
    if backend == "stream":
        return StreamDataModule(str(work / f"prepared_{n}"), **common)
    return SRDataModule(str(work / f"hr_{n}"), patches_per_epoch=16000, lr_source="generate", **common)


def model_step():
    import torch

    from sr_experiments.models import build_network

    net = build_network({"name": "edsr", "scale": SCALE, "depth": 4, "width": 32, "res_scale": 1.0})
    opt = torch.optim.Adam(net.parameters(), 1e-4)

    def step(batch) -> None:
        lq, gt = batch["lq"].float() / 255, batch["gt"].float() / 255
        loss = torch.nn.functional.l1_loss(net(lq), gt)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def forever(loader):
    """Batches across epochs (a small prepared set has few batches per epoch)."""
    while True:
        yield from loader


def child_first_step(backend: str, work: Path, n: int) -> dict:
    """One fresh process: memory and time to the first step (and after 30 more) of one backend and size."""
    import torch

    base = memory_mb()
    data = datamodule(backend, work, n, workers=0)
    data.setup("fit")
    step = model_step()
    batches = forever(data.train_dataloader())
    step(next(batches))
    first = time.time() - float(os.environ["BENCH_T0"])
    after_first = memory_mb()
    for _ in range(30):
        step(next(batches))
    after = memory_mb()
    growth = {k: round(after_first[k] - base[k]) for k in base}
    return {"backend": backend, "images": n, "first_step_s": round(first, 2), "rss_growth_mb": growth["VmRSS"],
            "anon_growth_mb": growth["RssAnon"], "rss_growth_31_steps_mb": round(after["VmRSS"] - base["VmRSS"]),
            "anon_growth_31_steps_mb": round(after["RssAnon"] - base["RssAnon"]), "threads": torch.get_num_threads()}


def loader_rate(work: Path, n: int, workers: int, batches: int = 40) -> float:
    """Streamed patches/s with ``workers`` loader processes (0: in this process), loading only."""
    data = datamodule("stream", work, n, workers)
    data.setup("fit")
    it = forever(data.train_dataloader())
    for _ in range(max(2, workers * 2)):  # workers started, first chunks opened
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * BATCH / (time.perf_counter() - t)


def step_parity(work: Path, n: int, blocks: int = 3, steps: int = 15) -> dict:
    """Median step time (loading included) of in-memory (0 workers) and streaming (1 worker), alternating."""
    import statistics

    step = model_step()
    loaders = {}
    for backend, workers in (("memory", 0), ("stream", 1)):
        data = datamodule(backend, work, n, workers)
        data.setup("fit")
        loaders[backend] = forever(data.train_dataloader())
        step(next(loaders[backend]))  # warm-up
    times: dict[str, list[float]] = {b: [] for b in loaders}
    for _ in range(blocks):
        for backend, it in loaders.items():
            for _ in range(steps):
                t = time.perf_counter()
                step(next(it))
                times[backend].append(time.perf_counter() - t)
    med = {b: statistics.median(v) for b, v in times.items()}
    return {"memory_step_s": round(med["memory"], 4), "stream_step_s": round(med["stream"], 4),
            "stream_over_memory": round(med["stream"] / med["memory"], 4), "steps_each": blocks * steps}


def run_child(args: list[str]) -> dict:
    env = {**os.environ, "BENCH_T0": repr(time.time()), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200])
    ap.add_argument("--memory-sizes", type=int, nargs="+", default=[50, 100, 200])
    ap.add_argument("--work", type=Path, default=None, help="keep the images and prepared sets here (reused)")
    ap.add_argument("--child", nargs=3, metavar=("BACKEND", "WORK", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child_first_step(args.child[0], Path(args.child[1]), int(args.child[2]))))
        return
    with tempfile.TemporaryDirectory(prefix="data_scale_") as tmp:
        work = (args.work or Path(tmp)).resolve()
        t = time.perf_counter()
        make_images(work / "hr", max(args.sizes + args.memory_sizes))
        print(f"images: {max(args.sizes + args.memory_sizes)} of {SIZE[0]}x{SIZE[1]} in {time.perf_counter() - t:.0f} s",
              flush=True)
        results = {"cpu": os.cpu_count(), "prepare_s": {}, "first_step": [], "patches_per_s": {}}
        for n in sorted(set(args.sizes)):
            results["prepare_s"][n] = round(prepare_size(work, n)[1], 1)
            print(f"prepared {n} images in {results['prepare_s'][n]} s", flush=True)
        for n in sorted(set(args.memory_sizes)):
            link_images(work, n)
        for backend, sizes in (("stream", args.sizes), ("memory", args.memory_sizes)):
            for n in sorted(sizes):
                r = run_child(["--child", backend, str(work), str(n)])
                results["first_step"].append(r)
                print(json.dumps(r), flush=True)
        n = min(args.sizes)
        for workers in (0, 1, 2):
            results["patches_per_s"][workers] = round(loader_rate(work, max(args.sizes), workers), 1)
            print(f"streamed patches/s with {workers} workers: {results['patches_per_s'][workers]}", flush=True)
        results["parity"] = step_parity(work, n)
        print(json.dumps(results["parity"]), flush=True)
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
