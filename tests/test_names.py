"""Preset names carried through: model=shallow is `shallow` in metrics.json, the checkpoint and every
eval table (not the network's `edsr`); eval.labels names the methods; old checkpoints fall back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import CONF, FAST, compose_eval, compose_train
from hydra import compose, initialize_config_dir

from sr_experiments.evaluation.run import method_labels, run_eval
from sr_experiments.models import model_label
from sr_experiments.models.weights import load_network
from sr_experiments.runs.run import train


@pytest.fixture(scope="module")
def shallow_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shallow")
    train(compose_train(["model=shallow", *FAST, "trainer.max_steps=2"], out))
    return out


def _method_cells(out: Path) -> dict[str, set[str]]:
    """The method names each results file gives."""
    rows = json.loads((out / "results.json").read_text())
    with open(out / "results.csv", newline="") as f:
        csv_models = {r["model"] for r in csv.DictReader(f)}
    md = (out / "results.md").read_text()
    return {"json": {r["model"] for r in rows["results"]} | {m["label"] for m in rows["models"]},
            "csv": csv_models, "md": {md}, "tex": {(out / "results.tex").read_text()}}


def test_preset_name_in_metrics_checkpoint_and_every_eval_table(shallow_run: Path, tmp_path: Path, capsys) -> None:
    metrics = json.loads((shallow_run / "metrics.json").read_text())
    assert (metrics["model"], metrics["network"]) == ("shallow", "edsr")
    ckpt = shallow_run / "checkpoints" / "last.ckpt"
    _, spec = load_network(ckpt)
    assert spec["label"] == "shallow" and spec["name"] == "edsr"
    capsys.readouterr()
    run_eval(compose_eval([f"ckpt_path={ckpt}", "eval.sets=[sample:val]"], tmp_path))
    printed = capsys.readouterr().out
    cells = _method_cells(tmp_path)
    assert cells["json"] == cells["csv"] == {"shallow", "bicubic"}
    for text in (*cells["md"], *cells["tex"], printed):
        assert "shallow" in text and "edsr" not in text
    # The count under the table is the table's: one row for sample:val x2 (with bicubic beside it).
    assert "shallow: 1 table rows (1 set x scale, 2 method(s))" in printed


def test_eval_labels_name_the_methods_and_a_wrong_count_is_one_clear_error(shallow_run: Path, tmp_path: Path) -> None:
    ckpt = shallow_run / "checkpoints" / "last.ckpt"
    run_eval(compose_eval([f"ckpt_path=[{ckpt},{ckpt}]", "eval.labels=[mine,theirs]", "eval.sets=[sample:val]"],
                          tmp_path / "a"))
    cells = _method_cells(tmp_path / "a")
    assert cells["json"] == cells["csv"] == {"mine", "theirs", "bicubic"}
    md, tex = *cells["md"], *cells["tex"]
    assert "| mine " in md and "| theirs " in md and "mine &" in tex and "shallow" not in md + tex
    with pytest.raises(ValueError, match=r"eval.labels names 1 method\(s\) \(mine\) but 2 are evaluated"):
        run_eval(compose_eval([f"ckpt_path=[{ckpt},{ckpt}]", "eval.labels=[mine]", "eval.sets=[sample:val]"],
                              tmp_path / "b"))
    with pytest.raises(ValueError, match="differ from each other and from 'bicubic'"):
        run_eval(compose_eval([f"ckpt_path={ckpt}", "eval.labels=[bicubic]", "eval.sets=[sample:val]"], tmp_path / "c"))
    # Refused before evaluating: the claimed folders (owner record only) hold no results.
    assert not list(tmp_path.glob("[bc]/results.*"))


def test_checkpoint_without_label_falls_back_to_the_network_name(shallow_run: Path, tmp_path: Path) -> None:
    """Checkpoints written before labels existed (no ``label`` in their spec) load, named by the network."""
    state = torch.load(shallow_run / "checkpoints" / "last.ckpt", weights_only=True)
    state["hyper_parameters"]["network"].pop("label")
    old = tmp_path / "old.ckpt"
    torch.save(state, old)
    _, spec = load_network(old)
    assert "label" not in spec and model_label(spec) == "edsr"
    run_eval(compose_eval([f"ckpt_path={old}", "eval.sets=[sample:val]"], tmp_path / "out"))
    assert _method_cells(tmp_path / "out")["json"] == {"edsr", "bicubic"}


def test_resuming_ignores_a_label_change(shallow_run: Path, tmp_path: Path) -> None:
    """The label names a network; model=edsr with shallow's sizes resumes a model=shallow run."""
    ckpt = shallow_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "resumed"
    summary = train(compose_train(["model=edsr", "model.depth=4", "model.width=32", *FAST, "trainer.max_steps=3",
                                   f"ckpt_path={ckpt}"], out))
    assert summary["steps"] == 3 and summary["model"] == "edsr"


def test_sweep_checkpoints_of_one_preset_are_told_apart_by_their_settings() -> None:
    specs = [{"name": "edsr", "label": "shallow", "depth": d, "width": 32} for d in (4, 8)]
    paths = ["/s/0/checkpoints/best.ckpt", "/s/1/checkpoints/best.ckpt"]
    assert method_labels(specs, paths) == ["shallow (depth=4)", "shallow (depth=8)"]
    assert method_labels([specs[0], specs[0]], paths) == ["shallow (0)", "shallow (1)"]  # same settings: the run
    assert method_labels([specs[0], {"name": "edsr", "depth": 4}], paths) == ["shallow", "edsr"]


def test_every_model_preset_is_labelled_with_its_file_name() -> None:
    for path in sorted((CONF / "model").glob("*.yaml")):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            model = compose(config_name="train", overrides=[f"model={path.stem}"]).model
        expected = None if path.stem == "from_file" else path.stem  # from_file: the detected network's name
        assert model.get("label") == expected, path.name
