"""upscale.py: tiling is exact, every input mode comes back in kind, bad files never stop a batch,
checkpoints never run code, ONNX files run directly."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONF
from hydra import compose, initialize_config_dir
from PIL import Image, ImageCms
from skimage import data as skdata

from sr_experiments.engines import auto_tile, torch_engine
from sr_experiments.image_files import read_picture
from sr_experiments.imresize import imresize
from sr_experiments.inference import count_tiles, fit_tiles, upscale
from sr_experiments.metrics import sr_psnr_ssim
from sr_experiments.models import build_network
from sr_experiments.png16 import read_png16, write_png16
from sr_experiments.upscaling import cli, run_upscale

# One torch thread: tiny tensors, and OpenMP spinning across busy cores costs 50x (see the network tests).
pytestmark = pytest.mark.usefixtures("one_thread")

DEFAULT_SPEC = {"name": "edsr", "scale": 2, "depth": 4, "width": 32, "res_scale": 1.0}  # conf/model/shallow.yaml


def upscale_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="upscale", overrides=["progress=false", *overrides])


def default_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network(DEFAULT_SPEC).eval()


def save_checkpoint(net: torch.nn.Module, spec: dict, path: Path) -> Path:
    """What train.py's checkpoint holds for loading: the SRLitModule's ``net.*`` weights and the spec."""
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "hyper_parameters": {"network": spec}}, path)
    return path


@pytest.fixture(scope="module")
def photo_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A real photo (HR 128x192 crop) and its MATLAB-bicubic x2 LR, in [0, 1]."""
    hr = torch.from_numpy(skdata.astronaut()[40:168, 160:352].copy()).permute(2, 0, 1)[None]
    lr = imresize(hr, scale=0.5).float() / 255
    return lr, hr.float() / 255


@pytest.mark.parametrize("precision", ["32", "auto"])
def test_tiled_equals_untiled_within_001_db_for_default_model(photo_pair, precision: str) -> None:
    lr, hr = photo_pair
    engine = torch_engine(default_net(), DEFAULT_SPEC, torch.device("cpu"), precision)
    whole = upscale(engine, lr, 2).float().clamp(0, 1)
    tiled = upscale(engine, lr, 2, tile=48, overlap=32, tile_batch=3).float().clamp(0, 1)
    p_whole = float(sr_psnr_ssim(whole, hr, 2, torch.tensor([False]))[0])
    p_tiled = float(sr_psnr_ssim(tiled, hr, 2, torch.tensor([False]))[0])
    assert abs(p_whole - p_tiled) < 0.01
    if precision == "32":  # receptive field (12 LR px) < overlap / 2: identical up to float reordering
        assert float((whole - tiled).abs().max()) < 1e-5


def test_precision_32_contiguous_is_exactly_the_plain_network(photo_pair) -> None:
    lr, _ = photo_pair
    net = default_net()
    engine = torch_engine(net, DEFAULT_SPEC, torch.device("cpu"), "32", channels_last=False)
    assert not engine.channels_last and engine.precision.autocast_dtype is None
    assert torch.equal(upscale(engine, lr, 2, tile=48, overlap=32), upscale(net, lr, 2, tile=48, overlap=32))


def test_auto_tile_respects_budget_and_4k_cap() -> None:
    engine = torch_engine(default_net(), DEFAULT_SPEC, torch.device("cpu"), "32")
    small, _ = auto_tile(engine, overlap=32, tile_batch=1, budget_mb=64)
    big, why = auto_tile(engine, overlap=32, tile_batch=1)
    assert small % 16 == 0 and small * small * engine.bytes_per_lr_pixel <= 64 << 20
    assert big * big * engine.bytes_per_lr_pixel <= 1024 << 20 and "budget" in why
    halved, _ = auto_tile(engine, overlap=32, tile_batch=4, budget_mb=64)
    assert halved < small


def test_fit_tiles_waste_little_and_respect_the_cap() -> None:
    for h, w, cap in ((1080, 1920, 720), (2160, 3840, 1024), (64, 96, 48), (300, 200, 4096)):
        th, tw = fit_tiles(h, w, cap, 32)
        computed = count_tiles(h, w, (th, tw), 32) * th * tw
        assert th * tw <= cap * cap and th <= h and tw <= w
        if h * w > 4 * cap * cap:  # large images: under 10% recomputed overlap (square tiles: 50% at 1080/720)
            assert computed < 1.10 * h * w, (h, w, th, tw)
    lr = torch.rand(1, 3, 70, 90)
    net = default_net()
    assert torch.allclose(upscale(net, lr, 2, fit_tiles(70, 90, 56, 32), 32), upscale(net, lr, 2), atol=1e-5)


def _write_inputs(folder: Path) -> dict[str, tuple[str, tuple[int, int]]]:
    """One file per kind of input; name -> (expected output mode, input (w, h) after EXIF)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "rgb.png", icc_profile=srgb)
    Image.fromarray(np.dstack([rgb, rng.integers(0, 256, (20, 30), dtype=np.uint8)])).save(folder / "rgba.png")
    Image.fromarray(rgb[..., 0]).save(folder / "gray.png")
    Image.fromarray(np.dstack([rgb[..., 0], rgb[..., 1]])).save(folder / "gray_alpha.png")
    Image.fromarray((rng.integers(0, 65536, (20, 30))).astype(np.uint16)).save(folder / "gray16.png")
    write_png16(folder / "rgb16.png", rng.integers(0, 65536, (20, 30, 3)).astype(np.uint16))
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(folder / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 (the viewer shows it 20 wide, 30 high)
    Image.fromarray(rgb).save(folder / "rotated.jpg", exif=exif.tobytes(), quality=95)
    return {"rgb": ("RGB", (30, 20)), "rgba": ("RGBA", (30, 20)), "gray": ("L", (30, 20)),
            "gray_alpha": ("LA", (30, 20)), "gray16": ("I;16", (30, 20)), "rgb16": ("RGB;16", (30, 20)),
            "palette": ("RGB", (30, 20)), "rotated": ("RGB", (20, 30))}


def test_every_input_mode_comes_back_in_kind_at_scale_times_the_size(tmp_path: Path) -> None:
    expected = _write_inputs(tmp_path / "in")
    ckpt = save_checkpoint(default_net(), DEFAULT_SPEC, tmp_path / "best.ckpt")
    summary = run_upscale(upscale_cfg([f"ckpt_path={ckpt}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}"]))
    assert summary.images == len(expected) and not summary.failures
    for name, (mode, (w, h)) in expected.items():
        out = tmp_path / "out" / f"{name}.png"
        if mode == "RGB;16":
            arr, _ = read_png16(out)
            assert arr.shape == (2 * h, 2 * w, 3) and arr.dtype == np.uint16
            assert np.any(arr % 257 != 0), "16-bit output holds only 8 bits of information"
            continue
        with Image.open(out) as im:
            assert (im.mode, im.size) == (mode, (2 * w, 2 * h)), name
            if mode == "I;16":
                assert np.any(np.asarray(im) % 257 != 0), "16-bit output holds only 8 bits of information"
    with Image.open(tmp_path / "out" / "rgb.png") as im:
        assert im.info.get("icc_profile") == read_picture(tmp_path / "in" / "rgb.png", 10**6).icc_profile
    alpha_in = np.asarray(Image.open(tmp_path / "in" / "rgba.png"))[..., 3].astype(float)
    alpha_out = np.asarray(Image.open(tmp_path / "out" / "rgba.png"))[..., 3].astype(float)
    assert abs(alpha_out.mean() - alpha_in.mean()) < 3  # the alpha plane itself, upscaled


def test_png16_codec_round_trips_and_reads_every_row_filter(tmp_path: Path) -> None:
    arr = np.random.default_rng(1).integers(0, 65536, (9, 7, 4)).astype(np.uint16)
    write_png16(tmp_path / "a.png", arr, icc_profile=b"profile")
    back, icc = read_png16(tmp_path / "a.png")
    assert np.array_equal(back, arr) and icc == b"profile"
    # Sub, Average and Paeth rows as other encoders write them (Pillow's 16-bit gray uses them too).
    from sr_experiments.png16 import _unfilter

    rng = np.random.default_rng(2)
    prev, cur = rng.integers(0, 256, 12, dtype=np.uint8), rng.integers(0, 256, 12, dtype=np.uint8)
    left = np.concatenate([np.zeros(6, np.int32), cur[:-6].astype(np.int32)])
    up, upleft = prev.astype(np.int32), np.concatenate([np.zeros(6, np.int32), prev[:-6].astype(np.int32)])
    p = left + up - upleft
    paeth = np.where((abs(p - left) <= abs(p - up)) & (abs(p - left) <= abs(p - upleft)), left,
                     np.where(abs(p - up) <= abs(p - upleft), up, upleft))
    for kind, pred in ((1, left), (3, (left + up) // 2), (4, paeth)):
        filtered = ((cur.astype(np.int32) - pred) % 256).astype(np.uint8)
        assert np.array_equal(_unfilter(kind, filtered, prev, 6), cur), kind


def test_bad_files_are_reported_one_line_each_and_the_rest_is_written(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    good = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(good).save(folder / "a.png")
    Image.fromarray(good).save(folder / "c.jpg")
    (folder / "b_not_an_image.png").write_text("hello")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    (folder / "b_truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    Image.new("RGB", (200, 200)).save(folder / "b_bomb.png")
    status = cli(["model=bicubic", f"input={folder}", f"output={tmp_path / 'out'}", "max_pixels=10000"])
    err = capsys.readouterr().err
    assert status == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]
    for name, reason in (("b_not_an_image.png", "not an image"), ("b_truncated.png", "truncated"),
                         ("b_bomb.png", "max_pixels=10000")):
        lines = [l for l in err.splitlines() if name in l]
        assert len(lines) == 1 and reason in lines[0] and lines[0].endswith("(skipped)"), err
    assert cli(["model=bicubic", f"input={folder / 'a.png'}", f"output={tmp_path / 'out2'}"]) == 0


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_checkpoint_crafted_to_run_code_is_refused(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": _RunsCode(marker), "hyper_parameters": {"network": DEFAULT_SPEC}}, ckpt)
    torch.load(ckpt, weights_only=False)  # the payload is live: unsafe loading runs it
    assert marker.is_dir()
    marker.rmdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    status = cli([f"ckpt_path={ckpt}", f"input={tmp_path / 'x.png'}", f"output={tmp_path / 'out'}"])
    assert status == 2 and not marker.exists()
    assert "cannot be loaded safely" in capsys.readouterr().err


@pytest.mark.slow
def test_checkpoint_onnx_and_compare_end_to_end(tmp_path: Path, photo_pair) -> None:
    from sr_experiments.export import export_network

    net = default_net()
    ckpt = save_checkpoint(net, DEFAULT_SPEC, tmp_path / "best.ckpt")
    lr, _ = photo_pair
    lr8 = (lr[0] * 255 + 0.5).floor().byte().permute(1, 2, 0).numpy()
    Image.fromarray(lr8).save(tmp_path / "photo.png")
    common = [f"input={tmp_path / 'photo.png'}", "precision=32", "tile=48"]
    # model=... is not repeated: the spec comes from the checkpoint.
    assert cli([f"ckpt_path={ckpt}", *common, f"output={tmp_path / 'pt'}", "--compare"]) == 0
    export_network(net, DEFAULT_SPEC, "onnx", tmp_path / "model.onnx")
    assert cli([f"ckpt_path={tmp_path / 'model.onnx'}", *common, f"output={tmp_path / 'onnx'}"]) == 0
    pt = np.asarray(Image.open(tmp_path / "pt" / "photo.png")).astype(int)
    ox = np.asarray(Image.open(tmp_path / "onnx" / "photo.png")).astype(int)
    with torch.inference_mode():
        ref = net(torch.from_numpy(lr8).permute(2, 0, 1)[None].float() / 255)[0].clamp(0, 1)
    ref8 = (ref * 255 + 0.5).floor().byte().permute(1, 2, 0).numpy().astype(int)
    assert pt.shape == (128, 192, 3) and np.abs(pt - ref8).max() <= 1 and np.abs(ox - pt).max() <= 1
    with Image.open(tmp_path / "pt" / "photo_compare.png") as im:
        assert im.size == (2 * 192 + 8, 128)
        right = np.asarray(im)[:, 192 + 8 :].astype(int)
    assert np.array_equal(right, pt)


def test_bf16_inference_costs_little_psnr(photo_pair) -> None:
    lr, hr = photo_pair
    net = default_net()
    outs = {p: upscale(torch_engine(net, DEFAULT_SPEC, torch.device("cpu"), p), lr, 2).float().clamp(0, 1)
            for p in ("32", "bf16")}
    psnr = {p: float(sr_psnr_ssim(o, hr, 2, torch.tensor([False]))[0]) for p, o in outs.items()}
    assert math.isfinite(psnr["bf16"]) and abs(psnr["32"] - psnr["bf16"]) < 0.05
