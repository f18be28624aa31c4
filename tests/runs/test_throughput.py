"""train/patches_per_s reaches every logger (here CSV) at the logging steps."""

from __future__ import annotations

import csv
from pathlib import Path

from conftest import FAST, compose_train

from sr_experiments.runs.run import train


def test_throughput_is_logged_at_each_logging_step(tmp_path: Path) -> None:
    summary = train(compose_train([*FAST, "trainer.log_every_n_steps=2"], tmp_path))
    with (tmp_path / "csv" / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/patches_per_s")]
    assert [int(r["step"]) for r in rows] == [1, 3]  # Lightning's 0-based step of global steps 2 and 4
    speeds = [float(r["train/patches_per_s"]) for r in rows]
    # Each value covers 2 steps of 4 patches: the time they stand for fits inside the run's wall time.
    assert all(s > 0 for s in speeds) and sum(8 / s for s in speeds) < summary["train_seconds"]
