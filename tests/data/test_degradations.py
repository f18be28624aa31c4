"""On-the-fly degradations (data/degradations/): seeded, shaped, switchable, JPEG-like; degrade.py;
training and evaluation on degraded LR; the compact network."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import FAST, ROOT, compose_train

from sr_experiments.data.degradations import build_degradation, degrade_image, image_generator
from sr_experiments.data.degradations import kernels as K
from sr_experiments.data.degradations import ops
from sr_experiments.data.degradations.realesrgan import RealESRGANDegradation

pytestmark = pytest.mark.usefixtures("one_thread")

STAGE_KEYS = ("blur", "resize", "noise", "jpeg")


def _hr(n: int = 2, h: int = 64, w: int = 48, seed: int = 0) -> torch.Tensor:
    """Smooth random images (blurred noise): structure at several scales, as photos have."""
    x = torch.rand(n, 3, h // 4, w // 4, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def _all_off() -> dict:
    stage = {k: False for k in STAGE_KEYS}
    return dict(first=stage, second=stage, final_sinc=False, usm_gt=False, final_resize_modes=["bicubic"],
                resize_modes=["bicubic"])


# --- seeds ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["realesrgan", "bsrgan"])
def test_same_seed_same_lr_batch(name: str) -> None:
    d = build_degradation({"name": name}, 4)
    hr = _hr(3)
    a = d(hr, torch.Generator().manual_seed(7))
    b = d(hr, torch.Generator().manual_seed(7))
    c = d(hr, torch.Generator().manual_seed(8))
    assert torch.equal(a.lq, b.lq) and a.params == b.params
    assert not torch.equal(a.lq, c.lq)


def test_image_seed_depends_on_name_not_order() -> None:
    d = build_degradation({"name": "realesrgan", "usm_gt": False}, 2)
    hr = _hr(1, 32, 32)[0]
    first = degrade_image(hr, d, 0, "baby").lq
    degrade_image(hr, d, 0, "bird")  # another image in between changes nothing
    assert torch.equal(first, degrade_image(hr, d, 0, "baby").lq)
    assert not torch.equal(first, degrade_image(hr, d, 1, "baby").lq)


# --- shapes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["realesrgan", "bsrgan"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_lr_shape_is_hr_over_scale(name: str, scale: int) -> None:
    d = build_degradation({"name": name}, scale)
    hr = _hr(2, 24 * scale, 20 * scale)
    for seed in range(3):
        out = d(hr, torch.Generator().manual_seed(seed))
        assert out.lq.shape == (2, 3, 24, 20)
        assert out.gt.shape == hr.shape
        assert 0 <= out.lq.min() and out.lq.max() <= 1
        assert torch.equal(out.lq, (out.lq * 255).round() / 255)  # on the 8-bit grid


def test_hr_not_a_multiple_of_the_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="multiple of scale 4"):
        build_degradation({"name": "realesrgan"}, 4)(_hr(1, 30, 32), torch.Generator())


# --- kernels ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("size", "min_size"), [(21, 7), (15, 9)])
def test_kernels_sum_to_one_with_the_configured_sizes(size: int, min_size: int) -> None:
    g = torch.Generator().manual_seed(0)
    k, params = K.random_blur_kernels(g, 64, size, min_size, sinc_prob=0.3)
    assert k.shape == (64, size, size)
    assert torch.allclose(k.sum(dim=(1, 2)), torch.ones(64, dtype=k.dtype), atol=1e-9)
    sizes = {p["size"] for p in params}
    assert sizes <= set(range(min_size, size + 1, 2)) and len(sizes) > 1
    assert {p["type"] for p in params} >= {"iso", "aniso", "sinc"}
    for kernel, p in zip(k, params):  # zero outside the drawn k x k window, centred
        pad = (size - p["size"]) // 2
        inner = kernel[pad : size - pad, pad : size - pad]
        assert inner.shape == (p["size"], p["size"]) and torch.isclose(inner.sum(), torch.tensor(1.0, dtype=k.dtype))
    sinc, sparams = K.random_final_sinc(g, 16, 0.5, size, min_size)
    assert sinc.shape == (16, size, size) and torch.allclose(sinc.sum(dim=(1, 2)), torch.ones(16, dtype=k.dtype))
    assert {p["type"] for p in sparams} == {"sinc", "pulse"}


def test_gaussian_kernel_has_the_drawn_covariance() -> None:
    # An isotropic Gaussian of sigma 2 on a wide window: its second moment is sigma^2.
    k = K.anisotropic_gaussians(torch.tensor([41]), torch.tensor([2.0], dtype=torch.float64),
                                torch.tensor([2.0], dtype=torch.float64), torch.zeros(1, dtype=torch.float64),
                                torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.long), 41)[0]
    r = torch.arange(41, dtype=torch.float64) - 20
    assert float((k.sum(0) * r**2).sum()) == pytest.approx(4.0, rel=1e-3)


def test_kernel_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"degradation.first.kernel_list"):
        RealESRGANDegradation(4, first={"kernel_list": ["iso"], "kernel_prob": [0.5, 0.5]})
    with pytest.raises(ValueError, match=r"degradation.second.bogus"):
        RealESRGANDegradation(4, second={"bogus": 1})
    with pytest.raises(ValueError, match=r"degradation.first.gray_noise_prob"):
        RealESRGANDegradation(4, first={"gray_noise_prob": 2})
    with pytest.raises(ValueError, match=r"degradation.second.jpeg_range must lie in \[1, 100\]"):
        RealESRGANDegradation(4, second={"jpeg_range": [30, 120]})


# --- switching stages off ---------------------------------------------------------------------

def test_every_stage_off_is_a_plain_resize() -> None:
    hr = _hr(2, 64, 64)
    out = RealESRGANDegradation(4, **_all_off())(hr, torch.Generator().manual_seed(0))
    expected = ops.quantise(F.interpolate(hr, size=(16, 16), mode="bicubic"))
    assert torch.equal(out.lq, expected)
    assert torch.equal(out.gt, hr)


@pytest.mark.parametrize("key", [*(f"first.{k}" for k in STAGE_KEYS), *(f"second.{k}" for k in STAGE_KEYS),
                                 "second.enabled", "final_sinc", "usm_gt"])
def test_a_stage_off_changes_that_stage_only(key: str) -> None:
    """Off, a stage records nothing applied, the other stages draw exactly what they drew with it on,
    and the LR differs from the LR with it on (for a seed where the stage does something)."""
    hr = _hr(2, 64, 64)
    # Every stage on and doing something (a blur every time, always a real resize).
    base = dict(usm_gt=True, final_sinc_prob=1.0, first={"resize_prob": [0, 1, 0]},
                second={"blur_prob": 1.0, "resize_prob": [0, 1, 0]})
    group, _, leaf = key.rpartition(".")
    off = {**base, "first": dict(base["first"]), "second": dict(base["second"])}
    if group:
        off[group] = {**off.get(group, {}), leaf: False}
    else:
        off[leaf] = False
    on_out = RealESRGANDegradation(4, **base)(hr, torch.Generator().manual_seed(3))
    off_out = RealESRGANDegradation(4, **off)(hr, torch.Generator().manual_seed(3))
    assert not torch.equal(on_out.lq, off_out.lq)
    p_on, p_off = on_out.params[0], off_out.params[0]
    if key == "second.enabled":
        assert "stage2" not in p_off and p_off["stage1"] == p_on["stage1"]
        return
    if key == "usm_gt":
        assert torch.equal(off_out.gt, hr) and not torch.equal(on_out.gt, hr)
        return
    if key == "final_sinc":
        assert p_off["final"]["sinc"] is None and p_off["stage1"] == p_on["stage1"] and p_off["stage2"] == p_on["stage2"]
        return
    stage = "stage1" if group == "first" else "stage2"
    other = "stage2" if stage == "stage1" else "stage1"
    assert p_off[other] == p_on[other]
    field = {"blur": "blur", "resize": "resize", "noise": "noise", "jpeg": "jpeg_quality"}[leaf]
    if leaf == "resize" and stage == "stage2":  # the second stage still goes to the LR size, unscaled
        assert p_off[stage]["resize"]["factor"] == 1.0
    else:
        assert p_off[stage][field] is None and p_on[stage][field] is not None
    for f in ("blur", "noise", "jpeg_quality"):
        if f != field:
            assert p_off[stage][f] == p_on[stage][f]


def test_stage_operations_off_are_the_identity() -> None:
    x = _hr(2, 32, 32)
    g = torch.Generator()
    assert torch.equal(ops.blur(x, K.pulse(2, 21)), x)
    assert torch.equal(ops.resize(x, (32, 32), "bicubic"), x)
    assert torch.equal(ops.gaussian_noise(x, torch.zeros(2), torch.tensor([True, False]), g), x)


@pytest.mark.parametrize("key", ["blur", "downsample", "noise", "jpeg", "final_jpeg", "shuffle"])
def test_bsrgan_steps_switch_off(key: str) -> None:
    hr = _hr(2, 64, 64)
    on = build_degradation({"name": "bsrgan", "scale2_prob": 0.0, "jpeg_prob": 1.0}, 4)
    off = build_degradation({"name": "bsrgan", "scale2_prob": 0.0, "jpeg_prob": 1.0, key: False}, 4)
    a, b = on(hr, torch.Generator().manual_seed(1)), off(hr, torch.Generator().manual_seed(1))
    assert not torch.equal(a.lq, b.lq) and b.lq.shape == (2, 3, 16, 16)
    if key in ("blur", "downsample", "noise", "jpeg"):
        assert key not in b.params[0]["order"] and key in "".join(a.params[0]["order"])


# --- JPEG -------------------------------------------------------------------------------------

def _blockiness(x: torch.Tensor) -> float:
    """Mean |horizontal step| across the 8-pixel block boundaries over that inside the blocks."""
    d = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(0, 1, 2))  # step between column j and j+1
    cols = torch.arange(d.numel())
    across = d[cols % 8 == 7].mean()
    within = d[cols % 8 != 7].mean()
    return float(across / within)


def test_jpeg_at_low_quality_has_8x8_block_artefacts() -> None:
    from kornia.filters import gaussian_blur2d

    # Blurred noise, contrast stretched: smooth, and no grid of its own (unlike _hr's 4x upscale).
    x = gaussian_blur2d(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)), (13, 13), (2.5, 2.5))
    x = (x - x.amin()) / (x.amax() - x.amin())
    low = ops.jpeg(x, torch.tensor([10.0, 10.0]))
    high = ops.jpeg(x, torch.tensor([95.0, 95.0]))
    assert _blockiness(x) == pytest.approx(1.0, abs=0.1)  # the source has no grid
    assert _blockiness(low) > 1.5  # steps at the block boundaries stand out
    assert _blockiness(high) < _blockiness(low)
    assert (high - x).abs().mean() < (low - x).abs().mean()
    # Per-image quality.
    mixed = ops.jpeg(x, torch.tensor([10.0, 95.0]))
    assert torch.allclose(mixed[0], low[0], atol=1e-5) and torch.allclose(mixed[1], high[1], atol=1e-5)


def test_usm_sharpening_adds_contrast_at_edges_only() -> None:
    x = torch.zeros(1, 3, 64, 64)
    x[..., 32:] = 0.6
    x[..., :32] = 0.3
    y = ops.usm_sharpen(x)
    assert y[..., 31].mean() < 0.3 and y[..., 32].mean() > 0.6  # overshoot on both sides of the edge
    assert torch.allclose(y[..., :4], x[..., :4], atol=1e-3)  # flat far away


# --- training, degrade.py, evaluation ---------------------------------------------------------

def test_training_degrades_each_batch_on_the_device(tmp_path: Path) -> None:
    from hydra.utils import instantiate

    from sr_experiments.runs.run import train

    cfg = compose_train([*FAST, "model=compact", "model.num_feat=8", "model.num_conv=2", "scale=4",
                         "degradation=realesrgan", "trainer.max_steps=2", "data.patch_size=16"], tmp_path / "run")
    summary = train(cfg)
    assert summary["steps"] == 2
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["hyper_parameters"]["degradation"]["name"] == "realesrgan"
    # The module's hook: a training batch's LR comes from its HR, the draws from (seed, step).
    module = instantiate(cfg.module, _recursive_=False)
    module.trainer = SimpleNamespace(training=True, global_step=0, global_rank=0)  # what the hook reads
    gt = (torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 255).byte()
    batch = module.on_after_batch_transfer({"lq": torch.zeros(2, 3, 16, 16, dtype=torch.uint8), "gt": gt}, 0)
    again = instantiate(cfg.module, _recursive_=False)
    again.trainer = module.trainer
    twin = again.on_after_batch_transfer({"lq": torch.zeros(2, 3, 16, 16, dtype=torch.uint8), "gt": gt.clone()}, 0)
    assert batch["lq"].shape == (2, 3, 16, 16) and torch.equal(batch["lq"], twin["lq"])
    assert torch.equal(batch["gt_real"], gt.float() / 255)


def test_bicubic_training_keeps_its_hyperparameters(tmp_path: Path) -> None:
    from hydra.utils import instantiate

    cfg = compose_train([*FAST], tmp_path / "run")
    assert cfg.degradation.name == "bicubic"
    module = instantiate(cfg.module, _recursive_=False)
    assert module.degrader is None and "degradation" not in module.hparams


def _degrade(src: Path, out: Path, *extra: str) -> int:
    """degrade.py's config and entry point, in this process (a subprocess pays torch's import)."""
    from hydra import compose, initialize_config_dir

    from sr_experiments import CONF_DIR
    from sr_experiments.data.degradations.files import main

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="degrade", overrides=[f"input={src}", f"output={out}", *extra])
    return main(cfg)


def test_degrade_py_writes_lr_kernels_and_parameters(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    src = tmp_path / "hr"
    src.mkdir()
    img = (_hr(1, 66, 50)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(img).save(src / "photo.png")
    (src / "broken.png").write_bytes(b"not a png")
    outs = []
    for run in ("a", "b"):
        status = _degrade(src, tmp_path / run, "scale=4", "degradation=realesrgan", "seed=0", "verbose=true")
        assert status == 1  # broken.png failed, photo.png written
        outs.append(np.asarray(Image.open(tmp_path / run / "photo.png")))
    assert "broken.png" in capsys.readouterr().err
    assert outs[0].shape == (16, 12, 3) and np.array_equal(outs[0], outs[1])  # 66x50 mod-cropped to 64x48
    info = json.loads((tmp_path / "a" / "photo_params.json").read_text())
    assert info["seed"] == 0 and info["lr_size"] == [16, 12] and "stage1" in info["params"]
    kernels = np.load(tmp_path / "a" / "photo_kernels.npz")
    assert kernels.files and all(math.isclose(float(kernels[k].sum()), 1.0, rel_tol=1e-9) for k in kernels.files)
    assert (tmp_path / "a" / "photo_kernels.png").is_file()
    # With the target's sharpening off, degrade.py writes exactly the LR eval.py scores for that image and seed.
    from sr_experiments.evaluation.protocol import eval_degradation

    assert _degrade(src, tmp_path / "plain", "scale=4", "degradation=realesrgan", "seed=0", "degradation.usm_gt=false") == 1
    plain = np.asarray(Image.open(tmp_path / "plain" / "photo.png"))
    expected = eval_degradation("realesrgan", 0, 4).lr(torch.from_numpy(img[:64, :48]).permute(2, 0, 1), "photo")
    assert np.array_equal((expected[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), plain)
    assert not np.array_equal(plain, outs[0])  # the default degrades the USM-sharpened HR, as training does
    assert _degrade(src, tmp_path / "c", "degradation=bicubic") == 2  # nothing to draw: one line, status 2


@pytest.mark.slow
def test_degrade_py_command_line(tmp_path: Path) -> None:
    from PIL import Image

    src = tmp_path / "hr"
    src.mkdir()
    Image.fromarray((_hr(1, 32, 32)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(src / "x.png")
    cmd = [sys.executable, str(ROOT / "degrade.py"), f"input={src}", f"output={tmp_path / 'out'}", "scale=2",
           "degradation=bsrgan", "seed=3"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "out" / "x.png").size == (16, 16)


def test_eval_on_degraded_lr_is_the_same_for_every_run(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from sr_experiments import CONF_DIR
    from sr_experiments.evaluation.run import run_eval

    def evaluate(out: str, *extra: str) -> dict:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="eval", overrides=["model=bicubic", "scale=4", "eval.sets=[sample:val]", *extra])
        cfg.paths.output_dir = str(tmp_path / out)
        run_eval(cfg)
        return json.loads((tmp_path / out / "results.json").read_text())

    a = evaluate("a", "eval.degradation=realesrgan", "eval.degradation_seed=0")
    b = evaluate("b", "eval.degradation=realesrgan", "eval.degradation_seed=0")
    clean = evaluate("c")
    rows = lambda r: [(x["psnr"], x["ssim"]) for x in r["results"]]  # noqa: E731
    assert rows(a) == rows(b)
    assert a["degradation"]["name"] == "realesrgan" and a["degradation"]["seed"] == 0
    assert a["results"][0]["lr_from"] == "realesrgan (seed 0)"
    assert rows(a)[0][0] < rows(clean)[0][0]  # degraded LR: bicubic scores lower


def test_eval_degradation_unknown_name(tmp_path: Path) -> None:
    from sr_experiments.evaluation.protocol import eval_degradation

    with pytest.raises(ValueError, match="eval.degradation=foo: no such degradation"):
        eval_degradation("foo", 0, 4)
    assert eval_degradation(None, 0, 4) is None and eval_degradation("bicubic", 0, 4) is None


def test_image_generator_is_stable() -> None:
    # Fixed by (seed, name) alone: a change here changes every published degraded-set number.
    assert torch.rand(1, generator=image_generator(0, "baboon")).item() == torch.rand(1, generator=image_generator(0, "baboon")).item()
    assert image_generator(0, "baboon").initial_seed() != image_generator(0, "barbara").initial_seed()


# --- the compact network ----------------------------------------------------------------------

def test_compact_is_realesr_general_x4v3() -> None:
    from spandrel import ModelLoader

    from sr_experiments.models import build_network, count_parameters

    net = build_network({"name": "compact", "scale": 4})
    assert count_parameters(net) == 1_213_296
    keys = list(net.state_dict())
    assert keys[:3] == ["body.0.weight", "body.0.bias", "body.1.weight"] and keys[-1] == "body.66.bias"
    d = ModelLoader().load_from_state_dict(net.state_dict())
    assert d.architecture.id == "Compact" and d.scale == 4 and d.model.num_conv == 32


@pytest.mark.slow
def test_realesrgan_gan_stage_trains_on_degraded_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sr_experiments.training.gan import SRGANModule
    from sr_experiments.runs.run import train

    seen = []
    original = SRGANModule.training_step

    def spy(self, batch, batch_idx):
        seen.append({k: v.detach().clone() for k, v in batch.items() if k in ("lq", "gt", "gt_real")})
        return original(self, batch, batch_idx)

    monkeypatch.setattr(SRGANModule, "training_step", spy)
    cfg = compose_train([*FAST, "experiment=realesrgan_x4", "data=sample", "model.width=8", "model.depth=1",
                         "model.growth=4", "discriminator.num_feat=8", "losses.percep.pretrained=false",
                         "data.batch_size=2", "data.patch_size=16", "trainer.max_steps=1", "model.ema_decay=0"],
                        tmp_path / "run")
    assert train(cfg)["steps"] == 1
    batch = seen[0]
    assert batch["lq"].shape == (2, 3, 16, 16) and batch["gt"].shape == (2, 3, 64, 64)
    # The L1 / perceptual target is the USM-sharpened HR; the discriminator's real images are the plain HR.
    assert not torch.equal(batch["gt"], batch["gt_real"])
    assert torch.equal(batch["gt"], ops.usm_sharpen(batch["gt_real"]))
