"""Shell completion: keys and values of the configs, for `.venv/bin/python train.py` as the README types it."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

from sr_experiments.completion import PYTHONS, bash_script

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

# Calls the completion function as bash does on TAB: COMP_LINE up to the cursor and COMP_WORDS split
# at bash's default COMP_WORDBREAKS (so `model=sh` is the three words model, =, sh).
SIMULATE = r"""
eval "$(cat)"
complete -p @PYTHONS@ >/dev/null || exit 3
COMP_LINE="$1"; COMP_POINT=${#1}
COMP_WORDS=($(sed 's/=/ = /g' <<< "$1")); [[ "$1" == *[=\ ] ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_sr_experiments_complete; echo "rc=$?"; printf '%s\n' "${COMPREPLY[@]}"
"""


def complete(line: str) -> tuple[int, list[str]]:
    proc = subprocess.run(["bash", "-c", SIMULATE.replace("@PYTHONS@", " ".join(PYTHONS)), "complete", line],
                          input=bash_script(), capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    head, *replies = proc.stdout.splitlines()
    replies = [r for r in replies if r]  # printf prints one empty line for no replies
    return int(head.removeprefix("rc=")), replies


def test_install_prints_our_script_and_keys_complete_for_the_venv_python() -> None:
    proc = subprocess.run([sys.executable, "train.py", "-sc", "install=bash"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == bash_script().strip()
    python = sys.executable  # the venv's interpreter by its path, as `.venv/bin/python train.py` types it
    assert complete(f"{python} train.py mod") == (0, ["model.", "model=", "module."])
    assert complete(f"{python} eval.py eval.lab") == (0, ["eval.labels="])


def test_values_of_config_groups_complete_after_the_equals_sign() -> None:
    python = sys.executable
    rc, models = complete(f"{python} train.py model=")
    assert rc == 0 and {"shallow", "deep", "edsr", "swinir"} <= set(models)  # bash's word is what follows '='
    assert complete(f"{python} train.py model=sh") == (0, ["shallow"])
    assert complete(f"{python} train.py model=deep model.dep") == (0, ["model.depth="])


def test_other_scripts_fall_back_to_file_names() -> None:
    assert complete(f"{sys.executable} some_other.py mod") == (1, [])
