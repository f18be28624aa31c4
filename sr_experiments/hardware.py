"""Precision values, the device's bf16 flags, the layout rule for unmeasured modules, and the
machine's measured conv peak.

``precision=auto`` is resolved by measurement (``sr_experiments.speed``), not here: a CPU flag
such as AVX512-BF16 says that an instruction exists, not that bf16 autocast is faster than fp32.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class PrecisionChoice:
    """A Lightning ``precision`` value, the autocast dtype it implies, and why it was chosen."""

    precision: str  # "bf16-mixed" | "16-mixed" | "32"
    reason: str

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(self.precision)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere what ``platform`` knows): every speed
    figure and cached speed choice names the machine it was measured on."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device for a ``device`` / ``trainer.accelerator`` setting: ``None``, ``auto`` and ``gpu``
    are the GPU when one is visible, else the CPU; asking for CUDA without one is one clear error."""
    if device is None or str(device) in ("auto", "gpu"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but no CUDA GPU is visible; use device=cpu or device=auto")
    return device


def device_type(device: str | torch.device | None = None) -> str:
    """``"cuda"`` or ``"cpu"`` for a device setting (see ``resolve_device``)."""
    return resolve_device(device).type


def cpu_bf16_flags() -> list[str]:
    """The CPU's native bf16 instruction sets torch sees (``avx512_bf16``, ``amx``); empty if none."""
    cpu = torch.cpu
    found = (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx", "_is_amx_tile_supported"))
    return [flag for flag, probe in found if getattr(cpu, probe, lambda: False)()]


def normalise_precision(requested: str | int | None) -> str:
    """A ``precision`` setting as Lightning spells it (``auto`` for ``None``)."""
    req = "auto" if requested is None else str(requested)
    aliases = {"32-true": "32", "fp32": "32", "bf16": "bf16-mixed", "16": "16-mixed", "fp16": "16-mixed"}
    return aliases.get(req, req)


def peak_conv_gmacs(
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    channels_last: bool = True,
    channels: int = 64,
    size: int = 128,
    batch: int = 8,
    seconds: float = 2.0,
) -> float:
    """Measured throughput (GMAC/s) of a large 3x3 ``conv2d``: the machine's practical peak for
    the layer SR networks are made of. fp32 weights under autocast when ``dtype`` is lower."""
    dev = torch.device(device)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(dev)
    x = torch.rand(batch, channels, size, size, device=dev)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    macs = batch * channels * channels * 9 * size * size
    use_autocast = dtype != torch.float32
    with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=use_autocast):
        for _ in range(2):
            conv(x)
        synchronize(dev)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or n < 3:
            conv(x)
            n += 1
        synchronize(dev)
        elapsed = time.perf_counter() - start
    return macs * n / elapsed / 1e9


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA runs asynchronously), so a timer measures the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def conv_param_fraction(net: nn.Module) -> float:
    """Share of ``net``'s parameters that sit in convolutions (0 for a parameter-free net)."""
    total = sum(p.numel() for p in net.parameters())
    conv = sum(p.numel() for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd) for p in m.parameters(recurse=False))
    return conv / total if total else 0.0


def choose_channels_last(net: nn.Module, requested: bool | str | None) -> tuple[bool, str]:
    """``channels_last`` on or off, and why, for a module nothing was measured for (built outside
    ``train.py``): ``auto`` turns it on for convolutional networks. ``train.py`` measures instead."""
    if requested is None or str(requested) == "auto":
        frac = conv_param_fraction(net)
        on = frac >= 0.5
        return on, f"auto: {frac:.0%} of the parameters are in convolutions"
    if isinstance(requested, str):
        raise ValueError(f"model.channels_last must be true, false or auto, got {requested!r}")
    return bool(requested), f"model.channels_last={bool(requested)} was set explicitly"
