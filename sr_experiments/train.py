"""Compose a training run from the Hydra config, fit it, and write ``metrics.json``."""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

from sr_experiments.checkpoint_io import AtomicCheckpointIO, load_checkpoint_file
from sr_experiments.distributed import check_ddp_launch, launch_rank
from sr_experiments.lit_module import SRLitModule
from sr_experiments.models.pretrained import load_pretrained
from sr_experiments.speed import SpeedChoice, choose_training
from sr_experiments.wandb_logger import finish_loggers

log = logging.getLogger(__name__)

# Expected and harmless: the module converts uint8 batches on the device on purpose, and
# Lightning's own pytree helper trips a torch deprecation.
warnings.filterwarnings("ignore", message=r".*overridden `on_after_batch_transfer`.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
# Validation metrics are synchronised by SRMetrics itself: every rank logs the same value.
warnings.filterwarnings("ignore", message=r".*sync_dist=True.*when logging on epoch level.*")


def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a ``callbacks:`` / ``logger:`` group that has a ``_target_``."""
    if not cfg:
        return []
    return [instantiate(c) for c in cfg.values() if isinstance(c, DictConfig) and "_target_" in c]


def format_summary(summary: dict[str, Any]) -> str:
    """A short table: bicubic, best, final, and the gain of the best over bicubic."""
    w = max(18, len(summary["model"]) + 9)
    lines = [f"{'':<{w}}{'PSNR (dB)':>10}{'SSIM':>9}"]
    bic, best, final = summary.get("bicubic"), summary.get("best"), summary.get("final")
    if bic:
        lines.append(f"{'bicubic':<{w}}{bic['psnr']:>10.2f}{bic['ssim']:>9.4f}")
    if best:
        lines.append(f"{summary['model'] + ' (best)':<{w}}{best['psnr']:>10.2f}{best['ssim']:>9.4f}")
    if final:
        lines.append(f"{summary['model'] + ' (final)':<{w}}{final['psnr']:>10.2f}{final['ssim']:>9.4f}")
    if bic and best:
        lines.append(f"{'gain over bicubic':<{w}}{best['psnr'] - bic['psnr']:>+10.2f}{best['ssim'] - bic['ssim']:>+9.4f}")
    lines.append(
        f"x{summary['scale']}, {summary['params']:,} parameters, {summary['steps']} steps, "
        f"{summary['train_seconds']:.0f} s; validation: {summary.get('val_images', '?')} images"
    )
    return "\n".join(lines)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the configured model; returns the run summary (also written to ``metrics.json``)."""
    started_at = time.time()  # wall clock, so parallel sweep jobs can be checked for overlap
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    datamodule: L.LightningDataModule = instantiate(cfg.data)
    module: SRLitModule = instantiate(cfg.module, _recursive_=False)
    if module.num_params == 0:
        raise ValueError(f"model={cfg.model.name} has no trainable parameters: evaluate it with eval.py instead")
    callbacks = instantiate_group(cfg.get("callbacks"))
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a bar callback then
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = instantiate_group(cfg.get("logger"))
    speed = choose_speed(cfg, module, datamodule)
    precision = speed.precision
    log.info("precision: %s (%s)", precision.precision, precision.reason)
    log.info("memory format: %s (%s)", "channels_last" if module.channels_last else "contiguous",
             module.channels_last_reason)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                     precision=precision.precision, plugins=[AtomicCheckpointIO()])
    check_ddp_launch(trainer)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path:
        state = load_checkpoint_file(ckpt_path)
        if not cfg.get("resume", True) or "loops" not in state:
            # Fine-tune: weights only (ours, or an official release), fresh optimizer, schedule, steps.
            load_pretrained(module.net, state)
            log.info("fine-tuning from the weights of %s", ckpt_path)
            ckpt_path = None
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    finish_run(trainer, module, datamodule)
    elapsed = time.perf_counter() - start

    summary = module.run_summary()
    summary.update(
        precision=precision.precision,
        precision_reason=precision.reason,
        speed_choice=speed.metrics(),
        steps=int(trainer.global_step),
        train_seconds=round(elapsed, 1),
        val_images=len(datamodule.val_set) if getattr(datamodule, "val_set", None) is not None else None,
        run_dir=str(output_dir),
        best_checkpoint=getattr(trainer.checkpoint_callback, "best_model_path", None) or None,
        overrides=_overrides(),
        torch_threads=torch.get_num_threads(),
        world_size=int(trainer.world_size),
        started_at=round(started_at, 3),
        finished_at=round(time.time(), 3),
    )
    if trainer.is_global_zero:
        (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
        print("\n" + format_summary(summary) + f"\nrun directory: {output_dir}\n", flush=True)
    finish_loggers(trainer, summary)
    return summary


def choose_speed(cfg: DictConfig, module: SRLitModule, datamodule: L.LightningDataModule) -> SpeedChoice:
    """Precision and layout for this run, measured where they are ``auto`` (or read from the cache):
    training steps of a copy of the network at the configured batch and patch size. Sets the
    module's layout and CUDA's TF32 switches; the global RNG is left as it was."""
    choice = choose_training(
        module.net,
        module.hparams.network,
        precision=cfg.trainer.get("precision"),
        channels_last=cfg.model.get("channels_last", "auto"),
        device=cfg.trainer.get("accelerator"),
        batch=int(getattr(datamodule, "batch_size", 16)),
        patch=int(getattr(datamodule, "patch_size", 48)),
        scale=int(cfg.scale),
        loss_fn=module.loss_fn,
        optimizer=lambda params: instantiate(module.hparams.optimizer)(params=list(params)),
        rank=launch_rank(),
    )
    module.set_channels_last(choice.mode.channels_last, choice.channels_last_reason)
    choice.apply_tf32()
    return choice


def finish_run(trainer: L.Trainer, module: SRLitModule, datamodule: L.LightningDataModule) -> None:
    """Validate and checkpoint the final step when ``max_steps`` stopped training mid-epoch.

    Lightning validates and checkpoints at epoch ends only; without this a run shorter than an
    epoch reports nothing, and ``last.ckpt`` would lag the weights the run ended with.
    """
    if trainer.interrupted or trainer.global_step == 0:
        return
    if module.history and module.history[-1]["step"] == trainer.global_step:
        return
    trainer.validate(module, datamodule=datamodule, verbose=False)
    ckpt = trainer.checkpoint_callback
    if ckpt is None or not ckpt.dirpath:
        return
    dirpath = Path(ckpt.dirpath)
    trainer.save_checkpoint(dirpath / f"{ckpt.CHECKPOINT_NAME_LAST}{ckpt.FILE_EXTENSION}")
    if module.history[-1]["psnr"] >= max(h["psnr"] for h in module.history):
        best = dirpath / f"{ckpt.filename or 'best'}{ckpt.FILE_EXTENSION}"
        trainer.save_checkpoint(best)
        ckpt.best_model_path = str(best)


def _overrides() -> list[str]:
    """The command-line overrides of this run (empty outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)
