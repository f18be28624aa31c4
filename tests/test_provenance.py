"""Provenance of results: git state of the code never crashes outside a checkout; labels of methods."""

from __future__ import annotations

import re
from pathlib import Path

from sr_experiments.provenance import checkpoint_info, git_state, protocol, versions
from sr_experiments.evaluation.run import method_labels


def test_git_state_of_this_checkout_and_of_no_checkout(tmp_path: Path, monkeypatch) -> None:
    state = git_state()
    assert re.fullmatch(r"[0-9a-f]{40}", state["commit"]) and isinstance(state["dirty"], bool)
    assert git_state(tmp_path) == {"commit": None, "dirty": None}  # an installed package: not a repository
    monkeypatch.setenv("PATH", str(tmp_path))  # no git program at all
    assert git_state() == {"commit": None, "dirty": None}


def test_versions_protocol_and_missing_checkpoint() -> None:
    import torch

    assert versions()["torch"] == torch.__version__ and versions()["sr-experiments"]
    p = protocol([2, 4], "auto")
    assert p["border_crop"] == {"x2": 2, "x4": 4} and p["lr_source"] == "auto" and p["channel"].startswith("Y")
    assert checkpoint_info(None) == checkpoint_info("/no/such.ckpt") == {"checkpoint": None, "checkpoint_sha256": None}


def test_checkpoints_of_one_network_are_told_apart_by_their_run() -> None:
    specs = [{"name": "edsr"}, {"name": "edsr"}, {"name": "imdn"}, {"name": "edsr"}]
    paths = ["/r/2024-01-01/checkpoints/best.ckpt", "/r/2024-01-02/checkpoints/best.ckpt", "/x/imdn.ckpt",
             "/s/2024-01-01/checkpoints/best.ckpt"]
    assert method_labels(specs, paths) == ["edsr (2024-01-01) #1", "edsr (2024-01-02)", "imdn", "edsr (2024-01-01) #2"]
    assert method_labels([{"name": "edsr"}, {"name": "edsr"}], ["/a/x.pth", "/a/y.pth"]) == ["edsr (x)", "edsr (y)"]
