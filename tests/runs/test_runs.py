"""Runs you can trust: one run per folder, resume only when asked and then bit-exact, signals
that checkpoint and exit non-zero, and bad values refused before anything is written."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONF, FAST, ROOT, compose_train
from hydra import compose, initialize_config_dir
from PIL import Image
from omegaconf import OmegaConf

from sr_experiments.models.weights import read_weights
from sr_experiments.models.registry import NETWORKS, is_multi_frame
from sr_experiments.runs.config_schema import ConfigError, validate_train_config
from sr_experiments.data import SRDataModule
from sr_experiments.imaging.io import ImageLoadError, load_rgb
from sr_experiments.runs.run_dir import RunDirError, RunDirGuard, claim_unique_dir
from sr_experiments.runs.run import train

# Three epochs of 16 steps; validation and last.ckpt at steps 16, 32, 48.
RUN = [
    "trainer.max_steps=48",
    "data.patches_per_epoch=64",
    "data.batch_size=4",
    "data.patch_size=16",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.image_panel.num_images=1",
    "trainer.log_every_n_steps=4",
]


def _cli(args: list[str], cwd: Path = ROOT, env: dict | None = None) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), *args]


def _run(args: list[str], cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(_cli(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _start(args: list[str], env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    # Ctrl-C as a terminal gives it: an earlier test's library can leave SIGINT ignored in this pytest
    # process, and an ignored signal is inherited (the SIGINT test failed only in the full suite).
    return subprocess.Popen(_cli(args), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path.is_file():
        assert proc.poll() is None, f"run ended before {path} appeared:\n{proc.stdout.read()[-3000:]}"
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return read_weights(run_dir / "checkpoints" / "last.ckpt")["state_dict"]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs by {(wa[k].float() - wb[k].float()).abs().max().item():.3g}"


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run that every interrupted-and-resumed run must reproduce exactly."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    proc = _run([*RUN, f"hydra.run.dir={run_dir}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


# --- one run per folder -------------------------------------------------------------------------


@pytest.mark.slow
def test_new_run_in_a_used_folder_is_refused_and_loses_nothing(tmp_path: Path, reference: Path) -> None:
    run_dir = tmp_path / "x"
    import shutil

    shutil.copytree(reference, run_dir)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    for extra in (["lr=3e-1"], [f"ckpt_path={reference / 'checkpoints' / 'last.ckpt'}", "resume=false"]):
        proc = _run([*RUN, *extra, f"hydra.run.dir={run_dir}"])
        assert proc.returncode == 2, proc.stderr[-3000:]
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "already holds a run" in lines[0] and "ckpt_path=" in lines[0], proc.stderr
        after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
        assert after == before  # not even Hydra's config record was rewritten


def test_train_refuses_a_folder_with_results_unless_resuming_that_run(tmp_path: Path) -> None:
    first = train(compose_train(FAST, tmp_path / "a"))
    with pytest.raises(RunDirError, match="already holds a run"):
        train(compose_train([*FAST, "lr=3e-1"], tmp_path / "a"))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    with pytest.raises(RunDirError):  # a fine-tune is a new run: its own folder
        train(compose_train([*FAST, f"ckpt_path={last}", "resume=false"], tmp_path / "a"))
    assert _metrics(tmp_path / "a")["final"] == first["final"]
    resumed = train(compose_train([*FAST, "trainer.max_steps=8", f"ckpt_path={last}"], tmp_path / "a"))
    assert [h["step"] for h in resumed["history"]] == [4, 8]


def test_failure_before_the_first_step_leaves_no_checkpoint_to_resume_by_accident(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sr_experiments.training.module import SRLitModule

    def fail(self, batch, batch_idx):
        raise RuntimeError("fails at step 0")

    with monkeypatch.context() as m:
        m.setattr(SRLitModule, "training_step", fail)
        with pytest.raises(RuntimeError, match="step 0"):
            train(compose_train(FAST, tmp_path / "a"))
    assert not list((tmp_path / "a").glob("checkpoints/*.ckpt"))
    summary = train(compose_train(FAST, tmp_path / "a"))  # the corrected re-run, same folder
    assert summary["steps"] == 4


def _hydra_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path: Path) -> None:
    # Both configs resolve to the same timestamped name, as two runs started in one second do.
    configs = [_hydra_config([]) for _ in range(3)]
    for cfg in configs:
        cfg.hydra.run.dir = str(tmp_path / "runs" / "2026-01-01_00-00-00")
        RunDirGuard().on_run_start(config=cfg)
    dirs = [Path(cfg.hydra.run.dir) for cfg in configs]
    assert len(set(dirs)) == 3 and all(d.is_dir() for d in dirs)
    assert [d.name for d in dirs] == ["2026-01-01_00-00-00", "2026-01-01_00-00-00_1", "2026-01-01_00-00-00_2"]
    assert claim_unique_dir(tmp_path / "runs" / "2026-01-01_00-00-00").name.endswith("_3")


@pytest.mark.slow
def test_two_cli_runs_started_together_write_separate_folders(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [*FAST, "trainer.max_steps=2"]
    procs = [subprocess.Popen(_cli(args), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()[-3000:]
    runs = sorted((tmp_path / "outputs" / "train" / "runs").iterdir())
    assert len(runs) == 2
    assert {_metrics(r)["run_dir"] for r in runs} == {str(r.resolve()) for r in runs}


@pytest.mark.slow
def test_second_sweep_into_the_same_sweep_dir_is_refused(tmp_path: Path) -> None:
    args = ["-m", "lr=1e-3,2e-3", *FAST, "trainer.max_steps=2", f"hydra.sweep.dir={tmp_path}"]
    assert _run(args).returncode == 0
    before = {p: p.read_bytes() for p in tmp_path.glob("*/metrics.json")}
    assert len(before) == 2
    proc = _run(args)
    assert proc.returncode == 2 and "already holds a sweep" in proc.stderr, proc.stderr[-2000:]
    assert {p: p.read_bytes() for p in tmp_path.glob("*/metrics.json")} == before


# --- resume: bit-exact, appended, only when asked ----------------------------------------------


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_weights(tmp_path: Path, reference: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _start([*RUN, f"hydra.run.dir={run_dir}"])
    _wait_for(run_dir / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = read_weights(run_dir / "checkpoints" / "last.ckpt")
    assert 0 < saved["global_step"] < 48
    prior_seconds = saved["sr_run"]["train_seconds"]

    # Resumed in place (the run's own folder, history and logs) and as configured: only
    # ckpt_path is typed, the run's original overrides come from its .hydra record.
    done = _run([f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "with its original overrides" in done.stdout
    _assert_same_weights(reference, run_dir)
    resumed, ref = _metrics(run_dir), _metrics(reference)
    assert resumed["history"] == ref["history"]  # complete: the steps before the kill too
    assert resumed["train_seconds"] >= prior_seconds  # counts the first part as well
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        steps = {int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")}
    assert min(steps) < saved["global_step"] < max(steps)  # logged before and after the kill
    assert (run_dir / ".hydra" / "config.yaml").is_file() and list((run_dir / ".hydra").glob("resume_*"))


@pytest.mark.slow
def test_sigterm_checkpoints_exits_143_and_resumes_exactly_mid_epoch(tmp_path: Path, reference: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _start([*RUN, f"hydra.run.dir={run_dir}"])
    _wait_for(run_dir / "checkpoints" / "last.ckpt", proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    interrupted = run_dir / "checkpoints" / "interrupted.ckpt"
    step = read_weights(interrupted)["global_step"]
    status = _metrics(run_dir)
    assert status["status"] == "interrupted" and status["steps"] == step
    done = _run([*RUN, f"ckpt_path={interrupted}"])
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_weights(reference, run_dir)
    assert _metrics(run_dir)["status"] == "finished"


@pytest.mark.slow
def test_sigint_checkpoints_and_exits_130(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # Far more steps than the signal needs: on a loaded machine 32 tiny steps can finish before it lands.
    proc = _start([*(o for o in RUN if not o.startswith("trainer.max_steps")), "trainer.max_steps=5000", f"hydra.run.dir={run_dir}"])
    _wait_for(run_dir / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=120)
    assert code == 130
    assert (run_dir / "checkpoints" / "interrupted.ckpt").is_file()
    assert _metrics(run_dir)["status"] == "interrupted"


@pytest.mark.slow
def test_slurm_requeue_signal_checkpoints_requeues_and_the_requeued_job_resumes(tmp_path: Path, reference: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol_calls"
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    env = {"SLURM_JOB_ID": "4242", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    run_dir = tmp_path / "run"
    args = [*RUN, f"hydra.run.dir={run_dir}"]
    proc = _start(args, env=env)
    _wait_for(run_dir / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGUSR2)  # submitit's (and sbatch --signal's) warning before the time limit
    assert proc.wait(timeout=120) != 0
    assert calls.read_text().split() == ["requeue", "4242"]
    assert (run_dir / "checkpoints" / "interrupted.ckpt").is_file()
    # SLURM runs the same command again, in the same folder: it resumes instead of refusing.
    again = _run(args, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "requeued: resuming from" in again.stdout + again.stderr
    _assert_same_weights(reference, run_dir)
    # Another job in that folder is still refused.
    other = _run(args, env={**env, "SLURM_JOB_ID": "4243"})
    assert other.returncode == 2


# --- values checked before anything is written --------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "key"),
    [("lr=abc", "lr="), ("lr=-1", "lr="), ("data.batch_size=0", "data.batch_size="), ("model.depth=0", "model.depth=")],
)
def test_bad_values_get_one_line_before_any_folder(tmp_path: Path, override: str, key: str) -> None:
    proc = _run([override, f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "override",
    ["lr=0", "lr=nan", "loss=huber", "data.patch_size=0", "data.patches_per_epoch=0", "data.num_workers=-1",
     "trainer.max_steps=0", "optimizer.lr=-1", "model.width=0", "scale=1", "data.batch_size=2.5",
     "data.lr_source=matlab"],
)
def test_schema_rejects_bad_values_naming_the_key(tmp_path: Path, override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key}="):
        validate_train_config(compose_train([override], tmp_path))


@pytest.mark.parametrize("model", sorted(p.stem for p in (CONF / "model").glob("*.yaml")))
def test_schema_accepts_every_shipped_model(tmp_path: Path, model: str) -> None:
    # Video networks (x4, clips) train through the video recipe; image networks on the defaults.
    name = OmegaConf.load(CONF / "model" / f"{model}.yaml").get("name")
    video = name in NETWORKS and is_multi_frame(name)
    validate_train_config(compose_train([*(["experiment=video_cpu"] if video else []), f"model={model}"], tmp_path))


# --- data and validation edge cases -------------------------------------------------------------


def test_decompression_bomb_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bomb.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels > 2x the limit
    with pytest.raises(ImageLoadError, match="bomb.png.*decompression bomb"):
        load_rgb(path)


def test_tiny_training_image_is_skipped_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"ok{i}.png")
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    dm = SRDataModule(str(tmp_path), str(tmp_path), scale=2, patch_size=8, batch_size=2, patches_per_epoch=4)
    with pytest.raises(ValueError, match="dot.png"):  # validation images are all measured: no silent skip
        dm.setup("fit")
    dm = SRDataModule(str(tmp_path), "sample:val", scale=2, patch_size=8, batch_size=2, patches_per_epoch=4)
    dm.setup("fit")
    assert sorted(p.name for p in dm.train_set.pairs) == ["ok0", "ok1"]
    assert "dot.png" in caplog.text


def test_training_without_validation_finishes(tmp_path: Path) -> None:
    summary = train(compose_train([*FAST, "+trainer.limit_val_batches=0"], tmp_path))
    assert summary["steps"] == 4 and summary["best"] is None
    assert read_weights(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 4
    assert _metrics(tmp_path)["status"] == "finished"


def test_patch_stream_is_a_function_of_seed_and_position() -> None:
    """The data half of bit-exact resume: a loader started at step k yields what the
    uninterrupted loader yields from step k on."""
    dm = SRDataModule("sample:train", "sample:val", scale=2, patch_size=8, batch_size=4, patches_per_epoch=16, seed=7)
    dm.setup("fit")

    class FakeTrainer:
        world_size, accumulate_grad_batches, current_epoch = 1, 1, 0
        global_step = 0

    dm.trainer = FakeTrainer()
    full = [b["lq"] for epoch in range(2) for b in _epoch(dm, FakeTrainer, epoch * 4)]
    resumed = _epoch(dm, FakeTrainer, 6)  # resumed at step 6, mid second epoch
    assert len(resumed) == 2
    for a, b in zip(full[6:], (b["lq"] for b in resumed)):
        assert torch.equal(a, b)
    assert not torch.equal(full[0], full[4])  # epochs differ
    other = SRDataModule("sample:train", "sample:val", scale=2, patch_size=8, batch_size=4, patches_per_epoch=16, seed=8)
    other.setup("fit")
    other.trainer = FakeTrainer()
    assert not torch.equal(_epoch(other, FakeTrainer, 0)[0]["lq"], full[0])


def _epoch(dm: SRDataModule, trainer_cls, step: int) -> list[dict]:
    trainer_cls.global_step = step
    return list(dm.train_dataloader())
