"""Official weight files: model.pretrained=PATH, ckpt_path= for training and evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import FAST, compose_train
from conftest import compose_eval

from sr_experiments.models import build_network
from sr_experiments.models.weights import build_model, load_pretrained, unwrap_state_dict
from sr_experiments.evaluation.run import run_eval
from sr_experiments.runs.run import train

SHALLOW = {"name": "edsr", "scale": 2, "depth": 4, "width": 32}


def _official_file(tmp_path: Path, spec: dict, wrapper: str = "params", prefix: str = "") -> tuple[Path, dict]:
    torch.manual_seed(7)
    state = {prefix + k: v for k, v in build_network(spec).state_dict().items()}
    path = tmp_path / "official.pth"
    torch.save({wrapper: state, "other": {"noise": torch.zeros(1)}}, path)
    return path, state


@pytest.mark.parametrize(("wrapper", "prefix"), [("params", ""), ("params_ema", "module."), ("state_dict", "net.")])
def test_pretrained_unwraps_and_loads_strictly(tmp_path: Path, wrapper: str, prefix: str) -> None:
    path, state = _official_file(tmp_path, SHALLOW, wrapper, prefix)
    net = build_model({**SHALLOW, "pretrained": str(path)})
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[prefix + k])


def test_ema_weights_are_preferred() -> None:
    assert unwrap_state_dict({"params": {"a": 1}, "params_ema": {"a": 2}}) == {"a": 2}
    assert unwrap_state_dict({"params": {"a": 1}, "params_ema": {"a": 2}}, key="params") == {"a": 1}


def test_weights_of_another_network_are_a_clear_error(tmp_path: Path) -> None:
    path, _ = _official_file(tmp_path, SHALLOW)
    with pytest.raises(ValueError, match="model="):
        load_pretrained(build_network({"name": "edsr", "scale": 2}), path)


def test_config_key_and_fine_tune_from_an_official_file(tmp_path: Path) -> None:
    path, _ = _official_file(tmp_path, SHALLOW)
    cfg = compose_train([*FAST, f"model.pretrained={path}"], tmp_path / "a")
    summary = train(cfg)
    assert summary["steps"] == 4
    # The checkpoint rebuilds without the file it started from.
    ckpt = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)
    assert "pretrained" not in ckpt["hyper_parameters"]["network"]
    # ckpt_path= with a bare weights file fine-tunes; a file for another network is refused.
    assert train(compose_train([*FAST, f"ckpt_path={path}"], tmp_path / "b"))["steps"] == 4
    (tmp_path / "w").mkdir()
    wrong, _ = _official_file(tmp_path / "w", {"name": "edsr", "scale": 2, "depth": 2, "width": 8})
    with pytest.raises(ValueError, match="do not fit"):
        train(compose_train([*FAST, f"ckpt_path={wrong}"], tmp_path / "c"))


def test_eval_of_an_official_file_equals_eval_of_our_checkpoint(tmp_path: Path) -> None:
    train(compose_train(FAST, tmp_path / "run"))
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    ours = torch.load(ckpt, weights_only=True)["state_dict"]
    official = tmp_path / "official.pth"
    torch.save({"params": {k[len("net."):]: v for k, v in ours.items()}}, official)
    a = run_eval(compose_eval([f"ckpt_path={ckpt}", "eval.sets=[sample:val]", "eval.baseline=false"], tmp_path / "e1"))
    b = run_eval(compose_eval([f"ckpt_path={official}", "model=shallow", "eval.sets=[sample:val]", "eval.baseline=false"], tmp_path / "e2"))
    assert a[0].psnr == b[0].psnr and a[0].ssim == b[0].ssim
    # Without model=: the zoo network is found by the file's keys (edsr: shallow's sizes), same numbers.
    # Pinned layout: the detected spec (edsr) is timed apart from shallow's, and a different layout
    # would change the last float bits (eval.yaml: "same numbers to ~1e-6").
    same = ["eval.sets=[sample:val]", "eval.baseline=false", "eval.channels_last=false"]
    a = run_eval(compose_eval([f"ckpt_path={ckpt}", *same], tmp_path / "e4"))
    c = run_eval(compose_eval([f"ckpt_path={official}", *same], tmp_path / "e3"))
    assert a[0].psnr == c[0].psnr and a[0].ssim == c[0].ssim


def _our_checkpoint(path: Path, spec: dict) -> Path:
    torch.manual_seed(0)
    state = {f"net.{k}": v for k, v in build_network(spec).state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"network": spec}}, path)
    return path


def test_another_architecture_is_one_short_line_saying_what_the_file_is(tmp_path: Path) -> None:
    deeper = {"name": "edsr", "scale": 2, "depth": 16, "width": 8}  # 12 more blocks of 4 tensors each
    ckpt = _our_checkpoint(tmp_path / "deep.ckpt", deeper)
    with pytest.raises(ValueError) as info:
        load_pretrained(build_network({**SHALLOW, "width": 8}), ckpt)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 600, msg
    assert str(ckpt) in msg and "depth=16" in msg and "48 unexpected" in msg and "0 missing" not in msg
    assert msg.count("body.") <= 3  # a few examples, not the list
    wider = _our_checkpoint(tmp_path / "wide.ckpt", {**SHALLOW, "width": 16})
    with pytest.raises(ValueError, match=r"of another shape .*conv_first.weight \(16, 3, 3, 3\)") as info:
        load_pretrained(build_network(SHALLOW), wider)
    assert len(str(info.value)) < 600


def test_bare_weights_of_another_network_in_upscale_are_one_short_line(tmp_path: Path, capsys) -> None:
    from PIL import Image

    from sr_experiments.inference.upscale import cli

    torch.manual_seed(0)
    weights = tmp_path / "espcn.pth"
    torch.save({"params": build_network({"name": "espcn", "scale": 2}).state_dict()}, weights)
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    status = cli([f"ckpt_path={weights}", "model=shallow", f"input={tmp_path / 'a.png'}", f"output={tmp_path / 'o'}"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and len(err) < 600, err
    assert str(weights) in err and "missing" in err and "unexpected" in err and "model=" in err
