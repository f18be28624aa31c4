"""Video networks (BasicVSR, BasicVSR++, EDVR-M) and SpyNet: official parameter counts and state-dict
layouts, shapes and one training step at T=3..7 on the tiny presets, torchvision's deformable conv on
CPU, SpyNet weights from a file and SpyNet pre-training on known motion.

``fixtures/official_video_keys.json`` holds the key names and shapes of the official classes at
their paper configurations, dumped by ``fixtures/make_official_video_keys.py`` from BasicSR's and
mmagic's own module definitions (not from ours).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import assert_one_training_step, compose_model
from torch.nn import functional as F

from sr_experiments.models import build_network, count_parameters, is_multi_frame
from sr_experiments.models.basicvsrpp import SecondOrderDeformableAlignment
from sr_experiments.models.edvr import DCNv2Pack
from sr_experiments.models.weights import load_pretrained
from sr_experiments.models.spynet import (
    SpyNet,
    clip_flow_pairs,
    endpoint_error,
    flow_batches,
    flow_warp,
    mean_epe,
    pretrain_spynet,
    spynet_pretrain_recipe,
)

pytestmark = pytest.mark.usefixtures("one_thread")

OFFICIAL = json.loads((Path(__file__).parent / "fixtures" / "official_video_keys.json").read_text())
# Parameter counts of the paper configurations (conf/model/{basicvsr,basicvsrpp,edvr_m}.yaml):
# the sums over the official classes' parameters in the fixture (test_fixture_counts_match checks
# it), also derived by hand: SpyNet 6 x 240,050 = 1,440,300; BasicVSR adds two trunks of
# conv(67->64) + 30 residual blocks (2 x 2,254,336), fusion 8,256 and the x4 tail 334,083; the
# papers report 6.3M (BasicVSR), 7.3M (BasicVSR++) and 3.3M (EDVR-M).
PAPER_COUNTS = {"basicvsr": 6_291_311, "basicvsrpp": 7_322_927, "edvr_m": 3_300_131}
# fixture entry -> (our network, how the authors' files wrap the weights)
LAYOUTS = {
    "basicsr_basicvsr": ("basicvsr", "params"),      # BasicSR's BasicVSR_REDS4-543c8261.pth
    "mmagic_basicvsr": ("basicvsr", "generator"),    # mmagic's basicvsr_reds4_*.pth
    "basicsr_basicvsrpp": ("basicvsrpp", "params"),
    "mmagic_basicvsrpp": ("basicvsrpp", "generator"),  # the authors' basicvsr_plusplus_c64n7_*.pth
    "basicsr_edvr_m": ("edvr_m", "params"),          # BasicSR's EDVR_M_x4_SR_REDS_official-32075921.pth
}
TINY = {"basicvsr": "basicvsr_tiny", "basicvsrpp": "basicvsrpp_tiny", "edvr_m": "edvr_tiny"}


def _tiny(name: str, frames: int) -> torch.nn.Module:
    torch.manual_seed(0)
    spec = dict(compose_model(TINY[name], 4))
    if name == "edvr_m":
        spec["num_frame"] = frames  # a sliding window of exactly T frames
    return build_network(spec)


def _clip(frames: int, size: int = 32) -> torch.Tensor:
    return torch.rand(1, frames, 3, size, size, generator=torch.Generator().manual_seed(frames))


# --- official sizes and layouts ----------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), PAPER_COUNTS.items())
def test_parameter_count(name: str, expected: int) -> None:
    with torch.device("meta"):  # nothing allocated: only counted
        net = build_network(compose_model(name, 4))
    assert count_parameters(net) == expected
    assert is_multi_frame(net) and is_multi_frame(name) and not is_multi_frame("edsr")


@pytest.mark.parametrize("entry", LAYOUTS)
def test_fixture_counts_match(entry: str) -> None:
    buffers = {"spynet.mean", "spynet.std"}
    assert sum(math.prod(s) for k, s in OFFICIAL[entry].items() if k not in buffers) == PAPER_COUNTS[LAYOUTS[entry][0]]


@pytest.mark.parametrize("entry", LAYOUTS)
def test_official_state_dict_loads_strictly(entry: str) -> None:
    name, wrapper = LAYOUTS[entry]
    torch.manual_seed(0)
    net = build_network(compose_model(name, 4))
    state = {k: torch.randn(shape) for k, shape in OFFICIAL[entry].items()}
    if wrapper == "generator":  # mmagic: the network under generator., beside the model's own buffers
        checkpoint = {"state_dict": {**{f"generator.{k}": v for k, v in state.items()}, "step_counter": torch.zeros(1)}}
    else:
        checkpoint = {"params": state}
    load_pretrained(net, checkpoint)  # strict=True inside
    ours = net.state_dict()
    probe = next(k for k in state if k.startswith("conv_last."))
    assert torch.equal(ours[probe], state[probe])
    if name != "edvr_m":  # the SpyNet weights arrive, from either layout (mmagic: a ConvModule per conv)
        source = "spynet.basic_module.5.basic_module." + ("4.conv.bias" if wrapper == "generator" else "8.bias")
        assert torch.equal(ours["spynet.basic_module.5.basic_module.8.bias"], state[source])


# --- shapes and one training step on the tiny presets ------------------------------------------


@pytest.mark.parametrize("frames", [3, 7])
@pytest.mark.parametrize("name", TINY)
def test_shape_and_training_step(name: str, frames: int) -> None:
    net = _tiny(name, frames)
    x = _clip(frames)
    with torch.no_grad():
        out = net(x)
    expected = (1, frames, 3, 128, 128) if net.frames_out == "all" else (1, 3, 128, 128)
    assert tuple(out.shape) == expected and torch.isfinite(out).all()
    assert net.num_frame == (frames if name == "edvr_m" else None)
    assert_one_training_step(net, x)


@pytest.mark.parametrize("name", ["basicvsr", "basicvsrpp"])
def test_recurrent_networks_take_a_single_frame(name: str) -> None:
    with torch.no_grad():  # the last chunk of a video may hold one frame: no flow, no alignment
        assert tuple(_tiny(name, 1)(_clip(1, 16)).shape) == (1, 1, 3, 64, 64)


def test_bad_inputs_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\).*\(1, 3, 32, 32\)"):
        _tiny("basicvsr", 3)(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="windows of 5 frames"):
        _tiny("edvr_m", 5)(_clip(3))
    with pytest.raises(ValueError, match="mid_channels=12 must be a multiple of 8"):
        build_network({"name": "basicvsrpp", "scale": 4, "mid_channels": 12})
    with pytest.raises(ValueError, match="does not support scale 2"):
        build_network({"name": "basicvsr", "scale": 2})


# --- deformable convolution on torchvision, on the CPU -----------------------------------------


def test_dcn_pack_with_zero_offsets_is_a_half_masked_conv() -> None:
    torch.manual_seed(0)
    dcn = DCNv2Pack(8, deformable_groups=4)  # conv_offset starts at zero: no offset, mask sigmoid(0)
    x, feat = torch.rand(1, 8, 12, 12), torch.rand(1, 8, 12, 12)
    expected = 0.5 * F.conv2d(x, dcn.weight, padding=1) + dcn.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(dcn(x, feat), expected, atol=1e-5, rtol=1e-5)


def test_second_order_alignment_follows_the_flow() -> None:
    """With zero residues the offsets are the flows: on a whole-pixel flow the deformable conv equals
    a plain conv of the features warped by that flow (checks the (x, y) -> (dy, dx) layout)."""
    torch.manual_seed(0)
    align = SecondOrderDeformableAlignment(8)
    feat = torch.rand(1, 16, 14, 14)
    flow_1 = torch.tensor([2.0, -1.0]).view(1, 2, 1, 1).expand(1, 2, 14, 14)  # (x, y) in pixels
    flow_2 = torch.tensor([-1.0, 3.0]).view(1, 2, 1, 1).expand(1, 2, 14, 14)
    out = align(feat, torch.rand(1, 24, 14, 14), flow_1, flow_2)
    warped = torch.cat([flow_warp(feat[:, :8], flow_1), flow_warp(feat[:, 8:], flow_2)], dim=1)
    expected = 0.5 * F.conv2d(warped, align.weight, padding=1) + align.bias.view(1, -1, 1, 1)
    inner = (slice(None), slice(None), slice(5, 9), slice(5, 9))  # away from the zero-padded borders
    torch.testing.assert_close(out[inner], expected[inner], atol=1e-5, rtol=1e-5)


# --- SpyNet: a weights file, or pre-training on known motion -----------------------------------


def test_spynet_pretrained_file_is_loaded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(1)
    # BasicSR's spynet_sintel_final-3d2a1287.pth layout: "params", no mean/std buffers.
    weights = {k: v for k, v in SpyNet().state_dict().items() if k not in ("mean", "std")}
    path = tmp_path / "spynet.pth"
    torch.save({"params": weights}, path)
    with caplog.at_level(logging.INFO):
        net = build_network({"name": "basicvsr", "scale": 4, "num_feat": 8, "num_block": 1, "spynet_pretrained": str(path)})
    assert torch.equal(net.spynet.basic_module[3].basic_module[4].weight, weights["basic_module.3.basic_module.4.weight"])
    assert net.spynet_source == f"SpyNet: loaded from {path}" and net.spynet_source in caplog.text
    with caplog.at_level(logging.INFO):
        net = build_network({"name": "basicvsr", "scale": 4, "num_feat": 8, "num_block": 1})
    assert "SpyNet: random init (no model.spynet_pretrained)" in caplog.text
    torch.save({"params": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="other.pth' is not a SpyNet weights file"):
        build_network({"name": "basicvsr", "scale": 4, "spynet_pretrained": str(tmp_path / "other.pth")})


def _textured(shift: tuple[float, float], size: int = 64) -> torch.Tensor:
    """A smooth RGB image (sums of sinusoids) sampled at p - shift: pixel p of the unshifted image
    is at p + shift here."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    xs, ys = xs - shift[0], ys - shift[1]
    channels = [0.5 + 0.2 * torch.sin(xs / (4 + c) + c) * torch.cos(ys / (5 + c)) + 0.1 * torch.sin((xs + ys) / 3)
                for c in range(3)]
    return torch.stack(channels)[None].float()


def test_pretrain_spynet_reduces_flow_error_on_a_known_shift() -> None:
    torch.manual_seed(0)
    spynet, shift = SpyNet(), (0.6, -0.4)
    ref, supp = _textured((0.0, 0.0)), _textured(shift)
    flow = torch.tensor(shift).view(1, 2, 1, 1).expand(1, 2, 64, 64).clone()
    torch.testing.assert_close(flow_warp(supp, flow)[..., 8:-8, 8:-8], ref[..., 8:-8, 8:-8], atol=1e-2, rtol=0)  # bilinear error only
    with torch.no_grad():
        before = float(endpoint_error(spynet(ref, supp), flow))
    history = pretrain_spynet(spynet, [(ref, supp, flow)], steps=12, lr=1e-3)
    with torch.no_grad():
        after = float(endpoint_error(spynet(ref, supp), flow))
    assert len(history) == 12 and after < 0.5 * before


def test_recipe_pretrains_on_clips_with_true_motion() -> None:
    torch.manual_seed(0)
    net = build_network({"name": "basicvsr", "scale": 4, "num_feat": 8, "num_block": 1})
    shift = (0.5, 0.25)
    lq = torch.cat([_textured((0.0, 0.0), 32), _textured(shift, 32)]).mul(255).round().to(torch.uint8)
    flow = torch.tensor(shift).view(1, 2, 1, 1).expand(1, 2, 32, 32).clone()
    clips = [SimpleNamespace(lq=lq, flow_fwd=flow, flow_bwd=-flow), SimpleNamespace(lq=lq, flow_fwd=None, flow_bwd=None)]
    done = spynet_pretrain_recipe(net, clips, steps=4, lr=1e-3, batch_size=2, patch=32)
    assert len(done.history) == 4 and net.spynet_source == done.describe()
    assert net.spynet_source.startswith("spynet: pre-trained 4 steps on the clips' true motion, EPE ")
    assert done.epe_zero == pytest.approx(math.hypot(*shift), rel=1e-5)  # zero flow misses by the true motion
    with pytest.raises(ValueError, match="no \\(ref, supp, flow\\) pairs"):
        spynet_pretrain_recipe(build_network({"name": "basicvsr", "scale": 4, "num_feat": 8, "num_block": 1}),
                               clips[1:], steps=2)
    assert spynet_pretrain_recipe(net, clips, steps=0) is None  # nothing asked: nothing done


def test_pretraining_on_the_synthetic_clips_never_ends_worse_than_zero_flow() -> None:
    """The recipe on the synthetic clips' analytic motion starts from zero flow (a random SpyNet's
    is worse than none on sub-pixel camera motion) and keeps the trained network only where it beats
    zero flow on held-aside pairs, whichever way a short run goes (a high and a low rate here)."""
    from sr_experiments.data.clips_synthetic import synthetic_clips

    clips = synthetic_clips("val", 4)  # 4 clips of 10 frames, 32x32 LR: small
    probe = flow_batches(clip_flow_pairs(clips), 4, 32, seed=0)[:2]  # the recipe's held-aside pairs
    for lr in (1e-2, 1e-4):
        torch.manual_seed(0)
        net = build_network({"name": "basicvsr", "scale": 4, "num_feat": 8, "num_block": 1})
        done = spynet_pretrain_recipe(net, clips, steps=6, lr=lr, batch_size=4, patch=32)
        assert done.epe_before == pytest.approx(done.epe_zero, rel=1e-4)
        assert 0.05 < done.epe_zero < 2.0  # the camera moves a fraction of an LR pixel a frame
        final = mean_epe(net.spynet, probe)
        assert final == pytest.approx(min(done.epe_after, done.epe_zero), rel=1e-4)
        assert done.kept == (done.epe_after < done.epe_zero)
        assert net.spynet_source.endswith("zero flow kept") != done.kept


def test_flow_batches_crop_ref_supp_and_flow_alike() -> None:
    ref = torch.arange(48 * 48, dtype=torch.float32).view(1, 1, 48, 48).expand(1, 3, 48, 48)
    pairs = [(ref, ref + 1, ref[:, :2] + 2) for _ in range(5)]
    batches = flow_batches(pairs, batch_size=2, patch=32, seed=3)
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]
    for r, s, f in batches:
        assert r.shape[-2:] == s.shape[-2:] == f.shape[-2:] == (32, 32)
        assert torch.equal(s, r + 1) and torch.equal(f, r[:, :2] + 2)  # one crop for the three
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, flow_batches(pairs, 2, 32, seed=3)))


# --- info.py -------------------------------------------------------------------------------------


def test_info_counts_deformable_convs_and_reports_per_frame() -> None:
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision.ops import deform_conv2d

    from sr_experiments.models.complexity import network_info

    x, w = torch.rand(1, 8, 10, 10), torch.rand(4, 8, 3, 3)
    counted = []
    for op in (lambda: deform_conv2d(x, torch.zeros(1, 18, 10, 10), w, padding=1), lambda: F.conv2d(x, w, padding=1)):
        counter = FlopCounterMode(display=False)
        with counter:
            op()
        counted.append(counter.get_total_flops())
    assert counted[0] == counted[1] > 0
    info = network_info({"name": "edvr_m", "scale": 4})
    assert info["params"] == PAPER_COUNTS["edvr_m"] and info["macs_720p"] > 0 and info["macs_per"] == "output frame"


def test_checkpoint_rebuild_does_not_reread_the_spynet_file(tmp_path: Path) -> None:
    from sr_experiments.models.weights import load_network

    spynet_file = tmp_path / "spynet.pth"
    torch.save({"params": {k: v for k, v in SpyNet().state_dict().items() if k not in ("mean", "std")}}, spynet_file)
    spec = {"name": "basicvsr", "scale": 4, "num_feat": 8, "num_block": 1, "spynet_pretrained": str(spynet_file)}
    trained = build_network(spec)
    path = tmp_path / "run.ckpt"  # as train.py writes it: the spec beside the "net."-prefixed weights
    torch.save({"hyper_parameters": {"network": spec}, "state_dict": {f"net.{k}": v for k, v in trained.state_dict().items()}}, path)
    spynet_file.unlink()  # gone (another machine): the checkpoint alone must do
    net, _ = load_network(path)
    assert torch.equal(net.conv_last.weight, trained.conv_last.weight)


@pytest.mark.parametrize("spec", [{"name": "basicvsr", "scale": 4, "num_feat": 8, "num_block": 1},
                                  {"name": "edvr_m", "scale": 4, "num_feat": 8}], ids=["basicvsr", "edvr_m"])
def test_video_network_exports_its_weights_and_reloads_identically(tmp_path: Path, spec: dict) -> None:
    """export.py checks a video network on a clip (an image input raised inside the network before)."""
    from sr_experiments.inference.export import check_input, export_weights
    from sr_experiments.models.weights import load_network

    torch.manual_seed(0)
    net = build_network(spec).eval()
    line = export_weights(net, spec, "safetensors", tmp_path / "v.safetensors")
    assert "not in spandrel-based tools" in line  # chaiNNer runs image networks only
    reloaded, saved = load_network(tmp_path / "v.safetensors", quiet=True)
    x = check_input(net, seed=1)
    assert x.dim() == 5 and saved["name"] == spec["name"]
    with torch.no_grad():
        assert torch.equal(reloaded(x), net(x))
