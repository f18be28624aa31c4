"""Training data at DIV2K size: the in-memory backend against data=stream (litdata).

    python bench/data_scale.py [--sizes 50 100 200] [--memory-sizes 50 100 200] [--codecs png raw] [--work DIR]

Makes DIV2K-size images (2040x1356 PNG) from the shared benchmark photos (BSD200, then T91),
resized, in a temporary folder (never in the repository), prepares each size with prepare.py's
code (x4, sub-images of 480 every 240) in each codec (``codec=png|raw``), and measures, each backend
and size in a fresh process:

- RSS growth from after the imports (torch, lightning, litdata: the same for every backend) to the
  first training step, and after 30 more steps (anonymous memory separately: the streamed chunks
  are memory-mapped files, reclaimable);
- the time to the end of the first training step from the process start (interpreter and imports
  included) and from the end of the imports (what the data backend costs).

Then: streamed patches/s with 0, 1 and 2 loader workers (loading only) of each codec, and the CPU
model's step time (EDSR 4x32, x4, batch 16, LR patch 48) with the in-memory backend (no worker, the
CPU default) and streaming with one worker, in alternating blocks of one process. Figures:
BENCHMARKS.md.
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


def prepared_dir(work: Path, n: int, codec: str) -> Path:
    return work / (f"prepared_{n}" if codec == "png" else f"prepared_{codec}_{n}")


def prepare_size(work: Path, n: int, codec: str) -> tuple[Path, float]:
    from omegaconf import OmegaConf

    from sr_experiments.data.prepare import run_prepare

    hr = link_images(work, n)
    t = time.perf_counter()
    cfg = OmegaConf.create({"input": str(hr), "output": str(prepared_dir(work, n, codec)), "scale": [SCALE],
                            "lr_dirs": None, "crop_size": 480, "step": 240, "thresh_size": 0, "png_level": 1,
                            "codec": codec, "num_workers": "auto", "part_size": 32, "chunk_bytes": "128MB"})
    return run_prepare(cfg), time.perf_counter() - t


def datamodule(backend: str, work: Path, n: int, workers: int, codec: str = "png"):
    from sr_experiments.data import SRDataModule
    from sr_experiments.data.stream import StreamDataModule

    common = dict(val_dir=str(DATA / "Set5"), scale=SCALE, patch_size=PATCH, batch_size=BATCH, num_workers=workers,
                  seed=0, pin_memory=False)
    if backend == "stream":
        return StreamDataModule(str(prepared_dir(work, n, codec)), **common)
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
    """One fresh process: memory and time to the first step (and after 30 more) of one backend and size.

    ``backend``: memory, or stream / stream-raw (the codec of the prepared folder)."""
    import torch

    import sr_experiments.data.stream  # noqa: F401  (lightning, litdata: imports are not data)

    base, t_setup = memory_mb(), time.time()
    backend, _, codec = backend.partition("-")
    data = datamodule(backend, work, n, workers=0, codec=codec or "png")
    data.setup("fit")
    step = model_step()
    batches = forever(data.train_dataloader())
    step(next(batches))
    first, after_imports = time.time() - float(os.environ["BENCH_T0"]), time.time() - t_setup
    after_first = memory_mb()
    for _ in range(30):
        step(next(batches))
    after = memory_mb()
    growth = {k: round(after_first[k] - base[k]) for k in base}
    return {"backend": backend + (f"-{codec}" if codec else ""), "images": n, "first_step_s": round(first, 2),
            "first_step_after_imports_s": round(after_imports, 2), "rss_growth_mb": growth["VmRSS"],
            "anon_growth_mb": growth["RssAnon"], "rss_growth_31_steps_mb": round(after["VmRSS"] - base["VmRSS"]),
            "anon_growth_31_steps_mb": round(after["RssAnon"] - base["RssAnon"]), "threads": torch.get_num_threads()}


def loader_rate(work: Path, n: int, workers: int, codec: str, batches: int = 40) -> float:
    """Streamed patches/s with ``workers`` loader processes (0: in this process), loading only."""
    data = datamodule("stream", work, n, workers, codec)
    data.setup("fit")
    it = forever(data.train_dataloader())
    for _ in range(max(2, workers * 2)):  # workers started, first chunks opened
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * BATCH / (time.perf_counter() - t)


def step_parity(work: Path, n: int, codecs: list[str], blocks: int = 3, steps: int = 15) -> dict:
    """Median step time (loading included) of in-memory (0 workers) and streaming (1 worker) of each
    codec, in alternating blocks."""
    import statistics

    step = model_step()
    loaders = {}
    for backend, workers, codec in [("memory", 0, "png")] + [("stream", 1, c) for c in codecs]:
        data = datamodule(backend, work, n, workers, codec)
        data.setup("fit")
        backend = backend if backend == "memory" else f"stream-{codec}"
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
    return {"memory_step_s": round(med["memory"], 4), "steps_each": blocks * steps,
            **{f"{b}_step_s": round(med[b], 4) for b in med if b != "memory"},
            **{f"{b}_over_memory": round(med[b] / med["memory"], 4) for b in med if b != "memory"}}


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
    ap.add_argument("--parts", nargs="+", default=["first_step", "throughput", "parity"],
                    help="what to measure (the images and prepared sets are made either way)")
    ap.add_argument("--codecs", nargs="+", default=["png", "raw"], help="prepare.py codec=... of the streamed sets")
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
        for codec in args.codecs:
            for n in sorted(set(args.sizes)):
                results["prepare_s"][f"{codec} {n}"] = round(prepare_size(work, n, codec)[1], 1)
                print(f"prepared {n} images ({codec}) in {results['prepare_s'][f'{codec} {n}']} s", flush=True)
        for n in sorted(set(args.memory_sizes)):
            link_images(work, n)
        runs = [(f"stream-{c}" if c != "png" else "stream", args.sizes) for c in args.codecs]
        for backend, sizes in (runs + [("memory", args.memory_sizes)]) * ("first_step" in args.parts):
            for n in sorted(sizes):
                r = run_child(["--child", backend, str(work), str(n)])
                results["first_step"].append(r)
                print(json.dumps(r), flush=True)
        n = min(args.sizes)
        for codec in args.codecs * ("throughput" in args.parts):
            for workers in (0, 1, 2):
                rate = round(loader_rate(work, max(args.sizes), workers, codec), 1)
                results["patches_per_s"][f"{codec} {workers}"] = rate
                print(f"streamed patches/s ({codec}) with {workers} workers: {rate}", flush=True)
        if "parity" in args.parts:
            results["parity"] = step_parity(work, n, args.codecs)
            print(json.dumps(results["parity"]), flush=True)
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
