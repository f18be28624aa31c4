"""One image through ZSSR: train its network on its own pairs (Lightning), then the x8 ensemble with
back-projection; for ``gradual=true`` a chain of x2 stages, each trained on the previous output."""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback

from sr_experiments.inference.tiling import tiled_forward
from sr_experiments.models.zssr import ZSSRNet
from sr_experiments.speed import SpeedChoice, choose_training
from sr_experiments.zssr.ensemble import ensemble_upscale
from sr_experiments.zssr.lr_policy import LRPolicy
from sr_experiments.zssr.module import ZSSRModule
from sr_experiments.zssr.pairs import FatherSonPairs, load_kernel


@dataclass
class ZSSRSettings:
    """The method's keys (``sr_experiments/conf/shared/zssr.yaml``); defaults are the paper's."""

    depth: int = 8
    width: int = 64
    init_variance: float = 0.1
    crop_size: int = 128
    batch_size: int = 1
    learning_rate: float = 1e-3
    max_steps: int = 3000
    min_steps: int = 256
    min_learning_rate: float = 9e-6
    lr_change_ratio: float = 1.5
    lr_check_every: int = 60
    lr_slope_range: int = 256
    test_every: int = 50
    test_max_side: int = 512
    scale_augment: bool = True
    min_father_scale: float = 0.5
    father_scales: int = 6
    flips: bool = True
    noise_std: float = 0.0
    kernel: str | None = None
    ensemble: bool = True
    back_projection_iters: int = 10
    gradual: bool = False
    seed: int = 0
    precision: str = "auto"
    channels_last: Any = "auto"
    test_tile: int = 256

    @classmethod
    def from_config(cls, node: Mapping[str, Any], key: str = "zssr") -> ZSSRSettings:
        """Settings from a config node; an unknown key or a bad value is one ``ValueError`` naming it."""
        from omegaconf import DictConfig, OmegaConf

        values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
        known = {f.name for f in fields(cls)}
        for k in values:
            if k not in known:
                raise ValueError(f"{key}.{k} is not a ZSSR setting (known: {', '.join(sorted(known))})")
        s = cls(**values)
        for name in ("depth", "width", "crop_size", "batch_size", "max_steps", "test_every", "lr_check_every",
                     "father_scales", "test_tile"):
            if not isinstance(getattr(s, name), int) or getattr(s, name) < 1:
                raise ValueError(f"{key}.{name} must be a positive integer, got {getattr(s, name)!r}")
        if not 0 < s.min_father_scale <= 1:
            raise ValueError(f"{key}.min_father_scale must be in (0, 1], got {s.min_father_scale}")
        if s.learning_rate <= 0 or s.back_projection_iters < 0 or s.noise_std < 0:
            raise ValueError(f"{key}: learning_rate must be > 0, back_projection_iters and noise_std >= 0")
        return s

    def spec(self, scale: int) -> dict[str, Any]:
        """The network spec (``model=zssr``) of one stage."""
        return {"name": "zssr", "scale": scale, "depth": self.depth, "width": self.width,
                "init_variance": self.init_variance}

    def stages(self, scale: int) -> list[int]:
        """The factors run one after the other: ``[scale]``, or x2 steps when ``gradual``."""
        if not self.gradual:
            return [scale]
        if scale & (scale - 1):
            raise ValueError(f"gradual=true runs x2 stages, so scale must be a power of two (got {scale})")
        if self.kernel:
            raise ValueError("gradual=true with kernel=: a kernel is for one factor; run the full factor at once")
        return [2] * int(math.log2(scale))


@dataclass
class ZSSRResult:
    sr: torch.Tensor  # (1, 3, sH, sW) float32 in [0, 1]
    steps: list[int] = field(default_factory=list)  # training steps per stage
    stopped_by: list[str] = field(default_factory=list)  # "learning-rate policy" or "step cap"
    seconds: float = 0.0


class _StepBar(Callback):
    """A tqdm bar over one image's training steps (loss and rate in its postfix)."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.total, self.desc, self.enabled, self.bar = total, desc, enabled, None

    def on_train_start(self, trainer, module) -> None:
        import sys

        from tqdm import tqdm

        self.bar = tqdm(total=self.total, desc=self.desc, unit="step", leave=False, file=sys.stderr, disable=not self.enabled)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.bar.update(1)
        if batch_idx % 20 == 0:
            self.bar.set_postfix(loss=f"{float(outputs['loss']):.4f}", lr=f"{module.policy.learning_rate:.0e}", refresh=False)

    def on_train_end(self, trainer, module) -> None:
        self.bar.close()


def speed_choice(settings: ZSSRSettings, scale: int, device: torch.device) -> SpeedChoice:
    """Precision and layout for training (``speed.py``: measured once per machine and crop size,
    cached, as train.py does; a per-image run is minutes, a calibration ~8 s once)."""
    with torch.random.fork_rng():  # the calibration copy's weights leave the run's RNG state alone
        torch.manual_seed(0)
        net = ZSSRNet(**{k: v for k, v in settings.spec(scale).items() if k != "name"})
    return choose_training(
        net, settings.spec(scale), precision=settings.precision, channels_last=settings.channels_last,
        device=device.type, batch=settings.batch_size, patch=max(settings.crop_size // scale, 1), scale=scale,
        loss_fn=F.l1_loss, optimizer=lambda params: torch.optim.Adam(list(params), lr=settings.learning_rate),
    )


def _policy(s: ZSSRSettings) -> LRPolicy:
    return LRPolicy(s.learning_rate, s.min_learning_rate, s.min_steps, s.lr_change_ratio, s.lr_check_every,
                    s.lr_slope_range, s.test_every)


def train_stage(
    lr: torch.Tensor,
    scale: int,
    settings: ZSSRSettings,
    device: torch.device,
    *,
    kernel: torch.Tensor | None = None,
    speed: SpeedChoice | None = None,
    logger: Any = None,
    progress: bool = False,
    name: str = "",
) -> ZSSRModule:
    """Train the network of one stage on ``lr`` (1, 3, H, W); returns the trained module."""
    L.seed_everything(settings.seed, verbose=False)
    net = ZSSRNet(scale, settings.depth, settings.width, settings.init_variance)
    speed = speed or speed_choice(settings, scale, device)
    autocast = speed.precision.autocast_dtype
    module = ZSSRModule(net, lr.to(device), scale, _policy(settings), kernel, speed.mode.channels_last, autocast,
                        settings.test_max_side)
    pairs = FatherSonPairs(
        lr[0].float().cpu(), scale, crop_size=settings.crop_size, batch_size=settings.batch_size,
        min_scale=settings.min_father_scale if settings.scale_augment else 1.0,
        scale_count=settings.father_scales if settings.scale_augment else 1, flips=settings.flips,
        noise_std=settings.noise_std, kernel=kernel, seed=settings.seed, steps=settings.max_steps,
    )
    loader = torch.utils.data.DataLoader(pairs, batch_size=None, num_workers=0)
    # Lightning's banners ("GPU available", "Using bf16 AMP", tips) would repeat for every image.
    quiet = [logging.getLogger(n) for n in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            trainer = L.Trainer(
                accelerator=device.type, devices=1, max_steps=settings.max_steps, max_epochs=1,
                precision=speed.precision.precision, logger=logger or False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1,
                callbacks=[_StepBar(settings.max_steps, name or "zssr", progress)],
            )
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            warnings.filterwarnings("ignore", ".*IterableDataset.*__len__.*")
            warnings.filterwarnings("ignore", ".*LeafSpec.*")
            trainer.fit(module, loader)
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
    module.steps_run = trainer.global_step
    return module


def apply_stage(
    module: ZSSRModule, lr: torch.Tensor, settings: ZSSRSettings, kernel: torch.Tensor | None = None
) -> torch.Tensor:
    """The trained network on ``lr``: x8 ensemble + back-projection (or one pass), tiled on large inputs."""
    device, scale, dtype = module.device, module.scale, module.autocast_dtype
    tile = settings.test_tile

    def net(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            if max(x.shape[-2:]) > tile:  # receptive field 8 HR px: an overlap of 16 LR px is exact
                return tiled_forward(module, x, scale, tile, 16).float()
            return module(x).float()

    module.eval()
    with torch.inference_mode():
        lr = lr.to(device).float()
        if not settings.ensemble:
            return net(lr).clamp(0, 1)
        return ensemble_upscale(net, lr, scale, flips=settings.flips,
                                back_projection_iters=settings.back_projection_iters, kernel=kernel).clamp(0, 1)


def zssr_upscale(
    lr: torch.Tensor,
    scale: int,
    settings: ZSSRSettings,
    device: torch.device | str = "cpu",
    *,
    logger: Any = None,
    progress: bool = False,
    name: str = "",
    speed: Callable[[int], SpeedChoice] | None = None,
) -> ZSSRResult:
    """ZSSR of ``lr`` (1, 3, H, W) in [0, 1] by ``scale``: the result and how training went."""
    device = torch.device(device)
    start = time.perf_counter()
    kernel = load_kernel(settings.kernel) if settings.kernel else None
    result = ZSSRResult(lr)
    x = lr.float()
    stages = settings.stages(scale)
    for i, s in enumerate(stages):
        label = name + (f" x{s} stage {i + 1}/{len(stages)}" if len(stages) > 1 else "")
        module = train_stage(x, s, settings, device, kernel=kernel, speed=speed(s) if speed else None,
                             logger=logger, progress=progress, name=label)
        x = apply_stage(module, x, settings, kernel).cpu()
        result.steps.append(module.steps_run)
        result.stopped_by.append(module.stopped_by)
    result.sr, result.seconds = x, time.perf_counter() - start
    return result


class PerImageZSSR(torch.nn.Module):
    """ZSSR as a network for the evaluation protocol: each call trains a new network on its input
    and returns the SR (``trains_per_image``: eval runs it outside ``inference_mode`` and records
    the wall time of each image)."""

    trains_per_image = True

    def __init__(self, settings: ZSSRSettings, scale: int, device: torch.device | str = "cpu", progress: bool = True) -> None:
        super().__init__()
        self.settings, self.scale, self.device, self.progress = settings, scale, torch.device(device), progress
        settings.stages(scale)  # a bad gradual/kernel combination fails before any image
        self._speed: dict[int, SpeedChoice] = {}
        self.last: ZSSRResult | None = None

    def speed(self, scale: int) -> SpeedChoice:
        if scale not in self._speed:
            self._speed[scale] = speed_choice(self.settings, scale, self.device)
        return self._speed[scale]

    def forward(self, lq: torch.Tensor, name: str = "zssr") -> torch.Tensor:
        if lq.shape[0] != 1:
            raise ValueError(f"ZSSR trains one network per image: got a batch of {lq.shape[0]}")
        self.last = zssr_upscale(lq, self.scale, self.settings, self.device, progress=self.progress, name=name,
                                 speed=self.speed)
        return self.last.sr.to(lq.device)
