"""A run directory belongs to one run.

Lightning resumes from whatever checkpoint it finds in a run folder when fit() gets no
``ckpt_path``, and Hydra names folders by the second; together they let a new run silently
continue an old one, or two runs share a folder. Here: timestamped folders are claimed atomically
(``_1``, ``_2`` ... when taken), a folder named by the user must not hold another run's results,
and a run resumes only from the ``ckpt_path`` it is given. ``RunDirGuard`` does this before Hydra
writes anything into the folder; ``train()`` checks again for callers that bypass Hydra.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra import compose
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from sr_experiments.training.config_schema import ConfigError, validate_train_config


log = logging.getLogger(__name__)
OWNER_FILE = ".sr_run.json"  # who started the run in this folder (its SLURM job id)


class RunDirError(ValueError):
    """The run directory holds another run's results."""


def run_results(folder: str | Path) -> list[str]:
    """What in ``folder`` belongs to a run that produced something (empty: the folder is free)."""
    folder = Path(folder)
    found = [n for n in ("metrics.json", "results.json", "csv/metrics.csv") if (folder / n).is_file()]
    found += [str(p.relative_to(folder)) for p in sorted(folder.glob("checkpoints/*.ckpt"))]
    found += [p.name for p in sorted(folder.glob("hpc_ckpt_*.ckpt"))]
    return found


def sweep_results(folder: str | Path) -> list[str]:
    """Job folders of an earlier sweep in ``folder`` that hold results."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [p.name for p in sorted(folder.iterdir()) if p.is_dir() and run_results(p)]


def run_dir_of(ckpt_path: str | Path) -> Path | None:
    """The run folder of a checkpoint this framework wrote (``<run>/checkpoints/x.ckpt``)."""
    p = Path(ckpt_path).expanduser().resolve()
    return p.parent.parent if p.parent.name == "checkpoints" else None


def check_run_dir(output_dir: str | Path, ckpt_path: str | None, resume: bool) -> None:
    """Refuse ``output_dir`` if it holds another run; resuming a checkpoint of that very run is fine."""
    output_dir = Path(output_dir)
    taken = run_results(output_dir)
    if not taken:
        return
    if ckpt_path and resume and run_dir_of(ckpt_path) == output_dir.resolve():
        return
    last = output_dir / "checkpoints" / "last.ckpt"
    hint = f"resume it with ckpt_path={last}" if last.is_file() else "its files would be overwritten"
    raise RunDirError(
        f"{output_dir} already holds a run ({', '.join(taken[:3])}{', ...' if len(taken) > 3 else ''}): "
        f"{hint}, or start this run in another folder (hydra.run.dir=...)"
    )


def claim_unique_dir(path: str | Path) -> Path:
    """Create ``path``, or ``path_1``, ``path_2`` ... if taken: ``mkdir`` is atomic, so two runs
    started in the same second get two folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for i in range(10_000):
        candidate = path if i == 0 else path.with_name(f"{path.name}_{i}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RunDirError(f"no free run folder next to {path}")


def _set_by_user(config: DictConfig, key: str) -> bool:
    return any(o.lstrip("+~").split("=", 1)[0] == key for o in config.hydra.overrides.hydra)


def _fail(message: str) -> None:
    print(f"{Path(sys.argv[0]).name}: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


class RunDirGuard(Callback):
    """Hydra callback: validate the config and settle the run folder before Hydra creates it.

    Args:
        validate: check the config against the training schema (``config_schema``).
    """

    def __init__(self, validate: bool = True) -> None:
        self.validate = validate

    def _validate(self, config: DictConfig) -> None:
        if self.validate:
            try:
                validate_train_config(config)
            except ConfigError as e:
                _fail(f"invalid config: {e}")

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        ckpt, resume = config.get("ckpt_path"), bool(config.get("resume", True))
        if not ckpt and _set_by_user(config, "hydra.run.dir"):
            ckpt = requeued_checkpoint(Path(config.hydra.run.dir))
        origin = run_dir_of(ckpt) if ckpt and resume and ckpt != "latest" else None
        if origin is not None:
            continue_config(config, origin)
        self._validate(config)
        with read_write(config.hydra), open_dict(config.hydra):
            if origin is not None and not _set_by_user(config, "hydra.run.dir") and (origin / ".hydra").is_dir():
                # Resuming a run continues in its own folder, beside its history.
                config.hydra.run.dir = str(origin)
            elif not _set_by_user(config, "hydra.run.dir"):
                config.hydra.run.dir = str(claim_unique_dir(config.hydra.run.dir))
            run_dir = Path(config.hydra.run.dir)
            try:
                check_run_dir(run_dir, ckpt, resume)
            except RunDirError as e:
                _fail(str(e))
            if (run_dir / ".hydra").is_dir() and config.hydra.output_subdir:
                # Keep the first start's config record; each resume records its own beside it.
                config.hydra.output_subdir = f"{config.hydra.output_subdir}/resume_{time.strftime('%Y-%m-%d_%H-%M-%S')}"

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._validate(config)
        with read_write(config.hydra), open_dict(config.hydra):
            if _set_by_user(config, "hydra.sweep.dir"):
                earlier = sweep_results(config.hydra.sweep.dir)
                if earlier:
                    _fail(
                        f"{config.hydra.sweep.dir} already holds a sweep (jobs {', '.join(earlier[:5])}); "
                        "choose another hydra.sweep.dir"
                    )
            else:
                claimed = claim_unique_dir(config.hydra.sweep.dir)
                # Job configs are composed again from the overrides, so the claimed name goes there.
                config.hydra.sweep.dir = str(claimed)
                config.hydra.overrides.hydra.append(f"hydra.sweep.dir={claimed}")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Sweep values reach the config only per job.
        if config.hydra.mode == RunMode.MULTIRUN:
            self._validate(config)


def continue_config(config: DictConfig, origin: Path) -> None:
    """Make ``config`` the resumed run's own: its original overrides, then this command's.

    ``python train.py ckpt_path=<run>/checkpoints/last.ckpt`` then continues that run as it was
    configured (network, data, schedule) instead of the defaults; anything typed now (say a
    larger ``trainer.max_steps``) still wins.
    """
    saved = origin / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        return
    skip = ("ckpt_path", "resume", "hydra.run.dir")
    original = [str(o) for o in OmegaConf.load(saved) if str(o).lstrip("+~").split("=", 1)[0] not in skip]
    if not original:
        return
    current = list(config.hydra.overrides.task)
    merged = compose(config_name=config.hydra.job.config_name, overrides=[*original, *current])
    with read_write(config), open_dict(config):
        for key in [k for k in config if k != "hydra" and k not in merged]:
            del config[key]
        for key in merged:
            config[key] = merged[key]
    print(f"resuming {origin} with its original overrides: {' '.join(original)}", flush=True)


def slurm_job_id() -> str | None:
    """This job's SLURM id (array jobs: ``<array id>_<task id>``), or None outside SLURM."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array:
        return f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"
    return os.environ.get("SLURM_JOB_ID")


def resume_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint of the run in ``output_dir`` (interrupted, else last)."""
    ckpts = [p for p in (output_dir / "checkpoints" / n for n in ("interrupted.ckpt", "last.ckpt")) if p.is_file()]
    return max(ckpts, key=lambda p: p.stat().st_mtime) if ckpts else None


def requeued_checkpoint(output_dir: Path) -> str | None:
    """Where a SLURM job that was requeued resumes: this job's own folder and newest checkpoint.

    A requeued job runs the same command again (same config, same folder); recognised by the
    SLURM job id recorded when the run started.
    """
    job = slurm_job_id()
    owner = output_dir / OWNER_FILE
    if job is None or not owner.is_file():
        return None
    try:
        recorded = json.loads(owner.read_text()).get("slurm_job_id")
    except (ValueError, AttributeError):
        return None
    ckpt = resume_checkpoint(output_dir) if recorded == job else None
    if ckpt is not None:
        log.info("SLURM job %s was requeued: resuming from %s", job, ckpt)
    return str(ckpt) if ckpt else None
