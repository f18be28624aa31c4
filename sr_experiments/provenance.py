"""What a number in ``results.json`` / ``metrics.json`` was measured with, for papers and for
reproducing it: checkpoint file and hash, code version, library versions, device and
the metric protocol. Shared by ``eval.py`` and ``train.py``.
"""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where needed: download.py uses file_sha256 without it
    import torch

PACKAGE_DIR = Path(__file__).resolve().parent


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_info(path: str | Path | None) -> dict[str, Any]:
    """Absolute path (``latest`` already resolved by the caller) and SHA-256; nulls without a file."""
    if not path or not Path(path).is_file():
        return {"checkpoint": None, "checkpoint_sha256": None}
    return {"checkpoint": str(Path(path).resolve()), "checkpoint_sha256": file_sha256(path)}


def git_state(repo: str | Path = PACKAGE_DIR) -> dict[str, Any]:
    """Commit and dirty flag (tracked files changed) of the checkout holding the code; nulls when
    it is not a git checkout (an installed package) or git is missing. Never raises."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("torch", "torchvision", "lightning", "torchmetrics", "spandrel", "sr-experiments"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    # torch's own string names the build (2.14.1+cu130 against +cpu), which its wheel metadata may not
    import torch

    out["torch"] = torch.__version__
    return out


def device_name(device: str | torch.device) -> str:
    """``cpu`` or ``cuda:0 (NVIDIA H100 ...)``."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def protocol(scales: int | list[int], lr_source: str | None) -> dict[str, Any]:
    """The metric protocol of ``metrics.py`` (README: The metric protocol), as data."""
    scales = [scales] if isinstance(scales, int) else scales
    return {
        "channel": "Y (BT.601: 16 + 65.481 R + 128.553 G + 24.966 B, RGB in [0, 1]; 1-channel files on their gray values)",
        "border_crop": {f"x{s}": int(s) for s in scales},  # pixels shaved per side = the scale
        "averaging": "per image, then the mean over images",
        "rounding": "SR clamped to [0, 1] and rounded to uint8 before measuring",
        "psnr_peak": 255,
        "ssim": "11x11 Gaussian window, sigma 1.5, valid filtering",
        "bicubic": "MATLAB imresize (sr_experiments/imaging/imresize.py)",
        "lr_source": lr_source,
    }


def provenance(device: str | torch.device, scales: int | list[int], lr_source: str | None) -> dict[str, Any]:
    """Code, libraries, device and protocol: what every result of one run shares."""
    return {"git": git_state(), "versions": versions(), "device": device_name(device),
            "protocol": protocol(scales, lr_source)}
