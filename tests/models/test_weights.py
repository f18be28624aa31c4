"""models/weights.py and models/detection.py: reading files code-free, unwrapping the containers
other tools save, detecting the network a bare file holds (the zoo's own layouts by their keys),
and eval.py on a file of a zoo architecture spandrel does not know, with no model=."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_eval import _tiny_set

from sr_experiments.models import IMDN, build_network
from sr_experiments.models.detection import UnrecognisedWeights, detect, detect_by_keys
from sr_experiments.models.weights import (
    CheckpointLoadError, build_model, load_network, read_weights, unwrap_state_dict,
)  # fmt: skip

ROOT = Path(__file__).resolve().parents[2]
# The official IMDN release's key names (github.com/Zheng222/IMDN, IMDN_x2.pth).
IMDN_OFFICIAL_KEYS = ("fea_conv.weight", "IMDB1.c1.weight", "IMDB6.cca.conv_du.2.bias", "c.0.weight",
                      "LR_conv.weight", "upsampler.0.weight")


def _random_state(spec: dict) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: torch.randn_like(v) for k, v in build_network(spec).state_dict().items()}


def test_reads_pth_and_safetensors_and_refuses_pickled_code(tmp_path: Path) -> None:
    state = _random_state({"name": "edsr", "scale": 2, "depth": 1, "width": 8})
    torch.save(state, tmp_path / "a.pth")
    from safetensors.torch import save_file

    save_file(state, tmp_path / "a.safetensors")
    for name in ("a.pth", "a.safetensors"):
        got = read_weights(tmp_path / name)
        assert got.keys() == state.keys() and all(torch.equal(got[k], v) for k, v in state.items())
    torch.save({"f": os.getcwd}, tmp_path / "code.pth")  # a pickled function: weights_only refuses it
    with pytest.raises(CheckpointLoadError, match=r"code\.pth.*run code on load") as info:
        read_weights(tmp_path / "code.pth")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("wrap", ["params", "params_ema", "module", "lightning"])
def test_unwraps_basicsr_dataparallel_and_lightning_files(wrap: str) -> None:
    state = _random_state({"name": "edsr", "scale": 2, "depth": 1, "width": 8})
    wrapped = {
        "params": {"params": state},
        "params_ema": {"params": {k: v * 0 for k, v in state.items()}, "params_ema": state},  # EMA preferred
        "module": {f"module.{k}": v for k, v in state.items()},
        "lightning": {"state_dict": {f"net.{k}": v for k, v in state.items()}, "hyper_parameters": {}},
    }[wrap]
    got = unwrap_state_dict(wrapped)
    assert got.keys() == state.keys() and all(torch.equal(got[k], v) for k, v in state.items())


@pytest.mark.parametrize("spec", [
    {"name": "imdn", "scale": 2},  # the paper model: the official IMDN_x2.pth sizes
    {"name": "imdn", "scale": 3, "depth": 2, "width": 16},
    {"name": "edsr", "scale": 2, "depth": 2, "width": 8},
    {"name": "edsr", "scale": 3, "depth": 1, "width": 8},
    {"name": "edsr", "scale": 8, "depth": 1, "width": 8},
])  # fmt: skip
def test_zoo_networks_spandrel_does_not_know_are_found_by_their_keys(spec: dict) -> None:
    with torch.device("meta"):
        state = build_network(spec).state_dict()
    found = detect(state, "f.pth")
    assert found.module is None and found.spec == {**{"depth": 6, "width": 64}, **spec}
    assert found.line("f.pth").startswith(f"f.pth: detected {spec['name']} x{spec['scale']} from its keys")


def test_edsr_large_sizes_are_edsr_large_and_a_near_miss_is_not_detected() -> None:
    with torch.device("meta"):
        large = build_network({"name": "edsr_large", "scale": 2}).state_dict()
        small = build_network({"name": "imdn", "scale": 2, "depth": 2, "width": 16}).state_dict()
    assert detect_by_keys(large).spec["name"] == "edsr_large"
    extra = {**small, "IMDB1.c9.weight": torch.empty(1, device="meta")}  # one key no imdn has
    assert detect_by_keys(extra) is None
    reshaped = {**small, "LR_conv.weight": torch.empty(16, 16, 1, 1, device="meta")}  # one shape off
    assert detect_by_keys(reshaped) is None


def test_a_file_no_one_recognises_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "mystery.pth"
    torch.save({"encoder.weight": torch.zeros(4, 3, 3, 3), "decoder.bias": torch.zeros(3)}, path)
    with pytest.raises(UnrecognisedWeights, match=r"mystery\.pth.*zoo network.*model=NAME scale=S") as info:
        load_network(path)
    assert "\n" not in str(info.value)


def test_an_official_imdn_file_loads_by_its_keys_with_its_weights(tmp_path: Path, capsys) -> None:
    state = _random_state({"name": "imdn", "scale": 2})
    assert set(IMDN_OFFICIAL_KEYS) <= state.keys()
    path = tmp_path / "IMDN_x2.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # the release's DataParallel prefix
    net, spec = load_network(path)
    assert isinstance(net, IMDN) and spec == {"name": "imdn", "scale": 2, "depth": 6, "width": 64}
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    assert "IMDN_x2.pth: detected imdn x2 from its keys" in capsys.readouterr().out
    # model=from_file model.pretrained=FILE (fine-tuning) builds the same network
    same = build_model({"name": "from_file", "pretrained": str(path)})
    assert all(torch.equal(same.state_dict()[k], v) for k, v in state.items())


def test_eval_cli_on_an_official_imdn_file_needs_no_model(tmp_path: Path) -> None:
    torch.save(_random_state({"name": "imdn", "scale": 2}), tmp_path / "IMDN_x2.pth")
    _tiny_set(tmp_path / "data", "Tiny")
    proc = subprocess.run(
        [sys.executable, "eval.py", f"ckpt_path={tmp_path / 'IMDN_x2.pth'}", f"paths.data_dir={tmp_path / 'data'}",
         "eval.sets=[Tiny]", "eval.scales=[2]", f"hydra.run.dir={tmp_path / 'out'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "detected imdn x2 from its keys" in proc.stdout
    assert (tmp_path / "out" / "results.json").is_file()
