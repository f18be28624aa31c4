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

    @torch.no_grad()
    def __call__(self, hr: torch.Tensor, generator: torch.Generator) -> Degraded:
        g = generator
        n, _, h, w = hr.shape
        if h % self.scale or w % self.scale:
            raise ValueError(f"HR size {h}x{w} is not a multiple of scale {self.scale}")
        gt = ops.usm_sharpen(hr) if self.usm_gt else hr
        # Every draw first, in a fixed order.
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
        level = torch.randint(int(self.noise_range[0]), int(self.noise_range[1]) + 1, (n,), generator=g).double() / 255.0
        kind = torch.rand(n, generator=g, dtype=torch.float64)  # > 0.6 colour, < 0.4 gray, else correlated
        jpeg_on = torch.rand(n, generator=g, dtype=torch.float64) < self.jpeg_prob
        q_mid = torch.randint(int(self.jpeg_range[0]), int(self.jpeg_range[1]) + 1, (n,), generator=g).double()
        q_end = torch.randint(int(self.jpeg_range[0]), int(self.jpeg_range[1]) + 1, (n,), generator=g).double()
        dg = device_generator(g, hr.device)
        # Nearest subsampling after a Gaussian shifted by (sf - 1) / 2 (BSRGAN's shift_pixel), so each
        # LR pixel is centred on the HR pixels it stands for.
        grid = torch.arange(self.KERNEL, dtype=torch.float64) - (self.KERNEL - 1) / 2 - (sf - 1) / 2
        yy, xx = torch.meshgrid(grid, grid, indexing="ij")
        shifted = torch.exp(-(xx**2 + yy**2) / (2 * down_sigma.view(-1, 1, 1) ** 2))
        shifted = shifted / shifted.sum(dim=(-2, -1), keepdim=True)

        x = gt
        applied: list[str] = []
        if first_x2:
            x = imresize(x, 0.5) if x2_matlab else ops.resize(x, (x.shape[-2] // 2, x.shape[-1] // 2), x2_mode)
            x = x.clamp(0, 1)
            applied.append(f"x2 first ({'matlab bicubic' if x2_matlab else x2_mode})")
        size_before_down = x.shape[-2:]
        lr_size = (h // self.scale, w // self.scale)
        for step in order:
            name = STEPS[step]
            if name in ("blur1", "blur2") and self.blur:
                x = ops.blur(x, k1 if name == "blur1" else k2)
            elif name == "downsample" and self.downsample:
                size_before_down = x.shape[-2:]
                if down_resize:
                    size = (max(int(x.shape[-2] / down_factor), 1), max(int(x.shape[-1] / down_factor), 1))
                    x = ops.resize(x, size, down_mode)
                else:
                    x = ops.blur(x, shifted)[..., ::sf, ::sf]
                x = x.clamp(0, 1)
            elif name == "resize_lr":
                x = ops.resize(x, lr_size, lr_mode).clamp(0, 1)
            elif name == "noise" and self.noise:
                b = x.shape[0]
                lv = level.to(x.device, x.dtype).view(b, 1, 1, 1)
                colour = torch.randn(x.shape, generator=dg, device=x.device, dtype=x.dtype) * lv
                gray = torch.randn((b, 1, *x.shape[-2:]), generator=dg, device=x.device, dtype=x.dtype) * lv
                corr = self._correlated_noise(x, g, dg)
                kd = kind.to(x.device).view(b, 1, 1, 1)
                noise = torch.where(kd > 0.6, colour, torch.where(kd < 0.4, gray.expand_as(x), corr))
                x = (x + noise).clamp(0, 1)
            elif name == "jpeg" and self.jpeg:
                x = torch.where(jpeg_on.to(x.device).view(-1, 1, 1, 1), ops.jpeg(x, q_mid), x)
            else:
                continue
            applied.append(name)
        del size_before_down
        if self.final_jpeg:
            x = ops.jpeg(x, q_end)
        params = []
        for i in range(n):
            params.append({
                "order": applied, "blur1": p1[i] if self.blur else None, "blur2": p2[i] if self.blur else None,
                "downsample": ({"resize": down_factor, "mode": down_mode} if down_resize
                               else {"gaussian_sigma": float(down_sigma[i]), "stride": sf}) if self.downsample else None,
                "resize_lr_mode": lr_mode,
                "noise": {"level_255": float(level[i] * 255),
                          "kind": "colour" if kind[i] > 0.6 else "gray" if kind[i] < 0.4 else "correlated"} if self.noise else None,
                "jpeg_quality": float(q_mid[i]) if self.jpeg and jpeg_on[i] else None,
                "final_jpeg_quality": float(q_end[i]) if self.final_jpeg else None,
            })
        kernels = {"blur1": k1, "blur2": k2} if self.blur else {}
        return Degraded(lq=ops.quantise(x), gt=gt, params=params, kernels=kernels)
