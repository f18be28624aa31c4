"""logger=wandb: an offline run read back from its files has the config, metrics, size and checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST, ROOT, compose_train
from wandb_records import read_offline_run

from sr_experiments.runs.run import train
from sr_experiments.runs.wandb_logger import run_name, wandb_mode


def test_run_name_keeps_what_was_tried() -> None:
    overrides = ["lr=2e-4", "model.depth=16", "paths.data_dir=/data", "data=t91", "ckpt_path=a/b.ckpt",
                 "trainer.enable_progress_bar=false", "hydra.sweep.dir=/x", "data.train_dir=/my/train"]
    assert run_name(overrides) == "lr=2e-4,depth=16,data=t91"
    assert run_name(["paths.output_dir=/x"]) is None


@pytest.mark.parametrize(
    ("offline", "env", "mode"),
    [(True, "", "offline"), (False, "", "online"), (True, "online", "online"), (False, "offline", "offline"),
     (False, "dryrun", "offline"), (True, "disabled", "disabled")],
)
def test_environment_wins_over_the_offline_flag(offline: bool, env: str, mode: str) -> None:
    assert wandb_mode(offline, env) == mode


@pytest.mark.slow
def test_offline_run_has_config_metrics_summary_and_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    overrides = [*FAST, "logger=wandb", "logger.wandb.log_model=true", "logger.wandb.tags=[mine]",
                 "trainer.log_every_n_steps=2", "lr=2e-3"]
    summary = train(compose_train(overrides, tmp_path))
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    run = read_offline_run(run_dir)

    # The full resolved config, plus what Lightning adds from the module's hparams.
    assert run["config"]["lr"] == 2e-3 and run["config"]["model"]["depth"] == 4
    assert run["config"]["trainer"]["max_steps"] == 4 and run["config"]["data"]["patch_size"] == 16
    assert {"edsr", "x2", "mine"} <= set(run["run"]["tags"])

    logged = {k for row in run["history"] for k in row}
    assert {"train/loss", "lr", "val/psnr", "val/ssim", "train/patches_per_s"} <= logged
    assert "val/panel/_type" in logged  # the image panel (a nested record: type, files, captions)
    speeds = [row["train/patches_per_s"] for row in run["history"] if "train/patches_per_s" in row]
    assert speeds and all(s > 0 for s in speeds)

    s = run["summary"]
    assert s["params"] == summary["params"] and s["macs_720p"] > 0
    assert s["best/psnr"] == pytest.approx(summary["best"]["psnr"]) and s["steps"] == 4
    assert [a["type"] for a in run["artifacts"]] == ["model"] and "best" in run["artifacts"][0]["aliases"]


@pytest.mark.slow
def test_sweep_runs_share_a_group_and_are_named_by_their_overrides(tmp_path: Path) -> None:
    sweep = tmp_path / "my_sweep"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_SILENT": "true"}
    env.pop("WANDB_MODE", None)
    args = ["-m", "logger=wandb", "lr=1e-3,2e-3", *FAST, "trainer.max_steps=2", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [read_offline_run(d)["run"] for d in sorted(sweep.glob("*/wandb/offline-run-*"))]
    assert len(runs) == 2  # one W&B run per job, though both jobs ran in one process
    assert {r["group"] for r in runs} == {"my_sweep"}
    assert [r["name"].split(",")[0] for r in runs] == ["lr=0.001", "lr=0.002"]
    assert all("data=sample" in r["tags"] for r in runs)
