"""What a waiting user sees: progress as bars on a terminal and as plain lines elsewhere, one line per
log record, and no Lightning warning on the documented resume."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST, ROOT, compose_train

from sr_experiments import console
from sr_experiments.runs.run import train


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_prints_a_plain_line_per_quarter_when_not_a_terminal() -> None:
    out = io.StringIO()
    assert list(console.progress(range(8), desc="Set5 x2", unit="img", quiet_s=0.0, stream=out)) == list(range(8))
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [f"Set5 x2: {p}% ({n}/8 img)" for p, n in ((25, 2), (50, 4), (75, 6), (100, 8))]
    assert "\r" not in out.getvalue() and "left" in lines[0] and "left" not in lines[-1]
    quick = io.StringIO()
    list(console.progress(range(8), desc="quick", stream=quick))  # done within QUIET_S: nothing said
    assert quick.getvalue() == ""


def test_progress_draws_a_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = Terminal()
    assert console.is_terminal(tty) and not console.is_terminal(io.StringIO())
    counter = console.ProgressCounter(4, "passes", "pass", stream=tty)
    assert counter.bar is not None and counter.lines is None
    counter.close()
    off = console.ProgressCounter(4, "passes", enabled=False, stream=tty)
    assert off.bar is None and off.lines is None


def test_announce_logs_where_logging_is_configured_else_prints(capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("sr_experiments.test_announce")
    with caplog.at_level("INFO"):
        console.announce(logger, "measuring now")
    assert "measuring now" in caplog.text and "measuring now" not in capsys.readouterr().err
    caplog.set_level("WARNING")
    console.announce(logger, "and again")
    assert "and again" in capsys.readouterr().err


def test_training_progress_is_plain_lines_when_not_a_terminal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = compose_train([*FAST, "trainer.enable_progress_bar=true", "trainer.max_steps=4"], tmp_path)
    with caplog.at_level("INFO"):
        train(cfg)  # pytest's stderr is not a terminal
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train: ")]
    assert [line.split(",")[0] for line in lines] == [f"train: {p}% ({n}/4 steps)" for p, n in ((25, 1), (50, 2), (75, 3), (100, 4))]
    assert "loss " in lines[0]


def _train_cli(args: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_one_line_per_log_record_and_a_quiet_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    quick = [o for o in FAST if not o.startswith(("trainer.max_steps", "trainer.enable_"))]
    first = _train_cli([*quick, "trainer.max_steps=2", "trainer.precision=32", "model.channels_last=false",
                        f"hydra.run.dir={run}"])
    # Lightning's records, once each, in Hydra's format (not a second time as "INFO: ...").
    assert first.count("Seed set to 42") == 1 and first.count("GPU available: False") == 1
    assert "INFO: " not in first
    # Not a terminal: no carriage-return bar, no model summary table; progress lines instead.
    assert "\r" not in first and "Trainable params" not in first and "train: 100% (2/2 steps)" in first
    (run / "train.log").unlink()
    again = _train_cli([*quick, "trainer.max_steps=4", "trainer.precision=32", "model.channels_last=false",
                        f"hydra.run.dir={run}", f"ckpt_path={run}/checkpoints/last.ckpt"])
    assert "resuming from" in again and "exists and is not empty" not in again
    assert again.count("Seed set to 42") == 1 and "train: 100% (4/4 steps)" in again


def test_lightning_records_reach_the_configured_handlers_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import lightning  # noqa: F401  (its import gives the "lightning" logger its own console handler)

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])  # as Hydra's job logging leaves the root
    own = logging.StreamHandler(io.StringIO())
    logging.getLogger("lightning").addHandler(own)  # Lightning's handler, whatever its import order was
    console.one_line_per_record()
    assert own not in logging.getLogger("lightning").handlers and logging.getLogger("lightning").propagate
    logging.getLogger("lightning.fabric.utilities.seed").info("Seed set to 7")
    assert stream.getvalue() == "[lightning.fabric.utilities.seed][INFO] - Seed set to 7\n"
    assert own.stream.getvalue() == ""
