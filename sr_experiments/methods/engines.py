"""What runs the pixels for ``upscale.py`` and ``eval.py``: a PyTorch network (checkpoint or
``model=bicubic``) in the precision and layout measured fastest here, or an exported ONNX file;
and the tile size memory allows."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sr_experiments.extras import require
from sr_experiments.hardware import PrecisionChoice
from sr_experiments.models.registry import model_label
from sr_experiments.speed import Measure, SpeedChoice, choose_inference

MB = 1 << 20
# A 3840x2160 output must stay under 2 GB of process RSS: torch + the image buffers take ~0.6 GB,
# so the tiles get at most this much.
TILE_BUDGET_CAP = 1024 * MB
# Peak bytes per element of the largest layer output, in units of that output: its input, itself,
# a skip tensor, and oneDNN's reorder buffers (measured: bench/upscale.py).
PEAK_FACTOR = 4


@dataclass
class Engine:
    """A callable (N, 3, h, w) float32 -> (N, 3, h*s, w*s), with how it runs."""

    forward: Any
    scale: int
    label: str
    device: torch.device
    precision: PrecisionChoice
    channels_last: bool
    bytes_per_lr_pixel: float  # peak activation bytes per LR pixel of one tile (estimate)
    speed: SpeedChoice | None = None  # what was measured (PyTorch engines)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = self.precision.autocast_dtype
        ctx = torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext()
        with ctx:
            return self.forward(x)


def torch_engine(net: nn.Module, spec: Mapping[str, Any], device: torch.device, precision: str,
                 channels_last: bool | str = "auto", measure: Measure | None = None) -> Engine:
    """``net`` in eval mode on ``device``; ``auto`` precision and layout are measured (forward
    passes on a 128x128 tile, cached: ``speed.choose_inference``). ``measure`` replaces the timing."""
    net = net.eval().to(device)
    speed = choose_inference(net, spec, device, precision, channels_last, measure=measure)
    speed.apply_tf32()
    if speed.mode.channels_last:
        net = net.to(memory_format=torch.channels_last)
    elem = 2 if speed.mode.autocast_dtype is not None else 4
    return Engine(net, int(spec["scale"]), model_label(spec), device, speed.precision, speed.mode.channels_last,
                  PEAK_FACTOR * elem * _largest_activation_per_pixel(net, device), speed)


def _largest_activation_per_pixel(net: nn.Module, device: torch.device, size: int = 32) -> float:
    """Elements per LR pixel of the largest tensor any leaf module outputs (one probe forward)."""
    largest = [3 * 1.0]

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            largest[0] = max(largest[0], out.numel() / (size * size))

    leaves = [m for m in net.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.inference_mode():
            net(torch.rand(1, 3, size, size, device=device))
    finally:
        for h in handles:
            h.remove()
    return largest[0]


def onnx_engine(path: str | Path, device: torch.device) -> Engine:
    """An ``export.py`` ONNX file run by onnxruntime; the scale comes from its metadata."""
    ort = require("onnxruntime", f"upscaling with the ONNX model '{path}'")

    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
    if not Path(path).is_file():
        raise FileNotFoundError(f"ONNX file '{path}' does not exist")
    try:
        session = ort.InferenceSession(str(path), providers=providers)
    except Exception as e:  # onnxruntime's own exception types (InvalidProtobuf, ...) derive from Exception only
        reason = str(e).splitlines()[0].rsplit(":", 1)[-1].strip() if str(e) else type(e).__name__
        raise ValueError(f"'{path}' cannot be loaded as an ONNX model ({reason}); export it again with export.py") from None
    meta = session.get_modelmeta().custom_metadata_map
    if "scale" not in meta:
        raise ValueError(f"'{path}' has no 'scale' in its metadata: export it with export.py")
    spec = json.loads(meta.get("network", "{}")) or {"name": "onnx"}
    name = session.get_inputs()[0].name

    def forward(x: torch.Tensor) -> torch.Tensor:
        (y,) = session.run(None, {name: np.ascontiguousarray(x.detach().float().cpu().numpy())})
        return torch.from_numpy(y)

    width = int(spec.get("width", 64))
    return Engine(forward, int(meta["scale"]), f"{model_label({'name': 'onnx', **spec})} (onnx)", torch.device("cpu"),
                  PrecisionChoice("32", "ONNX runs in fp32 (onnxruntime)"), False, PEAK_FACTOR * 4 * 4 * width)


def available_memory(device: torch.device) -> int:
    """Free bytes on ``device`` now: ``cuda.mem_get_info``, else the OS's available pages."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not Linux: assume a modest machine
        return 4 << 30


def auto_tile(engine: Engine, overlap: int, tile_batch: int, budget_mb: float | None = None) -> tuple[int, str]:
    """LR tile side from the memory budget and the network's bytes per pixel, and why.

    Budget: half the available memory, at most ``TILE_BUDGET_CAP`` (so that a 4K output stays
    under 2 GB), or ``budget_mb`` when given.
    """
    avail = available_memory(engine.device)
    budget = budget_mb * MB if budget_mb else min(avail / 2, TILE_BUDGET_CAP if engine.device.type == "cpu" else avail / 2)
    side = int((budget / (tile_batch * engine.bytes_per_lr_pixel)) ** 0.5) // 16 * 16
    side = max(side, 2 * overlap + 32)
    why = (f"{budget / MB:.0f} MB tile budget ({avail / MB:.0f} MB available) / "
           f"{engine.bytes_per_lr_pixel:.0f} B per LR pixel")
    return min(side, 4096), why
