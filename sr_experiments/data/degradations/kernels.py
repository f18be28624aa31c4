"""Blur kernels of Real-ESRGAN's degradation model, batched on torch and drawn from a ``torch.Generator``.

The kernels and their distributions are BasicSR's ``basicsr/data/degradations.py``
(``random_mixed_kernels``, ``bivariate_Gaussian``, ``bivariate_generalized_Gaussian``,
``bivariate_plateau``, ``circular_lowpass_kernel``) and Real-ESRGAN's
``realesrgan/data/realesrgan_dataset.py`` (random odd size 7..21, zero-padded to 21; sinc cut-off
ranges). Hand-written: BasicSR draws from numpy's global RNG, one kernel at a time in numpy on the
CPU, and kornia's kernels (``get_gaussian_kernel2d`` ...) have no generalized/plateau/sinc shapes
nor random sizes. Here a batch of kernels is computed at once on one grid: a k x k kernel
zero-padded to the full size equals the full-size kernel masked to its central k x k window and
renormalised, so kernels of different sizes share a tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


def uniform(g: torch.Generator, low: float, high: float, n: int = 1) -> torch.Tensor:
    """``n`` floats (float64, CPU) uniform in [low, high) from ``g``."""
    return torch.rand(n, generator=g, dtype=torch.float64) * (high - low) + low


def choice(g: torch.Generator, probs: Sequence[float], n: int = 1) -> torch.Tensor:
    """``n`` indices drawn with probabilities ``probs`` (need not sum to 1) from ``g``."""
    p = torch.as_tensor(list(probs), dtype=torch.float64)
    return torch.multinomial(p, n, replacement=True, generator=g)


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return xx, yy


def _window(sizes: torch.Tensor, size: int) -> torch.Tensor:
    """(B, size, size) masks of the central ``sizes[b]`` x ``sizes[b]`` window."""
    xx, yy = _grid(size)
    half = (sizes.to(torch.float64) - 1).view(-1, 1, 1) / 2
    return (xx.abs() <= half) & (yy.abs() <= half)


def _normalise(k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    k = torch.where(mask, k, torch.zeros_like(k))
    return k / k.sum(dim=(-2, -1), keepdim=True)


def anisotropic_gaussians(
    sizes: torch.Tensor, sigma_x: torch.Tensor, sigma_y: torch.Tensor, theta: torch.Tensor,
    beta: torch.Tensor, shape: torch.Tensor, size: int,
) -> torch.Tensor:
    """(B, size, size) kernels; ``shape`` 0 Gaussian, 1 generalized Gaussian exp(-0.5 q^beta),
    2 plateau 1 / (q^beta + 1), with q = x^T Sigma^-1 x and Sigma = R(theta) diag(sx^2, sy^2) R^T."""
    xx, yy = _grid(size)
    c, s = torch.cos(theta).view(-1, 1, 1), torch.sin(theta).view(-1, 1, 1)
    # Coordinates in the kernel's principal axes: q = u^2 / sx^2 + v^2 / sy^2.
    u, v = c * xx + s * yy, -s * xx + c * yy
    q = (u / sigma_x.view(-1, 1, 1)) ** 2 + (v / sigma_y.view(-1, 1, 1)) ** 2
    b = beta.view(-1, 1, 1)
    shp = shape.view(-1, 1, 1)
    k = torch.where(shp == 0, torch.exp(-0.5 * q),
                    torch.where(shp == 1, torch.exp(-0.5 * q.pow(b)), 1.0 / (q.pow(b) + 1.0)))
    return _normalise(k, _window(sizes, size))


def sinc_kernels(sizes: torch.Tensor, omega_c: torch.Tensor, size: int) -> torch.Tensor:
    """(B, size, size) circular low-pass (2-D sinc) kernels with cut-off ``omega_c`` (BasicSR's
    ``circular_lowpass_kernel``: omega J1(omega r) / (2 pi r), omega^2 / (4 pi) at the centre)."""
    xx, yy = _grid(size)
    r = torch.sqrt(xx**2 + yy**2)
    w = omega_c.view(-1, 1, 1)
    safe_r = torch.where(r == 0, torch.ones_like(r), r)
    k = w * torch.special.bessel_j1(w * safe_r) / (2 * math.pi * safe_r)
    k = torch.where(r == 0, w**2 / (4 * math.pi), k)
    return _normalise(k, _window(sizes, size))


def pulse(batch: int, size: int) -> torch.Tensor:
    """(B, size, size) identity kernels (Real-ESRGAN's ``pulse_tensor`` when no final sinc is drawn)."""
    k = torch.zeros(batch, size, size, dtype=torch.float64)
    k[:, size // 2, size // 2] = 1.0
    return k


def odd_sizes(g: torch.Generator, n: int, low: int, high: int) -> torch.Tensor:
    """``n`` odd kernel sizes uniform over ``low, low + 2, ..., high`` (Real-ESRGAN's ``kernel_range``)."""
    return low + 2 * torch.randint(0, (high - low) // 2 + 1, (n,), generator=g)


def _beta(g: torch.Generator, beta_range: Sequence[float], n: int) -> torch.Tensor:
    """BasicSR's beta: half the time below 1 (from beta_range[0]), half above (to beta_range[1])."""
    below = torch.rand(n, generator=g, dtype=torch.float64) < 0.5
    lo = uniform(g, beta_range[0], 1.0, n)
    hi = uniform(g, 1.0, beta_range[1], n)
    return torch.where(below, lo, hi)


def random_blur_kernels(
    g: torch.Generator,
    n: int,
    size: int = 21,
    min_size: int = 7,
    kernel_list: Sequence[str] = KERNEL_TYPES,
    kernel_prob: Sequence[float] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
    sinc_prob: float = 0.1,
    blur_sigma: Sequence[float] = (0.2, 3.0),
    betag_range: Sequence[float] = (0.5, 4.0),
    betap_range: Sequence[float] = (1.0, 2.0),
) -> tuple[torch.Tensor, list[dict]]:
    """``n`` kernels of Real-ESRGAN's first (or second) blur: (n, size, size) float64 and, for each,
    the parameters drawn. The same number of values is drawn whatever is chosen, so switching a
    kernel type off does not shift the draws of the rest of a pipeline."""
    unknown = set(kernel_list) - set(KERNEL_TYPES)
    if unknown:
        raise ValueError(f"degradation kernel_list: unknown {sorted(unknown)} (known: {', '.join(KERNEL_TYPES)})")
    if size % 2 == 0 or min_size % 2 == 0 or not 1 <= min_size <= size:
        raise ValueError(f"degradation kernel sizes must be odd with 1 <= min <= max, got {min_size}..{size}")
    sizes = odd_sizes(g, n, min_size, size)
    kind = torch.as_tensor([KERNEL_TYPES.index(kernel_list[i]) for i in choice(g, kernel_prob, n).tolist()])
    use_sinc = torch.rand(n, generator=g, dtype=torch.float64) < sinc_prob
    # Sinc cut-off: [pi/3, pi] for kernels under 13 pixels, [pi/5, pi] otherwise (realesrgan_dataset.py).
    omega = uniform(g, 0.0, 1.0, n)
    omega = torch.where(sizes < 13, math.pi / 3 + omega * (math.pi - math.pi / 3), math.pi / 5 + omega * (math.pi - math.pi / 5))
    sx, sy = uniform(g, *blur_sigma, n), uniform(g, *blur_sigma, n)
    theta = uniform(g, -math.pi, math.pi, n)
    beta_g, beta_p = _beta(g, betag_range, n), _beta(g, betap_range, n)
    iso = kind % 2 == 0
    sy, theta = torch.where(iso, sx, sy), torch.where(iso, torch.zeros_like(theta), theta)
    shape = kind // 2  # 0 Gaussian, 1 generalized, 2 plateau
    beta = torch.where(shape == 1, beta_g, torch.where(shape == 2, beta_p, torch.ones_like(beta_g)))
    k = anisotropic_gaussians(sizes, sx, sy, theta, beta, shape, size)
    k = torch.where(use_sinc.view(-1, 1, 1), sinc_kernels(sizes, omega, size), k)
    params = []
    for i in range(n):
        if use_sinc[i]:
            params.append({"type": "sinc", "size": int(sizes[i]), "omega_c": float(omega[i])})
        else:
            p = {"type": KERNEL_TYPES[int(kind[i])], "size": int(sizes[i]), "sigma_x": float(sx[i]),
                 "sigma_y": float(sy[i]), "theta": float(theta[i])}
            if shape[i] > 0:
                p["beta"] = float(beta[i])
            params.append(p)
    return k, params


def random_final_sinc(g: torch.Generator, n: int, prob: float, size: int = 21, min_size: int = 7) -> tuple[torch.Tensor, list[dict]]:
    """Real-ESRGAN's final sinc filter: with probability ``prob`` a sinc of random size and cut-off
    in [pi/3, pi], else the identity (pulse)."""
    sizes = odd_sizes(g, n, min_size, size)
    omega = uniform(g, math.pi / 3, math.pi, n)
    use = torch.rand(n, generator=g, dtype=torch.float64) < prob
    k = torch.where(use.view(-1, 1, 1), sinc_kernels(sizes, omega, size), pulse(n, size))
    params = [{"type": "sinc", "size": int(sizes[i]), "omega_c": float(omega[i])} if use[i] else {"type": "pulse"}
              for i in range(n)]
    return k, params
