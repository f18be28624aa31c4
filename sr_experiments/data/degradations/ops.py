"""Batched degradation operations on (B, 3, H, W) float images in [0, 1], on their device.

Filtering and JPEG are kornia's (``filter2d`` with per-sample kernels, reflect border as BasicSR's
``filter2D``; ``jpeg_codec_differentiable``). Hand-written, each a few lines: the noise models
(BasicSR's ``random_add_gaussian_noise_pt`` / ``random_add_poisson_noise_pt``: kornia's
``RandomGaussianNoise`` has no per-sample sigma nor gray noise, and it has no Poisson noise) and
USM sharpening (BasicSR's ``USMSharp``: a thresholded, soft-masked unsharp mask kornia lacks).
Every random tensor comes from the generator passed in, on the images' device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from kornia.enhance import jpeg_codec_differentiable
from kornia.filters import filter2d, gaussian_blur2d

RESIZE_MODES = ("area", "bilinear", "bicubic")


def blur(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Each image filtered by its own kernel ((B, k, k)), reflect-padded (replicate where the image
    is too small to reflect half a kernel), same size out."""
    border = "reflect" if min(x.shape[-2:]) > kernels.shape[-1] // 2 else "replicate"
    return filter2d(x, kernels.to(x.device, x.dtype), border_type=border)


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """``F.interpolate`` as Real-ESRGAN calls it (no antialias: its aliasing is part of the model)."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"degradation resize mode {mode!r}: use one of {', '.join(RESIZE_MODES)}")
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode=mode)


def gaussian_noise(x: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Additive Gaussian noise, std ``sigma[b]`` (on the 0..1 scale); where ``gray[b]``, one noise
    plane shared by the three channels. Clipped to [0, 1]."""
    b, c, h, w = x.shape
    colour = torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)
    mono = torch.randn((b, 1, h, w), generator=g, device=x.device, dtype=x.dtype).expand(b, c, h, w)
    noise = torch.where(gray.to(x.device).view(b, 1, 1, 1), mono, colour) * sigma.to(x.device, x.dtype).view(b, 1, 1, 1)
    return (x + noise).clamp(0, 1)


def _poisson(img: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Poisson noise of an image quantised to 8 bits, at 2^ceil(log2(#levels)) photons per unit
    (BasicSR's ``generate_poisson_noise_pt``)."""
    img = (img * 255).round().clamp(0, 255) / 255
    levels = torch.tensor([torch.unique(i).numel() for i in img], device=img.device, dtype=img.dtype)
    vals = (2 ** torch.ceil(torch.log2(levels))).view(-1, 1, 1, 1)
    return torch.poisson(img * vals, generator=g) / vals - img


def poisson_noise(x: torch.Tensor, scale: torch.Tensor, gray: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Poisson (shot) noise times ``scale[b]``; where ``gray[b]``, the noise of the luminance on all
    channels. Clipped to [0, 1]. Both noises are drawn for every image (a fixed number of draws)."""
    b, c, h, w = x.shape
    colour = _poisson(x, g)
    mono = _poisson(rgb_to_grayscale(x), g).expand(b, c, h, w)
    noise = torch.where(gray.to(x.device).view(b, 1, 1, 1), mono, colour) * scale.to(x.device, x.dtype).view(b, 1, 1, 1)
    return (x + noise).clamp(0, 1)


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG compression and decompression at per-image ``quality`` (kornia's codec: 4:2:0 chroma,
    the standard quantisation tables scaled by quality, 8x8 DCT blocks). Its rounding is a
    differentiable polynomial (within 1/8 of a quantisation step of true rounding), where
    Real-ESRGAN's ``DiffJPEG(differentiable=False)`` rounds exactly: the blocks and ringing are the same."""
    q = quality.to(x.device, x.dtype).reshape(-1)
    return jpeg_codec_differentiable(x.clamp(0, 1), q).clamp(0, 1)


def usm_sharpen(x: torch.Tensor, weight: float = 0.5, threshold: float = 10, radius: int = 50) -> torch.Tensor:
    """BasicSR's ``USMSharp``: the unsharp mask (a Gaussian of ``radius`` taps, made odd, with
    OpenCV's default sigma for that size: 51 taps, sigma 8) applied where the detail exceeds
    ``threshold`` / 255, through a soft mask."""
    size = radius + 1 if radius % 2 == 0 else radius
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8  # cv2.getGaussianKernel(size, 0)
    kernel = (size, size)
    # Reflecting needs more pixels than half the kernel: smaller images (under 26 px) replicate, as filter() does.
    border = "reflect" if min(x.shape[-2:]) > size // 2 else "replicate"
    blurred = gaussian_blur2d(x, kernel, (sigma, sigma), border_type=border)
    residual = x - blurred
    mask = (residual.abs() * 255 > threshold).to(x.dtype)
    soft = gaussian_blur2d(mask, kernel, (sigma, sigma), border_type=border)
    sharp = (x + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * x


def quantise(x: torch.Tensor) -> torch.Tensor:
    """To the 8-bit grid, as a saved LR image would be."""
    return (x * 255).round().clamp(0, 255) / 255
