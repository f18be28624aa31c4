"""Real-ESRGAN's second-order degradation (Wang et al., ICCVW 2021), batched on the images' device.

The process and every default are Real-ESRGAN's: ``realesrgan/models/realesrnet_model.py``
(``feed_data``: blur, random resize, Gaussian/Poisson noise, JPEG; a second stage; then
[resize back + final sinc] and JPEG in random order) and ``options/train_realesrnet_x4plus.yml``
(probabilities and ranges; ``realesrgan/data/realesrgan_dataset.py`` for the kernels). As there,
the resize factor and mode, the noise type and the order at the end are drawn once per batch
(every image of a batch must keep one size); kernels, noise levels, gray noise and JPEG quality
per image. Differences: the random draws come from the ``torch.Generator`` passed in (BasicSR
uses numpy's and Python's global RNGs), and the first stage's output is kept at least
``kernel_size`` pixels on a side (the second blur needs it; with Real-ESRGAN's 256-400 pixel
crops the limit never binds). Not included: Real-ESRGAN's training
pair pool (``queue_size``), which shuffles degraded pairs across batches.

Each stage can be switched off (``first.blur: false`` ...): it is then the identity, and every
parameter is still drawn, so the draws of the other stages are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sr_experiments.data.degradations import kernels as K
from sr_experiments.data.degradations import ops
from sr_experiments.data.degradations.base import Degraded, check_prob, check_range, config_from, device_generator

RESIZE_KINDS = ("up", "down", "keep")


@dataclass
class StageConfig:
    """One degradation stage (first: Real-ESRGAN's defaults; second: its ``*2`` keys)."""

    enabled: bool = True
    blur: bool = True
    blur_prob: float = 1.0  # second stage: second_blur_prob 0.8
    kernel_list: Sequence[str] = K.KERNEL_TYPES
    kernel_prob: Sequence[float] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: Sequence[float] = (0.2, 3.0)
    betag_range: Sequence[float] = (0.5, 4.0)
    betap_range: Sequence[float] = (1.0, 2.0)
    resize: bool = True
    resize_prob: Sequence[float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: Sequence[float] = (0.15, 1.5)
    noise: bool = True
    gaussian_noise_prob: float = 0.5  # else Poisson
    noise_range: Sequence[float] = (1.0, 30.0)  # Gaussian sigma, on the 0..255 scale
    poisson_scale_range: Sequence[float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg: bool = True
    jpeg_range: Sequence[float] = (30.0, 95.0)

    def check(self, where: str) -> None:
        for key in ("blur_prob", "sinc_prob", "gaussian_noise_prob", "gray_noise_prob"):
            check_prob(getattr(self, key), f"{where}.{key}")
        for key in ("blur_sigma", "betag_range", "betap_range", "resize_range", "noise_range", "poisson_scale_range", "jpeg_range"):
            check_range(getattr(self, key), f"{where}.{key}")
        if len(self.kernel_list) != len(self.kernel_prob) or not self.kernel_list:
            raise ValueError(f"{where}.kernel_list and kernel_prob must be non-empty lists of the same length")
        if len(self.resize_prob) != 3:
            raise ValueError(f"{where}.resize_prob must be three probabilities: up, down, keep")
        if not (1 <= self.jpeg_range[0] and self.jpeg_range[1] <= 100):
            raise ValueError(f"{where}.jpeg_range must lie in [1, 100], got {list(self.jpeg_range)}")


SECOND_DEFAULTS = dict(
    blur_prob=0.8, blur_sigma=(0.2, 1.5), resize_prob=(0.3, 0.4, 0.3), resize_range=(0.3, 1.2),
    noise_range=(1.0, 25.0), poisson_scale_range=(0.05, 2.5),
)


class RealESRGANDegradation:
    """``degradation=realesrgan``: HR batch -> (LR batch, target), see the module docstring.

    Args:
        scale: the LR is ``H // scale`` x ``W // scale``.
        first, second: ``StageConfig`` keys of the two stages (``second.enabled: false`` drops it).
        final_sinc: the final sinc filter on or off; ``final_sinc_prob`` how often it is drawn.
        kernel_size / min_kernel_size: kernel sizes are odd, uniform in [min, max] (7..21).
        resize_modes / final_resize_modes: interpolation modes drawn for the random resizes and for
            the resize to the LR size.
        usm_gt: train against the USM-sharpened HR (``gt_usm: True`` of both Real-ESRGAN recipes;
            the GAN stage's discriminator still sees the plain HR, ``gan_gt_usm: False``).
        degrade_sharpened: degrade the sharpened HR (``RealESRNetModel``, the PSNR stage) rather
            than the plain one (``RealESRGANModel``, the GAN stage).
    """

    name = "realesrgan"

    def __init__(
        self,
        scale: int,
        first: Mapping[str, Any] | None = None,
        second: Mapping[str, Any] | None = None,
        final_sinc: bool = True,
        final_sinc_prob: float = 0.8,
        kernel_size: int = 21,
        min_kernel_size: int = 7,
        resize_modes: Sequence[str] = ops.RESIZE_MODES,
        final_resize_modes: Sequence[str] = ops.RESIZE_MODES,
        usm_gt: bool = True,
        degrade_sharpened: bool = True,
    ) -> None:
        self.scale = int(scale)
        self.first = config_from(StageConfig, first, "degradation.first")
        self.second = config_from(StageConfig, {**SECOND_DEFAULTS, **dict(second or {})}, "degradation.second")
        self.first.check("degradation.first")
        self.second.check("degradation.second")
        self.final_sinc, self.final_sinc_prob = bool(final_sinc), check_prob(final_sinc_prob, "degradation.final_sinc_prob")
        self.kernel_size, self.min_kernel_size = int(kernel_size), int(min_kernel_size)
        for key, modes in (("resize_modes", resize_modes), ("final_resize_modes", final_resize_modes)):
            bad = [m for m in modes if m not in ops.RESIZE_MODES] or ([] if modes else ["(empty)"])
            if bad:
                raise ValueError(f"degradation.{key}: {bad[0]!r} is not one of {', '.join(ops.RESIZE_MODES)}")
        self.resize_modes, self.final_resize_modes = list(resize_modes), list(final_resize_modes)
        self.usm_gt, self.degrade_sharpened = bool(usm_gt), bool(degrade_sharpened)

    def _kernels(self, g: torch.Generator, n: int, cfg: StageConfig) -> tuple[torch.Tensor, list[dict]]:
        return K.random_blur_kernels(
            g, n, self.kernel_size, self.min_kernel_size, cfg.kernel_list, cfg.kernel_prob, cfg.sinc_prob,
            cfg.blur_sigma, cfg.betag_range, cfg.betap_range,
        )

    def _stage(self, x: torch.Tensor, g: torch.Generator, cfg: StageConfig, size_ref: tuple[int, int] | None,
               params: list[dict], tag: str, kernels: dict[str, torch.Tensor]) -> torch.Tensor:
        """One stage. ``size_ref``: the second stage resizes relative to the LR size (as
        Real-ESRGAN does), the first relative to the input."""
        n = x.shape[0]
        # Every draw first, in a fixed order, whatever is switched on.
        k, kparams = self._kernels(g, n, cfg)
        blur_on = bool(torch.rand(1, generator=g) < cfg.blur_prob) and cfg.blur and cfg.enabled
        kind = RESIZE_KINDS[int(K.choice(g, cfg.resize_prob))]
        up, down = K.uniform(g, 1.0, cfg.resize_range[1]), K.uniform(g, cfg.resize_range[0], 1.0)
        mode = self.resize_modes[int(torch.randint(len(self.resize_modes), (1,), generator=g))]
        gaussian = bool(torch.rand(1, generator=g) < cfg.gaussian_noise_prob)
        sigma = K.uniform(g, *cfg.noise_range, n) / 255.0
        pscale = K.uniform(g, *cfg.poisson_scale_range, n)
        gray = torch.rand(n, generator=g, dtype=torch.float64) < cfg.gray_noise_prob
        quality = K.uniform(g, *cfg.jpeg_range, n)
        noise_g = device_generator(g, x.device)
        factor = {"up": float(up), "down": float(down), "keep": 1.0}[kind] if cfg.resize else 1.0

        if not cfg.enabled:
            return x
        if blur_on:
            x = ops.blur(x, k)
            kernels[f"blur{tag}"] = k
        h, w = size_ref or x.shape[-2:]
        if cfg.resize or size_ref is not None:  # the second stage always goes to (factor x) the LR size
            # The first stage's output is blurred again (second stage): kept >= kernel_size.
            floor = min(self.kernel_size, h, w) if size_ref is None else 1
            size = (max(int(h * factor), floor), max(int(w * factor), floor))
            x = ops.resize(x, size, mode)
        if cfg.noise:
            x = ops.gaussian_noise(x, sigma, gray, noise_g) if gaussian else ops.poisson_noise(x, pscale, gray, noise_g)
        if cfg.jpeg:
            x = ops.jpeg(x.clamp(0, 1), quality)
        for i, p in enumerate(params):
            p[f"stage{tag}"] = {
                "blur": kparams[i] if blur_on else None,
                "resize": {"kind": kind if cfg.resize else "keep", "factor": factor, "mode": mode,
                           "size": list(x.shape[-2:])} if (cfg.resize or size_ref is not None) else None,
                "noise": ({"type": "gaussian", "sigma_255": float(sigma[i] * 255)} if gaussian
                          else {"type": "poisson", "scale": float(pscale[i])}) | {"gray": bool(gray[i])} if cfg.noise else None,
                "jpeg_quality": float(quality[i]) if cfg.jpeg else None,
            }
        return x

    @torch.no_grad()
    def __call__(self, hr: torch.Tensor, generator: torch.Generator) -> Degraded:
        """Degrade ``hr`` ((B, 3, H, W) in [0, 1], H and W multiples of the scale) with draws from
        ``generator`` (a CPU ``torch.Generator``; the noise is drawn on ``hr``'s device from it)."""
        n, _, h, w = hr.shape
        if h % self.scale or w % self.scale:
            raise ValueError(f"HR size {h}x{w} is not a multiple of scale {self.scale}")
        lr_size = (h // self.scale, w // self.scale)
        params: list[dict] = [{} for _ in range(n)]
        kernels: dict[str, torch.Tensor] = {}
        gt = ops.usm_sharpen(hr) if self.usm_gt else hr
        x = self._stage(gt if self.degrade_sharpened else hr, generator, self.first, None, params, "1", kernels)
        x = self._stage(x, generator, self.second, lr_size, params, "2", kernels)
        # Final: [resize to the LR size + sinc] and JPEG, in random order.
        sinc, sparams = K.random_final_sinc(generator, n, self.final_sinc_prob, self.kernel_size, self.min_kernel_size)
        jpeg_first = bool(torch.rand(1, generator=generator) < 0.5)
        mode = self.final_resize_modes[int(torch.randint(len(self.final_resize_modes), (1,), generator=generator))]
        quality = K.uniform(generator, *self.second.jpeg_range, n)
        jpeg_on = self.second.enabled and self.second.jpeg

        def resize_sinc(t: torch.Tensor) -> torch.Tensor:
            t = ops.resize(t, lr_size, mode)
            return ops.blur(t, sinc) if self.final_sinc else t

        if jpeg_on and jpeg_first:
            x = ops.jpeg(x.clamp(0, 1), quality)
        x = resize_sinc(x)
        if jpeg_on and not jpeg_first:
            x = ops.jpeg(x.clamp(0, 1), quality)
        if self.final_sinc:
            kernels["final_sinc"] = sinc
        for i, p in enumerate(params):
            p["final"] = {"order": "jpeg, resize+sinc" if jpeg_first else "resize+sinc, jpeg", "resize_mode": mode,
                          "sinc": sparams[i] if self.final_sinc else None,
                          "jpeg_quality": float(quality[i]) if jpeg_on else None}
            p["usm_gt"] = self.usm_gt
        return Degraded(lq=ops.quantise(x), gt=gt, params=params, kernels=kernels)
