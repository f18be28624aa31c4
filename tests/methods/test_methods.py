"""sr_experiments/methods: ``resolve_method`` turns a config into the thing to run, for each kind
(a checkpoint network, a parameter-free model, per-image ZSSR), and refuses a bad one in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from sr_experiments.methods import NetworkMethod, ParameterFreeMethod, ZSSRMethod, resolve_method, resolve_methods
from sr_experiments.models import EDSR, build_network
from sr_experiments.provenance import file_sha256

CONF = Path(__file__).resolve().parents[2] / "sr_experiments" / "conf"
ZSSR_FAST = ["model.zssr.precision=32", "model.zssr.channels_last=false", "model.zssr.crop_size=8",
             "model.zssr.max_steps=2", "model.zssr.ensemble=false", "model.zssr.back_projection_iters=0"]


def _cfg(overrides: list[str], config: str = "upscale"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=config, overrides=["input=x", "output=y", *overrides] if config == "upscale"
                       else overrides)


def _lr() -> torch.Tensor:
    return torch.rand(1, 3, 10, 12, generator=torch.Generator().manual_seed(0))


def test_a_checkpoint_is_its_network_with_label_scale_and_provenance(tmp_path: Path) -> None:
    spec = {"name": "edsr", "scale": 3, "depth": 1, "width": 8}
    torch.manual_seed(0)
    net = build_network(spec).eval()
    path = tmp_path / "mine.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "hyper_parameters": {"network": spec}}, path)
    method = resolve_method(_cfg([f"ckpt_path={path}"]))
    assert isinstance(method, NetworkMethod) and method.label == "edsr" and method.scale == 3
    assert method.provenance == {"checkpoint": str(path.resolve()), "checkpoint_sha256": file_sha256(path),
                                 "params": sum(p.numel() for p in net.parameters())}
    lr = _lr()
    with torch.no_grad():
        assert torch.equal(method(lr), net(lr))
    with pytest.raises(ValueError, match="x3 network; it cannot run at x2"):
        method.network("cpu", 2)


def test_an_official_file_without_a_spec_is_found_by_its_keys(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    torch.save(EDSR(2, depth=1, width=8).state_dict(), tmp_path / "EDSR_tiny.pth")
    method = resolve_method(_cfg([f"model.pretrained={tmp_path / 'EDSR_tiny.pth'}"]))  # the other way to name it
    assert method.spec == {"name": "edsr", "scale": 2, "depth": 1, "width": 8}
    assert "detected edsr x2 from its keys" in capsys.readouterr().out


def test_bicubic_is_parameter_free_and_runs_at_any_scale() -> None:
    method = resolve_method(_cfg(["model=bicubic", "scale=3"]))
    assert isinstance(method, ParameterFreeMethod) and (method.label, method.scale) == ("bicubic", 3)
    assert method.provenance == {"checkpoint": None, "checkpoint_sha256": None, "params": 0}
    assert method(_lr()).shape == (1, 3, 30, 36)
    assert method.network("cpu", 4)(_lr()).shape == (1, 3, 40, 48)


def test_zssr_trains_on_each_image_it_is_called_on() -> None:
    method = resolve_method(_cfg(["model=zssr", "progress=false", *ZSSR_FAST]))
    assert isinstance(method, ZSSRMethod) and method.whole_image and method.any_scale
    assert method.provenance["trained_per_image"] and method.provenance["params"] > 0
    sr = method(_lr())
    assert sr.shape == (1, 3, 20, 24) and torch.isfinite(sr).all()
    assert method.network("cpu").last.steps == [2]  # it trained (max_steps=2) on this image


@pytest.mark.parametrize(("overrides", "says"), [
    (["model=edsr"], "model=edsr has parameters: pass the trained weights with ckpt_path=PATH"),
    (["model=zssr", "+model.zssr.bogus=1"], "model.zssr.bogus is not a ZSSR setting"),
    (["ckpt_path=/no/such/file.pth"], "'/no/such/file.pth' does not exist"),
])  # fmt: skip
def test_a_bad_config_is_one_line_naming_the_key(overrides: list[str], says: str) -> None:
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        resolve_methods(_cfg(overrides))
    assert says in str(info.value) and "\n" not in str(info.value)


def test_eval_and_upscale_configs_mean_the_same_method(tmp_path: Path) -> None:
    # One answer for every command: the same model= in eval.yaml and upscale.yaml resolves alike.
    a = resolve_method(_cfg(["model=bicubic", "scale=4"]))
    b = resolve_method(_cfg(["model=bicubic", "scale=4"], "eval"))
    assert (a.label, a.scale, a.provenance, a.spec) == (b.label, b.scale, b.provenance, b.spec)
