"""``info.py``: a network's size in words (parameters, MACs for a 1280x720 output); the counting
is ``models/complexity.py``'s."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def format_info(info: dict[str, Any], spec: Mapping[str, Any]) -> str:
    args = ", ".join(f"{k}={v}" for k, v in spec.items() if k not in ("name", "scale", "label"))
    h, w = info["lr_size_720p"]
    network = info["model"] if info["model"] == info["network"] else f"{info['model']} ({info['network']})"
    per_frame = "frame (of a clip) " if info.get("macs_per") == "output frame" else ""
    return "\n".join(
        [
            f"network     {network} x{info['scale']}" + (f" ({args})" if args else ""),
            f"parameters  {info['params']:,} ({info['params'] / 1e6:.3f} M)",
            f"MACs        {info['macs_720p'] / 1e9:,.2f} G for a {w * info['scale']}x{h * info['scale']} output "
            f"{per_frame}(LR {w}x{h}; FlopCounterMode, conv/linear/matmul)",
        ]
    )
