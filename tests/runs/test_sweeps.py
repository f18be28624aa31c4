"""Sweep launchers and searches: configs compose, two CPU jobs run at once, Optuna returns a PSNR."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CONF, ROOT
from hydra import compose, initialize_config_dir

TINY = ["data.patches_per_epoch=16", "data.batch_size=4", "data.patch_size=16", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "callbacks.image_panel.num_images=1"]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def _hydra_node(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True).hydra


@pytest.mark.parametrize(("launcher", "resources"), [("gpus", {"num_gpus": 1}), ("cpu", {"num_cpus": 1})])
def test_ray_launchers_give_each_job_its_resources(launcher: str, resources: dict) -> None:
    node = _hydra_node([f"hydra/launcher={launcher}"]).launcher
    assert node._target_.endswith("RayLauncher")
    assert resources.items() <= dict(node.ray.remote).items() and node.ray.remote.max_calls == 1


def test_slurm_launcher_and_optuna_search_compose() -> None:
    slurm = _hydra_node(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"]).launcher
    assert slurm._target_.endswith("SlurmLauncher") and slurm.gpus_per_node == 1 and slurm.partition == "gpu"
    sweeper = _hydra_node(["hparams_search=optuna"]).sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert dict(sweeper.params) == {"lr": "tag(log, interval(1e-4, 1e-2))", "model.depth": "choice(4, 8, 16)"}
    assert sweeper.sampler.seed == 42


@pytest.mark.slow
def test_cpu_launcher_runs_two_jobs_at_once(tmp_path: Path) -> None:
    proc = _run(["-m", "hydra/launcher=cpu", "lr=1e-3,2e-3", "trainer.max_steps=4", *TINY, f"hydra.sweep.dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/metrics.json"))]
    assert len(runs) == 2 and all(r["steps"] == 4 and r["torch_threads"] == 1 for r in runs)
    overlap = min(r["finished_at"] for r in runs) - max(r["started_at"] for r in runs)
    assert overlap > 0, f"jobs ran one after the other: {[(r['started_at'], r['finished_at']) for r in runs]}"


@pytest.mark.slow
def test_optuna_search_maximises_the_returned_psnr_and_keeps_the_study_in_sqlite(tmp_path: Path) -> None:
    # The storage conf/hparams_search/optuna.yaml suggests: optuna 2.10 crashed on it with SQLAlchemy 2.
    import optuna

    db = tmp_path / "study.db"
    sweep = tmp_path / "sweep"
    proc = _run(["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "model.width=8", "trainer.max_steps=4",
                 f"hydra.sweeper.storage=sqlite:///{db}", *TINY, f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == {"lr", "model.depth"} and 1e-4 <= result["best_params"]["lr"] <= 1e-2
    best = [json.loads(p.read_text())["best"]["psnr"] for p in sweep.glob("*/metrics.json")]
    assert len(best) == 2 and math.isfinite(result["best_value"]) and result["best_value"] == pytest.approx(max(best))
    study = optuna.load_study(study_name="sr_lr_depth", storage=f"sqlite:///{db}")
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert sorted(t.value for t in trials) == pytest.approx(sorted(best))
