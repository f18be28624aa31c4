"""Video SR: the CPU recipe's video model against a single-image network of the same parameter
budget and training time, on held-out synthetic clips (issue 28's acceptance: the video model wins
by at least 0.5 dB).

    python bench/video.py [--out DIR] [--test-seeds 1,2] [hydra overrides of the video run ...]

1. ``experiment=video_cpu`` trained through ``train()``, as ``python train.py experiment=video_cpu``
   does (SpyNet pre-training on the clips' true motion included: its time counts as training time);
   ``trainer.precision=32 model.channels_last=false`` so that neither run spends time calibrating.
2. EDSR (BasicSR's layout, 64 channels) with the residual-block count whose parameter count is
   nearest the video network's (SpyNet included), trained through ``train()`` on the frames of the
   same synthetic training clips (written as PNGs; LR made by the same MATLAB bicubic), with the
   recipe's loss, optimizer, learning rate, schedule and LR patch, ``batch x num_frame`` frame
   patches a step (the video run's frames a step), validated as often on the same frames, for the
   video run's wall-clock training time: its step count is that time over its measured step time,
   and ``trainer.max_time`` stops it at that time in any case.
3. The final weights of both (``last.ckpt``, not the best validation: the validation clips were
   used to choose the recipe's settings) and bicubic on **held-out** clips: the synthetic ``val``
   photos (chelsea, coffee: never in training) along camera paths of other seeds than the recipe's
   validation clips (seed 0), all 10 frames, Y channel, no border (the Vid4 protocol).

Run with one torch thread per process where the machine is shared (``torch.set_num_threads``
below); results go to ``--out`` (``results.json``) and the printed table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import open_dict
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_overhead import compose_cfg  # noqa: E402

from sr_experiments.data.clips_synthetic import synthetic_clips  # noqa: E402
from sr_experiments.evaluation.video import ClipMetrics, run_clip  # noqa: E402
from sr_experiments.models import build_network, count_parameters  # noqa: E402
from sr_experiments.models.bicubic import Bicubic  # noqa: E402
from sr_experiments.models.weights import load_network  # noqa: E402
from sr_experiments.outputs import claim_unique_dir, write_text  # noqa: E402
from sr_experiments.runs.run import train  # noqa: E402
from sr_experiments.speed import machine_name  # noqa: E402
from sr_experiments.training.losses import build_criterion  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FORCED = ["logger=none", "trainer.precision=32", "model.channels_last=false"]


def edsr_depth_for(params: int, width: int = 64, scale: int = 4) -> int:
    """The EDSR residual-block count whose parameter count is nearest ``params``."""
    def count(depth: int) -> int:
        with torch.device("meta"):
            return count_parameters(build_network({"name": "edsr", "scale": scale, "depth": depth, "width": width}))
    return min(range(1, 64), key=lambda d: abs(count(d) - params))


def write_frames(clips: list, folder: Path, max_frames: int | None = None) -> None:
    """Every GT frame of ``clips`` as a PNG (the image datamodule makes the LR by MATLAB bicubic)."""
    folder.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        for t, frame in enumerate(clip.gt[:max_frames]):
            Image.fromarray(frame.permute(1, 2, 0).numpy()).save(folder / f"{clip.name}_{t:03d}.png")


def image_step_seconds(depth: int, batch: int, patch: int, lr: float) -> float:
    """Median seconds of one training step (forward, Charbonnier, backward, Adam) of the image net."""
    net = build_network({"name": "edsr", "scale": 4, "depth": depth, "width": 64})
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.99))
    loss_fn = build_criterion(None, "charbonnier", 1e-6, False).pixel_only()
    lq, gt = torch.rand(batch, 3, patch, patch), torch.rand(batch, 3, patch * 4, patch * 4)
    times = []
    for _ in range(6):
        start = time.perf_counter()
        loss = loss_fn(net(lq), gt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def hms(seconds: float) -> str:
    s = int(seconds)
    return f"00:{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def train_image_net(video_cfg, video: dict, depth: int, out: Path) -> dict:
    """The image network on the video run's training frames for the video run's training time."""
    d = video_cfg.data
    batch, patch = int(d.batch_size) * int(d.num_frame), int(d.patch_size)
    write_frames(synthetic_clips("train", 4), out / "frames" / "train")
    write_frames(synthetic_clips("val", 4), out / "frames" / "val", d.val_max_frames)  # the recipe's validation frames
    step_s = image_step_seconds(depth, batch, patch, float(video_cfg.lr))
    budget = float(video["train_seconds"])
    steps = max(int(budget / step_s), 1)
    print(f"image net: EDSR {depth} blocks, {step_s:.2f} s a step of {batch} patches -> {steps} steps "
          f"in the video run's {budget:.0f} s", flush=True)
    cfg = compose_cfg([
        "model=edsr", f"model.depth={depth}", "model.label=edsr_matched", "scale=4", "data=folder",
        f"data.train_dir={out / 'frames' / 'train'}", f"data.val_dir={out / 'frames' / 'val'}",
        "data.lr_source=generate", f"data.patch_size={patch}", f"data.batch_size={batch}",
        f"data.patches_per_epoch={int(d.patches_per_epoch) * int(d.num_frame)}", f"lr={video_cfg.lr}",
        "loss=charbonnier", f"+module.charbonnier_eps={video_cfg.module.charbonnier_eps}",
        "optimizer.betas=[0.9,0.99]", "scheduler=cosine", f"trainer.max_steps={steps}",
        f"+trainer.max_time={hms(budget)}", f"seed={video_cfg.seed}", *FORCED], out / "image")
    summary = train(cfg)
    summary["step_seconds_measured"] = step_s
    return summary


def evaluate(nets: dict, clips: list) -> dict:
    """Clip-averaged Y PSNR/SSIM, border 0, all frames (Vid4's protocol) of each network."""
    metrics = {name: ClipMetrics("y", 0) for name in nets}
    for i, clip in enumerate(clips):
        lq, gt = clip.lq.float() / 255, clip.gt.float() / 255
        for name, net in nets.items():
            metrics[name].update(run_clip(net.eval(), lq).float().clamp(0, 1), gt, i)
    return {name: {k: float(v) for k, v in m.compute().items()} for name, m in metrics.items()}


def table(results: dict, rows: dict) -> str:
    lines = ["| network | params | training | steps | held-out PSNR (dB) | SSIM | recipe's val clips PSNR |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, info in rows.items():
        test, val = results["test"][name], results["val"][name]
        train_s = f"{info['seconds']:.0f} s" if info["seconds"] else "-"
        lines.append(f"| {info['label']} | {info['params']:,} | {train_s} | {info['steps'] or '-'} | "
                     f"{test['psnr']:.2f} | {test['ssim']:.4f} | {val['psnr']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_video")
    parser.add_argument("--test-seeds", default="1,2", help="camera-path seeds of the held-out clips (the recipe validates on 0)")
    parser.add_argument("--threads", type=int, default=1)
    args, overrides = parser.parse_known_args()
    torch.set_num_threads(args.threads)
    out = claim_unique_dir(args.out)
    print(f"machine: {machine_name('cpu')}, {torch.get_num_threads()} torch thread(s); output {out}", flush=True)

    video_cfg = compose_cfg(["experiment=video_cpu", *FORCED, *overrides], out / "video")
    video = train(video_cfg)
    video_net, _ = load_network(out / "video" / "checkpoints" / "last.ckpt", quiet=True)
    # Every parameter, SpyNet's included (the run's summary counts the trainable ones: a frozen
    # SpyNet's are not).
    video_params = count_parameters(video_net)
    flow_params = count_parameters(video_net.spynet)
    depth = edsr_depth_for(video_params)
    image = train_image_net(video_cfg, video, depth, out)
    image_net, _ = load_network(out / "image" / "checkpoints" / "last.ckpt", quiet=True)
    nets = {"bicubic": Bicubic(4), "image": image_net, "video": video_net}
    test = [c for s in args.test_seeds.split(",") for c in synthetic_clips("val", 4, "BI", seed=int(s))]
    with torch.no_grad():
        results = {"test": evaluate(nets, test), "val": evaluate(nets, synthetic_clips("val", 4))}
    rows = {
        "bicubic": {"label": "bicubic", "params": 0, "seconds": 0, "steps": 0},
        "image": {"label": f"EDSR {depth}x64 (single image)", "params": count_parameters(image_net),
                  "seconds": image["train_seconds"], "steps": image["steps"]},
        "video": {"label": f"basicvsr_tiny (experiment=video_cpu; SpyNet {flow_params:,} of the parameters)",
                  "params": video_params,
                  "seconds": video["train_seconds"], "steps": video["steps"]},
    }
    gain = results["test"]["video"]["psnr"] - results["test"]["image"]["psnr"]
    text = (table(results, rows) + f"\n\nvideo - image on the held-out clips: {gain:+.2f} dB "
            f"({len(test)} clips x {test[0].num_frames} frames; seeds {args.test_seeds}); {video.get('spynet')}")
    print("\n" + text, flush=True)
    write_text(out / "results.json", json.dumps({
        "machine": machine_name("cpu"), "threads": torch.get_num_threads(), "overrides": overrides,
        "rows": rows, "results": results, "gain_db": gain, "spynet": video.get("spynet"),
        "test_clips": [c.name for c in test], "video_summary": video, "image_summary": image,
    }, indent=2, default=str))
    write_text(out / "table.md", text + "\n")


if __name__ == "__main__":
    main()
