"""Runs you can trust, part 2 (issue 24): train and eval folders claimed and owned, a run-folder
guard that cannot be skipped, refused resumes that leave the run untouched, a full disk that ends
in one line with the last checkpoint intact, and values the schema refuses by name."""

from __future__ import annotations

import csv
import errno
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CONF, FAST, ROOT, compose_train
from hydra import compose, initialize_config_dir
from hydra._internal.callbacks import Callbacks

from sr_experiments.cli import errors_as_one_line
from sr_experiments.models.weights import read_weights
from sr_experiments.outputs import OWNER_FILE, OutputError, read_owner
from sr_experiments.runs import run_dir as run_dir_module
from sr_experiments.runs.config_schema import ConfigError, validate_eval_config, validate_train_config
from sr_experiments.runs.run import train

EVAL = ["model=bicubic", "eval.sets=[sample:val]", "eval.device=cpu"]


def _hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (hidden ones and Hydra's records included)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _script(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def _one_line(proc: subprocess.CompletedProcess, code: int, *words: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code and len(lines) == 1, (proc.returncode, proc.stderr[-3000:])
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


def _hydra_config(config_name: str, overrides: list[str]):
    return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 4-step run, with the config record train.py's Hydra app writes beside it."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train(compose_train(FAST, run))
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*FAST, "+trainer.gradient_clip_val=0.5"]))
    return run


@pytest.fixture()
def run_copy(trained: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


# --- eval folders: claimed like training runs', never another run's (items 3, 4) ----------------


def test_eval_runs_started_in_the_same_second_get_their_own_folders(tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        configs = [_hydra_config("eval", EVAL) for _ in range(3)]
        for cfg in configs:
            cfg.hydra.run.dir = str(tmp_path / "runs" / "2026-01-01_00-00-00")  # one second's name
            Callbacks(cfg).on_run_start(config=cfg)
    dirs = [Path(cfg.hydra.run.dir) for cfg in configs]
    assert [d.name for d in dirs] == ["2026-01-01_00-00-00", "2026-01-01_00-00-00_1", "2026-01-01_00-00-00_2"]
    assert all(d.is_dir() for d in dirs)


@pytest.mark.slow
def test_two_eval_commands_started_together_write_two_folders(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, str(ROOT / "eval.py"), *EVAL], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()[-3000:]
    runs = sorted((tmp_path / "outputs" / "eval" / "runs").iterdir())
    assert len(runs) == 2 and all((r / "results.json").is_file() for r in runs)
    assert all(read_owner(r)["command"] == "eval" for r in runs)


def test_eval_into_a_training_run_is_refused_and_changes_nothing(run_copy: Path, tmp_path: Path) -> None:
    before = _hashes(run_copy)
    proc = _script("eval.py", [*EVAL, f"hydra.run.dir={run_copy}"], tmp_path)
    _one_line(proc, 2, str(run_copy), "train run")
    assert _hashes(run_copy) == before  # not even Hydra's .hydra/*.yaml


def test_train_into_an_eval_folder_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "evaluated"
    assert _script("eval.py", [*EVAL, f"hydra.run.dir={folder}"], tmp_path).returncode == 0
    assert (folder / "results.json").is_file()
    before = _hashes(folder)
    proc = _script("train.py", [*FAST, f"hydra.run.dir={folder}"], tmp_path)
    _one_line(proc, 2, str(folder), "eval run")
    assert _hashes(folder) == before
    second = _script("eval.py", [*EVAL, f"hydra.run.dir={folder}"], tmp_path)  # another eval: another run
    _one_line(second, 2, str(folder), "earlier run")
    assert _hashes(folder) == before


# --- a guard that cannot be skipped (item 5) -----------------------------------------------------


def test_resume_that_repeats_a_plus_override_continues_its_own_run(run_copy: Path) -> None:
    last = run_copy / "checkpoints" / "last.ckpt"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = _hydra_config("train", [f"ckpt_path={last}", "+trainer.gradient_clip_val=0.5", "trainer.max_steps=8"])
        Callbacks(cfg).on_run_start(config=cfg)  # Hydra's own wrapper, which turns exceptions into warnings
    assert Path(cfg.hydra.run.dir) == run_copy  # its own folder, not a new run
    assert cfg.trainer.gradient_clip_val == 0.5 and cfg.trainer.max_steps == 8
    assert cfg.data.patch_size == 16  # the run's original overrides


def test_a_failing_guard_stops_the_command_with_one_line(run_copy: Path, tmp_path: Path, capsys,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def cannot_compose(config, origin):
        raise RuntimeError("Could not append to config. An item is already at 'trainer.gradient_clip_val'.\nmore")

    monkeypatch.setattr(run_dir_module, "continue_config", cannot_compose)
    new_dir = tmp_path / "runs" / "new"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = _hydra_config("train", [f"ckpt_path={run_copy / 'checkpoints' / 'last.ckpt'}"])
        cfg.hydra.run.dir = str(new_dir)
        with pytest.raises(SystemExit) as exit_info:
            Callbacks(cfg).on_run_start(config=cfg)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Could not append to config" in lines[0]
    assert not new_dir.exists()  # no new run was started


def test_a_broken_run_record_refuses_the_resume_from_the_command_line(run_copy: Path, tmp_path: Path) -> None:
    (run_copy / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["model=no_such_model"]))
    before = _hashes(run_copy)
    proc = _script("train.py", [f"ckpt_path={run_copy / 'checkpoints' / 'last.ckpt'}"], tmp_path)
    _one_line(proc, 2, "no_such_model")
    assert _hashes(run_copy) == before and not (tmp_path / "outputs").exists()


# --- a refused resume leaves the run untouched; history rows are never repeated (item 7) ----------


def test_resume_with_another_network_is_refused_before_anything_is_written(run_copy: Path, tmp_path: Path) -> None:
    before = _hashes(run_copy)
    proc = _script("train.py", [f"ckpt_path={run_copy / 'checkpoints' / 'last.ckpt'}", "model.width=16"], tmp_path)
    _one_line(proc, 2, "another network", "model.width")
    assert _hashes(run_copy) == before  # csv/hparams.yaml, .sr_run.json, logs: as they were
    assert not list((run_copy / ".hydra").glob("resume_*")) and not (run_copy / "train.log").exists()


def test_a_config_refused_at_start_leaves_no_folder(tmp_path: Path) -> None:
    proc = _script("train.py", [*FAST, "scale=5", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    _one_line(proc, 2, "scale=5", "edsr")
    assert not (tmp_path / "run").exists()


def test_a_new_run_in_a_folder_of_an_earlier_failed_run_is_refused(tmp_path: Path) -> None:
    failed = tmp_path / "failed"  # what a run that failed before its first checkpoint leaves
    (failed / ".hydra").mkdir(parents=True)
    (failed / "train.log").write_text("earlier log\n")
    (failed / OWNER_FILE).write_text('{"command": "train"}')
    before = _hashes(failed)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = _hydra_config("train", [*FAST, f"hydra.run.dir={failed}"])
        with pytest.raises(SystemExit) as exit_info:
            Callbacks(cfg).on_run_start(config=cfg)
    assert exit_info.value.code == 2 and _hashes(failed) == before


def _csv_steps(run: Path) -> list[tuple[int, bool]]:
    with open(run / "csv" / "metrics.csv", newline="") as f:
        return [(int(r["step"]), bool(r.get("val/psnr"))) for r in csv.DictReader(f)]


def test_resuming_an_earlier_checkpoint_does_not_repeat_history_rows(tmp_path: Path) -> None:
    run = tmp_path / "run"
    log = [*FAST, "trainer.log_every_n_steps=2"]
    train(compose_train(log, run))  # validation and checkpoints at step 4
    early = run / "checkpoints" / "early.ckpt"
    shutil.copy(run / "checkpoints" / "last.ckpt", early)
    train(compose_train([*log, "trainer.max_steps=8", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"], run))
    assert max(s for s, _ in _csv_steps(run)) == 7
    # best.ckpt behind last.ckpt: steps 5-8 are trained and logged again, once.
    summary = train(compose_train([*log, "trainer.max_steps=8", f"ckpt_path={early}"], run))
    steps = _csv_steps(run)
    assert len(steps) == len(set(steps)), steps
    assert [h["step"] for h in summary["history"]] == [4, 8]
    assert sum(1 for _, val in steps if val) == 2  # one validation row per validation


# --- a full disk: one line, the last good checkpoint intact, no partial file (item 8) -----------


def _disk_full_after(calls: int, monkeypatch: pytest.MonkeyPatch, module) -> list[int]:
    """``module.torch.save`` fails as a full disk does from its ``calls``-th call on, after writing
    part of the file."""
    import torch

    real_save, count = torch.save, [0]

    def save(obj, f, *args, **kwargs):
        count[0] += 1
        if count[0] > calls:
            Path(f).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(module.torch, "save", save)
    return count


def test_training_on_a_full_disk_ends_in_one_line_with_the_last_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from sr_experiments.runs import checkpoint_io

    run = tmp_path / "run"
    # Validation and checkpoints (best, last) at steps 4 and 8: the disk fills after the first two.
    _disk_full_after(2, monkeypatch, checkpoint_io)
    with pytest.raises(SystemExit) as exit_info, errors_as_one_line("train.py"):
        train(compose_train([*FAST, "trainer.max_steps=8"], run))
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no space left" in lines[0] and ".ckpt" in lines[0], lines
    monkeypatch.undo()
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.ckpt", "last.ckpt"]  # no partial, no interrupted.ckpt
    assert read_weights(ckpts / "last.ckpt")["global_step"] == 4


def test_eval_on_a_full_disk_ends_in_one_line_and_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from omegaconf import open_dict

    from sr_experiments.evaluation.run import run_eval

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=EVAL)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "eval")
    real_write = Path.write_text

    def write_text(self, text, *args, **kwargs):
        if self.name.startswith(".results") and self.suffix == ".csv":  # the disk fills at results.csv
            real_write(self, text[: len(text) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(SystemExit) as exit_info, errors_as_one_line("eval.py"):
        run_eval(cfg)
    monkeypatch.undo()
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "results.csv" in lines[0] and "no space left" in lines[0], lines
    names = {p.name for p in (tmp_path / "eval").iterdir()}
    assert "results.csv" not in names and not [n for n in names if n.startswith(".") and n != OWNER_FILE]


# --- values the schema refuses, by name, for every command (item 8) -----------------------------


@pytest.mark.parametrize(
    ("override", "key"),
    [("seed=-1", "seed="), ("seed=abc", "seed="), (f"seed={2**32}", "seed="), ("scale=5", "scale=5"),
     ("degradation=realesrgan", None), ("degradation=bsrgan", None)],
)
def test_train_schema_names_the_key(tmp_path: Path, override: str, key: str | None) -> None:
    cfg = compose_train([override], tmp_path)
    if key is None:
        validate_train_config(cfg)  # the shipped configs pass
        return
    with pytest.raises(ConfigError, match=key):
        validate_train_config(cfg)


@pytest.mark.parametrize(
    "override",
    ["degradation.first.noise=maybe", "degradation.second.jpeg=1", "degradation.final_sinc=yes_please",
     "degradation.usm_gt=0"],
)
def test_degradation_switches_must_be_true_or_false(tmp_path: Path, override: str) -> None:
    cfg = compose_train(["degradation=realesrgan", override], tmp_path)
    with pytest.raises(ConfigError, match=rf"^{override.split('=')[0]}=.*true or false"):
        validate_train_config(cfg)


def test_bsrgan_switches_must_be_true_or_false(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^degradation.noise='maybe'"):
        validate_train_config(compose_train(["degradation=bsrgan", "degradation.noise=maybe"], tmp_path))


@pytest.mark.parametrize(("override", "key"), [("scale=abc", "scale="), ("eval.degradation_seed=-1", "eval.degradation_seed="),
                                               ("eval.self_ensemble=maybe", "eval.self_ensemble=")])
def test_eval_schema_names_the_key(override: str, key: str) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=[override])
    with pytest.raises(ConfigError, match=rf"^{key}"):
        validate_eval_config(cfg)


@pytest.mark.parametrize(
    ("script", "args", "words"),
    [
        ("train.py", ["seed=-1"], ["seed=-1"]),
        ("train.py", ["seed=abc"], ["seed="]),
        ("train.py", ["degradation=realesrgan", "degradation.first.noise=maybe"], ["degradation.first.noise="]),
        ("info.py", ["model=hat", "scale=5"], ["scale=5", "hat"]),
        ("eval.py", [*EVAL, "eval.degradation_seed=-1"], ["eval.degradation_seed="]),
    ],
)
def test_bad_values_are_one_line_and_write_nothing(tmp_path: Path, script: str, args: list[str], words: list[str]) -> None:
    proc = _script(script, args, tmp_path)
    _one_line(proc, 2, *words)
    assert not list(tmp_path.iterdir())  # no run folder, config record or log


def test_an_unloadable_checkpoint_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "in" / "bad.ckpt"
    bad.parent.mkdir()
    bad.write_bytes(b"not a checkpoint")
    proc = _script("train.py", [*FAST, f"ckpt_path={bad}", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    _one_line(proc, 2, str(bad), "cannot be loaded")
    assert not (tmp_path / "run").exists()
