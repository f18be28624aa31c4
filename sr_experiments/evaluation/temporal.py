"""tOF: the temporal-consistency metric of TecoGAN (Chu et al., "Learning Temporal Coherence via
Self-Supervision for GAN-based Video Generation", ACM TOG 2020), beside PSNR/SSIM on video sets.

tOF compares how the SR video moves with how the GT video moves: for consecutive frames, the dense
optical flow of the SR pair against the flow of the GT pair. It is low when the output keeps the
GT's motion (and stays low for an output that is off by a constant), high when details flicker or
swim. Lower is better. Defined by its authors' code, which we follow (github.com/thunil/TecoGAN,
``metrics.py``, the ``"tOF" in keys`` branch of its frame loop, and its ``crop_8x8``):

- frames: the 8-bit RGB outputs (the PNGs it reads), to gray by ``cv2.cvtColor(RGB2GRAY)``;
- the first and last ``cutfr = 2`` frames of each clip are left out; consecutive pairs of the rest;
- flow by OpenCV Farneback, ``calcOpticalFlowFarneback(prev, next, None, 0.5, 3, 15, 3, 5, 1.2, 0)``
  (pyramid scale 0.5, 3 levels, window 15, 3 iterations, poly_n 5, poly_sigma 1.2, no flags);
- both flows centre-cropped by ``crop_8x8`` (a multiple of 32 pixels per side, at least 16 fewer
  than the frame: Vid4's 576 x 720 -> 544 x 704);
- per pixel the Euclidean length of the flow difference (its comment says "l1 vector norm"; the
  code takes the square root of the sum of squares), the mean over pixels: one value per pair;
- a clip's tOF is the mean over its pairs; a set's the mean over clips (its "folder avg", the way
  our PSNR rows average: frames, then clips).

It reports tOF unscaled (``tOF %02.2f``) and tLP x100 (its key ``tLP100``); our column is unscaled
as well. Where the authors' rules leave nothing to measure (our tests' clips of a few frames of
40 pixels, never a benchmark's), we keep the most they allow and say so here: fewer frames are cut
so that one pair remains (``cut = min(2, (T - 2) // 2)``), and a frame under 48 pixels, which
``crop_8x8`` would crop to nothing, is measured uncropped. A one-frame clip has no tOF (NaN).
"""

from __future__ import annotations

import numpy as np
import torch

from sr_experiments.evaluation.metrics import quantize

CUT_FRAMES = 2  # metrics.py ``cutfr``: frames left out at each end of a clip
# metrics.py's calcOpticalFlowFarneback arguments after (prev, next, flow=None), in OpenCV's order:
# pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags.
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)
# What results.json records with a tOF column.
TOF_PROTOCOL = {
    "definition": "TecoGAN (Chu et al., TOG 2020), github.com/thunil/TecoGAN metrics.py",
    "frames": "8-bit RGB to gray by cv2.cvtColor(RGB2GRAY); first and last 2 frames of a clip left out",
    "flow": "cv2.calcOpticalFlowFarneback(prev, next, None, 0.5, 3, 15, 3, 5, 1.2, 0) on SR and GT pairs",
    "distance": "per-pixel Euclidean length of the flow difference, mean over the crop_8x8 centre crop",
    "averaging": "mean over a clip's consecutive pairs, then over clips",
    "scaling": "unscaled (as metrics.py prints it); lower is better",
}


def gray_frames(frames: torch.Tensor) -> list[np.ndarray]:
    """(T, 3, H, W) RGB in [0, 1] -> T (H, W) uint8 gray frames: the 8-bit values a saved PNG holds,
    converted as TecoGAN does (OpenCV's RGB2GRAY weights and rounding)."""
    import cv2

    rgb = quantize(frames.detach().float().cpu()).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in rgb]


def flow_crop(height: int, width: int) -> tuple[slice, slice]:
    """TecoGAN's ``crop_8x8`` centre crop of a (height, width) flow: each side the largest multiple
    of 32 at least 16 pixels under it; a side it would crop to nothing (under 48) is kept whole."""

    def side(n: int) -> slice:
        kept = (n // 32) * 32
        while kept > n - 16:
            kept -= 32
        if kept <= 0:
            return slice(0, n)
        start = (n - kept) // 2
        return slice(start, start + kept)

    return side(height), side(width)


def farneback(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 flow from ``prev`` to ``nxt`` (uint8 gray) with TecoGAN's parameters."""
    import cv2

    return cv2.calcOpticalFlowFarneback(prev, nxt, None, *FARNEBACK)


def tof_pairs(sr: torch.Tensor, gt: torch.Tensor, cut: int = CUT_FRAMES) -> np.ndarray:
    """tOF of each consecutive pair of a clip: ``sr`` and ``gt`` are (T, 3, H, W) RGB in [0, 1]."""
    if sr.shape != gt.shape or sr.dim() != 4:
        raise ValueError(f"tOF needs SR and GT clips of one (T, 3, H, W) shape, got {tuple(sr.shape)} and {tuple(gt.shape)}")
    n = len(gt)
    cut = max(0, min(int(cut), (n - 2) // 2))  # short clips: cut less, so that one pair remains
    sr_gray, gt_gray = gray_frames(sr[cut : n - cut]), gray_frames(gt[cut : n - cut])
    rows, cols = flow_crop(*gt_gray[0].shape)
    values = []
    for t in range(1, len(gt_gray)):
        diff = farneback(gt_gray[t - 1], gt_gray[t]) - farneback(sr_gray[t - 1], sr_gray[t])
        diff = diff[rows, cols].astype(np.float64)
        values.append(float(np.sqrt((diff * diff).sum(-1)).mean()))
    return np.asarray(values, dtype=np.float64)


def tof(sr: torch.Tensor, gt: torch.Tensor, cut: int = CUT_FRAMES) -> float:
    """A clip's tOF: the mean over its consecutive pairs (lower is better; NaN for one frame)."""
    pairs = tof_pairs(sr, gt, cut)
    return float(pairs.mean()) if len(pairs) else float("nan")
