"""A run directory belongs to one run.

Lightning resumes from whatever checkpoint it finds in a run folder when fit() gets no
``ckpt_path``, and Hydra names folders by the second; together they let a new run silently
continue an old one, or two runs share a folder. Here: timestamped folders are claimed atomically
(``_1``, ``_2`` ... when taken), a folder named by the user must not hold another run's results,
and a run resumes only from the ``ckpt_path`` it is given. ``RunDirGuard`` does this before Hydra
writes anything into the folder (its config record, the log): every check that can refuse a run or a
resume runs there, so a refused command leaves the folder as it was. ``train()`` checks again for
callers that bypass Hydra. The same guard serves eval.py (``command: eval``): its folders are
claimed like training runs', and a folder of another run or command is refused.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from hydra import compose
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from sr_experiments.cli import fail, first_line
from sr_experiments.outputs import OWNER_FILE, check_owner, claim_unique_dir, read_owner
from sr_experiments.runs.config_schema import ConfigError, validate_eval_config, validate_train_config

__all__ = ["OWNER_FILE", "RunDirError", "RunDirGuard", "check_run_dir", "claim_unique_dir", "continue_config"]

log = logging.getLogger(__name__)


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
    check_owner(output_dir, "train")
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


def check_unused(folder: Path, key: str = "hydra.run.dir") -> None:
    """Refuse a folder named by the user that holds an earlier run's files (Hydra's config record,
    an owner record, results): Hydra would rewrite that run's ``.hydra/*.yaml`` and the new run's
    log and files would mix with its own. A SLURM job requeued before its first checkpoint is the
    same run: its own folder is fine."""
    owner = read_owner(folder)
    job = slurm_job_id()
    if owner is not None and job is not None and owner.get("slurm_job_id") == job:
        return
    found = [n for n in (OWNER_FILE, ".hydra") if (folder / n).exists()] + run_results(folder)
    if found:
        raise RunDirError(
            f"{key}={folder} holds the files of an earlier run ({', '.join(found[:3])}): choose another "
            "folder (or delete that one if its run is of no use)"
        )


def network_spec(cfg: DictConfig) -> dict[str, Any] | None:
    """The network spec a checkpoint of ``cfg`` records (``SRLitModule``'s ``hparams.network``:
    how the network runs and where its first weights came from left out), or None where it is only
    known once the module is built (``model=from_file``)."""
    try:
        spec = OmegaConf.to_container(cfg.model, resolve=True)
    except Exception:  # an interpolation that resolves only inside the run
        return None
    if not isinstance(spec, dict) or spec.get("name") == "from_file":
        return None
    for key in ("compile", "channels_last", "ema_decay", "pretrained", "pretrained_key"):
        spec.pop(key, None)
    spec["scale"] = int(cfg.scale)
    return spec


def check_same_network(ckpt_path: str, state: dict[str, Any], network: dict[str, Any]) -> None:
    """Resuming needs the checkpoint's network: say which settings differ, not 76 KB of keys."""
    saved = (state.get("hyper_parameters") or {}).get("network")
    if not isinstance(saved, dict):
        return
    # The label is a name (model=shallow against model=edsr model.depth=4 model.width=32), not the network.
    saved, network = ({k: v for k, v in spec.items() if k != "label"} for spec in (saved, network))
    if saved == network:
        return
    diff = [f"{k}={saved.get(k)!r} (this run: {network.get(k)!r})" for k in sorted(set(saved) | set(network))
            if saved.get(k) != network.get(k)]
    overrides = Path(ckpt_path).resolve().parent.parent / ".hydra" / "overrides.yaml"
    hint = f" repeat that run's overrides ({overrides})" if overrides.is_file() else " repeat that run's model settings"
    raise ValueError(
        f"{ckpt_path} was trained with another network: model.{'; model.'.join(diff)}. To resume it,{hint}; "
        "to start a new run from its weights, add resume=false"
    )


def read_start_checkpoint(cfg: DictConfig, ckpt_path: str | None, resume: bool) -> dict[str, Any] | None:
    """The checkpoint a run starts from, read (weights only, no code) before anything is written:
    an unreadable file, or for a resume a checkpoint of another network, is refused here, so a
    refused run leaves its folder untouched."""
    if not ckpt_path:
        return None
    from sr_experiments.models.weights import read_weights  # torch: only once a run starts
    from sr_experiments.models.weights import CheckpointLoadError

    try:
        state = read_weights(ckpt_path)
    except (CheckpointLoadError, FileNotFoundError, IsADirectoryError) as e:
        raise ValueError(f"ckpt_path: {first_line(e)}") from None
    spec = network_spec(cfg)
    if resume and "loops" in state and spec is not None:
        check_same_network(str(ckpt_path), state, spec)
    return state


def _set_by_user(config: DictConfig, key: str) -> bool:
    return any(o.lstrip("+~").split("=", 1)[0] == key for o in config.hydra.overrides.hydra)


def _fail(message: str) -> NoReturn:
    fail(Path(sys.argv[0]).name, message, 2)


def _guarded(check: Callable[[DictConfig], None], config: DictConfig) -> None:
    """Run ``check``; any failure ends the command with exit 2 and one line.

    Hydra turns an exception raised in a callback into a warning and starts the run anyway
    (``hydra/_internal/callbacks.py``): a failed guard would then train from scratch in a new
    folder. ``SystemExit`` is not an ``Exception``, so it gets through.
    """
    try:
        check(config)
    except Exception as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            traceback.print_exc()
        _fail(f"invalid config: {first_line(e)}" if isinstance(e, ConfigError) else first_line(e))


class RunDirGuard(Callback):
    """Hydra callback: validate the config and settle the run folder before Hydra creates it.

    Every check that can refuse the command runs here (the config, the checkpoint to start from,
    the folder), before Hydra writes its config record and log; any failure exits 2 with one line.

    Args:
        validate: check the config against the command's schema (``config_schema``).
        command: ``train`` or ``eval``: whose folder this is (recorded in ``.sr_run.json``); a
            folder of another command or run is refused.
    """

    def __init__(self, validate: bool = True, command: str = "train") -> None:
        self.validate, self.command = validate, command

    def _validate(self, config: DictConfig) -> None:
        if self.validate:
            (validate_train_config if self.command == "train" else validate_eval_config)(config)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _guarded(self._settle_run, config)

    def _settle_run(self, config: DictConfig) -> None:
        from sr_experiments.runs.distributed import launch_rank

        if self.command == "train" and launch_rank() > 0:
            # A DDP worker that Lightning's launcher started with rank 0's folder (hydra.run.dir=...):
            # rank 0 has checked and claimed it; refusing it here would kill the run.
            return
        ckpt, resume = config.get("ckpt_path"), bool(config.get("resume", True))
        named = _set_by_user(config, "hydra.run.dir")
        origin = None
        if self.command == "train":
            if not ckpt and named:
                ckpt = requeued_checkpoint(Path(config.hydra.run.dir))
            origin = run_dir_of(ckpt) if ckpt and resume and ckpt != "latest" else None
            if origin is not None:
                continue_config(config, origin)
        self._validate(config)
        if self.command == "train":
            read_start_checkpoint(config, ckpt, resume)
        with read_write(config.hydra), open_dict(config.hydra):
            if origin is not None and not named and (origin / ".hydra").is_dir():
                # Resuming a run continues in its own folder, beside its history.
                config.hydra.run.dir = str(origin)
            elif not named:
                config.hydra.run.dir = str(claim_unique_dir(config.hydra.run.dir))
                return  # a new, empty folder
            run_dir = Path(config.hydra.run.dir)
            self._check_folder(run_dir, ckpt, resume)
            if (run_dir / ".hydra").is_dir() and config.hydra.output_subdir:
                # Keep the first start's config record; each resume records its own beside it.
                config.hydra.output_subdir = f"{config.hydra.output_subdir}/resume_{time.strftime('%Y-%m-%d_%H-%M-%S')}"

    def _check_folder(self, run_dir: Path, ckpt: str | None, resume: bool) -> None:
        if self.command == "train":
            check_run_dir(run_dir, ckpt, resume)
            if ckpt and resume and run_dir_of(ckpt) == run_dir.resolve():
                return  # resuming this very run
        else:
            check_owner(run_dir, self.command)
        check_unused(run_dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _guarded(self._settle_sweep, config)

    def _settle_sweep(self, config: DictConfig) -> None:
        self._validate(config)
        with read_write(config.hydra), open_dict(config.hydra):
            if _set_by_user(config, "hydra.sweep.dir"):
                earlier = sweep_results(config.hydra.sweep.dir)
                if earlier:
                    raise RunDirError(
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
            _guarded(self._validate, config)


def _override_key(override: str) -> str:
    return str(override).lstrip("+~").split("=", 1)[0]


def continue_config(config: DictConfig, origin: Path) -> None:
    """Make ``config`` the resumed run's own: its original overrides, then this command's.

    ``python train.py ckpt_path=<run>/checkpoints/last.ckpt`` then continues that run as it was
    configured (network, data, schedule) instead of the defaults; anything typed now (say a
    larger ``trainer.max_steps``) still wins. A key typed again replaces the original override
    (composing both would fail on a repeated ``+key=``: "Could not append to config").
    """
    saved = origin / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        return
    skip = ("ckpt_path", "resume", "hydra.run.dir")
    current = [str(o) for o in config.hydra.overrides.task]
    original = {_override_key(o): str(o) for o in OmegaConf.load(saved) if _override_key(o) not in skip}
    if not original:
        return
    merged_overrides = [o for k, o in original.items() if k not in {_override_key(c) for c in current}]
    for c in current:
        # A key the original run added (+key=) is not in the base config: typed again as key=v, add it.
        first = original.get(_override_key(c), "")
        merged_overrides.append(f"++{c}" if first.startswith("+") and not c.startswith(("+", "~")) else c)
    merged = compose(config_name=config.hydra.job.config_name, overrides=merged_overrides)
    with read_write(config), open_dict(config):
        for key in [k for k in config if k != "hydra" and k not in merged]:
            del config[key]
        for key in merged:
            config[key] = merged[key]
    print(f"resuming {origin} with its original overrides: {' '.join(original.values())}", flush=True)


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
    owner = read_owner(output_dir)
    if job is None or owner is None:
        return None
    ckpt = resume_checkpoint(output_dir) if owner.get("slurm_job_id") == job else None
    if ckpt is not None:
        log.info("SLURM job %s was requeued: resuming from %s", job, ckpt)
    return str(ckpt) if ckpt else None
