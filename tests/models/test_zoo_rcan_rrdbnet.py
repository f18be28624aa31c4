"""RCAN and RRDBNet (ESRGAN): exact parameter counts, BasicSR state-dict keys written out by hand,
shapes, one training step, strict state-dict round trips. Small instances except for the counts."""

from __future__ import annotations


import pytest
import torch
from conftest import assert_one_training_step, compose_model

import sr_experiments.models.rcan  # noqa: F401  (registers "rcan")
import sr_experiments.models.rrdbnet  # noqa: F401  (registers "rrdbnet")
from sr_experiments.models import build_network, count_parameters, supports_scale
from sr_experiments.models.rcan import RCAN
from sr_experiments.models.rrdbnet import RRDBNet


SMALL_ARGS = {"rcan": {"width": 16, "groups": 2, "depth": 2, "squeeze": 4}, "rrdbnet": {"width": 8, "depth": 1, "growth": 4}}
# (name, scale, small constructor args) for every registered scale up to x4.
SMALL = [(name, scale, args) for name, args in SMALL_ARGS.items() for scale in (2, 3, 4) if supports_scale(name, scale)]
SMALL_IDS = [f"{name}-x{scale}" for name, scale, _ in SMALL]


# Tiny inputs: extra threads buy nothing, and on a busy 2-core machine their spin-waits
# made training steps ~10x slower.
pytestmark = pytest.mark.usefixtures("one_thread")


def _small(name: str, scale: int, kwargs: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network({"name": name, "scale": scale, **kwargs})


def _input(h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))


# --- parameter counts of the paper configurations, built from sr_experiments/conf/model/*.yaml ---------------


@pytest.mark.parametrize(
    ("name", "scale", "expected"),
    [
        ("rcan", 2, 15_444_643),
        ("rcan", 3, 15_629_283),
        ("rcan", 4, 15_592_355),
        ("rrdbnet", 4, 16_697_987),
        ("rrdbnet", 2, 16_703_171),  # x4 + conv_first taking 12 (pixel-unshuffled) channels, not 3
    ],
)
def test_parameter_count(name: str, scale: int, expected: int) -> None:
    assert count_parameters(build_network(compose_model(name, scale))) == expected


def test_defaults_are_the_papers() -> None:
    net = RCAN(2)
    assert len(net.body) == 10 and len(net.body[0].residual_group) == 20
    assert net.conv_first.out_channels == 64
    assert net.body[0].residual_group[0].rcab[3].attention[1].out_channels == 64 // 16
    net = RRDBNet(4)
    assert len(net.body) == 23 and net.conv_first.out_channels == 64
    assert net.body[0].rdb1.conv1.out_channels == 32


# --- state-dict keys, written out from BasicSR's rcan_arch.py / rrdbnet_arch.py ---------------


def _keys(modules: list[str]) -> set[str]:
    return {f"{m}.{kind}" for m in modules for kind in ("weight", "bias")}


@pytest.mark.parametrize(("scale", "upsample_convs"), [(2, [0]), (3, [0]), (4, [0, 2])])
def test_rcan_state_dict_keys_match_basicsr(scale: int, upsample_convs: list[int]) -> None:
    # RCAN(num_group=1, num_block=1): RCAB.rcab = Sequential(conv, ReLU, conv, ChannelAttention),
    # ChannelAttention.attention = Sequential(pool, conv, ReLU, conv, sigmoid).
    expected = _keys(
        [
            "conv_first",
            "body.0.residual_group.0.rcab.0",
            "body.0.residual_group.0.rcab.2",
            "body.0.residual_group.0.rcab.3.attention.1",
            "body.0.residual_group.0.rcab.3.attention.3",
            "body.0.conv",
            "conv_after_body",
            *(f"upsample.{i}" for i in upsample_convs),
            "conv_last",
        ]
    )
    net = RCAN(scale, width=16, groups=1, depth=1, squeeze=4)
    assert set(net.state_dict()) == expected  # no "mean": BasicSR has none


@pytest.mark.parametrize("scale", [2, 4])
def test_rrdbnet_state_dict_keys_match_basicsr(scale: int) -> None:
    rdbs = [f"body.0.rdb{r}.conv{c}" for r in (1, 2, 3) for c in (1, 2, 3, 4, 5)]
    expected = _keys(["conv_first", *rdbs, "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"])
    net = RRDBNet(scale, width=8, depth=1, growth=4)
    assert set(net.state_dict()) == expected
    assert net.conv_first.in_channels == (12 if scale == 2 else 3)


def test_shapes_match_basicsr() -> None:
    rcan = RCAN(3, width=32, groups=1, depth=1, squeeze=16)
    assert rcan.body[0].residual_group[0].rcab[3].attention[1].weight.shape == (2, 32, 1, 1)
    assert rcan.upsample[0].weight.shape == (9 * 32, 32, 3, 3)
    rdb = RRDBNet(4, width=64, depth=1, growth=32).body[0].rdb2
    assert [c.in_channels for c in (rdb.conv1, rdb.conv2, rdb.conv3, rdb.conv4, rdb.conv5)] == [64, 96, 128, 160, 192]
    assert rdb.conv5.out_channels == 64


def test_rrdbnet_dense_block_init_is_scaled() -> None:
    # BasicSR: default_init_weights(..., 0.1) on every dense-block conv, biases zero.
    torch.manual_seed(0)
    conv = RRDBNet(4, width=64, depth=1, growth=32).body[0].rdb1.conv3
    assert torch.count_nonzero(conv.bias) == 0
    fan_in = conv.in_channels * 9
    assert conv.weight.std().item() == pytest.approx(0.1 * (2 / fan_in) ** 0.5, rel=0.1)


def test_pixel_unshuffle_matches_basicsr_order() -> None:
    # BasicSR's arch_util.pixel_unshuffle, verbatim in tensor ops; checkpoints depend on this order.
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)
    basicsr = x.view(2, 3, 2, 2, 3, 2).permute(0, 1, 3, 5, 2, 4).reshape(2, 12, 2, 3)
    assert torch.equal(torch.nn.functional.pixel_unshuffle(x, 2), basicsr)


# --- behaviour --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "scale", "kwargs"), SMALL, ids=SMALL_IDS)
def test_forward_shape(name: str, scale: int, kwargs: dict) -> None:
    net = _small(name, scale, kwargs)
    x = _input()
    with torch.no_grad():
        y = net(x)
    assert y.shape == (1, 3, 8 * scale, 8 * scale)
    assert y.dtype == x.dtype and torch.isfinite(y).all()


@pytest.mark.parametrize(("name", "scale", "kwargs"), SMALL, ids=SMALL_IDS)
def test_training_step(name: str, scale: int, kwargs: dict) -> None:
    net = _small(name, scale, kwargs)
    assert_one_training_step(net, _input())


@pytest.mark.parametrize(("name", "scale", "kwargs"), SMALL, ids=SMALL_IDS)
def test_state_dict_round_trip_strict(name: str, scale: int, kwargs: dict) -> None:
    src = _small(name, scale, kwargs)
    torch.manual_seed(1)
    dst = build_network({"name": name, "scale": scale, **kwargs})
    dst.load_state_dict(src.state_dict(), strict=True)
    x = _input()
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


@pytest.mark.parametrize(("h", "w"), [(7, 9), (1, 1), (8, 5)])
def test_rrdbnet_x2_odd_input_sizes(h: int, w: int) -> None:
    net = RRDBNet(2, width=8, depth=1, growth=4)
    with torch.no_grad():
        y = net(_input(h, w))
        # reflected, as spandrel pads (a 1-pixel side: replicated)
        mode = "reflect" if min(h, w) > 1 else "replicate"
        padded = net(torch.nn.functional.pad(_input(h, w), (0, w % 2, 0, h % 2), mode=mode))
    assert y.shape == (1, 3, 2 * h, 2 * w)
    assert torch.equal(y, padded[..., : 2 * h, : 2 * w])


def test_rcan_follows_input_dtype() -> None:
    net = RCAN(2, width=8, groups=1, depth=1, squeeze=4).double()
    assert net(_input(5, 5).double()).dtype == torch.float64


def test_rrdbnet_rejects_x3_clearly() -> None:
    with pytest.raises(ValueError, match="rrdbnet does not support scale 3.*x4 and x2"):
        build_network({"name": "rrdbnet", "scale": 3})


@pytest.mark.parametrize("name", ["rcan", "rrdbnet"])
@pytest.mark.parametrize("scale", [0, 1, 2.0, True, 5])
def test_bad_scale_rejected(name: str, scale: object) -> None:
    with pytest.raises(ValueError, match="scale"):
        build_network({"name": name, "scale": scale})


def test_rcan_squeeze_too_large_rejected() -> None:
    with pytest.raises(ValueError, match="squeeze"):
        RCAN(2, width=8, groups=1, depth=1, squeeze=16)
