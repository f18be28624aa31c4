"""BSRGAN's shuffled degradation (Zhang et al., "Designing a Practical Degradation Model for Deep
Blind Image Super-Resolution", ICCV 2021), batched on the images' device.

The process and its defaults are ``degradation_bsrgan`` of cszn/BSRGAN (and KAIR)
``utils/utils_blindsr.py``: with probability ``scale2_prob`` (x4 only) a first x2 downscale; then
two blurs (isotropic or anisotropic Gaussian, odd sizes 7..25), a random downscale (resize by
1 / U(1, 2 s), or a Gaussian blur + nearest subsampling), the resize to the LR size, Gaussian
noise (colour, gray or channel-correlated, level U{2..25}) and JPEG (probability 0.9), applied in
a random order (the random downscale kept before the resize to the LR size); then a final JPEG
at quality U{30..95}. BSRGAN's camera-ISP noise needs a trained ISP model and is left out, as
its code does without one. As in ``realesrgan.py``, sizes, modes and the order are drawn per batch
and kernels, noise levels and JPEG qualities per image, all from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sr_experiments.data.degradations import kernels as K
from sr_experiments.data.degradations import ops
from sr_experiments.data.degradations.base import Degraded, check_prob, check_range, device_generator
from sr_experiments.imaging.imresize import imresize

# cv2's INTER_LINEAR, INTER_CUBIC, INTER_AREA (BSRGAN's random.choice([1, 2, 3])).
CV2_MODES = ("bilinear", "bicubic", "area")
STEPS = ("blur1", "blur2", "downsample", "resize_lr", "noise", "jpeg")


def _gaussians(sizes: torch.Tensor, sigma_x: torch.Tensor, sigma_y: torch.Tensor, theta: torch.Tensor,
               size: int) -> torch.Tensor:
    shape = torch.zeros_like(sizes)
    return K.anisotropic_gaussians(sizes, sigma_x.clamp_min(1e-3), sigma_y.clamp_min(1e-3), theta,
                                   torch.ones_like(sigma_x), shape, size)


def _shifted_gaussians(sigma: torch.Tensor, sf: int, size: int) -> torch.Tensor:
    """Isotropic Gaussians of ``sigma`` (one per image) shifted by (sf - 1) / 2 (BSRGAN's
    shift_pixel): nearest subsampling by ``sf`` after them centres each LR pixel on the HR pixels
    it stands for."""
    grid = torch.arange(size, dtype=torch.float64) - (size - 1) / 2 - (sf - 1) / 2
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    shifted = torch.exp(-(xx**2 + yy**2) / (2 * sigma.view(-1, 1, 1) ** 2))
    return shifted / shifted.sum(dim=(-2, -1), keepdim=True)


@dataclass
class _Draws:
    """One batch's random choices: the x2 first step, the step order (names), both blurs' kernels and
    parameters, the downscale, the LR resize mode, noise levels and kinds, JPEG switches and qualities."""

    first_x2: bool
    x2_matlab: bool
    x2_mode: str
    sf: int  # the scale left after the x2 first step
    order: list[str]
    k1: torch.Tensor
    p1: list[dict]
    k2: torch.Tensor
    p2: list[dict]
    down_resize: bool
    down_factor: float
    down_mode: str
    down_sigma: torch.Tensor
    lr_mode: str
    level: torch.Tensor
    kind: torch.Tensor
    jpeg_on: torch.Tensor
    q_mid: torch.Tensor
    q_end: torch.Tensor


class BSRGANDegradation:
    """``degradation=bsrgan``: HR batch -> LR batch, see the module docstring. Each ``*_on`` key
    switches a step off (the identity); ``shuffle: false`` applies them in BSRGAN's listed order."""

    name = "bsrgan"
    KERNEL = 25  # 2 * randint(2, 11) + 3 <= 25

    def __init__(
        self,
        scale: int,
        shuffle: bool = True,
        scale2_prob: float = 0.25,
        blur: bool = True,
        downsample: bool = True,
        noise: bool = True,
        noise_range: Sequence[int] = (2, 25),
        jpeg: bool = True,
        jpeg_prob: float = 0.9,
        jpeg_range: Sequence[int] = (30, 95),
        final_jpeg: bool = True,
        usm_gt: bool = False,
    ) -> None:
        self.scale = int(scale)
        self.shuffle, self.scale2_prob = bool(shuffle), check_prob(scale2_prob, "degradation.scale2_prob")
        self.blur, self.downsample, self.noise, self.jpeg, self.final_jpeg = bool(blur), bool(downsample), bool(noise), bool(jpeg), bool(final_jpeg)
        self.noise_range = check_range(noise_range, "degradation.noise_range")
        self.jpeg_prob = check_prob(jpeg_prob, "degradation.jpeg_prob")
        self.jpeg_range = check_range(jpeg_range, "degradation.jpeg_range", low=1)
        self.usm_gt = bool(usm_gt)

    def _blur_kernels(self, g: torch.Generator, n: int, sf: int) -> tuple[torch.Tensor, list[dict]]:
        """BSRGAN's ``add_blur``: half anisotropic (variances U(0, 4 + sf)), half isotropic
        (sigma U(0, 2 + 0.2 sf)), sizes 2 * U{2..11} + 3."""
        wd2, wd = 4.0 + sf, 2.0 + 0.2 * sf
        aniso = torch.rand(n, generator=g, dtype=torch.float64) < 0.5
        sizes_a = 2 * torch.randint(2, 12, (n,), generator=g) + 3
        sizes_i = 2 * torch.randint(2, 12, (n,), generator=g) + 3
        l1, l2 = K.uniform(g, 0, wd2, n), K.uniform(g, 0, wd2, n)
        theta = K.uniform(g, 0, math.pi, n)
        sigma = K.uniform(g, 0, wd, n)
        sizes = torch.where(aniso, sizes_a, sizes_i)
        sx, sy = torch.where(aniso, l1.sqrt(), sigma), torch.where(aniso, l2.sqrt(), sigma)
        th = torch.where(aniso, theta, torch.zeros_like(theta))
        k = _gaussians(sizes, sx, sy, th, self.KERNEL)
        params = [{"type": "aniso" if aniso[i] else "iso", "size": int(sizes[i]), "sigma_x": float(sx[i]),
                   "sigma_y": float(sy[i]), "theta": float(th[i])} for i in range(n)]
        return k, params

    def _correlated_noise(self, x: torch.Tensor, g: torch.Generator, dg: torch.Generator) -> torch.Tensor:
        """Channel-correlated Gaussian noise of covariance |L^2 U^T D U| (BSRGAN's third noise kind),
        one covariance per image; drawn as z @ A^T with A A^T = cov (eigen-decomposition)."""
        n = x.shape[0]
        level = self.noise_range[1] / 255.0
        d = torch.rand(n, 3, generator=g, dtype=torch.float64)
        u, _ = torch.linalg.qr(torch.rand(n, 3, 3, generator=g, dtype=torch.float64))
        cov = (level**2 * u.transpose(1, 2) @ torch.diag_embed(d) @ u).abs()
        evals, evecs = torch.linalg.eigh(cov)
        a = evecs @ torch.diag_embed(evals.clamp_min(0).sqrt())
        z = torch.randn(x.shape, generator=dg, device=x.device, dtype=x.dtype)
        return torch.einsum("bij,bjhw->bihw", a.to(x.device, x.dtype), z)

    def _draw(self, g: torch.Generator, n: int) -> _Draws:
        """Every draw of a batch, in BSRGAN's fixed order, before any image work."""
        first_x2 = self.scale == 4 and bool(torch.rand(1, generator=g) < self.scale2_prob)
        x2_matlab = bool(torch.rand(1, generator=g) < 0.5)
        x2_mode = CV2_MODES[int(torch.randint(3, (1,), generator=g))]
        sf = 2 if first_x2 else self.scale
        order = torch.randperm(6, generator=g).tolist() if self.shuffle else list(range(6))
        i_down, i_lr = order.index(2), order.index(3)
        if i_down > i_lr:  # BSRGAN keeps the random downscale before the resize to the LR size
            order[i_down], order[i_lr] = order[i_lr], order[i_down]
        k1, p1 = self._blur_kernels(g, n, sf)
        k2, p2 = self._blur_kernels(g, n, sf)
        down_resize = bool(torch.rand(1, generator=g) < 0.75)
        down_factor = float(K.uniform(g, 1.0, 2.0 * sf))
        down_mode = CV2_MODES[int(torch.randint(3, (1,), generator=g))]
        down_sigma = K.uniform(g, 0.1, 0.6 * sf, n)
        lr_mode = CV2_MODES[int(torch.randint(3, (1,), generator=g))]
        noise_lo, noise_hi = int(self.noise_range[0]), int(self.noise_range[1])
        level = torch.randint(noise_lo, noise_hi + 1, (n,), generator=g).double() / 255.0
        kind = torch.rand(n, generator=g, dtype=torch.float64)  # > 0.6 colour, < 0.4 gray, else correlated
        jpeg_on = torch.rand(n, generator=g, dtype=torch.float64) < self.jpeg_prob
        q_lo, q_hi = int(self.jpeg_range[0]), int(self.jpeg_range[1])
        q_mid = torch.randint(q_lo, q_hi + 1, (n,), generator=g).double()
        q_end = torch.randint(q_lo, q_hi + 1, (n,), generator=g).double()
        return _Draws(first_x2, x2_matlab, x2_mode, sf, [STEPS[i] for i in order], k1, p1, k2, p2, down_resize,
                      down_factor, down_mode, down_sigma, lr_mode, level, kind, jpeg_on, q_mid, q_end)

    def _first_x2(self, x: torch.Tensor, d: _Draws) -> torch.Tensor:
        x = imresize(x, 0.5) if d.x2_matlab else ops.resize(x, (x.shape[-2] // 2, x.shape[-1] // 2), d.x2_mode)
        return x.clamp(0, 1)

    def _downsample(self, x: torch.Tensor, d: _Draws) -> torch.Tensor:
        """A resize by 1 / ``down_factor``, or the shifted Gaussian blur and every sf-th pixel."""
        if d.down_resize:
            size = (max(int(x.shape[-2] / d.down_factor), 1), max(int(x.shape[-1] / d.down_factor), 1))
            return ops.resize(x, size, d.down_mode).clamp(0, 1)
        return ops.blur(x, _shifted_gaussians(d.down_sigma, d.sf, self.KERNEL))[..., :: d.sf, :: d.sf].clamp(0, 1)

    def _add_noise(self, x: torch.Tensor, d: _Draws, g: torch.Generator, dg: torch.Generator) -> torch.Tensor:
        """Colour, gray or channel-correlated Gaussian noise per image (all three drawn, one kept)."""
        b = x.shape[0]
        lv = d.level.to(x.device, x.dtype).view(b, 1, 1, 1)
        colour = torch.randn(x.shape, generator=dg, device=x.device, dtype=x.dtype) * lv
        gray = torch.randn((b, 1, *x.shape[-2:]), generator=dg, device=x.device, dtype=x.dtype) * lv
        corr = self._correlated_noise(x, g, dg)
        kd = d.kind.to(x.device).view(b, 1, 1, 1)
        noise = torch.where(kd > 0.6, colour, torch.where(kd < 0.4, gray.expand_as(x), corr))
        return (x + noise).clamp(0, 1)

    def _step(self, name: str, x: torch.Tensor, d: _Draws, g: torch.Generator, dg: torch.Generator,
              lr_size: tuple[int, int]) -> torch.Tensor | None:
        """Step ``name`` applied to ``x``; None where its switch is off."""
        if name in ("blur1", "blur2") and self.blur:
            return ops.blur(x, d.k1 if name == "blur1" else d.k2)
        if name == "downsample" and self.downsample:
            return self._downsample(x, d)
        if name == "resize_lr":
            return ops.resize(x, lr_size, d.lr_mode).clamp(0, 1)
        if name == "noise" and self.noise:
            return self._add_noise(x, d, g, dg)
        if name == "jpeg" and self.jpeg:
            return torch.where(d.jpeg_on.to(x.device).view(-1, 1, 1, 1), ops.jpeg(x, d.q_mid), x)
        return None

    def _params(self, d: _Draws, applied: list[str], i: int) -> dict:
        """What image ``i`` went through, for ``Degraded.params``."""
        downsample = ({"resize": d.down_factor, "mode": d.down_mode} if d.down_resize
                      else {"gaussian_sigma": float(d.down_sigma[i]), "stride": d.sf})
        noise = {"level_255": float(d.level[i] * 255),
                 "kind": "colour" if d.kind[i] > 0.6 else "gray" if d.kind[i] < 0.4 else "correlated"}
        return {
            "order": applied, "blur1": d.p1[i] if self.blur else None, "blur2": d.p2[i] if self.blur else None,
            "downsample": downsample if self.downsample else None,
            "resize_lr_mode": d.lr_mode,
            "noise": noise if self.noise else None,
            "jpeg_quality": float(d.q_mid[i]) if self.jpeg and d.jpeg_on[i] else None,
            "final_jpeg_quality": float(d.q_end[i]) if self.final_jpeg else None,
        }

    @torch.no_grad()
    def __call__(self, hr: torch.Tensor, generator: torch.Generator) -> Degraded:
        n, _, h, w = hr.shape
        if h % self.scale or w % self.scale:
            raise ValueError(f"HR size {h}x{w} is not a multiple of scale {self.scale}")
        gt = ops.usm_sharpen(hr) if self.usm_gt else hr
        d = self._draw(generator, n)
        dg = device_generator(generator, hr.device)
        x, applied = gt, []
        if d.first_x2:
            x = self._first_x2(x, d)
            applied.append(f"x2 first ({'matlab bicubic' if d.x2_matlab else d.x2_mode})")
        for name in d.order:
            stepped = self._step(name, x, d, generator, dg, (h // self.scale, w // self.scale))
            if stepped is not None:
                x = stepped
                applied.append(name)
        if self.final_jpeg:
            x = ops.jpeg(x, d.q_end)
        kernels = {"blur1": d.k1, "blur2": d.k2} if self.blur else {}
        return Degraded(lq=ops.quantise(x), gt=gt, params=[self._params(d, applied, i) for i in range(n)],
                        kernels=kernels)
