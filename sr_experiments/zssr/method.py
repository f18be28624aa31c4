"""One image through ZSSR: train its network on its own pairs (Lightning), then the x8 ensemble with
back-projection; for ``gradual=true`` a chain of x2 stages, each trained on the previous output; for
``scale_factors=[[sy, sx], ...]`` the official gradual configuration: one network trained stage
after stage on growing factors of the same input, each stage's output joining the father sources."""

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

from sr_experiments.console import ProgressCounter, ProgressLines, is_terminal
from sr_experiments.imaging.tiling import tiled_forward
from sr_experiments.models.zssr import ZSSRNet
from sr_experiments.speed import SpeedChoice, TrainingStep, choose_training
from sr_experiments.zssr.ensemble import ensemble_upscale
from sr_experiments.zssr.lr_policy import LRPolicy
from sr_experiments.zssr.module import ZSSRModule
from sr_experiments.zssr.pairs import Factor, FatherSonPairs, factor_pair, load_kernel

AUGMENTS = ("ladder", "official")


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
    back_projection_iters: int | list[int] = 10
    gradual: bool = False
    augment: str = "official"
    augment_leave_as_is: float = 0.05
    augment_no_interp: float = 0.45
    augment_scale_diff_sigma: float = 0.25
    augment_shear_sigma: float = 0.1
    scale_factors: list[list[float]] | None = None
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
        iters = s.back_projection_iters if isinstance(s.back_projection_iters, list) else [s.back_projection_iters]
        if s.learning_rate <= 0 or any(not isinstance(i, int) or i < 0 for i in iters) or s.noise_std < 0:
            raise ValueError(f"{key}: learning_rate must be > 0, back_projection_iters (one or one per stage) "
                             "and noise_std >= 0")
        if s.augment not in AUGMENTS:
            raise ValueError(f"{key}.augment must be one of {', '.join(AUGMENTS)}, got {s.augment!r}")
        if s.scale_factors is not None:
            pairs = s.scale_factors
            if (not isinstance(pairs, list) or not pairs
                    or any(not isinstance(p, list) or len(p) != 2 or min(p) < 1 for p in pairs)):
                raise ValueError(f"{key}.scale_factors must be a list of [vertical, horizontal] factors >= 1, "
                                 f"e.g. [[1.0,1.5],[1.5,1.5],[2.0,2.0]]; got {pairs!r}")
            if s.augment != "official":
                raise ValueError(f"{key}.scale_factors (the official gradual stages) needs {key}.augment=official")
            if s.gradual or s.kernel:
                raise ValueError(f"{key}.scale_factors cannot be combined with gradual=true or kernel=")
            if isinstance(s.back_projection_iters, list) and len(s.back_projection_iters) != len(pairs):
                raise ValueError(f"{key}.back_projection_iters has {len(s.back_projection_iters)} entries for "
                                 f"{len(pairs)} scale_factors: give one per stage, or one number")
        elif isinstance(s.back_projection_iters, list) and len(s.back_projection_iters) != 1:
            raise ValueError(f"{key}.back_projection_iters: one number per stage needs scale_factors")
        return s

    def bp_iters(self, stage: int = -1) -> int:
        """Back-projection iterations of a stage (one number, or one per ``scale_factors`` stage)."""
        b = self.back_projection_iters
        return b[stage] if isinstance(b, list) else b

    def progressive(self, scale: int) -> list[Factor] | None:
        """The official gradual stages (``scale_factors``) as factors (an integer where both axes
        agree on one), or None; the last must be the run's scale."""
        if self.scale_factors is None:
            return None
        out: list[Factor] = []
        for sy, sx in self.scale_factors:
            out.append(int(sy) if sy == sx and float(sy).is_integer() else (float(sy), float(sx)))
        if out[-1] != scale:
            raise ValueError(f"scale_factors must end at the run's scale [{scale}, {scale}], got {self.scale_factors[-1]}")
        return out

    def spec(self, scale: int) -> dict[str, Any]:
        """The network spec (``model=zssr``) of one stage."""
        return {"name": "zssr", "scale": scale, "depth": self.depth, "width": self.width,
                "init_variance": self.init_variance}

    def stages(self, scale: int) -> list[int]:
        """The factors run one after the other: ``[scale]``, or x2 steps when ``gradual``."""
        if not self.gradual:
            return [scale]  # (scale_factors: one network, the speed of the final factor)
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
    """Progress over one image's training steps: a tqdm bar (loss and rate in its postfix) on a
    terminal, else a line every 10% of the step cap (``console.ProgressLines``)."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.total, self.desc, self.enabled, self.bar, self.lines = total, desc, enabled, None, None

    def on_train_start(self, trainer, module) -> None:
        import sys

        from tqdm import tqdm

        if self.enabled and not is_terminal():
            self.lines = ProgressLines(self.total, self.desc, "steps", every=0.1)
            return
        self.bar = tqdm(total=self.total, desc=self.desc, unit="step", leave=False, file=sys.stderr, disable=not self.enabled)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.lines is not None:
            self.lines.update(1, f"loss {float(outputs['loss']):.4f}, lr {module.policy.learning_rate:.0e}")
            return
        self.bar.update(1)
        if batch_idx % 20 == 0:
            self.bar.set_postfix(loss=f"{float(outputs['loss']):.4f}", lr=f"{module.policy.learning_rate:.0e}", refresh=False)

    def on_train_end(self, trainer, module) -> None:
        if self.bar is not None:
            self.bar.close()


def speed_choice(settings: ZSSRSettings, scale: int, device: torch.device) -> SpeedChoice:
    """Precision and layout for training (``speed.py``: measured once per machine and crop size,
    cached, as train.py does; a per-image run is minutes, a calibration ~8 s once)."""
    with torch.random.fork_rng():  # the calibration copy's weights leave the run's RNG state alone
        torch.manual_seed(0)
        net = ZSSRNet(**{k: v for k, v in settings.spec(scale).items() if k != "name"})
    step = TrainingStep(settings.batch_size, max(settings.crop_size // scale, 1), scale, F.l1_loss,
                        lambda params: torch.optim.Adam(list(params), lr=settings.learning_rate))
    return choose_training(net, settings.spec(scale), step, precision=settings.precision,
                           channels_last=settings.channels_last, device=device.type)


@dataclass
class StageCost:
    """What one stage's time is made of, measured on this machine (``stage_cost``)."""

    step_s: float  # one training step as a run takes it: the network's step and a pair drawn from the image
    forward_s_px: float  # one inference pass of the network, per output pixel (tests, final passes)


# Per stage: Lightning's Trainer set-up and teardown.
STAGE_OVERHEAD_S = 2.0


def stage_cost(choice: SpeedChoice, settings: ZSSRSettings, scale: int, device: torch.device,
               size: tuple[int, int]) -> StageCost:
    """Measured costs of a stage on a ``size`` (w, h) input: the step time of this run's calibration
    (else a step timed now), a few pair draws from an image of that size (the official augmentation warps
    every crop: tens of ms on a CPU), and a timed inference pass at the crop size (on a CPU a pass
    is far cheaper per pixel than a third of a training step: oneDNN's backward kernels are slow)."""
    from sr_experiments.speed import training_step_maker

    crop = settings.crop_size
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = ZSSRNet(scale, settings.depth, settings.width, settings.init_variance).to(device)
        image = torch.rand(3, size[1], size[0])
        pairs = FatherSonPairs(image, scale, crop_size=crop, batch_size=settings.batch_size, flips=settings.flips,
                               augment=settings.augment, min_scale=settings.min_father_scale, seed=0)
        g, rng = torch.Generator().manual_seed(0), __import__("numpy").random.default_rng(0)
        start = time.perf_counter()
        for _ in range(3):
            pairs.sample(g, rng)
        draw_s = (time.perf_counter() - start) / 3
        # A calibration of this run is fresh; a cached one may date from a busier (or quieter) hour.
        step_s = 0.0 if choice.cached else choice.step_ms.get(choice.mode.name, 0.0) / 1000
        if not step_s:
            make = training_step_maker(net, device, TrainingStep(settings.batch_size, max(crop // scale, 1), scale,
                                                                 F.l1_loss, lambda p: torch.optim.Adam(list(p))))
            step = make(choice.mode)
            step()  # (kernels are built at the first step)
            start = time.perf_counter()
            step()
            step_s = time.perf_counter() - start
        x = torch.rand(1, 3, max(crop // scale, 1), max(crop // scale, 1), device=device)
        dtype = choice.mode.autocast_dtype
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            net.eval()(x)
            start = time.perf_counter()
            out = net(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            forward_s = time.perf_counter() - start
    return StageCost(step_s + draw_s, forward_s / (out.shape[-2] * out.shape[-1]))


def earliest_stop(settings: ZSSRSettings) -> int:
    """The fewest steps the learning-rate policy can stop after: each tenfold drop of the rate from
    ``learning_rate`` to below ``min_learning_rate`` comes more than ``min_steps`` after the last,
    at a check (every ``lr_check_every``)."""
    drops = max(1, math.ceil(math.log10(settings.learning_rate / settings.min_learning_rate) + 1e-9))
    gap = math.ceil((settings.min_steps + 1) / settings.lr_check_every) * settings.lr_check_every
    return min(settings.max_steps, drops * gap)


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
    net: ZSSRNet | None = None,
    sources: list[torch.Tensor] | None = None,
    base_scales: list[float] | None = None,
    max_scale: float = 1.0,
    seed_offset: int = 0,
) -> ZSSRModule:
    """Train the network of one stage on ``lr`` (1, 3, H, W); returns the trained module. ``net``
    continues an earlier stage's network (official ``init_net_for_each_sf = False``); ``sources``,
    ``base_scales`` and ``max_scale`` are the official augmentation's (default: the input alone)."""
    L.seed_everything(settings.seed, verbose=False)
    if net is None:
        net = ZSSRNet(scale if isinstance(scale, int) else 2, settings.depth, settings.width, settings.init_variance)
    net.train()  # (a continued network comes back from the previous stage's test in eval mode)
    speed = speed or speed_choice(settings, scale, device)
    autocast = speed.precision.autocast_dtype
    module = ZSSRModule(net, lr.to(device), scale, _policy(settings), kernel, speed.mode.channels_last, autocast,
                        settings.test_max_side)
    pairs = FatherSonPairs(
        lr[0].float().cpu(), scale, crop_size=settings.crop_size, batch_size=settings.batch_size,
        min_scale=settings.min_father_scale if settings.scale_augment else 1.0,
        scale_count=settings.father_scales if settings.scale_augment else 1, flips=settings.flips,
        noise_std=settings.noise_std, kernel=kernel, seed=settings.seed + seed_offset, steps=settings.max_steps,
        augment=settings.augment, sources=sources, base_scales=base_scales, max_scale=max_scale,
        augment_options={"leave_as_is": settings.augment_leave_as_is, "no_interp": settings.augment_no_interp,
                         "scale_diff_sigma": settings.augment_scale_diff_sigma,
                         "shear_sigma": settings.augment_shear_sigma},
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
    module: ZSSRModule, lr: torch.Tensor, settings: ZSSRSettings, kernel: torch.Tensor | None = None,
    back_projection_iters: int | None = None, *, progress: bool = False, name: str = "",
) -> torch.Tensor:
    """The trained network on ``lr``: x8 ensemble + back-projection (or one pass), tiled on large
    inputs (integer factors; a fractional stage runs whole); ``progress`` counts the passes."""
    device, scale, dtype = module.device, module.scale, module.autocast_dtype
    tile = settings.test_tile
    iters = settings.bp_iters() if back_projection_iters is None else back_projection_iters

    def net(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            if isinstance(scale, int) and max(x.shape[-2:]) > tile:  # receptive field 8 HR px: an overlap of 16 LR px is exact
                return tiled_forward(module, x, scale, tile, 16).float()
            return module(x).float()

    module.eval()
    with torch.inference_mode():
        lr = lr.to(device).float()
        if not settings.ensemble:
            return net(lr).clamp(0, 1)
        sy, sx = factor_pair(scale)
        passes = ProgressCounter((8 if sy == sx else 4) if settings.flips else 1, f"{name or 'zssr'} final passes",
                                 "pass", enabled=progress)
        try:
            return ensemble_upscale(net, lr, scale, flips=settings.flips, back_projection_iters=iters, kernel=kernel,
                                    progress=passes.update).clamp(0, 1)
        finally:
            passes.close()


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
    if settings.progressive(scale) is not None:
        result.sr = _progressive(x, scale, settings, device, result, logger=logger, progress=progress, name=name,
                                 speed=speed(scale) if speed else None)
        result.seconds = time.perf_counter() - start
        return result
    stages = settings.stages(scale)
    for i, s in enumerate(stages):
        label = name + (f" x{s} stage {i + 1}/{len(stages)}" if len(stages) > 1 else "")
        module = train_stage(x, s, settings, device, kernel=kernel, speed=speed(s) if speed else None,
                             logger=logger, progress=progress, name=label)
        x = apply_stage(module, x, settings, kernel, progress=progress, name=label).cpu()
        result.steps.append(module.steps_run)
        result.stopped_by.append(module.stopped_by)
    result.sr, result.seconds = x, time.perf_counter() - start
    return result


def _progressive(
    x: torch.Tensor, scale: int, settings: ZSSRSettings, device: torch.device, result: ZSSRResult, *,
    logger: Any, progress: bool, name: str, speed: SpeedChoice | None,
) -> torch.Tensor:
    """The official gradual configuration (``ZSSR.run`` without base change): one network trained
    stage after stage, each at its factor of the same input, the rate policy restarting at each
    stage; every stage's output joins the father sources, at base scale ``min(sy, sx)``, and the
    drawn scales reach up to the previous stage's. The optimiser restarts with each stage (the
    official code keeps Adam's moments)."""
    stages = settings.progressive(scale)
    speed = speed or speed_choice(settings, scale, device)
    base_scales = [1.0] + [min(factor_pair(s)) for s in stages]
    sources, net, out = [x[0].cpu()], None, x
    for i, s in enumerate(stages):
        label = f"{name} x{'x'.join(f'{f:g}' for f in factor_pair(s))} stage {i + 1}/{len(stages)}"
        module = train_stage(x, s, settings, device, speed=speed, logger=logger, progress=progress, name=label,
                             net=net, sources=sources, base_scales=base_scales[:len(sources)],
                             max_scale=base_scales[len(sources) - 1], seed_offset=i)
        net = module.net
        out = apply_stage(module, x, settings, back_projection_iters=settings.bp_iters(i), progress=progress,
                          name=label).cpu()
        sources.append(out[0])
        result.steps.append(module.steps_run)
        result.stopped_by.append(module.stopped_by)
    return out


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

    def forward(self, lq: torch.Tensor, name: str = "zssr", logger: Any = None) -> torch.Tensor:
        if lq.shape[0] != 1:
            raise ValueError(f"ZSSR trains one network per image: got a batch of {lq.shape[0]}")
        self.last = zssr_upscale(lq, self.scale, self.settings, self.device, logger=logger, progress=self.progress,
                                 name=name, speed=self.speed)
        return self.last.sr.to(lq.device)
