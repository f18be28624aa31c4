"""The networks on spandrel's architecture code (models/community.py: hat, dat, atd, omnisr, span,
plksr, realplksr, drct, rgt): the parameter counts of every preset against the authors' figures,
spandrel round trips (detection, ``spec_from_spandrel``, same output), input sizes, the
constructor's signature, 720p MACs of the presets, and a short run through train.py."""

from __future__ import annotations

import inspect
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import CONF, FAST, SMALL, compose_model, compose_train
from omegaconf import OmegaConf
from spandrel import ModelLoader

from sr_experiments.models import NETWORKS, build_network, count_parameters
from sr_experiments.models.registry import RUNTIME_KEYS
from sr_experiments.models.community import SpandrelNetwork
from sr_experiments.models.weights import build_model, read_weights, unwrap_state_dict
from sr_experiments.models.complexity import network_info

COMMUNITY = sorted(name for name, cls in NETWORKS.items() if issubclass(cls, SpandrelNetwork))
SCALES = (2, 3, 4)
RUNTIME = (*RUNTIME_KEYS, "pretrained", "pretrained_key")  # how a network runs or starts, not what it is

# Tiny inputs: extra threads buy nothing, and on a busy 2-core machine their spin-waits
# made training steps ~10x slower.
pytestmark = pytest.mark.usefixtures("one_thread")


def _input(h: int, w: int, n: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(0))


def _small(name: str, scale: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network({"name": name, "scale": scale, **SMALL[name]})


def test_every_spandrel_network_has_a_small_instance() -> None:
    assert COMMUNITY == sorted(SMALL) == [
        "atd", "compact", "dat", "drct", "hat", "omnisr", "plksr", "realplksr", "rgt", "span",
    ]  # fmt: skip


# --- parameter counts of the presets (sr_experiments/conf/model/*.yaml) --------------------------

# preset: exact counts at x2, x3, x4, then the authors' figure for x4 and how it was rounded.
COUNTS = {
    # HAT README (XPixelGroup/HAT), "Benchmark results on SRx4": HAT 20.8M, HAT-S 9.6M.
    "hat": ((20_624_795, 20_809_435, 20_772_507), "20.8M", "round"),
    "hat_s": ((9_473_471, 9_658_111, 9_621_183), "9.6M", "round"),
    # DRCT README (ming053l/DRCT), SRx4 table (it truncates: HAT 20.77M, HAT-L 40.84M, DRCT 14.13M).
    "hat_l": ((40_698_863, 40_883_503, 40_846_575), "40.84M", "truncate"),
    "drct": ((13_991_867, 14_176_507, 14_139_579), "14.13M", "truncate"),
    "drct_l": ((27_433_007, 27_617_647, 27_580_719), "27.58M", "truncate"),
    # DAT README (zhengchen1999/DAT), "Models" table, x4: DAT 14.80M, DAT-S 11.21M, DAT-light 573K.
    "dat": ((14_654_339, 14_838_979, 14_802_051), "14.80M", "round"),
    "dat_s": ((11_064_419, 11_249_059, 11_212_131), "11.21M", "round"),
    "dat_light": ((553_290, 561_405, 572_766), "573K", "round"),
    # RGT README (zhengchen1999/RGT), "Models" table, x4: RGT 13.37M, RGT-S 10.20M.
    "rgt": ((13_217_831, 13_402_471, 13_365_543), "13.37M", "round"),
    "rgt_s": ((10_051_055, 10_235_695, 10_198_767), "10.20M", "round"),
    # ATD-light: 769K at x4 in the ATD paper's lightweight table (CVPR 2024; the README shows it as an
    # image, the figure is as later papers' tables quote it). ATD: no text figure found (20.26M).
    "atd_light": ((753_204, 759_699, 768_792), "769K", "round"),
    "atd": ((20_113_217, 20_297_857, 20_260_929), None, None),
    # Omni-SR: the paper's table says 792K at x4; the official code (train_OmniSR_X4_DF2K.yaml,
    # whose released files spandrel loads strictly) has 1.7% more. Checked to 2% below.
    "omnisr": ((784_604, 793_259, 805_376), "792K", "2%"),
    # SPAN: trained parameters; the paper's figure (426K) is the re-parameterised count, below.
    "span": ((1_824_900, 1_831_395, 1_840_488), None, None),
    # SRVGGNetCompact, realesr-general-x4v3's layout (num_feat 64, num_conv 32, PReLU): the count of
    # that layout (Real-ESRGAN publishes no figure; its file is 4.65 MB of fp32 tensors, ~1.21 M).
    "compact": ((1_192_524, 1_201_179, 1_213_296), None, None),
    # PLKSR: the paper's tables are images (figs/Quantitative.png); RealPLKSR has no paper.
    "plksr": ((7_365_324, 7_373_979, 7_386_096), None, None),
    "realplksr": ((7_368_908, 7_377_563, 7_389_680), None, None),
}


def assert_reported(count: int, figure: str, rounding: str) -> None:
    """``count`` is what the authors' ``figure`` ("20.8M", "573K") says, with their rounding."""
    number, unit = re.fullmatch(r"([\d.]+)([KM])", figure).groups()
    decimals = len(number.partition(".")[2])
    value = count / {"K": 1e3, "M": 1e6}[unit]
    if rounding == "round":
        assert f"{value:.{decimals}f}" == number, (count, figure)
    elif rounding == "truncate":
        assert f"{int(value * 10**decimals) / 10**decimals:.{decimals}f}" == number, (count, figure)
    else:
        assert value == pytest.approx(float(number), rel=float(rounding.rstrip("%")) / 100), (count, figure)


def test_every_preset_is_pinned() -> None:
    configs = {p.stem: OmegaConf.load(p) for p in (CONF / "model").glob("*.yaml")}
    names = {stem: (node.model if "model" in node else node).name for stem, node in configs.items()}
    assert {stem for stem, name in names.items() if name in COMMUNITY} == set(COUNTS)


@pytest.mark.parametrize("preset", sorted(COUNTS))
def test_preset_parameter_counts(preset: str) -> None:
    counts, figure, rounding = COUNTS[preset]
    for scale, expected in zip(SCALES, counts):
        with torch.device("meta"):  # nothing allocated, nothing initialised
            net = build_network(compose_model(preset, scale))
        assert count_parameters(net) == expected, (preset, scale)
    if figure is not None:
        assert_reported(counts[-1], figure, rounding)


def _span_inference_parameters(net: torch.nn.Module) -> int:
    """SPAN's count once re-parameterised: each Conv3XC's trained branches (``sk``, ``conv``) are
    folded into its ``eval_conv``."""
    return sum(p.numel() for n, p in net.named_parameters() if not re.search(r"\.(sk|conv)\.", n))


@pytest.mark.parametrize(("channels", "figure"), [(48, "426K"), (52, "498K")])
def test_span_reparameterised_count_is_the_papers(channels: int, figure: str) -> None:
    # The SPAN paper's table (x4): 426K for the 48-channel model (our default, the released
    # spanx4_ch48), 498K for the 52-channel one; both re-parameterised counts.
    with torch.device("meta"):
        net = build_network({"name": "span", "scale": 4, "feature_channels": channels})
    assert_reported(_span_inference_parameters(net), figure, "round")


def test_span_eval_conv_is_derived_not_trained() -> None:
    net = _small("span", 3)
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen and all(".eval_conv." in n for n in frozen)
    assert count_parameters(net) == sum(p.numel() for n, p in net.named_parameters() if n not in frozen)
    x = _input(9, 11)
    # the merged 3x3 conv computes what the trained branches do; merging reorders fp32 sums, and how
    # far that moves the output depends on the CPU's conv kernels (1.05e-5 on an AVX512/AMX Xeon): a
    # wrong merge (a branch or bias dropped) is off by far more than 1e-4
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), net.train()(x), atol=1e-4, rtol=0)


# --- spandrel round trips ------------------------------------------------------------------------


def _detect(net: torch.nn.Module):
    return ModelLoader().load_from_state_dict(net.state_dict())


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", COMMUNITY)
def test_spandrel_round_trip(name: str, scale: int) -> None:
    cls = NETWORKS[name]
    net = _small(name, scale).eval()
    descriptor = _detect(net)
    assert descriptor.architecture.id == cls.SPANDREL_ID and descriptor.scale == scale
    assert type(descriptor.model) is cls.SPANDREL_CLASS
    spec = cls.spec_from_spandrel(descriptor.model)
    # Every hyperparameter, the small ones included: spandrel detects them all from the state dict.
    assert spec == cls.spec_from_spandrel(net) == {**spec, **SMALL[name], "name": name, "scale": scale}
    rebuilt = build_network(spec)
    sd, theirs = rebuilt.state_dict(), descriptor.model.state_dict()
    assert {k: v.shape for k, v in sd.items()} == {k: v.shape for k, v in theirs.items()}
    rebuilt.load_state_dict(theirs)  # strict
    x = _input(16, 16)  # a size every spandrel forward takes as it is
    with torch.no_grad():
        expected = descriptor.model.eval()(x)
        assert (rebuilt.eval()(x) - expected).abs().max() < 1e-5
        assert (net(x) - expected).abs().max() < 1e-5


@pytest.mark.parametrize("preset", sorted(COUNTS))
def test_spandrel_detects_the_full_presets(preset: str) -> None:
    # State dicts only (no forward): official-size files are detected as what the preset builds.
    scale = 4
    spec = {k: v for k, v in OmegaConf.to_container(compose_model(preset, scale), resolve=True).items() if k not in RUNTIME}
    torch.manual_seed(0)
    descriptor = _detect(build_network(spec))
    cls = NETWORKS[spec["name"]]
    assert descriptor.architecture.id == cls.SPANDREL_ID and descriptor.scale == scale
    detected = cls.spec_from_spandrel(descriptor.model)
    assert {k: detected[k] for k in spec} == spec  # every hyperparameter the config sets


def test_spec_from_spandrel_is_none_for_other_architectures() -> None:
    plksr, realplksr, hat = (_detect(_small(n, 2)).model for n in ("plksr", "realplksr", "hat"))
    # One spandrel id ("PLKSR") for both: the class tells them apart.
    assert NETWORKS["plksr"].spec_from_spandrel(realplksr) is None
    assert NETWORKS["realplksr"].spec_from_spandrel(plksr) is None
    assert NETWORKS["realplksr"].spec_from_spandrel(realplksr)["name"] == "realplksr"
    assert all(NETWORKS[n].spec_from_spandrel(hat) is None for n in COMMUNITY if n != "hat")
    assert NETWORKS["hat"].spec_from_spandrel(torch.nn.Conv2d(3, 3, 1)) is None


def test_spec_from_spandrel_refuses_what_the_framework_cannot_run() -> None:
    from spandrel.architectures.HAT import HAT
    from spandrel.architectures.SPAN import SPAN

    with pytest.raises(ValueError, match="num_in_ch=1"):
        NETWORKS["span"].spec_from_spandrel(SPAN(num_in_ch=1, num_out_ch=1, feature_channels=8))
    restoration = HAT(upscale=1, **SMALL["hat"])  # x1: denoising / JPEG models
    with pytest.raises(ValueError, match="does not support scale 1"):
        NETWORKS["hat"].spec_from_spandrel(restoration)


def test_official_weights_file_loads_through_the_config(tmp_path) -> None:
    # Released files wrap the state dict in params_ema (HAT, DRCT, ATD) and carry every buffer.
    src = _small("hat", 2)
    path = tmp_path / "HAT_tiny_SRx2.pth"
    torch.save({"params_ema": src.state_dict()}, path)
    dst = build_model({"name": "hat", "scale": 2, **SMALL["hat"], "pretrained": str(path)})
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))


def test_omnisr_files_with_profiler_counters_load() -> None:
    # Released Omni-SR files carry thop's total_ops / total_params buffers; other unknown keys still fail.
    src = _small("omnisr", 2)
    state = {**src.state_dict(), "total_ops": torch.zeros(1), "residual_layer.0.esa.total_params": torch.zeros(1)}
    _small("omnisr", 2).load_state_dict(state)  # strict
    with pytest.raises(RuntimeError, match="bogus"):
        _small("omnisr", 2).load_state_dict({**state, "bogus": torch.zeros(1)})


# --- the constructor and input sizes -------------------------------------------------------------


def test_unknown_hyperparameter_is_named() -> None:
    accepted = r"model\.dept is not an argument of network 'hat' \(accepted: scale, img_size, "
    with pytest.raises(ValueError, match=accepted):
        build_network({"name": "hat", "scale": 2, "dept": 8})
    with pytest.raises(TypeError, match="dept"):
        NETWORKS["hat"](2, dept=8)
    with pytest.raises(ValueError, match="network 'drct' does not support scale 5"):
        NETWORKS["drct"](5)


@pytest.mark.parametrize("name", COMMUNITY)
def test_constructor_defaults_are_the_network_config(name: str) -> None:
    cls = NETWORKS[name]
    params = list(inspect.signature(cls.__init__).parameters.values())
    assert [p.name for p in params[:2]] == ["self", "scale"] and params[1].default is inspect.Parameter.empty
    defaults = {p.name: p.default for p in params[2:]}
    assert tuple(defaults) == cls.HYPERPARAMETERS
    config = {k: v for k, v in compose_model(name, 2).items() if k not in (*RUNTIME, "name", "scale")}
    assert config == {k: defaults[k] for k in config}


@pytest.mark.parametrize("name", COMMUNITY)
@pytest.mark.parametrize(("h", "w"), [(12, 13), (1, 1), (5, 7), (17, 20)])
def test_any_input_size(name: str, h: int, w: int) -> None:
    net = _small(name, 3).eval()
    with torch.no_grad():
        y = net(_input(h, w))
    assert y.shape == (1, 3, 3 * h, 3 * w) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", COMMUNITY)
def test_padding_is_spandrels_where_spandrel_pads(name: str) -> None:
    # 17x20 is no multiple of any window or split size here: spandrel's forward pads it itself
    # (HAT, ATD, OmniSR, DAT, RGT) and the wrapper must not change that; DRCT's does not pad, and
    # the wrapper pads as the official test code does (reflect to the window, then crop).
    net = _small(name, 2).eval()
    theirs = _detect(net).model.eval()
    x = _input(17, 20)
    with torch.no_grad():
        if name == "drct":
            expected = theirs(F.pad(x, (0, 0, 0, 3), mode="reflect"))[..., :34, :40]
        else:
            expected = theirs(x)
        assert torch.equal(net(x), expected)


# --- MACs and training ---------------------------------------------------------------------------

# The networks' own configs are in test_info.py's every-network test.
PRESETS = sorted(p for p in COUNTS if p not in COMMUNITY)


@pytest.mark.parametrize("preset", PRESETS)
def test_info_of_the_presets(preset: str) -> None:
    spec = compose_model(preset, 4)
    info = network_info({k: v for k, v in spec.items() if k not in RUNTIME})
    assert info["params"] == COUNTS[preset][0][-1] and info["macs_720p"] > 0


def test_dat_light_macs_near_the_readme() -> None:
    # DAT README: DAT-light 49.69 G "FLOPs" for a 1280x720 output at x4 (MACs, as SR papers count);
    # FlopCounterMode counts conv/linear/matmul only: 48.52 G.
    info = network_info(dict(compose_model("dat_light", 4)))
    assert info["macs_720p"] == pytest.approx(49.69e9, rel=0.03)


@pytest.mark.slow
def test_train_py_runs_span_and_spandrel_reads_its_checkpoint(tmp_path) -> None:
    from sr_experiments.runs.run import train

    summary = train(compose_train([*FAST, "model=span", "scale=3"], tmp_path))
    assert summary["steps"] == 4 and summary["final"]["psnr"] > 0
    state = unwrap_state_dict(read_weights(tmp_path / "checkpoints" / "last.ckpt"))
    descriptor = ModelLoader().load_from_state_dict(state)
    assert descriptor.architecture.id == "SPAN" and descriptor.scale == 3
    detected = NETWORKS["span"].spec_from_spandrel(descriptor.model)
    config = {k: v for k, v in compose_model("span", 3).items() if k not in RUNTIME}
    assert {k: detected[k] for k in config} == config
