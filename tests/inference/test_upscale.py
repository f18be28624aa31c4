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

from sr_experiments.methods.engines import auto_tile, torch_engine
from sr_experiments.imaging.io import read_picture
from sr_experiments.imaging.imresize import imresize
from sr_experiments.imaging.tiling import count_tiles, fit_tiles, upscale
from sr_experiments.evaluation.metrics import sr_psnr_ssim
from sr_experiments.models import build_network
from sr_experiments.imaging.png16 import read_png16, write_png16
from sr_experiments.inference.upscale import cli, run_upscale

# One torch thread: tiny tensors, and OpenMP spinning across busy cores costs 50x (see the network tests).
pytestmark = pytest.mark.usefixtures("one_thread")

DEFAULT_SPEC = {"name": "edsr", "scale": 2, "depth": 4, "width": 32, "res_scale": 1.0}  # sr_experiments/conf/model/shallow.yaml


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
    gt = torch.from_numpy(skdata.astronaut()[40:168, 160:352].copy()).permute(2, 0, 1)[None]
    lq = imresize(gt, scale=0.5).float() / 255
    return lq, gt.float() / 255


@pytest.mark.parametrize("precision", ["32", "auto"])
def test_tiled_equals_untiled_within_001_db_for_default_model(photo_pair, precision: str) -> None:
    lq, gt = photo_pair
    engine = torch_engine(default_net(), DEFAULT_SPEC, torch.device("cpu"), precision)
    whole = upscale(engine, lq, 2).float().clamp(0, 1)
    tiled = upscale(engine, lq, 2, tile=48, overlap=32, tile_batch=3).float().clamp(0, 1)
    p_whole = float(sr_psnr_ssim(whole, gt, 2, torch.tensor([False]))[0])
    p_tiled = float(sr_psnr_ssim(tiled, gt, 2, torch.tensor([False]))[0])
    assert abs(p_whole - p_tiled) < 0.01
    if precision == "32":  # receptive field (12 LR px) < overlap / 2: identical up to float reordering
        assert float((whole - tiled).abs().max()) < 1e-5


def test_precision_32_contiguous_is_exactly_the_plain_network(photo_pair) -> None:
    lq, _ = photo_pair
    net = default_net()
    engine = torch_engine(net, DEFAULT_SPEC, torch.device("cpu"), "32", channels_last=False)
    assert not engine.channels_last and engine.precision.autocast_dtype is None
    assert torch.equal(upscale(engine, lq, 2, tile=48, overlap=32), upscale(net, lq, 2, tile=48, overlap=32))


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
    lq = torch.rand(1, 3, 70, 90)
    net = default_net()
    assert torch.allclose(upscale(net, lq, 2, fit_tiles(70, 90, 56, 32), 32), upscale(net, lq, 2), atol=1e-5)


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
    from sr_experiments.inference.export import export_network

    net = default_net()
    ckpt = save_checkpoint(net, DEFAULT_SPEC, tmp_path / "best.ckpt")
    lq, _ = photo_pair
    lq8 = (lq[0] * 255 + 0.5).floor().byte().permute(1, 2, 0).numpy()
    Image.fromarray(lq8).save(tmp_path / "photo.png")
    common = [f"input={tmp_path / 'photo.png'}", "precision=32", "tile=48"]
    # model=... is not repeated: the spec comes from the checkpoint.
    assert cli([f"ckpt_path={ckpt}", *common, f"output={tmp_path / 'pt'}", "--compare"]) == 0
    export_network(net, DEFAULT_SPEC, "onnx", tmp_path / "model.onnx")
    assert cli([f"ckpt_path={tmp_path / 'model.onnx'}", *common, f"output={tmp_path / 'onnx'}"]) == 0
    pt = np.asarray(Image.open(tmp_path / "pt" / "photo.png")).astype(int)
    ox = np.asarray(Image.open(tmp_path / "onnx" / "photo.png")).astype(int)
    with torch.inference_mode():
        ref = net(torch.from_numpy(lq8).permute(2, 0, 1)[None].float() / 255)[0].clamp(0, 1)
    ref8 = (ref * 255 + 0.5).floor().byte().permute(1, 2, 0).numpy().astype(int)
    assert pt.shape == (128, 192, 3) and np.abs(pt - ref8).max() <= 1 and np.abs(ox - pt).max() <= 1
    with Image.open(tmp_path / "pt" / "photo_compare.png") as im:
        picture = np.asarray(im).astype(int)
    # labels, the frames (the detail's square outlined in red), labels, the detail enlarged
    from sr_experiments.imaging.annotate import font_size, label_strip

    strip = label_strip(8, [], font_size(192)).shape[0]
    assert picture.shape[1] == 2 * 192 + 8 and 10 <= strip <= 30 and picture.shape[0] > 2 * strip + 128
    frame = picture[strip : strip + 128, 200:]
    red = (frame == [255, 0, 0]).all(-1)
    assert red.any() and np.array_equal(frame[~red], pt[~red])
    for half in (picture[:strip, :192], picture[:strip, 200:]):
        assert half.min() < 100 and (half == 255).mean() > 0.5  # dark text on white


def test_bf16_inference_costs_little_psnr(photo_pair) -> None:
    lq, gt = photo_pair
    net = default_net()
    outs = {p: upscale(torch_engine(net, DEFAULT_SPEC, torch.device("cpu"), p), lq, 2).float().clamp(0, 1)
            for p in ("32", "bf16")}
    psnr = {p: float(sr_psnr_ssim(o, gt, 2, torch.tensor([False]))[0]) for p, o in outs.items()}
    assert math.isfinite(psnr["bf16"]) and abs(psnr["32"] - psnr["bf16"]) < 0.05


def _solid(path: Path, size: tuple[int, int] = (8, 8), color: tuple[int, ...] = (10, 200, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB" if len(color) == 3 else "RGBA", size, color).save(path)
    return path


@pytest.fixture
def count_upscaled(monkeypatch) -> list[Path]:
    """Images the command started to compute (by their Picture), recorded instead of guessed from the files."""
    import sr_experiments.inference.upscale as up

    calls: list = []
    real = up.upscale_picture
    monkeypatch.setattr(up, "upscale_picture", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    return calls


@pytest.mark.parametrize("spec", ["folder", "glob"])
def test_output_onto_an_input_is_refused_before_computing(tmp_path: Path, capsys, count_upscaled, spec: str) -> None:
    folder = tmp_path / "in"
    a, b = _solid(folder / "a.png"), _solid(folder / "b.png", color=(1, 2, 3))
    before = {p: p.read_bytes() for p in (a, b)}
    source = folder if spec == "folder" else folder / "*.png"
    assert cli(["model=bicubic", f"input={source}", f"output={folder}"]) == 2
    err = capsys.readouterr().err.strip()
    named = str(folder) + " is the input folder" if spec == "folder" else str(a)  # a folder: refused as a whole
    assert len(err.splitlines()) == 1 and named in err and "output" in err, err
    assert {p: p.read_bytes() for p in (a, b)} == before and not count_upscaled
    # Another format into the same folder writes new files only, never over an input.
    assert cli(["model=bicubic", f"input={folder / 'a.png'}", f"output={folder}", "format=webp"]) == 0
    assert a.read_bytes() == before[a] and (folder / "a.webp").is_file()


def test_two_inputs_onto_one_output_are_refused_before_computing(tmp_path: Path, capsys, count_upscaled) -> None:
    _solid(tmp_path / "in" / "a.png")
    _solid(tmp_path / "in" / "a.jpg")
    assert cli(["model=bicubic", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert "a.png" in err and "a.jpg" in err and not count_upscaled
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_unwritable_output_is_found_before_computing(tmp_path: Path, capsys, count_upscaled) -> None:
    src = _solid(tmp_path / "a.png")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for out in (blocker, blocker / "sub"):
        assert cli(["model=bicubic", f"input={src}", f"output={out}"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(out) in err and "writable" in err, err
    assert not count_upscaled


def _unloadable(path: Path) -> Path:
    """Files a user may pass as ckpt_path= that hold no usable network."""
    kind = path.name
    if kind.endswith(".onnx"):
        path.write_bytes(b"" if kind.startswith("empty") else b"\x08\x07garbage, not an ONNX graph")
    elif kind == "tensor.ckpt":
        torch.save(torch.zeros(3), path)
    elif kind == "hparams_not_a_dict.ckpt":
        torch.save({"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": 3}, path)
    elif kind == "spec_not_a_dict.ckpt":
        torch.save({"state_dict": {}, "hyper_parameters": {"network": "edsr"}}, path)
    elif kind == "unknown_network.ckpt":
        torch.save({"state_dict": {}, "hyper_parameters": {"network": {"name": "nope", "scale": 2}}}, path)
    return path


@pytest.mark.parametrize("name", ["garbage.onnx", "empty.onnx", "missing.onnx", "tensor.ckpt", "hparams_not_a_dict.ckpt",
                                  "spec_not_a_dict.ckpt", "unknown_network.ckpt"])
def test_unloadable_model_file_is_one_line_naming_it_and_exit_2(tmp_path: Path, capsys, name: str) -> None:
    ckpt = _unloadable(tmp_path / name) if not name.startswith("missing") else tmp_path / name
    src = _solid(tmp_path / "a.png")
    assert cli([f"ckpt_path={ckpt}", f"input={src}", f"output={tmp_path / 'out'}", "progress=false"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(ckpt) in err and "Traceback" not in err, err


COLORS, DURATIONS = [(255, 0, 0), (0, 160, 0), (20, 40, 255)], [40, 120, 200]


def _animated_gif(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [Image.new("RGB", (6, 4), c) for c in COLORS]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=DURATIONS, loop=0)
    return path


@pytest.mark.parametrize(("fmt", "tolerance"), [("png", 1), ("webp", 8)])
def test_animated_gif_keeps_every_frame_its_duration_and_loop(tmp_path: Path, fmt: str, tolerance: int) -> None:
    _animated_gif(tmp_path / "in" / "anim.gif")  # found in a folder, too
    assert cli(["model=bicubic", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", f"format={fmt}",
                "progress=false"]) == 0
    with Image.open(tmp_path / "out" / f"anim.{fmt}") as im:
        assert getattr(im, "n_frames", 1) == 3 and im.size == (12, 8) and im.info.get("loop") == 0
        for i, color in enumerate(COLORS):
            im.seek(i)
            im.load()  # WebP fills in the frame's duration on load
            assert im.info.get("duration") == DURATIONS[i]
            assert np.abs(np.asarray(im.convert("RGB")).astype(int) - color).max() <= tolerance, i


def test_a_camera_mpo_jpeg_is_one_photo_not_an_animation(tmp_path: Path) -> None:
    photo = tmp_path / "camera.jpg"
    Image.new("RGB", (8, 6), (200, 30, 90)).save(photo, "MPO", save_all=True, append_images=[Image.new("RGB", (4, 3))])
    assert Image.open(photo).n_frames == 2
    assert cli(["model=bicubic", f"input={photo}", f"output={tmp_path / 'out'}", "progress=false"]) == 0
    with Image.open(tmp_path / "out" / "camera.png") as im:
        assert getattr(im, "n_frames", 1) == 1 and im.size == (16, 12)


def test_animated_input_to_jpeg_is_refused_naming_the_file_and_frames(tmp_path: Path, capsys) -> None:
    gif = _animated_gif(tmp_path / "anim.gif")
    assert cli(["model=bicubic", f"input={gif}", f"output={tmp_path / 'out'}", "format=jpeg", "progress=false"]) == 1
    err = capsys.readouterr().err
    assert str(gif) in err and "3 frames" in err and "format=png" in err, err


@pytest.mark.parametrize("size", [(1, 1), (5, 1), (1, 5)])
def test_tiny_solid_image_keeps_its_colour(tmp_path: Path, size: tuple[int, int]) -> None:
    color = (200, 30, 90)
    src = _solid(tmp_path / "in" / "tiny.png", size, color)
    w, h = size
    assert cli(["model=bicubic", f"input={src}", f"output={tmp_path / 'bic'}", "progress=false"]) == 0
    bic = np.asarray(Image.open(tmp_path / "bic" / "tiny.png")).astype(int)
    assert bic.shape == (2 * h, 2 * w, 3) and np.abs(bic - color).max() <= 1
    # A network: what it makes of this colour inside an image, not what its zero padding makes of a lone pixel.
    torch.manual_seed(0)
    spec = {"name": "edsr", "scale": 2, "depth": 2, "width": 8}  # receptive field 15 LR px < tile_overlap
    net = build_network(spec).eval()
    ckpt = save_checkpoint(net, spec, tmp_path / "tiny.ckpt")
    assert cli([f"ckpt_path={ckpt}", "precision=32", f"input={src}", f"output={tmp_path / 'net'}", "progress=false"]) == 0
    out = np.asarray(Image.open(tmp_path / "net" / "tiny.png")).astype(int)
    with torch.inference_mode():
        field = net(torch.tensor(color).float().div(255).view(1, 3, 1, 1).expand(1, 3, 40, 40))[0, :, 40:42, 40:42]
    block = np.floor(field.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5)  # pixel shuffle: a 2x2 period
    assert out.shape == (2 * h, 2 * w, 3) and np.abs(out - np.tile(block, (h, w, 1))).max() <= 1, (out, block)


def test_tiny_image_through_a_network_that_downsamples_inside(tmp_path: Path) -> None:
    torch.manual_seed(0)
    spec = {"name": "safmn", "scale": 2}  # pools to 1/8 inside: a 1x1 input used to crash it
    ckpt = save_checkpoint(build_network(spec).eval(), spec, tmp_path / "safmn.ckpt")
    src = _solid(tmp_path / "dot.png", (1, 1))
    assert cli([f"ckpt_path={ckpt}", f"input={src}", f"output={tmp_path / 'out'}", "progress=false"]) == 0
    assert Image.open(tmp_path / "out" / "dot.png").size == (2, 2)
