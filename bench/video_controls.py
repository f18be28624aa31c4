"""Video SR controls: does the CPU recipe's video network use the other frames at the CPU budget?

    python bench/video_controls.py [--steps 612] [--degradation BI|BD] [--variants single,zero,true]

``bench/video.py`` pits the recipe's video model against an image network; these controls say why
it loses there. The recipe's network (``basicvsr_tiny``: BasicVSR at 16 channels, 3 blocks per
branch) is trained by one plain loop, the same data order and step count for every variant (no
Lightning: only the frames and the flow differ), Adam lr 2e-3 betas (0.9, 0.99), cosine to 0,
Charbonnier (eps 1e-6), 16x16 LR patches of the synthetic training clips, 20 frames a step:

- ``single``: one-frame clips, batch 20: the same network with no temporal information;
- ``zero``: 5-frame clips, batch 4, zero flow: propagation without alignment (what the recipe's
  SpyNet amounts to: its pre-training ends no better than zero flow, BENCHMARKS.md);
- ``true``: 5-frame clips, batch 4, the clips' true motion as the flow: perfect alignment, the
  upper bound of any flow network.

Each is evaluated on the recipe's validation clips (seed 0; Y, border 0, all frames, clip mean);
``single`` frame by frame, the others on the whole clip (``true`` with the clips' true motion).
The held-out clips of ``bench/video.py`` (seeds 1, 2) are not used here.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from sr_experiments.data.clips_synthetic import synthetic_clips
from sr_experiments.evaluation.video import ClipMetrics
from sr_experiments.models import build_network
from sr_experiments.models.bicubic import Bicubic
from sr_experiments.speed import machine_name

VARIANTS = {"single": (1, 20, "zero"), "zero": (5, 4, "zero"), "true": (5, 4, "true")}  # frames, batch, flow


class FlowOverride:
    """Replaces a BasicVSR's ``get_flow``: zero flow, or the true motion of the clip it is given
    (BasicVSR's forward flows align frame i to i+1: the clips' ``flow_bwd``; backward ones ``flow_fwd``)."""

    def __init__(self, mode: str) -> None:
        self.mode, self.flows = mode, None

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "true":
            return self.flows
        zero = x.new_zeros(x.shape[0], x.shape[1] - 1, 2, *x.shape[-2:])
        return zero, zero


def sample(clips: list, frames: int, batch: int, patch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """``batch`` random (clip, first frame, LR crop) windows: LR, GT and the true flows, cropped alike."""
    parts: list[list[torch.Tensor]] = [[], [], [], []]
    for _ in range(batch):
        clip = clips[int(torch.randint(len(clips), (1,), generator=g))]
        t = int(torch.randint(clip.num_frames - frames + 1, (1,), generator=g))
        y, x = (int(torch.randint(clip.lq.shape[-1] - patch + 1, (1,), generator=g)) for _ in range(2))
        lr_crop = (slice(None), slice(None), slice(y, y + patch), slice(x, x + patch))
        parts[0].append(clip.lq[t : t + frames][lr_crop])
        parts[1].append(clip.gt[t : t + frames, :, 4 * y : 4 * (y + patch), 4 * x : 4 * (x + patch)])
        parts[2].append(clip.flow_bwd[t : t + frames - 1][lr_crop])
        parts[3].append(clip.flow_fwd[t : t + frames - 1][lr_crop])
    lq, gt, fwd, bwd = (torch.stack(p) for p in parts)
    return lq.float() / 255, gt.float() / 255, fwd, bwd


def train_variant(name: str, clips: list, steps: int, seed: int, patch: int = 16, lr: float = 2e-3) -> tuple:
    frames, batch, flow = VARIANTS[name]
    torch.manual_seed(seed)
    net = build_network({"name": "basicvsr", "scale": 4, "num_feat": 16, "num_block": 3})
    net.get_flow = override = FlowOverride(flow)
    trained = [p for n, p in net.named_parameters() if not n.startswith("spynet.")]
    opt = torch.optim.Adam(trained, lr=lr, betas=(0.9, 0.99))
    g, start = torch.Generator().manual_seed(seed), time.perf_counter()
    for step in range(steps):
        lq, gt, fwd, bwd = sample(clips, frames, batch, patch, g)
        override.flows = (fwd, bwd)
        loss = torch.sqrt((net(lq) - gt) ** 2 + 1e-6).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (step + 1) / steps))
    return net, override, time.perf_counter() - start


@torch.no_grad()
def evaluate(name: str, net: torch.nn.Module, override: FlowOverride, clips: list) -> dict:
    metrics = ClipMetrics("y", 0)
    for i, clip in enumerate(clips):
        lq = clip.lq.float()[None] / 255
        override.flows = (clip.flow_bwd[None], clip.flow_fwd[None])
        if VARIANTS[name][0] == 1:
            sr = torch.cat([net.eval()(lq[:, t : t + 1]) for t in range(lq.shape[1])], dim=1)
        else:
            sr = net.eval()(lq)
        metrics.update(sr[0].clamp(0, 1), clip.gt.float() / 255, i)
    return {k: float(v) for k, v in metrics.compute().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=612)
    parser.add_argument("--degradation", default="BI", choices=("BI", "BD"))
    parser.add_argument("--variants", default="single,zero,true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, val = synthetic_clips("train", 4, args.degradation), synthetic_clips("val", 4, args.degradation)
    print(f"machine: {machine_name('cpu')}, 1 torch thread", flush=True)
    bicubic = ClipMetrics("y", 0)
    for i, clip in enumerate(val):
        bicubic.update(Bicubic(4)(clip.lq.float() / 255).clamp(0, 1), clip.gt.float() / 255, i)
    print(json.dumps({"variant": "bicubic", **{k: float(v) for k, v in bicubic.compute().items()}}), flush=True)
    for name in args.variants.split(","):
        if name not in VARIANTS:
            sys.exit(f"--variants: {name!r} is not one of {', '.join(VARIANTS)}")
        net, override, seconds = train_variant(name, train, args.steps, args.seed)
        row = {"variant": name, "degradation": args.degradation, "steps": args.steps,
               "train_s": round(seconds), **evaluate(name, net, override, val)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
