"""What a run shows: labelled image panels, validation every N steps, TensorBoard's HParams tab."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, compose_train
from PIL import Image

from sr_experiments.runs.callbacks import GAP, panel_row
from sr_experiments.runs.run import train


def test_panel_has_a_label_strip_over_each_tile_and_the_tiles_below_it() -> None:
    torch.manual_seed(0)
    lr, hr = torch.rand(3, 32, 32), torch.rand(3, 64, 64)
    bic, sr = torch.rand(3, 64, 64), torch.rand(3, 64, 64)
    plain = panel_row(lr, bic, sr, hr, 48, labels=False)
    labelled = panel_row(lr, bic, sr, hr, 48)
    strip = labelled.shape[0] - plain.shape[0]
    assert labelled.shape[1] == plain.shape[1] and 10 <= strip <= 20
    assert np.array_equal(labelled[strip:], plain)  # the pictures themselves are untouched
    for i in range(4):  # "LR", "bicubic", "SR", "HR": dark text on white over every tile
        cell = labelled[:strip, i * (48 + GAP) : i * (48 + GAP) + 48]
        assert cell.min() < 100 and (cell == 255).mean() > 0.5, i
    assert not np.array_equal(labelled[:strip, :48], labelled[:strip, 48 + GAP : 96 + GAP])  # different words


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tb")
    train(compose_train([*FAST, "trainer.max_steps=8", "trainer.val_check_interval=2", "logger=tensorboard",
                         "lr=2e-3"], out))
    return out


def test_val_check_interval_validates_every_n_steps(tb_run: Path) -> None:
    metrics = json.loads((tb_run / "metrics.json").read_text())
    assert [h["step"] for h in metrics["history"]] == [2, 4, 6, 8]  # an epoch is 4 steps here
    with Image.open(next((tb_run / "images").glob("*.png"))) as im:  # the saved panel has its labels
        top = np.asarray(im.convert("L"))[:8]
    assert top.min() < 100 and (top == 255).mean() > 0.5


def test_tensorboard_hparams_tab_holds_settings_and_final_results(tb_run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    metrics = json.loads((tb_run / "metrics.json").read_text())
    acc = EventAccumulator(str(tb_run / "tensorboard"))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    hparams = {k: v.number_value if v.HasField("number_value") else v.string_value for k, v in session.hparams.items()}
    assert hparams["lr"] == pytest.approx(2e-3) and hparams["model.name"] == "edsr" and hparams["trainer.max_steps"] == 8
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {m.name.tag for m in experiment.metric_infos} == {"hp/psnr_best", "hp/ssim_best", "hp/psnr_gain",
                                                             "hp/psnr_final"}
    (best,) = acc.Scalars("hp/psnr_best")
    assert best.value == pytest.approx(metrics["best"]["psnr"], abs=1e-4) and best.step == 8
