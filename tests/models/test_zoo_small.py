"""IMDN, SAFMN, VDSR and full EDSR: exact parameter counts, official state-dict keys, shapes,
one training step and a strict state-dict round trip, all on tiny instances.

The network modules are imported lazily (``_net``), not at collection: importing registers them,
and test_networks.py checks the exact registered set until they join ``sr_experiments.models``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from conftest import assert_one_training_step, compose_model

from sr_experiments.imaging.imresize import imresize
from sr_experiments.models.registry import NETWORKS, build_network, count_parameters, supports_scale

NAMES = ("imdn", "safmn", "vdsr", "edsr_large")
SCALES = (2, 3, 4)
# Small instances: the same code paths as the paper sizes at a fraction of the cost.
SMALL = {
    "imdn": {"depth": 2, "width": 16},
    "safmn": {"depth": 2, "width": 8},
    "vdsr": {"depth": 3, "width": 8},
    "edsr_large": {"depth": 2, "width": 8},
}
CASES = [(name, scale) for name in NAMES for scale in SCALES if supports_scale(name, scale)]
IDS = [f"{name}-x{scale}" for name, scale in CASES]


# Tiny inputs: extra threads buy nothing, and on a busy 2-core machine their spin-waits
# made training steps ~10x slower.
pytestmark = pytest.mark.usefixtures("one_thread")


def _net(name: str) -> type[torch.nn.Module]:
    importlib.import_module(f"sr_experiments.models.{name}")  # registers it
    return NETWORKS[name]


def _small(name: str, scale: int) -> torch.nn.Module:
    _net(name)
    torch.manual_seed(0)
    return build_network({"name": name, "scale": scale, **SMALL[name]})


def _input(h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))


# --- parameter counts (paper / official sizes) ---------------------------------------------

COUNTS = {
    "imdn": (694_404, 703_059, 715_176),
    "safmn": (227_820, 232_695, 239_520),
    "vdsr": (668_227, 668_227, 668_227),  # RGB: 665,921 for the paper's Y-only model
    "edsr_large": (40_729_603, 43_680_003, 43_089_923),
}


@pytest.mark.parametrize(("name", "scale"), CASES, ids=IDS)
def test_parameter_count(name: str, scale: int) -> None:
    cls = _net(name)
    with torch.device("meta"):  # counts shapes only: no 160 MB allocation for EDSR
        net = cls(scale)
        from_yaml = build_network(compose_model(name, scale))
    expected = COUNTS[name][SCALES.index(scale)]
    assert count_parameters(net) == expected
    assert count_parameters(from_yaml) == expected  # the config holds the paper defaults


# --- state-dict keys, written out by hand from the official definitions -------------------

def _keys(modules: list[str]) -> set[str]:
    return {f"{m}.{kind}" for m in modules for kind in ("weight", "bias")}


def test_imdn_state_dict_keys_match_official() -> None:
    # Zheng222/IMDN model/architecture.py IMDN + block.py IMDModule/CCALayer/conv_block/pixelshuffle_block.
    block = ["c1", "c2", "c3", "c4", "c5", "cca.conv_du.0", "cca.conv_du.2"]
    expected = _keys(
        ["fea_conv"]
        + [f"IMDB{i}.{m}" for i in (1, 2) for m in block]
        + ["c.0", "LR_conv", "upsampler.0"]
    )
    net = _small("imdn", 3)
    assert set(net.state_dict()) == expected
    assert net.upsampler[0].weight.shape == (27, 16, 3, 3)
    assert net.c[0].weight.shape == (16, 32, 1, 1)  # fuses depth x width channels


def test_imdn_default_has_six_blocks() -> None:
    net = _net("imdn")(2)
    assert [n for n, _ in net.named_children() if n.startswith("IMDB")] == [f"IMDB{i}" for i in range(1, 7)]


def test_safmn_state_dict_keys_match_official() -> None:
    # sunny2109/SAFMN basicsr/archs/safmn_arch.py SAFMN / AttBlock / SAFM / CCM / LayerNorm.
    block = ["norm1", "norm2", "safm.aggr", "ccm.ccm.0", "ccm.ccm.2"] + [f"safm.mfr.{i}" for i in range(4)]
    expected = _keys(["to_feat"] + [f"feats.{b}.{m}" for b in (0, 1) for m in block] + ["to_img.0"])
    net = _small("safmn", 4)
    assert set(net.state_dict()) == expected
    assert net.to_img[0].weight.shape == (48, 8, 3, 3)
    assert net.feats[0].ccm.ccm[0].weight.shape == (16, 8, 3, 3)  # ffn_scale 2
    assert net.feats[0].safm.mfr[1].weight.shape == (2, 1, 3, 3)  # depthwise on width / 4


def test_edsr_large_is_edsr_with_basicsr_keys() -> None:
    from sr_experiments.models.edsr import EDSR

    net = _small("edsr_large", 4)
    assert isinstance(net, EDSR) and net.body[0].res_scale == 0.1
    assert set(net.state_dict()) == set(EDSR(4, depth=2, width=8).state_dict())
    assert "mean" not in net.state_dict()


def test_vdsr_keys_and_depth() -> None:
    net = _small("vdsr", 2)  # depth 3: conv_first, one hidden conv, conv_last
    assert set(net.state_dict()) == _keys(["conv_first", "body.1", "conv_last"])
    assert sum(isinstance(m, torch.nn.Conv2d) for m in _net("vdsr")(2).modules()) == 20


def test_vdsr_is_residual_over_matlab_bicubic() -> None:
    net = _small("vdsr", 3)
    torch.nn.init.zeros_(net.conv_last.weight)
    torch.nn.init.zeros_(net.conv_last.bias)
    x = _input(7, 9)
    with torch.no_grad():
        assert torch.equal(net(x), imresize(x, scale=3))


# --- forward, training step, round trip ---------------------------------------------------

@pytest.mark.parametrize(("name", "scale"), CASES, ids=IDS)
def test_forward_shape_and_training_step(name: str, scale: int) -> None:
    net = _small(name, scale)
    x = _input(8, 8)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (1, 3, 8 * scale, 8 * scale) and y.dtype == x.dtype
    assert torch.isfinite(y).all()

    assert_one_training_step(net, x)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_reloads_strict(name: str, tmp_path: Path) -> None:
    net = _small(name, 2).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(net.state_dict(), path)
    torch.manual_seed(1)  # a differently initialised copy
    other = build_network({"name": name, "scale": 2, **SMALL[name]}).eval()
    other.load_state_dict(torch.load(path, weights_only=True), strict=True)
    x = _input(9, 10)  # odd sizes too
    with torch.no_grad():
        assert torch.equal(other(x), net(x))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", [0, 1, 2.0, True])
def test_bad_scale_rejected(name: str, scale: object) -> None:
    _net(name)
    with pytest.raises(ValueError, match=f"'{name}'.*scale"):
        build_network({"name": name, "scale": scale, **SMALL[name]})


@pytest.mark.parametrize(("name", "kwargs"), [("imdn", {"width": 18}), ("imdn", {"width": 8}),
                                              ("safmn", {"width": 10}), ("vdsr", {"depth": 1})])
def test_bad_sizes_rejected(name: str, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match=name):
        _net(name)(2, **kwargs)
