"""ZSSR (model=zssr, its default settings) on Set5 and Set14 through the evaluation protocol, beside
bicubic and the published ZSSR figures, with the wall time per image.

    OMP_NUM_THREADS=1 python bench/zssr.py [--sets Set5 Set14] [--scale 2] [--threads 1] [--out DIR]
        [--data DIR] [--shard I/N] [OVERRIDE ...]      (OVERRIDE: model.zssr.KEY=VALUE)

Each image runs eval.py's code (``evaluate_set`` with ``PerImageZSSR`` and ``Bicubic``, LR from the
MATLAB-made ``LR_bicubic`` files, PSNR/SSIM on Y with the scale as border) and its row is appended
to ``<out>/rows.jsonl`` as soon as it is done, so a long run can be stopped, resumed (done images are
skipped; a process also skips what another one has written) or split over processes (``--shard 1/2``,
``--shard 2/2``, or ``--reverse`` for a second process from the other end); ``--report`` prints the
table from what is there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sr_experiments.evaluation.protocol import (
    InferenceOptions,
    _HRCache,
    evaluate_set,
    locate_set,
    resolve_eval_sources,
)
from sr_experiments.hardware import cpu_model
from sr_experiments.models.bicubic import Bicubic
from sr_experiments.zssr.method import PerImageZSSR, ZSSRSettings

# Shocher et al. 2018, Table 1 (x2, the bicubic-kernel benchmark, Y channel).
PUBLISHED = {("Set5", 2): (37.37, 0.9570), ("Set14", 2): (33.00, 0.9108)}
SET_SIZES = {"Set5": 5, "Set14": 14}  # a mean over fewer images is not comparable with the published one


def run(args: argparse.Namespace) -> None:
    with initialize_config_dir(config_dir=str(ROOT / "sr_experiments" / "conf"), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=["model=zssr", f"scale={args.scale}", *args.overrides])
    settings = ZSSRSettings.from_config(cfg.model.zssr, "model.zssr")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # A folder resumes only the run it holds: rows of other settings would be skipped as done and
    # then reported under these.
    used = out / "settings.json"
    mine = {"scale": args.scale, "zssr": OmegaConf.to_container(cfg.model.zssr, resolve=True)}
    if used.exists() and json.loads(used.read_text()) != mine:
        sys.exit(f"{out} holds a run with other settings ({used}); give another --out")
    used.write_text(json.dumps(mine, indent=2))
    rows_file = out / "rows.jsonl"
    done = {(r["set"], r["image"], r["model"]) for r in _rows(rows_file)}
    index, count = (int(x) for x in args.shard.split("/"))
    nets = {"zssr": PerImageZSSR(settings, args.scale, "cpu", progress=not args.no_progress),
            "bicubic": Bicubic(args.scale)}
    k = 0
    for name in args.sets:
        found = locate_set(name, args.data)
        if found is None:
            sys.exit(f"{name}: not found under {args.data}")
        display, spec = found
        cache = _HRCache()
        sources = resolve_eval_sources(spec, args.scale, "auto")
        for source in reversed(sources) if args.reverse else sources:
            k += 1
            done |= {(r["set"], r["image"], r["model"]) for r in _rows(rows_file)}  # another process's too
            if (k - 1) % count != index - 1 or (display, source.name, "zssr") in done:
                continue
            results = evaluate_set(nets, display, [source], args.scale, InferenceOptions("cpu"), cache)
            info = nets["zssr"].last
            with open(rows_file, "a") as f:
                for r in results:
                    row = {**r.per_image[0].row(), "lr_from": r.lr_from}
                    if r.model == "zssr":
                        row.update(steps=info.steps, stopped_by=info.stopped_by,
                                   settings={k_: getattr(settings, k_) for k_ in ("max_steps", "precision", "seed")})
                    f.write(json.dumps(row) + "\n")
            print(f"{display}/{source.name}: " + ", ".join(f"{r.model} {r.psnr:.2f} dB" for r in results)
                  + f", {info.seconds:.0f} s, {info.steps} steps ({', '.join(info.stopped_by)})", flush=True)
    meta = {"machine": f"{cpu_model()} ({os.cpu_count()} CPUs)", "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
            "overrides": args.overrides}
    (out / f"meta{'' if count == 1 else f'_{index}of{count}'}.json").write_text(json.dumps(meta, indent=2))


def _rows(path: Path) -> list[dict]:
    """The rows written so far, the first of each (set, scale, image, model) when two processes did one."""
    rows: dict[tuple, dict] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.strip():
            r = json.loads(line)
            rows.setdefault((r["set"], r["scale"], r["image"], r["model"]), r)
    return list(rows.values())


def report(out: Path, sets: list[str], scale: int) -> str:
    """The Markdown table of what ``rows.jsonl`` holds."""
    rows = _rows(out / "rows.jsonl")
    head = ("| set | images | ZSSR (ours) PSNR / SSIM | bicubic PSNR / SSIM | gain (dB) | ZSSR published "
            "| ours - published (dB) | s / image (mean, min-max) | training steps (mean, min-max) |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in sets:
        z = [r for r in rows if r["set"] == name and r["model"] == "zssr" and r["scale"] == scale]
        b = {r["image"]: r for r in rows if r["set"] == name and r["model"] == "bicubic" and r["scale"] == scale}
        if not z:
            continue
        zp, zs = np.mean([r["psnr"] for r in z]), np.mean([r["ssim"] for r in z])
        bp, bs = np.mean([b[r["image"]]["psnr"] for r in z]), np.mean([b[r["image"]]["ssim"] for r in z])
        sec, steps = [r["seconds"] for r in z], [sum(r["steps"]) for r in z]
        pub = PUBLISHED.get((name, scale))
        pub_s = f"{pub[0]:.2f} / {pub[1]:.4f}" if pub else "—"
        partial = len(z) < SET_SIZES.get(name, len(z))
        diff = "— (partial set)" if partial else (f"{zp - pub[0]:+.2f}" if pub else "—")
        lines.append(f"| {name} x{scale} | {len(z)} | {zp:.2f} / {zs:.4f} | {bp:.2f} / {bs:.4f} | {zp - bp:+.2f} | {pub_s} | "
                     f"{diff} | {np.mean(sec):.0f} ({min(sec):.0f}-{max(sec):.0f}) | "
                     f"{np.mean(steps):.0f} ({min(steps)}-{max(steps)}) |")
    per = ["", "| image | ZSSR PSNR | bicubic PSNR | steps | stopped by | s |", "|---|---:|---:|---:|---|---:|"]
    for r in rows:
        if r["model"] == "zssr":
            b = next(x for x in rows if x["model"] == "bicubic" and x["set"] == r["set"] and x["image"] == r["image"])
            per.append(f"| {r['set']}/{r['image']} | {r['psnr']:.2f} | {b['psnr']:.2f} | {'+'.join(map(str, r['steps']))} | "
                       f"{', '.join(r['stopped_by'])} | {r['seconds']:.0f} |")
    return "\n".join(lines + per)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("SR_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench_zssr"))
    parser.add_argument("--shard", default="1/1", help="I/N: this process runs every N-th image from the I-th")
    parser.add_argument("--reverse", action="store_true", help="last image first (a second process on a set)")
    parser.add_argument("--report", action="store_true", help="only print the table of what is done")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", help="model.zssr.KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.report:
        run(args)
    print(report(Path(args.out), args.sets, args.scale))


if __name__ == "__main__":
    main()
