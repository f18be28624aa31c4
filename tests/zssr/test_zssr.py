"""Zero-shot SR (sr_experiments/zssr): the pair generator, the learning-rate policy, back-projection,
determinism, the zssr.py CLI (modes, bad files, exit codes) and eval.py model=zssr, each on tiny
images and a few training steps."""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CONF
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from PIL import Image

from sr_experiments.imaging.imresize import imresize
from sr_experiments.models import build_network, list_networks
from sr_experiments.zssr.ensemble import back_project, ensemble_upscale, lr_consistency
from sr_experiments.zssr.lr_policy import LRPolicy
from sr_experiments.zssr.method import ZSSRSettings, zssr_upscale
from sr_experiments.zssr.pairs import (
    FatherSonPairs,
    dihedral,
    downscale,
    load_kernel,
    official_augment,
    undo_dihedral,
)
from sr_experiments.inference.zssr import cli

pytestmark = pytest.mark.usefixtures("one_thread")

# Explicit precision and layout: no calibration in unit tests.
FAST = {"precision": "32", "channels_last": False, "crop_size": 16, "ensemble": False, "test_every": 2,
        "lr_check_every": 3, "lr_slope_range": 8, "min_steps": 2}
FAST_OVERRIDES = ["zssr.precision=32", "zssr.channels_last=false", "zssr.crop_size=16", "zssr.max_steps=3",
                  "zssr.ensemble=false", "progress=false"]


def _image(h: int = 24, w: int = 20, seed: int = 0) -> torch.Tensor:
    """A smooth random image (1, 3, h, w) in [0, 1]: structure the network can learn."""
    g = torch.Generator().manual_seed(seed)
    return imresize(torch.rand(1, 3, h // 4, w // 4, generator=g), size=(h, w)).clamp(0, 1)


def test_zssr_network_is_the_papers_and_registered() -> None:
    assert "zssr" in list_networks()
    net = build_network({"name": "zssr", "scale": 2})
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 8 and {c.out_channels for c in convs[:-1]} == {64}
    assert sum(isinstance(m, torch.nn.ReLU) for m in net.modules()) == 7
    # The official filter shapes and no biases (with biases, ReLUs died on smooth images): 224,640.
    assert all(c.bias is None for c in convs) and sum(p.numel() for p in net.parameters()) == 224_640
    # Residual over the interpolated input: with the last conv zeroed it is MATLAB bicubic.
    torch.nn.init.zeros_(net.conv_last.weight)
    x = torch.rand(1, 3, 7, 9)
    assert torch.allclose(net(x), imresize(x, scale=2), atol=1e-6)


@pytest.mark.parametrize("scale", [2, 3])
def test_sons_are_fathers_downscaled_by_the_frameworks_imresize(scale: int) -> None:
    pairs = FatherSonPairs(_image(40, 36)[0], scale, crop_size=16, batch_size=2, seed=1)
    assert len(pairs.sources) > 1  # scale augmentation: the image and downscaled copies
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        sons, fathers = pairs.sample(g)
        assert fathers.shape[-1] % scale == 0 and sons.shape[-2:] == tuple(d // scale for d in fathers.shape[-2:])
        assert torch.allclose(sons, imresize(fathers, scale=1 / scale).clamp(0, 1), atol=1e-6)


def test_sources_are_chosen_in_proportion_to_their_size() -> None:
    pairs = FatherSonPairs(_image(64, 64)[0], 2, crop_size=16, seed=0)
    sizes = np.array([s.shape[-1] * s.shape[-2] for s in pairs.sources], float)
    assert np.allclose(pairs.weights.numpy(), sizes / sizes.sum())
    assert pairs.sources[0].shape[-1] == 64 and pairs.sources[-1].shape[-1] == 32  # min_father_scale 0.5


def test_kernel_sons_and_bad_kernel_files(tmp_path: Path) -> None:
    delta = tmp_path / "delta.npy"
    np.save(delta, np.array([[0, 0, 0], [0, 2.0, 0], [0, 0, 0]]))  # normalised to sum 1 on load
    x = torch.rand(1, 3, 12, 12)
    assert torch.allclose(downscale(x, 3, load_kernel(delta)), x[..., ::3, ::3])
    np.save(tmp_path / "bad.npy", np.ones(5))
    with pytest.raises(ValueError, match=r"kernel=.*bad\.npy.*2-D"):
        load_kernel(tmp_path / "bad.npy")
    with pytest.raises(ValueError, match=r"kernel=.*missing\.npy"):
        load_kernel(tmp_path / "missing.npy")


def test_dihedral_transforms_are_undone() -> None:
    x = torch.rand(1, 3, 5, 7)
    outs = {tuple(dihedral(x, k).flatten().tolist()) for k in range(8)}
    assert len(outs) == 8
    assert all(torch.equal(undo_dihedral(dihedral(x, k), k), x) for k in range(8))


def _feed(policy: LRPolicy, errors) -> list[int]:
    drops = []
    for step in range(len(errors) * policy.test_every):
        if step % policy.test_every == 0:
            policy.record(step, errors[step // policy.test_every])
        if policy.update(step):
            drops.append(step)
    return drops


def test_lr_policy_drops_on_a_plateau_and_not_while_the_error_falls() -> None:
    rng = np.random.default_rng(0)
    falling = _feed(LRPolicy(), 1e-2 * np.exp(-np.arange(60) / 15) + rng.normal(0, 1e-6, 60))
    assert falling == []
    plateau = LRPolicy()
    drops = _feed(plateau, 1e-3 + rng.normal(0, 1e-5, 60))
    # The official rule: checked every 60 steps, more than min_steps (256) after the last change.
    assert drops and drops[0] == 299 and all(b - a > 256 for a, b in itertools.pairwise(drops))
    assert plateau.learning_rate == pytest.approx(1e-3 / 10 ** len(drops))
    assert plateau.done == (plateau.learning_rate < 9e-6)


def test_back_projection_reduces_the_lr_consistency_error() -> None:
    lr = _image(16, 16)
    sr = (imresize(lr, scale=2) + 0.05 * torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    before = lr_consistency(sr, lr, 2)
    one, ten = back_project(sr, lr, 2, 1), back_project(sr, lr, 2, 10)
    assert lr_consistency(one, lr, 2) < 0.5 * before
    assert lr_consistency(ten, lr, 2) < lr_consistency(one, lr, 2)


def test_ensemble_of_an_equivariant_upscaler_is_that_upscaler() -> None:
    lr = _image(12, 10)
    up = lambda x: imresize(x, scale=2)
    out = ensemble_upscale(up, lr, 2, back_projection_iters=0)
    assert torch.allclose(out, up(lr).clamp(0, 1), atol=1e-5)


def test_training_is_seeded_and_the_policy_stops_it() -> None:
    lr = _image(24, 20)
    s = ZSSRSettings(max_steps=6, **FAST)
    a, b = zssr_upscale(lr, 2, s), zssr_upscale(lr, 2, s)
    assert a.sr.shape == (1, 3, 48, 40) and a.steps == [6] and a.stopped_by == ["step cap"]
    assert torch.equal(a.sr, b.sr)
    assert not torch.equal(a.sr, zssr_upscale(lr, 2, ZSSRSettings(max_steps=6, seed=1, **FAST)).sr)
    # A rate already at the floor: the first plateau check drops it below min_learning_rate and stops.
    stop = ZSSRSettings(max_steps=40, **{**FAST, "learning_rate": 1e-5, "lr_change_ratio": 0.0})
    r = zssr_upscale(lr, 2, stop)
    assert r.stopped_by == ["learning-rate policy"] and r.steps[0] < 40


def test_ensemble_output_shape_and_range() -> None:
    lr = _image(32, 32, seed=3)
    s = ZSSRSettings(max_steps=30, **{**FAST, "ensemble": True, "back_projection_iters": 2, "learning_rate": 3e-3})
    r = zssr_upscale(lr, 2, s)
    assert r.sr.shape == (1, 3, 64, 64) and r.sr.min() >= 0 and r.sr.max() <= 1


def test_gradual_x4_is_two_x2_stages() -> None:
    r = zssr_upscale(_image(12, 12), 4, ZSSRSettings(max_steps=2, gradual=True, **FAST))
    assert r.sr.shape == (1, 3, 48, 48) and r.steps == [2, 2]
    with pytest.raises(ValueError, match="power of two"):
        ZSSRSettings(gradual=True).stages(3)


def _unique_source(h: int = 40, w: int = 36) -> np.ndarray:
    """(h, w, 3) float32 whose pixels are all different, to find where a crop came from."""
    return (np.arange(h * w * 3, dtype=np.float32).reshape(h, w, 3) / (h * w * 3))


def _is_exact_crop(out: np.ndarray, src: np.ndarray, transforms: range) -> bool:
    """Whether ``out`` is an integer crop of one of ``src``'s rotations/flips, value for value."""
    t = torch.from_numpy(src).permute(2, 0, 1)
    c = out.shape[0]
    for k in transforms:
        d = dihedral(t, k).permute(1, 2, 0).numpy()
        ys, xs = np.nonzero(np.isclose(d[..., 0], out[0, 0, 0], atol=1e-7))
        for y, x in zip(ys, xs):
            if y + c <= d.shape[0] and x + c <= d.shape[1] and np.allclose(d[y:y + c, x:x + c], out, atol=1e-5):
                return True
    return False


def test_official_augment_plain_and_rotated_fathers_are_exact_crops() -> None:
    src, rng = _unique_source(), np.random.default_rng(0)
    for _ in range(10):  # leave_as_is: a crop of the source itself
        out = official_augment([src], [1.0], rng, leave_as_is=1.0, no_interp=0.0, crop_size=16)
        assert out.shape == (16, 16, 3) and _is_exact_crop(out, src, range(1))
    # no_interp: a crop of one of the 8 rotations/flips, no interpolation. (The official code turns
    # about (w/2, h/2), a pixel off the centre of pixel 0..w-1: an edge row or column of a crop can
    # fall one pixel outside, black, as there; the inside is compared.)
    src, seen = _unique_source(40, 40), set()
    for _ in range(40):
        out = official_augment([src], [1.0], rng, leave_as_is=0.0, no_interp=1.0, crop_size=16)[1:-1, 1:-1]
        assert _is_exact_crop(out, src, range(8))
        seen.add(next(k for k in range(8) if _is_exact_crop(out, src, range(k, k + 1))))
    assert len(seen) >= 6  # the draws reach (nearly) every transform


def test_official_augment_warps_pick_the_source_for_the_drawn_scale() -> None:
    rng = np.random.default_rng(1)
    small, big = np.full((40, 40, 3), 0.25, np.float32), np.full((60, 60, 3), 0.75, np.float32)
    means = []
    for _ in range(60):  # affine only, scales drawn in [0.5, 1.5]: the image of base 1.0 up to 1, else 1.5
        out = official_augment([small, big], [1.0, 1.5], rng, leave_as_is=0.0, no_interp=0.0, min_scale=0.5,
                               max_scale=1.5, crop_size=16)
        means.append(out.max())  # (parts may leave the source: black, with bicubic ringing at the edge)
    peak = np.array(means)
    assert np.all((peak < 0.3) | ((peak > 0.7) & (peak < 0.85)))
    assert (peak < 0.3).sum() >= 15 and (peak > 0.7).sum() >= 15


def test_fractional_stage_pairs_and_back_projection() -> None:
    img = _image(40, 36)
    pairs = FatherSonPairs(img[0], (1.0, 1.5), crop_size=16, augment="official", seed=0)
    sons, fathers = pairs.sample(torch.Generator().manual_seed(0), np.random.default_rng(0))
    assert fathers.shape == (1, 3, 16, 16) and sons.shape == (1, 3, 16, 11)  # ceil(16 / 1.5) = 11
    assert torch.allclose(sons, imresize(fathers, scale=(1.0, 1 / 1.5)).clamp(0, 1))
    with pytest.raises(ValueError, match="official"):
        FatherSonPairs(img[0], (1.0, 1.5), crop_size=16)  # the ladder needs an integer factor
    lr = _image(16, 16)
    sr = (imresize(lr, scale=(1.5, 2.0)) + 0.05 * torch.randn(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    before = lr_consistency(sr, lr, (1.5, 2.0))
    assert lr_consistency(back_project(sr, lr, (1.5, 2.0), 5), lr, (1.5, 2.0)) < 0.5 * before


def test_imresize_per_axis_scale_and_scale_with_size() -> None:
    x = _image(10, 12)
    assert imresize(x, scale=(1.5, 2.0)).shape[-2:] == (15, 24)
    assert torch.equal(imresize(x, scale=(2, 2)), imresize(x, scale=2))
    assert torch.equal(imresize(x, scale=2, size=(20, 24)), imresize(x, scale=2))
    # a 9-pixel father's 5-pixel son goes back to 9 pixels on the x2 grid, not on a 9/5 one
    son = imresize(_image(9, 9), scale=0.5)
    on_grid, stretched = imresize(son, scale=2, size=(9, 9)), imresize(son, size=(9, 9))
    assert on_grid.shape == stretched.shape == (1, 3, 9, 9) and not torch.allclose(on_grid, stretched)
    assert torch.allclose(on_grid, imresize(son, scale=2)[..., :9, :9])


def test_official_gradual_stages_continue_one_network_on_growing_sources() -> None:
    s = ZSSRSettings(max_steps=3, augment="official", scale_factors=[[1, 1.5], [1.5, 1.5], [2, 2]],
                     back_projection_iters=[1, 1, 2], **FAST)
    assert s.progressive(2) == [(1.0, 1.5), (1.5, 1.5), 2]
    r = zssr_upscale(_image(20, 18), 2, s)
    assert r.sr.shape == (1, 3, 40, 36) and r.steps == [3, 3, 3]
    assert torch.equal(r.sr, zssr_upscale(_image(20, 18), 2, s).sr)  # seeded
    with pytest.raises(ValueError, match="augment=official"):
        ZSSRSettings.from_config({"augment": "ladder", "scale_factors": [[1.5, 1.5], [2, 2]]})
    with pytest.raises(ValueError, match="one per stage"):
        ZSSRSettings.from_config({"augment": "official", "scale_factors": [[2, 2]], "back_projection_iters": [1, 2]})
    with pytest.raises(ValueError, match="end at"):
        ZSSRSettings(augment="official", scale_factors=[[1.5, 1.5]]).progressive(2)
    with pytest.raises(ValueError, match="augment must be"):
        ZSSRSettings.from_config({"augment": "affine"})


def _write_inputs(folder: Path) -> None:
    folder.mkdir()
    rgb = (np.asarray(_image(16, 20)[0].permute(1, 2, 0)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(folder / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])).save(folder / "alpha.png")
    (folder / "broken.png").write_bytes(b"not a png")


def test_cli_keeps_modes_names_bad_files_and_announces_the_time(tmp_path: Path, capsys) -> None:
    _write_inputs(tmp_path / "in")
    status = cli([f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", "scale=2", *FAST_OVERRIDES])
    err = capsys.readouterr().err
    assert status == 1  # one input failed, the others were written
    assert "broken.png: not an image file" in err and "(skipped)" in err
    assert "for 3 steps per stage" in err and "ms/step" in err and "in all" in err  # announced before training
    modes = {p.name: Image.open(p) for p in (tmp_path / "out").iterdir()}
    assert set(modes) == {"rgb.png", "gray.png", "alpha.png"}
    assert modes["rgb.png"].mode == "RGB" and modes["gray.png"].mode == "L" and modes["alpha.png"].mode == "RGBA"
    assert all(im.size == (40, 32) for im in modes.values())


def test_cli_bad_settings_exit_2_with_one_line(tmp_path: Path, capsys) -> None:
    _write_inputs(tmp_path / "in")
    for bad, says in ((f"zssr.kernel={tmp_path / 'nope.npy'}", "kernel="), ("zssr.max_steps=0", "zssr.max_steps"),
                      ("scale=1", "scale 1"), ("zssr.bogus=1", "bogus")):
        assert cli([f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", *FAST_OVERRIDES, bad]) == 2, bad
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], (bad, lines)


def test_eval_model_zssr_trains_per_image_and_records_its_time(tmp_path: Path) -> None:
    from sr_experiments.evaluation.run import run_eval

    hr = tmp_path / "Tiny" / "HR"
    hr.mkdir(parents=True)
    for i in range(2):
        img = (np.asarray(_image(24, 24, seed=i)[0].permute(1, 2, 0)) * 255).astype(np.uint8)
        Image.fromarray(img).save(hr / f"im{i}.png")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=[
            "model=zssr", f"eval.sets=[{tmp_path / 'Tiny'}]", "eval.scales=[2]",
            *(o.replace("zssr.", "model.zssr.") for o in FAST_OVERRIDES if o != "progress=false")])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "out")
    results = run_eval(cfg)
    assert {r.model for r in results} == {"zssr", "bicubic"}
    with open(tmp_path / "out" / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    zssr = [r for r in rows if r["model"] == "zssr"]
    assert len(zssr) == 2 and all(float(r["seconds"]) > 0 for r in zssr)
    assert all(r["seconds"] == "" for r in rows if r["model"] == "bicubic")
    assert all(math.isfinite(float(r["psnr"])) for r in rows)


def test_upscale_py_runs_model_zssr_like_any_model(tmp_path: Path, capsys) -> None:
    from sr_experiments.inference.upscale import cli as upscale_cli

    _write_inputs(tmp_path / "in")
    fast = [o.replace("zssr.", "model.zssr.") for o in FAST_OVERRIDES if o != "progress=false"]
    status = upscale_cli([f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", "model=zssr", *fast, "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1 and "broken.png" in err and "tile off (it trains on each image whole)" in err  # the others written
    modes = {p.name: Image.open(p) for p in (tmp_path / "out").iterdir()}
    assert set(modes) == {"rgb.png", "gray.png", "alpha.png"} and all(im.size == (40, 32) for im in modes.values())
    assert modes["gray.png"].mode == "L" and modes["alpha.png"].mode == "RGBA"
    # its ensemble is its own: the outside one is refused in one line
    assert upscale_cli([f"input={tmp_path / 'in'}", f"output={tmp_path / 'o2'}", "model=zssr", "--ensemble"]) == 2
    assert "model.zssr.ensemble" in capsys.readouterr().err


def test_the_time_estimate_counts_steps_tests_final_passes_and_set_up() -> None:
    from sr_experiments.zssr.method import STAGE_OVERHEAD_S, StageCost, earliest_stop
    from sr_experiments.inference.zssr import estimate_seconds

    settings = ZSSRSettings()
    # Three tenfold drops from 1e-3 to below 9e-6, each more than 256 steps after the last, at a check every 60.
    assert earliest_stop(settings) == 900 and earliest_stop(ZSSRSettings(max_steps=30)) == 30
    cost = {2: StageCost(step_s=0.1, forward_s_px=1e-6)}
    out_px = 480 * 320  # a 240x160 photo at x2
    expected = 30 * 0.1 + 1 * out_px * 1e-6 + 8 * out_px * 1e-6 + STAGE_OVERHEAD_S  # steps, 1 test, x8 passes
    assert estimate_seconds((240, 160), 2, settings, cost, 30) == pytest.approx(expected)
    one_pass = ZSSRSettings(ensemble=False)
    assert estimate_seconds((240, 160), 2, one_pass, cost, 30) == pytest.approx(expected - 7 * out_px * 1e-6)
    assert estimate_seconds((240, 160), 2, settings, cost, 900) > estimate_seconds((240, 160), 2, settings, cost, 30)
