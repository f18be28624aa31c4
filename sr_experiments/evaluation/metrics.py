"""PSNR / SSIM exactly as SR papers report them.

The protocol (a contract pinned by golden tests):

1. the SR output is clamped to [0, 1] and rounded to 8 bits (what a saved PNG holds);
2. both images go to the BT.601 luma ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (RGB in
   [0, 1], Y in [16, 235], not rounded), as MATLAB's ``rgb2ycbcr``. An image whose *file* is
   single-channel (Set14 ``bridge``) is measured on its gray values instead, because the
   reference MATLAB scripts only call ``rgb2ycbcr`` when ``size(im, 3) == 3``; a 3-channel file
   with equal channels (Set14 ``man``) still gets the Y formula. Both are needed to reproduce
   the published bicubic Set14 numbers (either rule alone is 0.09-0.10 dB off);
3. ``border`` pixels (= scale) are shaved from every side;
4. PSNR (peak 255) and SSIM (Wang et al.: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03,
   'valid' filtering) are computed per image and averaged over images, never pooled.

Hand-written rather than torchmetrics' functional PSNR/SSIM because those pad the SSIM window
('same' output) and have no notion of the Y-channel/shave/quantise steps; the aggregation is a
torchmetrics ``Metric`` so it synchronises under DDP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = [
    "quantize",
    "rgb_to_y",
    "protocol_luma",
    "shave",
    "sr_psnr_ssim",
    "protocol_scores",
    "psnr_y",
    "ssim_y",
    "SRMetrics",
]

_Y_WEIGHTS = (65.481, 128.553, 24.966)  # BT.601 on [0, 1] RGB, output scale 0..255
_GRAY_WEIGHTS = tuple(w / 219.0 for w in _Y_WEIGHTS)  # same luma, full range: gray -> itself


def quantize(img: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> float holding the 8-bit values 0..255 (rounded half up, as ``im2uint8``)."""
    return torch.floor(img.clamp(0, 1) * 255 + 0.5)


def rgb_to_y(img255: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB on the 0..255 scale -> (N, H, W) BT.601 Y in [16, 235] (float64)."""
    x = img255.to(torch.float64) / 255.0
    r, g, b = x.unbind(dim=-3)
    return 16.0 + _Y_WEIGHTS[0] * r + _Y_WEIGHTS[1] * g + _Y_WEIGHTS[2] * b


def _gray(img255: torch.Tensor) -> torch.Tensor:
    x = img255.to(torch.float64)
    r, g, b = x.unbind(dim=-3)
    return _GRAY_WEIGHTS[0] * r + _GRAY_WEIGHTS[1] * g + _GRAY_WEIGHTS[2] * b


def protocol_luma(
    sr: torch.Tensor, gt: torch.Tensor, gray: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantise and convert a batch to the channel that is measured: Y, or gray for gray files.

    ``sr`` and ``gt`` are (N, 3, H, W) in [0, 1]; ``gray`` (N,) bool marks images whose source
    file was single-channel (default: none). Returns two (N, H, W) float64 tensors on the 0..255
    scale.
    """
    sr255, gt255 = quantize(sr), quantize(gt)
    if gray is None:
        gray = torch.zeros(len(sr), dtype=torch.bool)
    gray = torch.as_tensor(gray, device=sr.device).reshape(-1, 1, 1)
    sr_l = torch.where(gray, _gray(sr255), rgb_to_y(sr255))
    gt_l = torch.where(gray, _gray(gt255), rgb_to_y(gt255))
    return sr_l, gt_l


def shave(img: torch.Tensor, border: int) -> torch.Tensor:
    if border <= 0:
        return img
    return img[..., border:-border, border:-border]


def psnr_y(sr_l: torch.Tensor, gt_l: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (N,) of two (N, H, W) tensors on the 0..255 scale (inf when identical)."""
    mse = (sr_l - gt_l).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(255.0**2 / mse)


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    # The 2-D Gaussian is separable: two 11-tap passes instead of 121 taps (10x faster, same sums).
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def ssim_y(sr_l: torch.Tensor, gt_l: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (N,) of two (N, H, W) tensors on the 0..255 scale, 'valid' filtering."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = _gaussian_1d().to(sr_l.device)
    x, y = sr_l.to(torch.float64), gt_l.to(torch.float64)
    if min(x.shape[-2:]) < g.numel():
        raise ValueError(f"SSIM needs images of at least 11x11 pixels after shaving, got {tuple(x.shape[-2:])}")
    stats = _filter_valid(torch.stack([x, y, x * x, y * y, x * y], dim=1), g)
    mu_x, mu_y, exx, eyy, exy = stats.unbind(1)
    sxx, syy, sxy = exx - mu_x**2, eyy - mu_y**2, exy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return ssim_map.flatten(1).mean(1)


def sr_psnr_ssim(
    sr: torch.Tensor, gt: torch.Tensor, border: int, gray: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole protocol on a batch of (N, 3, H, W) [0, 1] images: per-image (PSNR, SSIM)."""
    if sr.shape != gt.shape:
        raise ValueError(f"SR output {tuple(sr.shape)} and HR {tuple(gt.shape)} differ in shape")
    sr_l, gt_l = protocol_luma(sr.detach(), gt, gray)
    sr_l, gt_l = shave(sr_l, border), shave(gt_l, border)
    return psnr_y(sr_l, gt_l), ssim_y(sr_l, gt_l)


def protocol_scores(
    out: torch.Tensor, gt: torch.Tensor, scale: int, gray: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """How a network's output is scored, shared by eval.py (``evaluation/protocol.py``) and training
    validation (``training/validation.py``): the output in fp32 clamped to [0, 1] (what is saved),
    then the protocol with a border of ``scale``. Returns (clamped output, PSNR, SSIM), per image."""
    sr = out.float().clamp(0, 1)
    psnr, ssim = sr_psnr_ssim(sr, gt, int(scale), gray)
    return sr, psnr, ssim


class SRMetrics(Metric):
    """Image-averaged PSNR and SSIM under the SR protocol, exact under DDP.

    Per-image values are kept with the dataset index of each image, so the duplicates that a
    ``DistributedSampler`` pads the last batch with are counted once after synchronisation.
    ``compute()`` returns ``{"psnr": ..., "ssim": ..., "images": ...}``.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, border: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border = border
        self.add_state("psnr", default=[], dist_reduce_fx="cat")
        self.add_state("ssim", default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")

    def update(
        self,
        sr: torch.Tensor,
        gt: torch.Tensor,
        index: torch.Tensor | None = None,
        gray: torch.Tensor | None = None,
        scores: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """``scores``: the per-image (PSNR, SSIM) of ``sr`` already measured (``protocol_scores``)."""
        p, s = scores if scores is not None else sr_psnr_ssim(sr, gt, self.border, gray)
        if index is None:  # no dataset index: every image counts (assumes no duplicates)
            index = -1 - torch.arange(len(p), device=p.device) - sum(len(i) for i in self.index)
        self.psnr.append(p)
        self.ssim.append(s)
        self.index.append(torch.as_tensor(index, device=p.device).reshape(-1).long())

    def per_image(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(index, psnr, ssim) of each distinct image, sorted by index."""
        idx, p, s = dim_zero_cat(self.index), dim_zero_cat(self.psnr), dim_zero_cat(self.ssim)
        uniq, inverse = torch.unique(idx, return_inverse=True)
        first = torch.full((len(uniq),), len(idx), dtype=torch.long, device=idx.device)
        first.scatter_reduce_(0, inverse, torch.arange(len(idx), device=idx.device), reduce="amin")
        return uniq, p[first], s[first]

    def compute(self) -> dict[str, torch.Tensor]:
        if len(self.index) == 0:
            raise RuntimeError("SRMetrics.compute() called before any update()")
        _, p, s = self.per_image()
        return {"psnr": p.mean(), "ssim": s.mean(), "images": torch.tensor(len(p))}
