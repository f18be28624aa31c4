"""upscale.py on a video file: frames/s and peak memory for a 720p x4 output (LR 320x180).

    python bench/video_upscale.py [--frames 30] [--full] [--out FILE.md]

The clip is synthesised here: a camera panning (sub-pixel steps, bicubic resampling) over a photo
bundled with scikit-image (``coffee``), 320x180 at 30000/1001 fps, H.264 with an AAC tone. Each
configuration is one ``upscale.py`` run in a fresh subprocess, as a user runs it (decode, SR in
chunks, H.264 encode, audio remuxed): frames/s from the run's own summary line (the video's
seconds, model loading excluded), the peak RSS from ``os.wait4`` (the child's ``ru_maxrss``, its
whole life: torch, the model, the frames). The networks are randomly initialised: speed and
memory do not depend on the weights.

Configurations: ``basicvsr_tiny`` (the CPU preset) and an image network frame by frame (``shallow``
at x4: EDSR 4 blocks x 32), then EDSR-baseline (16 x 64) frame by frame and, with ``--full``, the
paper-size ``basicvsr`` (6.3M parameters).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LR_W, LR_H, FPS = 320, 180, Fraction(30000, 1001)
CONFIGS = {  # label -> network spec (x4)
    "basicvsr_tiny": {"name": "basicvsr", "scale": 4, "num_feat": 16, "num_block": 3},
    "shallow x4 (image)": {"name": "edsr", "scale": 4, "depth": 4, "width": 32, "res_scale": 1.0},
    "edsr-baseline x4 (image)": {"name": "edsr", "scale": 4},
}
FULL = {"basicvsr": {"name": "basicvsr", "scale": 4}}


def make_clip(path: Path, frames: int) -> None:
    """A camera panning over ``coffee`` (400x600) at 0.7 and 0.45 px per frame, with a 440 Hz tone."""
    import av
    import numpy as np
    import torch
    import torch.nn.functional as F
    from skimage import data

    photo = torch.from_numpy(data.coffee()).permute(2, 0, 1)[None].float() / 255
    ys, xs = torch.meshgrid(torch.arange(LR_H, dtype=torch.float32), torch.arange(LR_W, dtype=torch.float32), indexing="ij")
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS, options={"crf": "12"})
        video.width, video.height, video.pix_fmt = LR_W, LR_H, "yuv420p"
        sound = out.add_stream("aac", rate=48000)
        for t in range(frames):
            gx = (xs + 20 + 0.7 * t) / (photo.shape[-1] - 1) * 2 - 1
            gy = (ys + 30 + 0.45 * t) / (photo.shape[-2] - 1) * 2 - 1
            frame = F.grid_sample(photo, torch.stack([gx, gy], -1)[None], mode="bicubic", align_corners=True)
            rgb = frame[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
            out.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(video.encode(None))
        samples = int(frames / FPS * 48000)
        for i in range(0, samples, 1024):
            tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(i, i + 1024) / 48000)).astype(np.float32)
            af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            af.sample_rate, af.pts = 48000, i
            out.mux(sound.encode(af))
        out.mux(sound.encode(None))


def checkpoint(spec: dict, path: Path) -> Path:
    import torch

    from sr_experiments.models import build_network

    torch.manual_seed(0)
    net = build_network(spec)
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "hyper_parameters": {"network": spec}}, path)
    return path


def run_upscale(ckpt: Path, clip: Path, out: Path, frames: int) -> dict:
    """One upscale.py run: frames/s from its summary line, peak RSS from wait4 (the child's own)."""
    cmd = [sys.executable, str(ROOT / "upscale.py"), f"ckpt_path={ckpt}", f"input={clip}", f"output={out}",
           "progress=false"]
    logs = out.with_suffix(".stdout"), out.with_suffix(".stderr")
    start = time.perf_counter()
    with open(logs[0], "w") as so, open(logs[1], "w") as se:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=so, stderr=se)
        _, status, usage = os.wait4(proc.pid, 0)  # not proc.wait(): wait4 returns the child's rusage
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    stdout, stderr = logs[0].read_text(), logs[1].read_text()
    if proc.returncode:
        raise SystemExit(f"upscale.py failed ({proc.returncode}):\n{stderr[-2000:]}")
    seconds = float(re.search(r"in ([\d.]+) s", stdout).group(1))
    first = next((line for line in stderr.splitlines() if line.startswith("upscale: ") and " x4 " in line), "")
    return {"fps": frames / seconds, "seconds": seconds, "wall": wall, "rss_mb": usage.ru_maxrss / 1024, "line": first}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--full", action="store_true", help="also the paper-size basicvsr (minutes on 2 cores)")
    ap.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = ap.parse_args()
    from sr_experiments.hardware import cpu_model

    configs = {**CONFIGS, **(FULL if args.full else {})}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = work / "clip.mp4"
        make_clip(clip, args.frames)
        for label, spec in configs.items():
            ckpt = checkpoint(spec, work / f"{spec['name']}_{len(rows)}.ckpt")
            r = run_upscale(ckpt, clip, work / f"out_{len(rows)}", args.frames)
            rows.append(f"| {label} | {r['fps']:.2f} | {r['seconds']:.1f} | {r['wall']:.1f} | {r['rss_mb']:.0f} |")
            print(rows[-1], f"\n    {r['line']}", flush=True)
    table = "\n".join([f"{args.frames} frames, LR {LR_W}x{LR_H} -> {4 * LR_W}x{4 * LR_H}, {cpu_model()}, "
                       f"torch threads: default", "",
                       "| network | frames/s | video s | process wall s | peak RSS MB |", "|---|---|---|---|---|", *rows])
    print("\n" + table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
