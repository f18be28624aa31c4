"""Interoperability through spandrel: community files in (any architecture spandrel reads, the zoo
network where it is one), files out that spandrel reads back as the same network, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import spandrel
import torch
from conftest import FAST, ROOT, SMALL, compose_train
from PIL import Image
from safetensors.torch import save_file

from sr_experiments.inference.export import export_weights
from sr_experiments.models import NETWORKS, build_network
from sr_experiments.models.detection import UnrecognisedWeights, detect
from sr_experiments.models.interop import official_state_dict
from sr_experiments.models.weights import CheckpointLoadError, load_network

pytestmark = pytest.mark.usefixtures("one_thread")


def _official(arch: str | type, **kwargs) -> torch.nn.Module:
    """A network built with spandrel's own code (random weights): what a community file holds."""
    if isinstance(arch, type):
        return arch(**kwargs).eval()
    module = __import__(f"spandrel.architectures.{arch}", fromlist=[arch])
    return getattr(module, arch)(**kwargs).eval()


# Small instances of spandrel's classes of each architecture the zoo shares with it (one per
# upsampler / layout variant), with the zoo network they must come in as.
OFFICIAL = {
    "esrgan-x4": ("ESRGAN", dict(num_filters=16, num_blocks=1, scale=4), "rrdbnet"),
    "esrgan-x2": ("ESRGAN", dict(in_nc=12, num_filters=16, num_blocks=1, scale=4, shuffle_factor=2), "rrdbnet"),
    "safmn-x3": ("SAFMN", dict(dim=16, n_blocks=1, upscaling_factor=3), "safmn"),
    "rcan-x2": ("RCAN", dict(scale=2, n_resgroups=1, n_resblocks=2, n_feats=16, reduction=4), "rcan"),
    "rcan-x4": ("RCAN", dict(scale=4, n_resgroups=2, n_resblocks=1, n_feats=16, reduction=4), "rcan"),
    "swinir-x3": ("SwinIR", dict(upscale=3, img_size=16, embed_dim=12, depths=[2], num_heads=[2], window_size=4,
                                 upsampler="pixelshuffle"), "swinir"),
    "swinir-light-x2": ("SwinIR", dict(upscale=2, img_size=16, embed_dim=12, depths=[2], num_heads=[2],
                                       window_size=4, upsampler="pixelshuffledirect"), "swinir_light"),
}


def _save(state: dict, path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:  # as BasicSR releases them
        torch.save({"params_ema": state, "params": state}, path)
    return path


def _input(h: int = 23, w: int = 19) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1))


# The zoo networks on spandrel's own classes (models/community.py): small instances of spandrel's
# class, built from the hyperparameters of our small preset (conftest.SMALL).
COMMUNITY = sorted(SMALL)
for _name in COMMUNITY:
    _hp = build_network({"name": _name, "scale": 3, **SMALL[_name]}).hyperparameters
    OFFICIAL[f"{_name}-x3"] = (NETWORKS[_name].SPANDREL_CLASS, dict(_hp), _name)


def test_every_zoo_network_spandrel_knows_is_covered() -> None:
    shared = {name for name, cls in NETWORKS.items() if getattr(cls, "SPANDREL_ID", None)}
    assert {"rrdbnet", "safmn", "rcan", "swinir", "swinir_light", "hat", "dat", "atd", "omnisr", "span",
            "plksr", "realplksr", "drct", "rgt"} <= shared
    assert shared == {zoo for _, _, zoo in OFFICIAL.values()}


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("key", list(OFFICIAL))
def test_a_community_file_runs_as_the_zoo_network_with_identical_output(
    tmp_path: Path, key: str, suffix: str, capsys: pytest.CaptureFixture
) -> None:
    arch, kwargs, zoo = OFFICIAL[key]
    torch.manual_seed(0)
    official = _official(arch, **kwargs)
    path = _save(official.state_dict(), tmp_path / f"model{suffix}")
    net, spec = load_network(path)  # what eval.py, upscale.py and export.py call
    assert spec["name"] == zoo and type(net) is NETWORKS[zoo]
    # spandrel's DRCT does not pad to its window (ours does, as the official test code): a size it takes
    x = _input(16, 24) if zoo == "drct" else _input()
    with torch.no_grad():
        diff = float((net(x.clone()) - official(x.clone())).abs().max())
    assert diff < 1e-5
    printed = capsys.readouterr().out
    n = sum(p.numel() for p in official.parameters())
    arch = NETWORKS[zoo].SPANDREL_ID
    assert f"detected {arch} x" in printed and f"{n:,} parameters" in printed and f"zoo network {zoo}" in printed


def test_an_architecture_outside_the_zoo_runs_as_spandrels_module(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    # Swift-SRGAN: an architecture spandrel reads that the zoo does not have (checked, so that a
    # zoo addition cannot silently turn this into a zoo test).
    assert not any(getattr(cls, "SPANDREL_ID", None) == "SwiftSRGAN" for cls in NETWORKS.values())
    official = _official("SwiftSRGAN", in_channels=3, num_channels=16, num_blocks=2, upscale_factor=2)
    path = _save(official.state_dict(), tmp_path / "m.safetensors")
    net, spec = load_network(path)
    assert spec["name"] == "spandrel" and spec["scale"] == 2
    x = _input()
    with torch.no_grad():
        assert float((net(x) - official(x.clone())).abs().max()) < 1e-6
    assert "not in the zoo" in capsys.readouterr().out


def test_spandrel_modules_that_scale_their_input_in_place_leave_the_callers_tensor_alone(tmp_path: Path) -> None:
    # spandrel's RCAN does `x *= rgb_range`; its pixel-unshuffle variant is not the zoo's rcan.
    torch.manual_seed(0)
    official = _official("RCAN", scale=2, n_resgroups=1, n_resblocks=1, n_feats=16, reduction=4, unshuffle_mod=True)
    net, spec = load_network(_save(official.state_dict(), tmp_path / "m.pth"))
    assert spec["name"] == "spandrel"
    x = _input(24, 20)  # even: spandrel pads nothing, so its forward gets the caller's tensor itself
    before = x.clone()
    with torch.no_grad():
        net(x)
    assert torch.equal(x, before)


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
@pytest.mark.parametrize("spec", [
    {"name": "rrdbnet", "scale": 2, "width": 16, "depth": 1},
    {"name": "rrdbnet", "scale": 4, "width": 16, "depth": 1},
    {"name": "safmn", "scale": 4, "depth": 2, "width": 16},
    {"name": "rcan", "scale": 3, "width": 16, "groups": 2, "depth": 1, "squeeze": 4},
    {"name": "swinir", "scale": 2, "img_size": 16, "embed_dim": 12, "depths": [2], "num_heads": [2], "window_size": 4},
    {"name": "swinir_light", "scale": 3, "img_size": 16, "embed_dim": 12, "depths": [2], "num_heads": [2],
     "window_size": 4, "pad_mode": "reflect"},
    *({"name": name, "scale": 2, **SMALL[name]} for name in sorted(SMALL)),
], ids=lambda s: f"{s['name']}-x{s['scale']}")
def test_an_exported_zoo_network_is_read_by_spandrel_as_the_same_network(tmp_path: Path, spec: dict, fmt: str) -> None:
    torch.manual_seed(0)
    net = build_network(spec).eval()
    path = tmp_path / f"m.{fmt}"
    export_weights(net, spec, fmt, path)
    loaded = spandrel.ModelLoader().load_from_file(str(path))  # spandrel's own reader, as chaiNNer uses it
    assert loaded.architecture.id == type(net).SPANDREL_ID and loaded.scale == spec["scale"]
    # SwinIR pads sizes off the window unlike spandrel by default (pad_mode=symmetric): compare on a multiple.
    sized = spec["name"] == "drct" or (spec.get("pad_mode", "symmetric") == "symmetric" and "swinir" in spec["name"])
    x = _input(16, 24) if sized else _input()
    with torch.no_grad():
        assert float((loaded.model.eval()(x.clone()) - net(x.clone())).abs().max()) < 1e-5
    if fmt == "pth":  # BasicSR's layout
        obj = torch.load(path, weights_only=True)
        assert set(obj["params"]) == set(official_state_dict(net)) and obj["network"]["name"] == spec["name"]


def test_rcan_official_layout_round_trip() -> None:
    torch.manual_seed(0)
    net = build_network({"name": "rcan", "scale": 2, "width": 16, "groups": 2, "depth": 2, "squeeze": 4})
    official = official_state_dict(net)
    assert "head.0.weight" in official and "body.2.weight" in official and "body.0.body.2.weight" in official
    assert "tail.1.weight" in official and "sub_mean.bias" in official
    assert {k: v for k, v in net.from_official_state_dict(official).items()}.keys() == net.state_dict().keys()
    assert detect(official, "x").spec["name"] == "rcan"


def test_unknown_weights_are_one_line_naming_the_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "edsr.pth"
    state = build_network({"name": "edsr", "scale": 2, "depth": 1, "width": 8}).state_dict()
    # A layout of no zoo network (a renamed tail) and no spandrel architecture: refused in one line.
    torch.save({k.replace("conv_last", "tail"): v for k, v in state.items()}, path)
    with pytest.raises(UnrecognisedWeights, match=r"edsr\.pth.*spandrel does not recognise.*model=NAME"):
        load_network(path)
    # the zoo layout itself is detected by its keys (tests/models/test_weights.py), and named loads as before
    torch.save(state, path)
    _, spec = load_network(path, model={"name": "edsr", "scale": 2, "depth": 1, "width": 8})
    assert spec["name"] == "edsr"


@pytest.mark.parametrize(("name", "content"), [("notes.pth", b"not a checkpoint"), ("m.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{bad}"),
                                               ("empty.ckpt", b"")])
def test_unreadable_files_say_so_and_what_is_supported(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointLoadError, match=rf"{name}.*Supported: .*\.pth.*\.safetensors") as info:
        load_network(path)
    assert "\n" not in str(info.value)


def test_upscale_cli_unreadable_file_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    from sr_experiments.inference.upscale import cli

    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    code = cli([f"ckpt_path={tmp_path / 'bad.safetensors'}", f"input={tmp_path / 'a.png'}",
                f"output={tmp_path / 'out'}", "progress=false"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Supported" in err


def test_mismatched_weights_name_the_detected_architecture(tmp_path: Path) -> None:
    torch.manual_seed(0)
    official = _official("SAFMN", dim=16, n_blocks=1, upscaling_factor=2)
    path = _save(official.state_dict(), tmp_path / "safmn.pth")
    with pytest.raises(ValueError, match="spandrel detects SAFMN x2.*model=from_file"):
        load_network(path, model={"name": "edsr", "scale": 2})


@pytest.mark.slow
def test_upscale_with_a_community_file_writes_the_spandrel_output(tmp_path: Path) -> None:
    from sr_experiments.inference.upscale import cli

    torch.manual_seed(0)
    official = _official("SAFMN", dim=16, n_blocks=1, upscaling_factor=2)
    path = _save(official.state_dict(), tmp_path / "4x.safetensors")
    # larger than upscale.py's tile overlap: not padded (SAFMN pools over the whole image)
    rgb = (np.random.default_rng(0).random((40, 52, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    assert cli([f"ckpt_path={path}", f"input={tmp_path / 'in.png'}", f"output={tmp_path / 'out'}", "progress=false",
                "precision=32"]) == 0
    got = np.asarray(Image.open(next((tmp_path / "out").glob("*.png")))).astype(int)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        ref = (official(x).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round().astype(int)
    assert got.shape == ref.shape and np.abs(got - ref).max() <= 1


@pytest.mark.slow
def test_trained_here_then_exported_spandrel_detects_it(tmp_path: Path) -> None:
    from sr_experiments.runs.run import train

    cfg = compose_train([*FAST, "model=safmn", "model.depth=1", "model.width=8"], tmp_path / "run")
    train(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    net, _ = load_network(ckpt)
    for fmt in ("safetensors", "pth"):
        out = tmp_path / f"exported.{fmt}"
        proc = subprocess.run([sys.executable, "export.py", f"ckpt_path={ckpt}", f"format={fmt}", f"output={out}"],
                              cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "spandrel reads it as SAFMN x2" in proc.stdout
        loaded = spandrel.ModelLoader().load_from_file(str(out))
        assert loaded.architecture.id == "SAFMN" and loaded.scale == 2
        x = _input()
        with torch.no_grad():
            assert float((loaded.model.eval()(x) - net(x)).abs().max()) < 1e-5


@pytest.mark.slow
def test_fine_tune_a_community_file_with_model_from_file(tmp_path: Path) -> None:
    from sr_experiments.runs.run import train

    torch.manual_seed(0)
    official = _official("SAFMN", dim=8, n_blocks=1, upscaling_factor=2)
    path = _save(official.state_dict(), tmp_path / "safmn.safetensors")
    cfg = compose_train([*FAST, "model=from_file", f"model.pretrained={path}"], tmp_path / "run")
    train(cfg)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    spec = ckpt["hyper_parameters"]["network"]
    assert spec["name"] == "safmn" and spec["width"] == 8 and "pretrained" not in spec
    net, _ = load_network(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert any(not torch.equal(a, b) for a, b in zip(net.state_dict().values(), official.state_dict().values()))


@pytest.mark.slow
def test_fine_tune_an_architecture_outside_the_zoo(tmp_path: Path) -> None:
    from sr_experiments.runs.run import train

    torch.manual_seed(0)
    official = _official("SwiftSRGAN", in_channels=3, num_channels=8, num_blocks=2, upscale_factor=2)
    path = _save(official.state_dict(), tmp_path / "swift_srgan.pth")
    cfg = compose_train([*FAST, "model=from_file", f"model.pretrained={path}"], tmp_path / "run")
    train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    spec = torch.load(last, weights_only=True)["hyper_parameters"]["network"]
    n = sum(p.numel() for p in official.parameters())
    assert spec == {"name": "spandrel", "architecture": "SwiftSRGAN", "scale": 2, "params": n}
    net, spec = load_network(last)  # rebuilt from the checkpoint's own weights, no file needed
    x = _input()
    with torch.no_grad():
        assert net(x).shape == (1, 3, 46, 38)
        assert not torch.equal(net(x), official(x.clone()))  # it trained


@pytest.mark.slow
def test_eval_of_a_community_file_equals_the_same_weights_from_a_checkpoint(tmp_path: Path, data_dir: Path) -> None:
    from conftest import compose_eval
    from test_upscale import save_checkpoint

    from sr_experiments.evaluation.run import run_eval

    torch.manual_seed(0)
    official = _official("SAFMN", dim=8, n_blocks=1, upscaling_factor=2)
    community = _save(official.state_dict(), tmp_path / "2x-community.pth")
    spec = {"name": "safmn", "scale": 2, "depth": 1, "width": 8}
    ours = save_checkpoint(build_network(spec), spec, tmp_path / "ours.ckpt")
    ours_state = torch.load(ours, weights_only=True)
    ours_state["state_dict"] = {f"net.{k}": v for k, v in official.state_dict().items()}
    torch.save(ours_state, ours)
    rows = []
    for i, (path, extra) in enumerate([(community, []), (ours, []), (community, ["model.pretrained=" + str(community)])]):
        ckpt = [] if extra else [f"ckpt_path={path}"]
        cfg = compose_eval([*ckpt, *extra, f"paths.data_dir={data_dir}", "eval.sets=[Set5]", "eval.precision=32",
                            "eval.baseline=false"], tmp_path / f"out{i}")
        (result,) = run_eval(cfg)
        rows.append((result.psnr, result.ssim, result.images))
    assert rows[0] == rows[1] == rows[2] and rows[0][2] == 5


@pytest.mark.slow
def test_train_ckpt_path_of_a_community_file_with_model_from_file(tmp_path: Path) -> None:
    from sr_experiments.runs.run import train

    torch.manual_seed(0)
    official = _official("SAFMN", dim=8, n_blocks=1, upscaling_factor=2)
    path = _save(official.state_dict(), tmp_path / "safmn.pth")
    train(compose_train([*FAST, "model=from_file", f"ckpt_path={path}"], tmp_path / "run"))
    spec = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["network"]
    assert spec["name"] == "safmn" and spec["width"] == 8
