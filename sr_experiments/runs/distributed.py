"""Guards for running one training over several processes under Hydra."""

from __future__ import annotations

import os

import lightning as L


def check_ddp_launch(trainer: L.Trainer) -> None:
    """Refuse multi-process DDP inside a Hydra multirun when Lightning would start the processes.

    Lightning starts ranks > 0 by re-running the command line; in a sweep that command is the
    whole sweep (or a Ray worker), so every rank would launch new jobs. SLURM (submitit with
    ``tasks_per_node``) starts the processes itself, which works.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    if trainer.world_size <= 1 or not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    launcher = getattr(trainer.strategy, "launcher", None)
    if isinstance(launcher, _SubprocessScriptLauncher) and not launcher.cluster_environment.creates_processes_externally:
        raise ValueError(
            f"trainer.strategy={type(trainer.strategy).__name__} with {trainer.world_size} processes cannot run "
            "inside a multirun (-m): Lightning would start the other ranks by re-running the whole sweep. "
            "Sweep with one device per job (hydra/launcher=gpus), run each DDP training as its own command, "
            "or sweep on SLURM (hydra/launcher=slurm with hydra.launcher.tasks_per_node=N, trainer=ddp)."
        )


def launch_rank() -> int:
    """0 for the process that leads a run (or runs alone), else a positive number; read from the
    launcher's environment, since it is needed before the process group exists."""
    keys = ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "NODE_RANK", "LOCAL_RANK")
    return max((int(os.environ[k]) for k in keys if os.environ.get(k, "").isdigit()), default=0)
