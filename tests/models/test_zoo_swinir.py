"""SwinIR (classical ``swinir`` and lightweight ``swinir_light``): parameter counts of the official
models, state-dict keys written out from the official ``network_swinir.py``, loading official-style
state dicts (with their ``relative_position_index`` / ``attn_mask`` buffers), any input size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import assert_one_training_step, compose_model

import sr_experiments.models.swinir  # noqa: F401  (registers swinir, swinir_light)
from sr_experiments.models import build_network, count_parameters
from sr_experiments.models.swinir import SwinIR, SwinIRLight, load_official, pad_to_multiple, relative_position_index


# Tiny instance: one RSTB of two blocks (block 1 is the shifted one), 12 channels, window 4.
TINY = dict(img_size=8, embed_dim=12, depths=[2], num_heads=[2], window_size=4, mlp_ratio=2.0)


# Tiny inputs: extra threads buy nothing, and on a busy 2-core machine their spin-waits
# made training steps ~10x slower.
pytestmark = pytest.mark.usefixtures("one_thread")


def _input(n: int, h: int, w: int) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(0))


def _tiny(scale: int, upsampler: str = "pixelshuffle", **kwargs) -> SwinIR:
    torch.manual_seed(0)
    return SwinIR(scale, **{**TINY, "upsampler": upsampler, **kwargs})


@pytest.mark.parametrize(
    ("name", "scale", "expected"),
    [
        ("swinir", 2, 11_752_487),
        ("swinir", 3, 11_937_127),
        ("swinir", 4, 11_900_199),
        ("swinir_light", 2, 910_152),
        ("swinir_light", 3, 918_267),
        ("swinir_light", 4, 929_628),
    ],
)
def test_parameter_counts_match_official(name: str, scale: int, expected: int) -> None:
    assert count_parameters(build_network({"name": name, "scale": scale})) == expected


@pytest.mark.parametrize(
    ("name", "cls", "expected"), [("swinir", SwinIR, 11_752_487), ("swinir_light", SwinIRLight, 910_152)]
)
def test_config_builds_the_paper_model(name: str, cls: type, expected: int) -> None:
    net = build_network(compose_model(name, 2))
    assert type(net) is cls and count_parameters(net) == expected


def _official_keys(upsampler: str) -> tuple[set[str], set[str]]:
    """(parameters, buffers) of the official SwinIR(**TINY) at x2, written out by hand."""
    block = ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"]
    layers = [f"layers.0.residual_group.blocks.{b}.{m}" for b in (0, 1) for m in block]
    tail = {"pixelshuffle": ["conv_before_upsample.0", "upsample.0", "conv_last"], "pixelshuffledirect": ["upsample.0"]}
    names = ["conv_first", "patch_embed.norm", *layers, "layers.0.conv", "norm", "conv_after_body", *tail[upsampler]]
    params = {f"{n}.{kind}" for n in names for kind in ("weight", "bias")}
    params |= {f"layers.0.residual_group.blocks.{b}.attn.relative_position_bias_table" for b in (0, 1)}
    buffers = {f"layers.0.residual_group.blocks.{b}.attn.relative_position_index" for b in (0, 1)}
    buffers.add("layers.0.residual_group.blocks.1.attn_mask")  # block 0 is unshifted: its mask is None
    return params, buffers


@pytest.mark.parametrize("upsampler", ["pixelshuffle", "pixelshuffledirect"])
def test_state_dict_keys_are_official_minus_derived_buffers(upsampler: str) -> None:
    net = _tiny(2, upsampler)
    params, buffers = _official_keys(upsampler)
    # relative_position_index / attn_mask are non-persistent: rebuilt, never saved.
    assert set(net.state_dict()) == params
    assert {n for n, _ in net.named_buffers()} == buffers


def _official_state_dict(net: SwinIR, mask_img_size: int = 8) -> dict[str, torch.Tensor]:
    """``net``'s state dict plus the buffers an official file carries for ``img_size=mask_img_size``."""
    sd = dict(net.state_dict())
    for b in (0, 1):
        sd[f"layers.0.residual_group.blocks.{b}.attn.relative_position_index"] = relative_position_index((4, 4))
    shifted = net.layers[0].residual_group.blocks[1]
    sd["layers.0.residual_group.blocks.1.attn_mask"] = shifted.calculate_mask((mask_img_size, mask_img_size))
    return sd


@pytest.mark.parametrize("upsampler", ["pixelshuffle", "pixelshuffledirect"])
def test_official_state_dict_loads_strict(upsampler: str) -> None:
    src = _tiny(2, upsampler)
    sd = _official_state_dict(src)
    dst = SwinIR(2, **{**TINY, "upsampler": upsampler})
    result = dst.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = _input(1, 8, 8)
    with torch.no_grad():  # eval: drop-path off
        assert torch.equal(dst.eval()(x), src.eval()(x))
    # The caller's dict is untouched by the hook that drops the buffers.
    assert "layers.0.residual_group.blocks.1.attn_mask" in sd


def test_official_mask_of_other_img_size_loads() -> None:
    # Official s64 and s48 files differ only in attn_mask's shape; it is rebuilt for our img_size.
    sd = _official_state_dict(_tiny(2), mask_img_size=12)
    assert sd["layers.0.residual_group.blocks.1.attn_mask"].shape == (9, 16, 16)
    _tiny(2).load_state_dict(sd, strict=True)


def test_unknown_keys_still_refused() -> None:
    sd = _official_state_dict(_tiny(2))
    sd["layers.0.residual_group.blocks.0.attn.bogus"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="bogus"):
        _tiny(2).load_state_dict(sd, strict=True)


def test_load_official_unwraps_params(tmp_path: Path) -> None:
    src = _tiny(3)
    path = tmp_path / "001_classicalSR_tiny_x3.pth"
    torch.save({"params": _official_state_dict(src)}, path)
    dst = SwinIR(3, **TINY)
    load_official(dst, path)
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    load_official(dst, {"params_ema": src.state_dict()})
    with pytest.raises(KeyError):
        load_official(dst, {"params": src.state_dict()}, key="params_ema")


def test_relative_position_index_matches_official_values() -> None:
    # Window 2: tokens (0,0),(0,1),(1,0),(1,1); index = (dh + 1) * 3 + (dw + 1), dh/dw = row/col offsets.
    expected = torch.tensor([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    assert torch.equal(relative_position_index((2, 2)), expected)


def test_shift_mask_separates_wrapped_regions() -> None:
    blk = _tiny(2).layers[0].residual_group.blocks[1]
    assert blk.shift_size == 2 and blk.attn_mask.shape == (4, 16, 16)
    zeros_per_row = (blk.attn_mask == 0).sum(-1)
    # 8x8 with window 4, shift 2: window 0 is one region; windows 1, 2 two halves; window 3 four quarters.
    assert zeros_per_row.tolist() == [[16] * 16, [8] * 16, [8] * 16, [4] * 16]
    assert set(blk.attn_mask.unique().tolist()) == {0.0, -100.0}


@pytest.mark.parametrize(("upsampler", "scale"), [("pixelshuffle", 2), ("pixelshuffle", 3), ("pixelshuffledirect", 4)])
@pytest.mark.parametrize(("h", "w"), [(13, 10), (1, 1), (8, 8)])
def test_any_input_size(upsampler: str, scale: int, h: int, w: int) -> None:
    net = _tiny(scale, upsampler).eval()
    with torch.no_grad():
        y = net(_input(1, h, w))
    assert y.shape == (1, 3, h * scale, w * scale)
    assert torch.isfinite(y).all()


def test_padding_is_the_official_flip_concat() -> None:
    x = _input(1, 13, 10)
    # main_test_swinir.py's padding, when the size is not already a multiple of the window.
    ref = torch.cat([x, torch.flip(x, [2])], 2)[:, :, :16, :]
    ref = torch.cat([ref, torch.flip(ref, [3])], 3)[:, :, :, :12]
    assert torch.equal(pad_to_multiple(x, 4), ref)
    assert pad_to_multiple(x[..., :8, :8], 4).shape == (1, 3, 8, 8)  # multiples stay unpadded
    assert pad_to_multiple(_input(1, 1, 3), 8).shape == (1, 3, 8, 8)  # smaller than half a window


@pytest.mark.parametrize("use_checkpoint", [False, True])
def test_training_step(use_checkpoint: bool) -> None:
    net = _tiny(2, use_checkpoint=use_checkpoint).train()
    assert_one_training_step(net, _input(2, 8, 6))


def test_follows_input_dtype() -> None:
    net = _tiny(2).double().eval()
    with torch.no_grad():
        assert net(_input(1, 5, 7).double()).dtype == torch.float64


@pytest.mark.parametrize("name", ["swinir", "swinir_light"])
@pytest.mark.parametrize("scale", [0, 1, 2.0, True])
def test_bad_scale_rejected(name: str, scale: object) -> None:
    with pytest.raises(ValueError, match="scale"):
        build_network({"name": name, "scale": scale, **TINY})


def test_classical_upsampler_scales() -> None:
    with pytest.raises(ValueError, match="scale"):
        build_network({"name": "swinir", "scale": 5, **TINY})
    assert build_network({"name": "swinir_light", "scale": 5, **TINY}).upsample[0].out_channels == 75
    with pytest.raises(ValueError, match="upsampler"):
        SwinIR(2, upsampler="", **TINY)
