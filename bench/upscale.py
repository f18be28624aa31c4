"""upscale.py's engine on a 1920x1080 input at x2 (a 3840x2160 output): seconds, peak RSS, and
achieved GMAC/s against the machine's measured 3x3-conv throughput.

    python bench/upscale.py [--out FILE.md] [--repeats 3]

Each configuration runs in a fresh subprocess (torch's CPU allocations are invisible to
tracemalloc; the peak RSS is ``ru_maxrss`` at its end, absolute, nothing subtracted). Inside the
same subprocess the conv peaks are measured (``hardware.peak_conv_gmacs``: fp32 contiguous and
bf16 channels_last) before and after the model, and the higher of the two counts, so the
fractions compare like with like on a shared, noisy machine and err low. Timed: LR float tensor
-> tiled inference -> clamped uint8 HR array (no file I/O); the median of ``--repeats`` runs after a warm-up tile. MACs: ``info.count_macs`` of the untiled
image (the useful work) and the same scaled by the computed tile area (the work done, overlap
included); GMAC/s uses the useful work.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPECS = {
    "shallow": {"name": "edsr", "scale": 2, "depth": 4, "width": 32, "res_scale": 1.0},  # the default model
    "edsr": {"name": "edsr", "scale": 2},  # EDSR-baseline: 16 blocks x 64 channels
}
CONFIGS = [  # (model, precision, tile, repeats): tile "auto" is upscale.py's default
    ("shallow", "auto", "auto", 3),
    ("shallow", "32", "auto", 3),
    ("shallow", "auto", "0", 3),
    ("edsr", "auto", "auto", 1),  # minutes per run on 2 cores
    ("edsr", "32", "auto", 1),
]
LR_SIZE = (1080, 1920)


def worker(model: str, precision: str, tile_arg: str, repeats: int) -> dict:
    import torch

    from sr_experiments.methods.engines import auto_tile, torch_engine
    from sr_experiments.hardware import peak_conv_gmacs
    from sr_experiments.imaging.tiling import count_tiles, fit_tiles, upscale
    from sr_experiments.models.complexity import count_macs
    from sr_experiments.models import build_network

    spec = SPECS[model]
    torch.manual_seed(0)
    engine = torch_engine(build_network(spec), spec, torch.device("cpu"), precision)
    h, w = LR_SIZE
    overlap = 32
    if tile_arg == "auto":
        max_tile, _ = auto_tile(engine, overlap, 1)
        tile = fit_tiles(h, w, max_tile, overlap)
    else:
        max_tile, tile = int(tile_arg), None
    peaks = {"fp32": [], "bf16": []}

    def measure_peaks() -> None:
        peaks["fp32"].append(peak_conv_gmacs("cpu", torch.float32, channels_last=False))
        peaks["bf16"].append(peak_conv_gmacs("cpu", torch.bfloat16, channels_last=True))

    measure_peaks()
    lq = torch.rand(1, 3, h, w)
    upscale(engine, lq[..., :64, :64], 2)  # warm-up: oneDNN primitives, thread pool
    times = []
    for _ in range(repeats):
        with torch.inference_mode():
            start = time.perf_counter()
            sr = upscale(engine, lq, 2, tile, overlap)
            out = sr.clamp_(0, 1).mul_(255).round_().to(torch.uint8)
            times.append(time.perf_counter() - start)
        del sr, out
    measure_peaks()  # before and after the model; the higher one counts (a lower, conservative fraction)
    peak32, peak16 = max(peaks["fp32"]), max(peaks["bf16"])
    macs = count_macs(spec, LR_SIZE)
    area = count_tiles(h, w, tile, overlap) * tile[0] * tile[1] if tile else h * w
    seconds = statistics.median(times)
    return {
        "model": model, "precision": engine.precision.precision, "channels_last": engine.channels_last,
        "tile": f"{tile[0]}x{tile[1]} (max {max_tile})" if tile else "off", "threads": torch.get_num_threads(),
        "seconds": seconds, "all_seconds": times, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "gmacs_useful": macs / 1e9, "gmacs_done": macs * area / (h * w) / 1e9,
        "gmac_per_s": macs / seconds / 1e9, "peak_fp32": peak32, "peak_bf16_cl": peak16, "peak_samples": peaks,
    }


def psnr_cost(ckpt: str, data_dir: str) -> str:
    """PSNR of a checkpoint on Set5 and Set14 (x2, the LR_bicubic files) with precision=32 and
    bf16 (+channels_last), untiled, through upscale.py's engine."""
    import torch

    from sr_experiments.methods.engines import torch_engine
    from sr_experiments.evaluation.protocol import InferenceOptions, evaluate_set, resolve_eval_sources
    from sr_experiments.models.weights import load_network

    net, spec = load_network(ckpt)
    lines = ["| set | fp32 PSNR | bf16 PSNR | bf16 - fp32 (dB) |", "|---|---:|---:|---:|"]
    for name in ("Set5", "Set14"):
        sources = resolve_eval_sources(str(Path(data_dir) / name), 2)
        psnr = {}
        for precision in ("32", "bf16"):
            engine = torch_engine(net, spec, torch.device("cpu"), precision)
            (result,) = evaluate_set({spec["name"]: engine}, name, sources, 2, InferenceOptions())
            psnr[precision] = result.psnr
        lines.append(f"| {name} | {psnr['32']:.4f} | {psnr['bf16']:.4f} | {psnr['bf16'] - psnr['32']:+.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "PRECISION", "TILE"))
    parser.add_argument("--only", help="comma-separated models to run (default: all)")
    parser.add_argument("--psnr-ckpt", help="instead: Set5/Set14 x2 PSNR of this checkpoint in fp32 and bf16")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="paths.data_dir for --psnr-ckpt")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.repeats)))
        return
    rows = [
        "| model | precision | tile (LR) | s | peak RSS MB | GMACs (done) | GMAC/s | % fp32 conv peak | % bf16 CL conv peak |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    if args.psnr_ckpt:
        print(psnr_cost(args.psnr_ckpt, args.data))
        return
    for model, precision, tile, repeats in CONFIGS:
        if args.only and model not in args.only.split(","):
            continue
        repeats = min(repeats, args.repeats)
        proc = subprocess.run([sys.executable, __file__, "--worker", model, precision, tile, "--repeats", str(repeats)],
                              capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-2000:], file=sys.stderr)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(r), file=sys.stderr, flush=True)
        rows.append(
            f"| {r['model']} | {r['precision']}{' + CL' if r['channels_last'] else ''} | {r['tile']} | {r['seconds']:.2f} | "
            f"{r['peak_rss_mb']:.0f} | {r['gmacs_useful']:.0f} ({r['gmacs_done']:.0f}) | {r['gmac_per_s']:.0f} | "
            f"{100 * r['gmac_per_s'] / r['peak_fp32']:.0f}% of {r['peak_fp32']:.0f} | "
            f"{100 * r['gmac_per_s'] / r['peak_bf16_cl']:.0f}% of {r['peak_bf16_cl']:.0f} |"
        )
    table = "\n".join(rows)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
