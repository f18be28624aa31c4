"""Compose a training run from the Hydra config, fit it, and write ``metrics.json``."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from sr_experiments.console import is_terminal, one_line_per_record
from sr_experiments.runs.callbacks import LineProgressBar
from sr_experiments.runs.checkpoint_io import AtomicCheckpointIO
from sr_experiments.runs.config_schema import validate_train_config
from sr_experiments.runs.distributed import check_ddp_launch, launch_rank
from sr_experiments.extras import require_logger_packages
from sr_experiments.training.module import SRLitModule
from sr_experiments.models.weights import FROM_FILE, load_pretrained
from sr_experiments.provenance import checkpoint_info, provenance
from sr_experiments.outputs import record_owner, write_text
from sr_experiments.runs.csv_logger import ResumableCSVLogger
from sr_experiments.runs.run_dir import (
    check_run_dir,
    check_same_network,
    read_start_checkpoint,
    requeued_checkpoint,
    resume_checkpoint,
    slurm_job_id,
)
from sr_experiments.speed import SpeedChoice, TrainingStep, choose_training
from sr_experiments.runs.wandb_logger import finish_loggers

log = logging.getLogger(__name__)

# Expected and harmless: the module converts uint8 batches on the device on purpose, and
# Lightning's own pytree helper trips a torch deprecation.
warnings.filterwarnings("ignore", message=r".*overridden `on_after_batch_transfer`.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
# Validation metrics are synchronised by SRMetrics itself: every rank logs the same value.
warnings.filterwarnings("ignore", message=r".*sync_dist=True.*when logging on epoch level.*")
# The summary's size estimate assumes fp32 weights, which they are under bf16 autocast.
warnings.filterwarnings("ignore", message=r".*is not supported by the model summary.*")


class _DropAdvertisement(logging.Filter):
    """Lightning advertises its cloud logger on every run; nothing a user of this framework acts on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropAdvertisement())


def instantiate_group(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a ``callbacks:`` / ``logger:`` group that has a ``_target_``."""
    if not cfg:
        return []
    return [instantiate(c) for c in cfg.values() if isinstance(c, DictConfig) and "_target_" in c]


def format_summary(summary: dict[str, Any]) -> str:
    """A short table: bicubic, best, final, and the gain of the best over bicubic."""
    bic, best, final = summary.get("bicubic"), summary.get("best"), summary.get("final")
    w = max(18, len(summary["model"]) + (14 if final and "psnr_raw" in final else 9))
    lines = [f"{'':<{w}}{'PSNR (dB)':>10}{'SSIM':>9}"]
    if bic:
        lines.append(f"{'bicubic':<{w}}{bic['psnr']:>10.2f}{bic['ssim']:>9.4f}")
    if best:
        lines.append(f"{summary['model'] + ' (best)':<{w}}{best['psnr']:>10.2f}{best['ssim']:>9.4f}")
    if final:
        lines.append(f"{summary['model'] + ' (final)':<{w}}{final['psnr']:>10.2f}{final['ssim']:>9.4f}")
    if final and "psnr_raw" in final:  # EMA on: the rows above are the EMA's
        lines.append(f"{summary['model'] + ' (final, raw)':<{w}}{final['psnr_raw']:>10.2f}{final['ssim_raw']:>9.4f}")
    if bic and best:
        lines.append(f"{'gain over bicubic':<{w}}{best['psnr'] - bic['psnr']:>+10.2f}{best['ssim'] - bic['ssim']:>+9.4f}")
    lines.append(
        f"x{summary['scale']}, {summary['params']:,} parameters, {summary['steps']} steps, "
        f"{summary['train_seconds']:.0f} s; validation: {summary.get('val_images', '?')} images"
    )
    return "\n".join(lines)


class RunInterrupted(SystemExit):
    """Training stopped on a signal after checkpointing; the exit code says which
    (130 SIGINT, 143 SIGTERM, as shells report them)."""


# SLURM sends these ahead of a time limit or preemption (``sbatch --signal``; submitit uses USR2).
REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit the configured model; returns the run summary (also written to ``metrics.json``).

    Raises ``ConfigError`` for a bad value, ``RunDirError`` when the output folder holds another
    run, and ``RunInterrupted`` (exit code 130/143) after checkpointing on SIGINT/SIGTERM.
    """
    validate_train_config(cfg)
    one_line_per_record()
    started_at = time.time()  # wall clock, so parallel sweep jobs can be checked for overlap
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = cfg.get("ckpt_path")
    if cfg.model.get("name") == FROM_FILE and not cfg.model.get("pretrained") and ckpt_path:
        # model=from_file ckpt_path=FILE: the file gives both the architecture and the starting weights
        with open_dict(cfg):
            cfg.model.pretrained = str(ckpt_path)
    if not ckpt_path:
        ckpt_path = requeued_checkpoint(output_dir)
    resume = bool(cfg.get("resume", True))
    # Everything that can refuse this run, before anything is written (RunDirGuard did the same
    # before Hydra wrote its files): the folder, and the checkpoint (readable, same network).
    check_run_dir(output_dir, ckpt_path, resume)
    state = read_start_checkpoint(cfg, ckpt_path, resume)
    output_dir.mkdir(parents=True, exist_ok=True)
    record_owner(output_dir, "train", slurm_job_id=slurm_job_id(), started_at=round(started_at, 3))
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    datamodule, module = build_module(cfg)
    trainer, loggers, speed = build_trainer(cfg, module, datamodule)
    ckpt_path = start_from(state, ckpt_path, resume, module, trainer, loggers)
    del state
    interrupted, requeue = fit(trainer, module, datamodule, ckpt_path)
    summary = run_summary(cfg, trainer, module, datamodule, speed, interrupted, started_at)
    if trainer.is_global_zero:
        write_text(output_dir / "metrics.json", json.dumps(summary, indent=2))
        if interrupted:
            print(f"\ninterrupted by {interrupted} at step {trainer.global_step}; resume with "
                  f"ckpt_path={resume_checkpoint(output_dir)}\n", flush=True)
        else:
            print("\n" + format_summary(summary) + f"\nrun directory: {output_dir}\n", flush=True)
    finish_loggers(trainer, summary)
    if interrupted == "requeue":
        requeue.requeue()
        raise RunInterrupted(143)
    if interrupted:
        raise RunInterrupted(130 if interrupted == "SIGINT" else 143)
    return summary


def build_module(cfg: DictConfig) -> tuple[L.LightningDataModule, SRLitModule]:
    """The configured datamodule and training module (a bad value: the module's one line)."""
    datamodule: L.LightningDataModule = instantiate(cfg.data)
    try:
        module: SRLitModule = instantiate(cfg.module, _recursive_=False)
    except InstantiationException as e:  # a bad value named by the module: its one line, not Hydra's wrapper
        if isinstance(e.__cause__, (ValueError, FileNotFoundError)):
            raise e.__cause__ from None
        raise
    if module.num_params == 0:
        raise ValueError(f"model={cfg.model.name} has no trainable parameters: evaluate it with eval.py instead")
    return datamodule, module


def build_trainer(cfg: DictConfig, module: SRLitModule,
                  datamodule: L.LightningDataModule) -> tuple[L.Trainer, list[Any], SpeedChoice]:
    """The trainer with the configured callbacks and loggers, at the measured precision and layout."""
    callbacks = instantiate_group(cfg.get("callbacks"))
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a bar callback then
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    # Not a terminal (a log file, CI): plain lines every 10% instead of carriage-return bars, no summary table.
    callbacks = [LineProgressBar() if isinstance(c, TQDMProgressBar) and not is_terminal() else c for c in callbacks]
    on_terminal = {} if is_terminal(sys.stdout) else {"enable_model_summary": False}
    require_logger_packages(cfg.get("logger"))
    loggers = instantiate_group(cfg.get("logger"))
    speed = choose_speed(cfg, module, datamodule)
    precision = speed.precision
    log.info("precision: %s (%s)", precision.precision, precision.reason)
    log.info("memory format: %s (%s)", "channels_last" if module.channels_last else "contiguous",
             module.channels_last_reason)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                     precision=precision.precision, plugins=[AtomicCheckpointIO()], **on_terminal)
    check_ddp_launch(trainer)
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return trainer, loggers, speed


def start_from(state: dict[str, Any] | None, ckpt_path: Any, resume: bool, module: SRLitModule,
               trainer: L.Trainer, loggers: list[Any]) -> Any:
    """Apply the start checkpoint: fine-tune (weights only; returns None) or resume (returns its path)."""
    if state is None:
        return ckpt_path
    if not resume or "loops" not in state:
        # Fine-tune: weights only (ours, or an official release), fresh optimizer, schedule, steps.
        load_pretrained(module.net, state, origin=str(ckpt_path))
        log.info("fine-tuning from the weights of %s", ckpt_path)
        return None
    check_same_network(ckpt_path, state, module.hparams.network)
    log.info("resuming from %s", ckpt_path)
    # A resumed run's checkpoint folder holds its checkpoints: expected, not worth a warning.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # The resumed run logs the steps after the checkpoint again: drop their earlier rows
    # (resuming best.ckpt behind last.ckpt would otherwise repeat them in metrics.csv).
    for logger in loggers:
        if isinstance(logger, ResumableCSVLogger) and trainer.is_global_zero:
            logger.rewind(int(state.get("global_step", 0)))
    return ckpt_path


def fit(trainer: L.Trainer, module: SRLitModule, datamodule: L.LightningDataModule,
        ckpt_path: Any) -> tuple[str | None, _RequeueOnSignal]:
    """``trainer.fit``; returns what interrupted it (None, ``SIGINT``, ``SIGTERM``, ``requeue``)."""
    requeue = _RequeueOnSignal(trainer)
    try:
        with requeue:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        interrupted = None
    except SIGTERMException:
        interrupted = "requeue" if requeue.received else "SIGTERM"
    except SystemExit:
        if not trainer.interrupted:
            raise
        interrupted = "SIGINT"  # Lightning turns Ctrl-C into sys.exit(1) after checkpointing
    if interrupted is None:
        finish_run(trainer, module, datamodule)
    return interrupted, requeue


def run_summary(cfg: DictConfig, trainer: L.Trainer, module: SRLitModule, datamodule: L.LightningDataModule,
                speed: SpeedChoice, interrupted: str | None, started_at: float) -> dict[str, Any]:
    """The module's summary with the run's status, speed choice, folder and provenance (metrics.json)."""
    summary = module.run_summary()
    best_checkpoint = getattr(trainer.checkpoint_callback, "best_model_path", None) or None
    shared = provenance(trainer.strategy.root_device, int(cfg.scale), cfg.data.get("lr_source"))
    shared["protocol"].update(getattr(module, "metric_protocol", dict)())  # a video module's own protocol
    summary.update(
        status="interrupted" if interrupted else "finished",
        precision=speed.precision.precision,
        precision_reason=speed.precision.reason,
        speed_choice=speed.metrics(),
        steps=int(trainer.global_step),
        train_seconds=round(module.record.train_seconds(), 1),
        val_images=len(datamodule.val_set) if getattr(datamodule, "val_set", None) is not None else None,
        run_dir=str(Path(cfg.paths.output_dir)),
        best_checkpoint=best_checkpoint,
        overrides=_overrides(),
        torch_threads=torch.get_num_threads(),
        world_size=int(trainer.world_size),
        started_at=round(started_at, 3),
        finished_at=round(time.time(), 3),
        # The best checkpoint's hash, code and library versions, device and metric protocol.
        provenance={**checkpoint_info(best_checkpoint), "params": module.num_params, **shared},
    )
    return summary


class _RequeueOnSignal:
    """Under SLURM, the requeue signals stop training after the current step (through Lightning's
    SIGTERM path, so the interrupt checkpoint is written), then ``requeue()`` puts the job back in
    the queue; the requeued job resumes through ``requeued_checkpoint``."""

    def __init__(self, trainer: L.Trainer) -> None:
        self.trainer, self.received, self._previous = trainer, None, {}
        self.job = slurm_job_id()

    def __enter__(self) -> "_RequeueOnSignal":
        if self.job is not None:
            for sig in REQUEUE_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        log.info("received %s: checkpointing, then requeueing SLURM job %s", signal.Signals(signum).name, self.job)
        self.received = signum
        self.trainer._signal_connector.received_sigterm = True

    def requeue(self) -> None:
        if not self.trainer.is_global_zero:
            return
        result = subprocess.run(["scontrol", "requeue", str(self.job)], capture_output=True, text=True)
        if result.returncode != 0:
            log.warning("scontrol requeue %s failed (%s); resume by hand with ckpt_path=", self.job, result.stderr.strip())


def planned_steps(cfg: DictConfig) -> int | None:
    """The optimizer steps this run will take where the config fixes them (``fast_dev_run``,
    ``max_steps``), else None."""
    fast = cfg.trainer.get("fast_dev_run")
    if fast:
        return 1 if fast is True else int(fast)
    steps = int(cfg.trainer.get("max_steps") or -1)
    return steps if steps > 0 else None


def choose_speed(cfg: DictConfig, module: SRLitModule, datamodule: L.LightningDataModule) -> SpeedChoice:
    """Precision and layout for this run, measured where they are ``auto`` (or read from the cache):
    training steps of a copy of the network at the configured batch and patch size. Sets the
    module's layout and CUDA's TF32 switches; the global RNG is left as it was."""
    step = TrainingStep(
        batch=int(getattr(datamodule, "batch_size", 16)),
        patch=int(getattr(datamodule, "patch_size", 48)),
        scale=int(cfg.scale),
        loss_fn=module.loss_fn,
        optimizer=lambda params: instantiate(module.hparams.optimizer)(params=list(params)),
        frames=int(getattr(datamodule, "num_frame", 0)) if getattr(module.net, "multi_frame", False) else 0,
    )
    choice = choose_training(
        module.net, module.hparams.network, step,
        precision=cfg.trainer.get("precision"),
        channels_last=cfg.model.get("channels_last", "auto"),
        device=cfg.trainer.get("accelerator"),
        rank=launch_rank(),
        run_steps=planned_steps(cfg),
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
    if module.record.history and module.record.history[-1]["step"] == trainer.global_step:
        return
    validating = trainer.limit_val_batches != 0
    if validating:
        trainer.validate(module, datamodule=datamodule, verbose=False)
    ckpt = trainer.checkpoint_callback
    if ckpt is None or not ckpt.dirpath:
        return
    dirpath = Path(ckpt.dirpath)
    trainer.save_checkpoint(dirpath / f"{ckpt.CHECKPOINT_NAME_LAST}{ckpt.FILE_EXTENSION}", weights_only=False)
    if validating and module.record.history[-1]["psnr"] >= max(h["psnr"] for h in module.record.history):
        best = dirpath / f"{ckpt.filename or 'best'}{ckpt.FILE_EXTENSION}"
        trainer.save_checkpoint(best, weights_only=False)
        ckpt.best_model_path = str(best)


def _overrides() -> list[str]:
    """The command-line overrides of this run (empty outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)
