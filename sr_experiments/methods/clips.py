"""A video network over a clip: whole (``run_clip``, the protocol's way, evaluation/video.py) or
streamed in temporal chunks with overlap (``stream_clip``, upscale.py on video files), so memory
stays bounded for a video of any length.

Video networks (``models.is_multi_frame``) declare ``frames_out``: "all" (recurrent: BasicVSR,
BasicVSR++ take a clip and return every frame) or "center" (sliding window: EDVR takes
``num_frame`` frames and returns the centre one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from sr_experiments.hardware import PrecisionChoice
from sr_experiments.methods.base import Method
from sr_experiments.methods.engines import PEAK_FACTOR, Engine


def window_indices(center: int, total: int, num_frame: int) -> list[int]:
    """Frame indices of the ``num_frame`` window around ``center``, padded at the clip ends by
    BasicSR's ``reflection_circle`` (``generate_frame_indices``, used by its EDVR REDS4 test)."""
    half, last = num_frame // 2, total - 1
    out = []
    for i in range(center - half, center + half + 1):
        if i < 0:
            i = center + half - i
        elif i > last:
            i = (center - half) - (i - last)
        out.append(min(max(i, 0), last))
    return out


@torch.no_grad()
def run_clip(net: nn.Module, lq: torch.Tensor, center_only: bool = False, mirror: bool = True) -> torch.Tensor:
    """SR frames (T, 3, sH, sW) of a clip ``lq`` (T, 3, h, w) in [0, 1].

    A network that outputs all frames (BasicVSR, ``frames_out="all"``) takes the whole clip; for
    ``center_only`` sets it runs on the clip followed by its mirror and averages the two passes
    (BasicSR ``flip_seq``). A sliding-window network (EDVR, ``frames_out="center"``) runs once per
    frame on its ``num_frame`` window. An image network (no ``multi_frame``) runs frame by frame.
    """
    if not getattr(net, "multi_frame", False):
        return torch.cat([net(lq[t : t + 1]) for t in range(len(lq))])
    if getattr(net, "frames_out", "all") == "center":
        n = int(net.num_frame)
        return torch.cat([net(lq[window_indices(t, len(lq), n)][None]) for t in range(len(lq))])
    if center_only and mirror:
        out = net(torch.cat([lq, lq.flip(0)])[None])[0]
        return 0.5 * (out[: len(lq)] + out[len(lq) :].flip(0))
    return net(lq[None])[0]


def clip_context(net: nn.Module, overlap: int) -> int:
    """Frames of context each chunk needs on each side: a sliding window's half (EDVR's 5-frame
    window: 2; then every kept frame sees the window ``run_clip`` gives it), else ``overlap``
    (recurrent networks carry information from any distance: more context, closer to the whole clip)."""
    if getattr(net, "frames_out", "all") == "center":
        return max(int(overlap), int(net.num_frame) // 2)
    return max(0, int(overlap))


def stream_clip(forward: Callable[[torch.Tensor], torch.Tensor], frames: Iterable[torch.Tensor], chunk: int,
                context: int) -> Iterator[torch.Tensor]:
    """SR frames, in order and one at a time, of LR ``frames`` ((3, h, w) each, read as needed).

    ``forward`` maps (T, 3, h, w) to (T, 3, sh, sw) (``run_clip``, tiled or not). It runs on chunks of
    ``chunk`` frames with ``context`` frames before and after each (fewer at the clip's ends, as the
    whole-clip run has): their outputs are computed and dropped. At most ``chunk + 2 * context`` LR
    frames are held; with ``chunk`` >= the clip's length this is ``forward`` on the whole clip."""
    if chunk < 1 or context < 0:
        raise ValueError(f"video_chunk must be >= 1 and video_overlap >= 0, got {chunk} and {context}")
    source = iter(frames)
    held: list[torch.Tensor] = []  # LR frames start .. start + len(held) - 1
    start = done = 0  # index of held[0]; frames yielded so far
    exhausted = False
    while True:
        while not exhausted and start + len(held) < done + chunk + context:
            nxt = next(source, None)
            exhausted = nxt is None
            if nxt is not None:
                held.append(nxt)
        if done >= start + len(held):
            return
        out = forward(torch.stack(held))
        end = min(done + chunk, start + len(held))
        yield from out[done - start : end - start]
        del out  # before the next chunk is computed: one chunk's output in memory, not two
        done = end
        drop = max(0, done - context - start)  # keep ``context`` frames before the next chunk
        held, start = held[drop:], start + drop


class ClipForward:
    """A video network as an image-shaped callable: the (T, 3, h, w) frames of one clip ->
    (T, 3, sh, sw) (``run_clip``), so that tiling (``imaging.tiling``) and the x8 self-ensemble run
    it as they run an image network; one image is a one-frame clip."""

    multi_frame = True

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        # EDVR's PCD pyramid (two stride-2 levels) takes sides that are multiples of 4 (models/edvr.py
        # refuses others): a frame or tile of any size is edge-padded to one, and the output cropped.
        self.multiple = 4 if getattr(net, "frames_out", "all") == "center" else 1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        if ph or pw:
            x = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
        y = run_clip(self.net, x)
        s = y.shape[-1] // x.shape[-1]
        return y[..., : h * s, : w * s]


def clip_bytes_per_lr_pixel(net: nn.Module, scale: int, frames: int, size: int = 32) -> float:
    """Peak bytes per LR pixel (of one frame's area) of ``net`` on a chunk of ``frames`` frames in
    fp32, an estimate for the tile size: a recurrent network keeps, for every frame of the chunk, one
    direction's features (``num_feat`` channels) and its SR frame (held twice while stacked), plus one
    frame's transient layers (``engines.PEAK_FACTOR`` x the largest layer output, measured by one
    forward on a 2-frame ``size`` x ``size`` clip)."""
    largest = [3.0]

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            largest[0] = max(largest[0], out.numel() / (size * size))

    device = next((p.device for p in net.parameters()), torch.device("cpu"))
    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        run_clip(net, torch.rand(2, 3, size, size, device=device))
    finally:
        for h in handles:
            h.remove()
    held = int(getattr(net, "num_feat", 64)) + 2 * 3 * scale * scale
    return 4.0 * (frames * held + PEAK_FACTOR * largest[0])


def clip_engine(method: Method, device: torch.device, frames: int) -> Engine:
    """``method``'s video network as an ``Engine`` over clips (``ClipForward``), in fp32 (video
    networks are not precision-tuned: their flow warps need fp32), with its memory per LR pixel for
    chunks of ``frames`` frames (``engines.auto_tile`` sizes the tiles from it)."""
    net = method.network(device).eval()
    return Engine(ClipForward(net), method.scale, method.label, device,
                  PrecisionChoice("32", "a video network: fp32 on clips"), False,
                  clip_bytes_per_lr_pixel(net, method.scale, frames))
