"""Synthetic clips from the photos bundled with scikit-image (the photos ``data=sample`` uses):
a camera moving smoothly over a photo (sub-pixel pans, small zoom and rotation), so video SR
trains and is tested on a fresh machine without a download. The true motion is known
analytically and kept as LR optical flow (for SpyNet pre-training and flow checks).

Frame ``t`` shows the photo through the affine map ``X = A_t p + b_t`` (frame pixel ``p`` ->
photo pixel ``X``, pixel centres at integers); the HR frame is a bicubic resampling of the photo,
the LR frame its BI (or BD) degradation.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from sr_experiments.data.clips import Clip, degrade
from sr_experiments.imaging.io import load_rgb
from sr_experiments.data.sampler import derived_seed
from sr_experiments.data.sources import SAMPLE_SPLITS, sample_dir

# Per split: clips per photo, frames per clip, HR frame side. Validation clips are few and short:
# they run whole through the network at every validation on 2 CPU cores.
SPLITS = {"train": (4, 15, 192), "val": (2, 10, 128)}


def _trajectory(g: torch.Generator, frames: int, side: int, photo_hw: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(A_t, b_t)`` of a smooth camera path: constant velocity plus a little acceleration in
    translation (up to ~2.5 HR px per frame), rotation (up to 0.6 degree per frame) and zoom
    (up to 0.6% per frame), centred where the whole path stays inside the photo."""
    u = lambda lo, hi: lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))  # noqa: E731
    vel, acc = np.array([u(-2.0, 2.0), u(-2.0, 2.0)]), np.array([u(-0.05, 0.05), u(-0.05, 0.05)])
    rot, zoom = math.radians(u(-0.6, 0.6)), u(-0.006, 0.006)
    ph, pw = photo_hw
    travel = np.abs(vel) * frames + np.abs(acc) * frames**2 / 2
    half = side / 2 * (1 + abs(zoom) * frames) * 1.42  # room for the rotated, zoomed window
    lo_x, hi_x = half + travel[0] + 1, pw - half - travel[0] - 1
    lo_y, hi_y = half + travel[1] + 1, ph - half - travel[1] - 1
    cx = u(lo_x, hi_x) if hi_x > lo_x else pw / 2
    cy = u(lo_y, hi_y) if hi_y > lo_y else ph / 2
    out = []
    for t in range(frames):
        th, z = rot * t, (1 + zoom) ** t
        a = z * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        centre = np.array([cx, cy]) + vel * t + acc * t * t / 2
        b = centre - a @ np.array([(side - 1) / 2, (side - 1) / 2])
        out.append((a, b))
    return out


def _render(photo: torch.Tensor, a: np.ndarray, b: np.ndarray, side: int) -> torch.Tensor:
    """The HR frame (3, side, side) uint8: bicubic samples of ``photo`` (3, H, W) float at ``A p + b``."""
    _, h, w = photo.shape
    ys, xs = torch.meshgrid(torch.arange(side, dtype=torch.float64), torch.arange(side, dtype=torch.float64), indexing="ij")
    px = a[0, 0] * xs + a[0, 1] * ys + b[0]
    py = a[1, 0] * xs + a[1, 1] * ys + b[1]
    grid = torch.stack([(px + 0.5) / w * 2 - 1, (py + 0.5) / h * 2 - 1], dim=-1).to(photo.dtype)[None]
    out = F.grid_sample(photo[None], grid, mode="bicubic", padding_mode="reflection", align_corners=False)[0]
    return torch.floor(out.clamp(0, 255) + 0.5).to(torch.uint8)


def _lr_flow(src: tuple[np.ndarray, np.ndarray], dst: tuple[np.ndarray, np.ndarray], lr_side: int, scale: int) -> torch.Tensor:
    """True motion (2, h, w) in LR pixels of each LR pixel of frame ``src`` into frame ``dst``."""
    q = (np.arange(lr_side) + 0.5) * scale - 0.5  # LR pixel centres in HR coordinates
    xs, ys = np.meshgrid(q, q)
    pts = np.stack([xs.ravel(), ys.ravel()])
    scene = src[0] @ pts + src[1][:, None]
    moved = np.linalg.solve(dst[0], scene - dst[1][:, None])
    return torch.from_numpy(((moved - pts) / scale).reshape(2, lr_side, lr_side)).float()


def synthetic_clips(split: str, scale: int, degradation: str = "BI", seed: int = 0) -> list[Clip]:
    """The synthetic clips of ``split`` (``train``: the 10 training photos of ``data=sample``;
    ``val``: chelsea and coffee, held out), the same for a given ``seed`` on any machine."""
    if split not in SPLITS:
        raise ValueError(f"synthetic clips: split must be train or val, got {split!r}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # frames of 192 px: threads gain nothing, and on a busy machine their
    try:  # barriers made the 600 training frames take 77 s instead of 3.6 s (2-core EPYC, load 4)
        return _render_split(split, scale, degradation, seed)
    finally:
        torch.set_num_threads(threads)


def _render_split(split: str, scale: int, degradation: str, seed: int) -> list[Clip]:
    per_photo, frames, side = SPLITS[split]
    side -= side % scale
    clips = []
    for p, name in enumerate(SAMPLE_SPLITS[split]):
        img, _ = load_rgb(sample_dir() / name)
        photo = torch.from_numpy(img.transpose(2, 0, 1).copy()).float()
        for c in range(per_photo):
            g = torch.Generator().manual_seed(derived_seed(seed, 0xC11D, p, c))
            path = _trajectory(g, frames, side, img.shape[:2])
            gt = torch.stack([_render(photo, a, b, side) for a, b in path])
            lr = side // scale
            fwd = torch.stack([_lr_flow(path[t], path[t + 1], lr, scale) for t in range(frames - 1)])
            bwd = torch.stack([_lr_flow(path[t + 1], path[t], lr, scale) for t in range(frames - 1)])
            clips.append(Clip(f"{name.rsplit('.', 1)[0]}_{c}", gt, degrade(gt, scale, degradation), fwd, bwd))
    return clips
