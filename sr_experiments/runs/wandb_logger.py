"""W&B logging made for sweeps: one group per sweep, readable run names, size in the summary.

``SweepWandbLogger`` is Lightning's ``WandbLogger`` with the run's identity filled in from Hydra:

* ``group``: the sweep directory's name in a multirun (every job of one sweep shares it), none
  for a single run;
* ``name``: the run's command-line overrides, shortened (``lr=2e-4,depth=16``);
* ``tags``: the model, ``x<scale>`` and the data preset, plus any given;
* summary: ``params`` and ``macs_720p`` (multiply-accumulates for a 1280x720 output, as
  ``info.py`` and BENCHMARKS.md count them) at fit start; the best ``val/psnr``/``val/ssim``, the
  gain over bicubic, steps and wall time at the end;
* the best checkpoint as a ``model`` artifact at the end when ``log_model`` is true (offline
  runs keep it and upload it with ``wandb sync``).

Offline by default; ``WANDB_MODE`` wins when set, so ``WANDB_MODE=online`` logs live without
editing the config.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from sr_experiments.config_values import parse_overrides
from sr_experiments.models.complexity import count_macs, lr_size_720p


def wandb_mode(offline: bool, env: str | None = None) -> str:
    """``online`` / ``offline`` / ``disabled``: ``WANDB_MODE`` when set, else from ``offline``."""
    env = os.environ.get("WANDB_MODE") if env is None else env
    env = (env or "").strip().lower()
    if env == "dryrun":  # the old spelling of offline
        env = "offline"
    if env in ("online", "offline", "disabled"):
        return env
    return "offline" if offline else "online"


def run_name(overrides: Iterable[str]) -> str | None:
    """A readable name from command-line overrides: ``["lr=2e-4", "model.depth=16"]`` -> ``lr=2e-4,depth=16``.

    Paths, Hydra/logger settings and display switches are dropped; dotted keys keep their last part.
    """
    parts = [f"{key.rsplit('.', 1)[-1]}={value}" for key, value in parse_overrides(list(overrides)).items()
             if "/" not in value]
    return ",".join(parts) or None


def hydra_identity() -> tuple[list[str], str | None, str | None]:
    """(task overrides, sweep group, data preset) of the running Hydra job; empty outside one."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return [], None, None
    hc = HydraConfig.get()
    group = None
    if hc.mode == RunMode.MULTIRUN:
        # The job's resolved directory is <sweep dir>/<subdir>; reading hydra.sweep.dir instead
        # could re-evaluate ${now:...} in a worker and name a different sweep.
        group = Path(hc.runtime.output_dir).parent.name
    return list(hc.overrides.task), group, hc.runtime.choices.get("data")


class SweepWandbLogger(WandbLogger):
    """``WandbLogger`` that names, groups and tags runs from the Hydra job (see the module doc).

    Args:
        project: W&B project.
        save_dir: where the ``wandb/`` folder goes (the run directory).
        offline: log to local files only (default); ``WANDB_MODE`` overrides it when set.
        name: run name; ``None``: from the command-line overrides.
        group: run group; ``None``: the sweep directory's name in a multirun.
        tags: tags added to ``auto_tags`` and the data preset.
        auto_tags: tags derived from the config (model name, scale).
        log_model: log the best checkpoint as an artifact at the end of the run.
        **kwargs: passed to ``wandb.init`` (``entity``, ``notes``, ...).
    """

    def __init__(
        self,
        project: str = "sr-experiments",
        save_dir: str = ".",
        offline: bool = True,
        name: str | None = None,
        group: str | None = None,
        tags: Sequence[str] = (),
        auto_tags: Sequence[str] = (),
        log_model: bool = False,
        **kwargs: Any,
    ) -> None:
        overrides, sweep_group, data_preset = hydra_identity()
        all_tags = [str(t) for t in auto_tags]
        if data_preset:
            all_tags.append(f"data={data_preset}")
        all_tags += [str(t) for t in tags if str(t) not in all_tags]
        # offline=False to Lightning: its offline flag forces WANDB_MODE=dryrun for the whole
        # process and refuses log_model; the mode is passed to wandb.init instead.
        super().__init__(
            project=project,
            save_dir=save_dir,
            offline=False,
            name=name or run_name(overrides),
            group=group or sweep_group,
            tags=all_tags,
            log_model=False,
            mode=wandb_mode(offline),
            **kwargs,
        )
        self._wandb_init.pop("anonymous", None)  # Lightning always passes it; wandb warns it is gone
        self.log_best_checkpoint = bool(log_model)
        self._finished = False
        self._size_logged = False

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        # Lightning hands the module to every logger when fit (and validate) starts: the moment to
        # record its size, once.
        if self._size_logged:
            return
        self._size_logged = True
        net_spec = model.hparams.get("network") if hasattr(model, "hparams") else None
        summary = {"params": int(model.num_params)} if hasattr(model, "num_params") else {}
        if net_spec:
            summary["macs_720p"] = count_macs(net_spec, lr_size_720p(int(net_spec["scale"])))
        self.experiment.summary.update(summary)

    @rank_zero_only
    def finish_run(self, trainer: L.Trainer, summary: dict[str, Any]) -> None:
        """After the last validation and checkpoint: results in the summary, best checkpoint, close.

        Closing matters: a sequential sweep runs every job in one process, and an unfinished run
        would be reused by the next job.
        """
        if self._experiment is None or self._finished:
            return
        import wandb

        run = self.experiment
        best, bic = summary.get("best"), summary.get("bicubic")
        final = {"steps": summary.get("steps"), "train_seconds": summary.get("train_seconds")}
        if best:
            final.update({"best/psnr": best["psnr"], "best/ssim": best["ssim"], "best/step": best["step"]})
            if bic:
                final["best/psnr_gain"] = best["psnr"] - bic["psnr"]
        run.summary.update({k: v for k, v in final.items() if v is not None})
        ckpt = summary.get("best_checkpoint")
        if self.log_best_checkpoint and ckpt and Path(ckpt).is_file():
            artifact = wandb.Artifact(
                name=f"model-{run.id}", type="model",
                metadata={"val/psnr": best["psnr"] if best else None, "step": best["step"] if best else None},
            )
            artifact.add_file(str(ckpt), name="model.ckpt")
            run.log_artifact(artifact, aliases=["best", "latest"])
        run.finish()
        # finish() can return before the service has written the run's last records to disk;
        # shutting the service down flushes them (the next run starts a fresh one).
        wandb.teardown()
        self._finished = True


def finish_loggers(trainer: L.Trainer, summary: dict[str, Any]) -> None:
    """Let loggers that need it (``SweepWandbLogger``, ``HParamsTensorBoardLogger``) close the run
    with its final results."""
    for logger in trainer.loggers:
        finish = getattr(logger, "finish_run", None)
        if callable(finish):
            finish(trainer, summary)
