"""export.py: ONNX and TorchScript files take any input size and match PyTorch within 1e-4."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from conftest import ROOT

from sr_experiments.inference.export import CHECK_SIZE, ExportError, TRACE_SIZE, check_export, export_network, run_exported
from sr_experiments.models import build_network

pytestmark = pytest.mark.usefixtures("one_thread")

# Small settings of each family keep the test fast; the layers (and so the exporter's paths) are the same.
SPECS = {
    "shallow": {"name": "edsr", "scale": 2, "depth": 4, "width": 32, "res_scale": 1.0},
    "edsr": {"name": "edsr", "scale": 2, "depth": 2, "width": 16},
    "espcn": {"name": "espcn", "scale": 3},
    "imdn": {"name": "imdn", "scale": 2},
}


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("key", list(SPECS))
def test_export_matches_pytorch_on_another_size(tmp_path: Path, key: str, fmt: str) -> None:
    torch.manual_seed(0)
    spec = SPECS[key]
    net = build_network(spec).eval()
    path = tmp_path / f"{key}.{fmt}"
    diff = export_network(net, spec, fmt, path)
    assert CHECK_SIZE != TRACE_SIZE and diff < 1e-4
    x = torch.rand(2, 3, 21, 30)  # another batch and size again: the axes are dynamic
    assert run_exported(path, fmt, x).shape == (2, 3, 21 * spec["scale"], 30 * spec["scale"])
    if fmt == "onnx":
        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        assert meta["scale"] == str(spec["scale"]) and '"name"' in meta["network"]


def test_a_wrong_export_is_caught(tmp_path: Path) -> None:
    torch.manual_seed(0)
    spec = SPECS["shallow"]
    export_network(build_network(spec).eval(), spec, "onnx", tmp_path / "m.onnx")
    other = build_network(spec).eval()  # other random weights: the file no longer matches
    with pytest.raises(RuntimeError, match="max abs difference"):
        check_export(other, tmp_path / "m.onnx", "onnx")


def test_a_network_fixed_to_the_traced_size_is_refused_and_no_file_is_left(tmp_path: Path) -> None:
    spec = {"name": "bicubic", "scale": 2}  # Python-side resize arithmetic: traced shapes are constants
    with pytest.raises(ExportError, match="output shape"):
        export_network(build_network(spec), spec, "onnx", tmp_path / "b.onnx")
    assert not (tmp_path / "b.onnx").exists()


@pytest.mark.slow
def test_export_cli_from_a_checkpoint(tmp_path: Path) -> None:
    spec = SPECS["shallow"]
    net = build_network(spec)
    ckpt = tmp_path / "best.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "hyper_parameters": {"network": spec}}, ckpt)
    proc = subprocess.run([sys.executable, "export.py", f"ckpt_path={ckpt}", "format=onnx"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "best.onnx").is_file() and "max abs difference" in proc.stdout
