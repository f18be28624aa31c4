"""info.py: parameter counts and 720p MACs (counted by FlopCounterMode, checked by hand here)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT

from sr_experiments.models.complexity import count_macs, network_info
import torch

from sr_experiments.models import build_network, count_parameters, list_networks, supports_scale


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_espcn_macs_match_the_hand_count(scale: int) -> None:
    h, w = 360 * 2 // scale, 640 * 2 // scale
    per_pixel = 5 * 5 * 3 * 64 + 3 * 3 * 64 * 32 + 3 * 3 * 32 * 3 * scale**2  # three convs at LR
    assert count_macs({"name": "espcn", "scale": scale}, (h, w)) == per_pixel * h * w


def test_info_reports_params_and_720p_output() -> None:
    info = network_info({"name": "edsr", "scale": 2})
    assert info["params"] == 1_369_859 == count_parameters(build_network({"name": "edsr", "scale": 2}))
    assert info["lr_size_720p"] == [360, 640]
    # EDSR-baseline x2 at 720p: conv_first (3->64), 32 body convs + conv_after_body (64->64) and the
    # x2 upsampler conv (64->256) at LR; conv_last (64->3) at HR.
    body = 9 * 3 * 64 + 33 * 9 * 64 * 64 + 9 * 64 * 256
    hr_tail = 9 * 64 * 3  # conv_last at HR
    assert info["macs_720p"] == 360 * 640 * body + 720 * 1280 * hr_tail


def test_cli_prints_json_last_line(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "info.py", "model=fsrcnn", "scale=3", f"hydra.run.dir={tmp_path}", "hydra.output_subdir=null"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["model"] == "fsrcnn" and last["scale"] == 3 and last["params"] == 24_683
    assert last["macs_720p"] > 0 and set(last) == {"model", "network", "scale", "params", "macs_720p"}


def test_cli_names_the_preset_and_its_network(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "info.py", "model=shallow", "scale=2", f"hydra.run.dir={tmp_path}", "hydra.output_subdir=null"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    first = proc.stdout.splitlines()[0]
    assert first.startswith("network     shallow (edsr) x2 (") and "depth=4, width=32" in first and "label" not in first
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (last["model"], last["network"]) == ("shallow", "edsr")


CASES = [(name, scale) for name in list_networks() for scale in (2, 3, 4) if supports_scale(name, scale)]


@pytest.mark.parametrize(("name", "scale"), CASES, ids=[f"{n}-x{s}" for n, s in CASES])
def test_info_works_for_every_network(name: str, scale: int) -> None:
    info = network_info({"name": name, "scale": scale})  # meta device: nothing is allocated
    with torch.device("meta"):
        assert info["params"] == count_parameters(build_network({"name": name, "scale": scale}))
    assert info["macs_720p"] > 0 or name == "bicubic"


PUBLISHED_MACS_X2 = {"edsr": 316.3e9, "imdn": 158.8e9, "rcan": 3530e9, "swinir_light": 244e9}  # papers' tables


@pytest.mark.parametrize("name", list(PUBLISHED_MACS_X2))
def test_macs_agree_with_published_figures(name: str) -> None:
    # Papers count a few element-wise ops too; conv/linear/matmul MACs agree within 2%.
    assert network_info({"name": name, "scale": 2})["macs_720p"] == pytest.approx(PUBLISHED_MACS_X2[name], rel=0.02)
