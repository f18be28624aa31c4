"""MATLAB-compatible bicubic ``imresize``, vectorised in torch.

Written by hand because no library reproduces MATLAB: torch's ``interpolate(mode="bicubic")``
uses a=-0.75 and no antialiasing, PIL uses other edge handling, and OpenCV's ``INTER_CUBIC``
does neither antialiasing nor symmetric padding. The benchmark LR images (Set5 ``LR_bicubic``...)
were made by MATLAB, so published numbers are only reproducible with its exact algorithm:

* cubic kernel with a = -0.5, stretched by 1/scale when downscaling (antialiasing);
* sample positions ``u = x / scale + 0.5 * (1 - 1 / scale)`` (1-based MATLAB coordinates);
* out-of-range taps clamped to the edge pixel (MATLAB's ``min(max(1, indices), in_length)``),
  weights normalised to sum to one. Some Python ports (BasicSR's ``matlab_functions``) mirror
  the border instead (``border="symmetric"``); against the MATLAB-made ``LR_bicubic`` files of
  Set5/Set14 clamping reproduces 100% of pixels, mirroring 98.6-99.4% (the outermost rows and
  columns differ);
* one 1-D pass per axis, height first (MATLAB's order for equal scales); for ``uint8`` input the
  result of each pass is rounded half away from zero and saturated to [0, 255], as MATLAB does.

Each pass is a matrix product with a dense (out x in) weight matrix, so a whole batch of images
resizes in two matmuls.
"""

from __future__ import annotations

import math

import torch

__all__ = ["imresize", "resize_weights"]


def _cubic(x: torch.Tensor) -> torch.Tensor:
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


BORDERS = ("replicate", "symmetric")


def resize_weights(
    in_len: int,
    out_len: int,
    scale: float,
    antialias: bool = True,
    dtype: torch.dtype = torch.float64,
    border: str = "replicate",
) -> torch.Tensor:
    """Dense ``(out_len, in_len)`` matrix of MATLAB's bicubic resize along one axis."""
    if border not in BORDERS:
        raise ValueError(f"imresize border must be one of {BORDERS}, got {border!r}")
    kernel_width = 4.0
    stretch = antialias and scale < 1
    if stretch:
        kernel_width /= scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]  # 1-based
    dist = u[:, None] - idx
    w = scale * _cubic(scale * dist) if stretch else _cubic(dist)
    w = w / w.sum(dim=1, keepdim=True)
    zero_based = idx.long() - 1
    if border == "replicate":
        src = zero_based.clamp(0, in_len - 1)
    else:  # ..., 2, 1, | 1, 2, ..., n, | n, n-1, ...
        period = 2 * in_len
        mod = torch.remainder(zero_based, period)
        src = torch.where(mod < in_len, mod, period - 1 - mod)
    out = torch.zeros(out_len, in_len, dtype=torch.float64)
    out.scatter_add_(1, src, w)
    return out.to(dtype)


def _output_len(in_len: int, scale: float) -> int:
    return math.ceil(in_len * scale)


def imresize(
    img: torch.Tensor,
    scale: float | tuple[float, float] | None = None,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
    border: str = "replicate",
) -> torch.Tensor:
    """Resize ``img`` (``(..., H, W)``) exactly as MATLAB's ``imresize(img, scale, 'bicubic')``.

    Args:
        img: ``uint8`` (values 0..255, rounded after each pass, returns ``uint8``) or floating
            point (no rounding, differentiable, returns the input dtype) tensor whose last two
            dimensions are height and width; leading dimensions (batch, channels) are kept.
        scale: resize factor, e.g. ``1/4`` to downscale by 4 or ``2`` to upscale by 2, or one
            per axis ``(scale_h, scale_w)``. Output size is ``ceil(H * scale), ceil(W * scale)``.
        size: output ``(height, width)``. Alone, the scale per axis is ``out / in``, as in
            MATLAB; with ``scale`` too, ``scale`` places the samples and ``size`` only sets the
            output shape (as ZSSR's port of imresize: a 9-pixel father has a 5-pixel son at
            x2, which must come back at 9 pixels with the x2 sampling grid).
        antialias: stretch the kernel when downscaling (MATLAB's default).
        border: ``"replicate"`` (MATLAB) or ``"symmetric"`` (mirror, as some Python ports do).
    """
    if img.dim() < 2:
        raise ValueError(f"imresize expects a tensor with at least 2 dims (..., H, W), got shape {tuple(img.shape)}")
    if scale is None and size is None:
        raise ValueError("imresize needs `scale` or `size`")
    in_h, in_w = img.shape[-2:]
    if scale is not None:
        scale_h, scale_w = (float(scale), float(scale)) if isinstance(scale, (int, float)) else map(float, scale)
        if scale_h <= 0 or scale_w <= 0:
            raise ValueError(f"imresize scale must be positive, got {scale}")
        out_h, out_w = size if size is not None else (_output_len(in_h, scale_h), _output_len(in_w, scale_w))
    else:
        out_h, out_w = size
        scale_h, scale_w = out_h / in_h, out_w / in_w
    is_uint8 = img.dtype == torch.uint8
    if not is_uint8 and not img.is_floating_point():
        raise TypeError(f"imresize supports uint8 or floating point tensors, got {img.dtype}")
    # MATLAB computes in double; float64 keeps the uint8 path bit-faithful.
    work_dtype = torch.float64 if is_uint8 else img.dtype
    x = img.to(work_dtype)
    w_h = resize_weights(in_h, out_h, scale_h, antialias, work_dtype, border).to(img.device)
    w_w = resize_weights(in_w, out_w, scale_w, antialias, work_dtype, border).to(img.device)
    x = torch.matmul(w_h, x)  # height first: (out_h, in_h) @ (..., in_h, in_w)
    if is_uint8:
        x = _round_uint8(x)
    x = torch.matmul(x, w_w.transpose(0, 1))
    if is_uint8:
        return _round_uint8(x).to(torch.uint8)
    return x


def _round_uint8(x: torch.Tensor) -> torch.Tensor:
    # MATLAB's cast to uint8 saturates and rounds half away from zero (torch.round is half-even).
    return torch.floor(x.clamp(0, 255) + 0.5)
