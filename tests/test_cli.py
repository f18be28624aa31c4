"""The root scripts start fast (no torch or Lightning before a run starts) and answer command-line
mistakes with one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPTS = ["train.py", "eval.py", "upscale.py", "export.py", "info.py", "degrade.py", "zssr.py"]


def _run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=300)


def _imported(importtime_stderr: str) -> set[str]:
    return {line.split("|")[-1].strip() for line in importtime_stderr.splitlines() if line.startswith("import time:")}


def test_importing_the_package_imports_no_torch() -> None:
    proc = _run(["-X", "importtime", "-c", "import sr_experiments"])
    assert proc.returncode == 0
    assert not {m for m in _imported(proc.stderr) if m.split(".")[0] in ("torch", "lightning", "hydra")}


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_imports_no_torch_or_lightning(script: str) -> None:
    proc = _run(["-X", "importtime", script, "--help"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Powered by Hydra" in proc.stdout
    heavy = {m for m in _imported(proc.stderr) if m.split(".")[0] in ("torch", "lightning", "torchvision", "numpy")}
    assert not heavy, sorted(heavy)[:10]


@pytest.mark.parametrize("script", SCRIPTS)
def test_shell_completion_without_a_verb_is_one_line(script: str) -> None:
    proc = _run([script, "--shell-completion"])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "install=bash" in lines[0]


def test_completion_query_completes_config_groups() -> None:
    proc = _run(["train.py", "-sc", "query=bash"], env={"COMP_LINE": "python train.py mod", "COMP_POINT": "19"})
    assert proc.returncode == 0
    assert "model=" in proc.stdout.split()
