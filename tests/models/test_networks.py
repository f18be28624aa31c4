"""Every registered network x every benchmark scale: shapes, one training step, and the
architecture-specific checks (EDSR parameter counts and BasicSR state-dict keys, bicubic = imresize)."""

from __future__ import annotations


import pytest
import torch
from conftest import SMALL, assert_one_training_step
from omegaconf import OmegaConf

from sr_experiments.imaging.imresize import imresize
from sr_experiments.models import EDSR, build_network, count_parameters, is_multi_frame, list_networks, supports_scale
from sr_experiments.models.registry import register

SCALES = (2, 3, 4)  # the benchmark scales
# Each at the scales its registration declares (RRDBNet: x2, x4), and refused at the others.
# Image networks only: the video networks (is_multi_frame) take clips, tested in test_video_networks.py.
CASES = [(name, scale) for name in list_networks() for scale in SCALES
         if supports_scale(name, scale) and not is_multi_frame(name)]
UNSUPPORTED = [(name, scale) for name in list_networks() for scale in SCALES if not supports_scale(name, scale)]
IDS = [f"{name}-x{scale}" for name, scale in CASES]


# Tiny inputs: extra threads buy nothing, and on a busy 2-core machine their spin-waits
# made training steps ~10x slower.
pytestmark = pytest.mark.usefixtures("one_thread")


def _input(n: int = 2, h: int = 12, w: int = 12) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(0))


def _spec(name: str, scale: int) -> dict:
    """The network's defaults; small ones for the spandrel-based networks (conftest.SMALL: their
    paper sizes are covered by test_zoo_community.py and test_train.py's config builds)."""
    return {"name": name, "scale": scale, **SMALL.get(name, {})}


def test_every_network_has_a_config_and_every_config_a_network() -> None:
    from conftest import CONF
    from omegaconf import OmegaConf

    configs = {}
    for path in (CONF / "model").glob("*.yaml"):
        node = OmegaConf.load(path)
        configs[path.stem] = node.model.name if "model" in node else node.name
    # model=from_file is the network a weights file holds (detected on load), not one of the registry.
    assert configs.pop("from_file") == "from_file"
    assert set(configs.values()) == set(list_networks())
    # Each network has a config of its own name (presets such as shallow/deep come on top).
    assert set(list_networks()) <= set(configs)


@pytest.mark.parametrize(("name", "scale"), UNSUPPORTED, ids=[f"{n}-x{s}" for n, s in UNSUPPORTED])
def test_unsupported_scale_is_a_clear_error(name: str, scale: int) -> None:
    with pytest.raises(ValueError, match=f"scale {scale}"):
        build_network({"name": name, "scale": scale})


@pytest.mark.parametrize(("name", "scale"), CASES, ids=IDS)
def test_forward_shape(name: str, scale: int) -> None:
    torch.manual_seed(0)
    net = build_network(_spec(name, scale))
    x = _input()
    with torch.no_grad():
        y = net(x)
    assert y.shape == (2, 3, 12 * scale, 12 * scale)
    assert y.dtype == x.dtype
    assert torch.isfinite(y).all()


@pytest.mark.parametrize(("name", "scale"), CASES, ids=IDS)
def test_training_step(name: str, scale: int) -> None:
    torch.manual_seed(0)
    net = build_network(_spec(name, scale))
    x = _input()
    if count_parameters(net) == 0:
        # Parameter-free baselines: nothing to train, but forward must work with autograd on.
        assert list(net.parameters()) == []
        assert net(x.requires_grad_()).shape == (2, 3, 12 * scale, 12 * scale)
        return
    assert_one_training_step(net, x)


@pytest.mark.parametrize("name", list_networks())
@pytest.mark.parametrize("scale", [0, 1, 2.0, True])
def test_bad_scale_rejected(name: str, scale: object) -> None:
    with pytest.raises(ValueError, match="scale"):
        build_network({"name": name, "scale": scale})


@pytest.mark.parametrize(("scale", "expected"), [(2, 1_369_859), (3, 1_554_499), (4, 1_517_571)])
def test_edsr_parameter_count(scale: int, expected: int) -> None:
    assert count_parameters(EDSR(scale)) == expected


def _edsr_keys(upsample_convs: list[int]) -> set[str]:
    # BasicSR's edsr_arch.py with num_block=2, written out by hand.
    names = [
        "conv_first",
        "body.0.conv1",
        "body.0.conv2",
        "body.1.conv1",
        "body.1.conv2",
        "conv_after_body",
        *(f"upsample.{i}" for i in upsample_convs),
        "conv_last",
    ]
    return {f"{n}.{kind}" for n in names for kind in ("weight", "bias")}


@pytest.mark.parametrize(("scale", "upsample_convs"), [(2, [0]), (3, [0]), (4, [0, 2])])
def test_edsr_state_dict_keys_match_basicsr(scale: int, upsample_convs: list[int]) -> None:
    net = EDSR(scale, depth=2)
    assert set(net.state_dict()) == _edsr_keys(upsample_convs)  # no "mean": BasicSR has none
    EDSR(scale, depth=2).load_state_dict(net.state_dict(), strict=True)


def test_edsr_upsample_shapes() -> None:
    assert EDSR(3, depth=1).upsample[0].weight.shape == (9 * 64, 64, 3, 3)
    assert EDSR(4, depth=1).upsample[2].weight.shape == (4 * 64, 64, 3, 3)


def test_edsr_follows_input_dtype() -> None:
    net = EDSR(2, depth=1).double()
    assert net(_input(1, 5, 5).double()).dtype == torch.float64


@pytest.mark.parametrize("scale", SCALES)
def test_bicubic_equals_uint8_imresize(scale: int) -> None:
    x = _input(2, 11, 13)
    expected_uint8 = imresize(torch.floor(x * 255 + 0.5).to(torch.uint8), scale=scale)
    y = build_network({"name": "bicubic", "scale": scale})(x)
    assert torch.equal(y, expected_uint8.float() / 255)
    # Exactly 8-bit values, as the published bicubic rows are.
    assert torch.equal(torch.round(y * 255), y * 255)


def test_bicubic_clamps_out_of_range_input() -> None:
    x = torch.full((1, 3, 4, 4), 1.5)
    x[..., 0, 0] = -0.5
    y = build_network({"name": "bicubic", "scale": 2})(x)
    assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize(("h", "w"), [(13, 17), (1, 1), (12, 7)])
def test_seed_output_size_exact(scale: int, h: int, w: int) -> None:
    with torch.no_grad():
        y = build_network({"name": "seed", "scale": scale})(_input(1, h, w))
    assert y.shape == (1, 3, h * scale, w * scale)


@pytest.mark.parametrize("name", ["fsrcnn", "espcn", "srcnn"])
def test_odd_input_sizes(name: str) -> None:
    with torch.no_grad():
        y = build_network({"name": name, "scale": 3})(_input(1, 13, 17))
    assert y.shape == (1, 3, 39, 51)


def test_build_network_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"'edsrr'.*registered: " + ", ".join(list_networks()[:5])):
        build_network({"name": "edsrr", "scale": 2})


def test_build_network_unknown_kwarg() -> None:
    with pytest.raises(ValueError, match=r"model\.dept is not an argument of network 'edsr' "
                       r"\(accepted: scale, depth, width, res_scale\)"):
        build_network({"name": "edsr", "scale": 2, "dept": 8})


def test_build_network_missing_kwarg_and_name() -> None:
    with pytest.raises(ValueError, match=r"model\.scale"):
        build_network({"name": "edsr"})
    with pytest.raises(ValueError, match="name"):
        build_network({"scale": 2})


def test_build_network_accepts_dictconfig() -> None:
    cfg = OmegaConf.create({"model": {"name": "edsr", "scale": 2, "depth": 1, "width": 8}})
    net = build_network(cfg.model)
    assert isinstance(net, EDSR) and len(net.body) == 1 and net.conv_first.out_channels == 8


def test_register_duplicate_name() -> None:
    with pytest.raises(ValueError, match="'edsr'.*already registered"):
        register("edsr")(type("Other", (torch.nn.Module,), {}))
