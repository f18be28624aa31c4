"""Optional extras: a missing package is one line naming the extra, never an ImportError traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CONF
from hydra import compose, initialize_config_dir
from PIL import Image

from sr_experiments.tools.compare import compare
from sr_experiments.inference.export import export_network
from sr_experiments.extras import MissingExtra, missing_plugin, require, require_logger_packages
from sr_experiments.models import build_network
from sr_experiments.inference.upscale import main as upscale_main

DEPLOY = "pip install 'sr-experiments[deploy]'"
SWEEPS = "pip install 'sr-experiments[sweeps]'"


def test_require_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import of onnxruntime halted
    with pytest.raises(MissingExtra) as e:
        require("onnxruntime", "something")
    assert str(e.value) == f"something needs onnxruntime, which is not installed: {DEPLOY}"
    assert require("json", "x") is json


def test_onnx_export_without_onnx_is_one_line_and_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    spec = {"name": "espcn", "scale": 2, "width": 8}
    with pytest.raises(MissingExtra, match=r"export.py format=onnx needs onnx.*\[deploy\]") as e:
        export_network(build_network(spec), spec, "onnx", tmp_path / "m.onnx")
    assert "\n" not in str(e.value) and not (tmp_path / "m.onnx").exists()


def test_upscale_with_onnx_file_without_onnxruntime_exits_2_with_the_hint(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "m.onnx").write_bytes(b"not used")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="upscale", overrides=[f"ckpt_path={tmp_path / 'm.onnx'}", f"input={tmp_path / 'a.png'}",
                                                        f"output={tmp_path / 'out'}", "progress=false"])
    assert upscale_main(cfg) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("upscale: ") and DEPLOY in err, err


def test_compare_without_matplotlib_writes_the_table_and_says_what_to_install(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    run = tmp_path / "sweep" / "0"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"best": {"psnr": 31.0, "ssim": 0.9}, "overrides": ["lr=1e-3"]}))
    _, written = compare([tmp_path / "sweep"])
    assert sorted(p.name for p in written) == ["comparison.csv", "comparison.md"]
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "plots skipped" in err and SWEEPS in err, err


@pytest.mark.parametrize(("arg", "module"), [("hydra/launcher=cpu", "hydra_plugins.hydra_ray_launcher"),
                                             ("hydra/launcher=slurm", "hydra_plugins.hydra_submitit_launcher"),
                                             ("hparams_search=optuna", "hydra_plugins.hydra_optuna_sweeper")])
def test_missing_sweep_plugin_is_named_before_hydra_starts(arg: str, module: str, monkeypatch) -> None:
    assert missing_plugin(["lr=1e-3", arg]) is None  # installed here (the dev extra)
    monkeypatch.setitem(sys.modules, module, None)
    assert missing_plugin(["lr=1e-3", arg]) == f"{arg} needs {module}, which is not installed: {SWEEPS}"


def test_tensorboard_logger_without_tensorboard(monkeypatch) -> None:
    cfg = {"tensorboard": {"_target_": "lightning.pytorch.loggers.TensorBoardLogger"}}
    require_logger_packages(cfg)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    require_logger_packages({"csv": {"_target_": "sr_experiments.runs.csv_logger.CSVLogger"}})
    with pytest.raises(MissingExtra, match=r"logger=tensorboard needs tensorboard.*sr-experiments\[tensorboard\]"):
        require_logger_packages(cfg)

