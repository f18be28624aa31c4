"""eval.py: published bicubic numbers, set discovery, checkpoint round trip, tiling, self-ensemble."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, ROOT, compose_eval, compose_train
from PIL import Image

from sr_experiments.evaluation.protocol import locate_set
from sr_experiments.models.weights import find_latest_checkpoint, load_network
from sr_experiments.imaging.tiling import _tile_plan, self_ensemble, tiled_forward, upscale
from sr_experiments.evaluation.metrics import sr_psnr_ssim
from sr_experiments.models import build_network
from sr_experiments.evaluation.run import run_eval
from sr_experiments.runs.run import train

PUBLISHED_BICUBIC = {
    ("Set5", 2): (33.66, 0.9299), ("Set5", 3): (30.39, 0.8682), ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688), ("Set14", 3): (27.55, 0.7742), ("Set14", 4): (26.00, 0.7027),
}


@pytest.mark.slow
def test_bicubic_cli_reproduces_published_numbers_with_framework_lr(tmp_path: Path, data_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "eval.py", "model=bicubic", f"paths.data_dir={data_dir}", "eval.sets=[Set5,Set14]",
         "eval.scales=[2,3,4]", "eval.lr_source=generate", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((tmp_path / "results.json").read_text())
    rows = saved["results"]
    assert saved["provenance"]["protocol"]["border_crop"] == {"x2": 2, "x3": 3, "x4": 4}
    assert saved["models"] == [{"label": "bicubic", "checkpoint": None, "checkpoint_sha256": None, "params": 0}]
    assert {(r["set"], r["scale"]) for r in rows} == set(PUBLISHED_BICUBIC)
    for r in rows:
        psnr, ssim = PUBLISHED_BICUBIC[(r["set"], r["scale"])]
        assert r["model"] == "bicubic" and r["lr_from"] == "imresize"
        assert abs(r["psnr"] - psnr) <= 0.03 and abs(r["ssim"] - ssim) <= 0.001, r
        assert r["images"] == (5 if r["set"] == "Set5" else 14)
    for name in ("results.csv", "results.md", "per_image.json", "per_image.csv"):
        assert (tmp_path / name).is_file()
    assert len(json.loads((tmp_path / "per_image.json").read_text())) == 3 * (5 + 14)
    assert "| Set14      | x4" in proc.stdout


def test_missing_sets_are_reported_and_b100_is_bsd100(tmp_path: Path, data_dir: Path, capsys) -> None:
    cfg = compose_eval([f"paths.data_dir={data_dir}", "eval.sets=[Set5,B100,NoSuchSet]", "eval.scales=[4]"], tmp_path)
    results = run_eval(cfg)
    out = capsys.readouterr().out
    assert [(r.set, r.scale) for r in results] == [("Set5", 4)]
    (line,) = [ln for ln in out.splitlines() if "skipped" in ln]  # one line for every missing set
    assert line.startswith(f"not under {data_dir} (skipped): B100: `make data DATA={data_dir}` downloads it; ")
    assert "NoSuchSet: put it there as <set>/HR/*.png" in line
    (tmp_path / "d" / "B100" / "HR").mkdir(parents=True)
    assert locate_set("BSD100", tmp_path / "d") == ("BSD100", str(tmp_path / "d" / "B100"))


def test_manga109_is_requested_from_its_authors_and_the_downloaded_sets_match_the_downloader() -> None:
    from sr_experiments.evaluation.protocol import DOWNLOADED_SETS, ways_to_get
    from sr_experiments.tools.download import ARCHIVES, MANUAL

    assert set(DOWNLOADED_SETS) == {n for a in ARCHIVES.values() for n in a.sets if "/" not in n} and "Manga109" in MANUAL
    line = ways_to_get(["BSD100", "Urban100", "Manga109"], "data")
    assert line == ("BSD100, Urban100: `make data` downloads them; Manga109: request it from its authors at "
                    "http://www.manga109.org/en/ and put it in data/Manga109/HR")


def test_no_set_at_all_is_a_clear_error(tmp_path: Path) -> None:
    cfg = compose_eval([f"paths.data_dir={tmp_path}", "eval.sets=[Set5]"], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="paths.data_dir"):
        run_eval(cfg)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    train(compose_train(FAST, out))
    return out


def test_checkpoint_evaluates_to_the_psnr_training_reported(trained_run: Path, tmp_path: Path) -> None:
    reported = json.loads((trained_run / "metrics.json").read_text())
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    cfg = compose_eval([f"ckpt_path={ckpt}", "eval.sets=[sample:val]"], tmp_path)
    results = {r.model: r for r in run_eval(cfg)}
    assert results["shallow"].psnr == pytest.approx(reported["best"]["psnr"], abs=1e-4)
    assert results["shallow"].ssim == pytest.approx(reported["best"]["ssim"], abs=1e-6)
    assert results["bicubic"].psnr == pytest.approx(reported["bicubic"]["psnr"], abs=1e-4)
    assert "gain" in (tmp_path / "results.md").read_text()
    # Both files name the same checkpoint file, by absolute path and content hash.
    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    trained = reported["provenance"]
    assert (trained["checkpoint"], trained["checkpoint_sha256"]) == (str(ckpt.resolve()), sha)
    assert trained["params"] == reported["params"] and trained["device"] == "cpu"
    assert trained["protocol"]["border_crop"] == {"x2": 2} and trained["protocol"]["lr_source"] == "generate"
    (model, bicubic) = json.loads((tmp_path / "results.json").read_text())["models"]
    assert model == {"label": "shallow", "checkpoint": str(ckpt.resolve()), "checkpoint_sha256": sha,
                     "params": reported["params"]}
    assert bicubic["label"] == "bicubic" and bicubic["checkpoint"] is None


def test_several_checkpoints_make_a_methods_table_with_the_best_in_bold(trained_run: Path, tmp_path: Path, capsys) -> None:
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    other_dir = tmp_path / "other_run" / "checkpoints"
    other_dir.mkdir(parents=True)
    spec = {"name": "espcn", "scale": 2, "width": 8}
    torch.manual_seed(0)
    torch.save({"state_dict": {f"net.{k}": v for k, v in build_network(spec).state_dict().items()},
                "hyper_parameters": {"network": spec}}, other_dir / "best.ckpt")
    cfg = compose_eval([f"ckpt_path=[{ckpt},{other_dir / 'best.ckpt'}]", "eval.sets=[sample:val]"], tmp_path / "out")
    results = run_eval(cfg)
    assert [r.model for r in results] == ["shallow", "espcn", "bicubic"]
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [m["label"] for m in saved["models"]] == ["shallow", "espcn", "bicubic"]
    assert saved["models"][1]["checkpoint_sha256"] == hashlib.sha256((other_dir / "best.ckpt").read_bytes()).hexdigest()
    assert saved["models"][1]["params"] == sum(p.numel() for p in build_network(spec).parameters())
    md = (tmp_path / "out" / "results.md").read_text()
    lines = md.splitlines()
    assert lines[0].split("|")[1].strip() == "method" and "sample:val x2" in lines[0] and len(lines) == 5
    best = max(results, key=lambda r: r.psnr)
    (row,) = [ln for ln in lines if ln.startswith(f"| {best.model} ")]
    assert f"**{best.psnr:.2f}**" in row and md.count("**") == 4  # one best PSNR and one best SSIM
    tex = (tmp_path / "out" / "results.tex").read_text()
    assert tex.startswith("\\begin{tabular}{lc}") and "\\toprule" in tex and "\\bottomrule" in tex
    assert f"\\textbf{{{best.psnr:.2f}}}" in tex and tex.count("\\\\\n") == 5  # 2 header rows, 3 methods
    assert md.strip() in capsys.readouterr().out


def test_checkpoint_scale_is_enforced_and_latest_is_found(trained_run: Path, tmp_path: Path) -> None:
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    with pytest.raises(ValueError, match="x2"):
        run_eval(compose_eval([f"ckpt_path={ckpt}", "eval.sets=[sample:val]", "eval.scales=[3]"], tmp_path))
    assert find_latest_checkpoint(trained_run) == ckpt
    net, spec = load_network(ckpt)
    assert spec["name"] == "edsr" and not net.training


def test_trainable_model_without_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ckpt_path"):
        run_eval(compose_eval(["model=edsr", "eval.sets=[sample:val]"], tmp_path))


def test_save_images_and_gray_files(tmp_path: Path) -> None:
    hr_dir = tmp_path / "data" / "Mine" / "HR"
    hr_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (9, 9, 3), dtype=np.uint8)
    rgb = np.asarray(Image.fromarray(small).resize((48, 48), Image.BICUBIC))
    Image.fromarray(rgb).save(hr_dir / "color.png")
    Image.fromarray(rgb[..., 1]).save(hr_dir / "gray.png")
    cfg = compose_eval([f"paths.data_dir={tmp_path / 'data'}", "eval.sets=[Mine]", "eval.save_images=true"], tmp_path / "o")
    (result,) = run_eval(cfg)
    saved = tmp_path / "o" / "images" / "Mine" / "x2"
    with Image.open(saved / "gray.png") as g_img, Image.open(saved / "color.png") as c_img:
        assert g_img.mode == "L" and c_img.mode == "RGB" and g_img.size == c_img.size == (48, 48)
    per = {i.image: i for i in result.per_image}
    g = torch.from_numpy(rgb[..., 1].copy()).float()[None, None].repeat(1, 3, 1, 1) / 255
    lq = (g * 255).round().byte()
    from sr_experiments.imaging.imresize import imresize

    sr = imresize(imresize(lq, scale=0.5), scale=2).float() / 255
    direct = 10 * math.log10(255**2 / float(((sr[0, 0] - g[0, 0]) * 255)[2:-2, 2:-2].pow(2).mean()))
    assert per["gray"].psnr == pytest.approx(direct, abs=1e-6)  # gray values, not 219/255-scaled Y


def _rf_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network({"name": "edsr", "scale": 2, "depth": 2, "width": 8}).eval()


def test_tile_plan_owns_every_pixel_once_with_context() -> None:
    for length, tile, overlap in [(100, 32, 8), (33, 32, 8), (10, 32, 8), (257, 64, 17)]:
        plan = _tile_plan(length, tile, overlap)
        owned = [p for s, a, b in plan for p in range(a, b)]
        assert owned == list(range(length))
        for s, a, b in plan:
            assert s <= a and b <= s + min(tile, length)
            assert a == 0 or a - s >= overlap // 2
            assert b == length or s + tile - b >= overlap // 2


def test_tiled_equals_untiled_for_receptive_field_below_overlap() -> None:
    # depth-2 EDSR: 3x3 convs first, 4 in the body, after body, upsampler at LR -> RF 15 LR pixels.
    net = _rf_net()
    lq = torch.rand(1, 3, 70, 53, generator=torch.Generator().manual_seed(0))
    gt = torch.rand(1, 3, 140, 106, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        full = net(lq)
        tiled = tiled_forward(net, lq, 2, tile=24, overlap=16, tile_batch=3)
    assert (full - tiled).abs().max() < 1e-5
    p_full = sr_psnr_ssim(full.clamp(0, 1), gt, 2)[0].item()
    p_tiled = sr_psnr_ssim(tiled.clamp(0, 1), gt, 2)[0].item()
    assert abs(p_full - p_tiled) < 0.01
    # Too little overlap: tiles see different context, outputs differ (the bound is real).
    with torch.inference_mode():
        poor = tiled_forward(net, lq, 2, tile=24, overlap=2)
    assert (full - poor).abs().max() > 1e-4


def test_self_ensemble_is_the_mean_of_the_eight_undone_transforms() -> None:
    net = _rf_net(1)
    lq = torch.rand(1, 3, 12, 17)
    with torch.inference_mode():
        ours = self_ensemble(net, lq)
        outs = []
        x = lq.numpy()
        for k in range(4):
            for flip in (False, True):
                t = np.rot90(x, k, axes=(2, 3))
                t = t[..., ::-1] if flip else t
                y = net(torch.from_numpy(np.ascontiguousarray(t))).numpy()
                y = y[..., ::-1] if flip else y
                outs.append(np.rot90(y, -k, axes=(2, 3)))
        expected = np.mean(outs, axis=0)
    assert ours.shape == (1, 3, 24, 34)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-6)
    assert not torch.allclose(ours, net(lq).detach(), atol=1e-4)  # it does change the output


def test_ensemble_and_tiling_combine() -> None:
    net = _rf_net(2)
    lq = torch.rand(1, 3, 40, 40)
    plain = upscale(net, lq, 2, ensemble=True)
    tiled = upscale(net, lq, 2, tile=24, overlap=16, ensemble=True)
    assert (plain - tiled).abs().max() < 1e-5


def test_tiled_transformer_inference_pads_windows_and_stitches() -> None:
    # SwinIR attends within windows (no fixed receptive field): tiling is approximate, but it must
    # handle tiles that are not multiples of the window and give a full-size, finite image.
    torch.manual_seed(0)
    net = build_network({"name": "swinir_light", "scale": 2, "embed_dim": 12, "depths": [2], "num_heads": [2]}).eval()
    lq = torch.rand(1, 3, 45, 37)
    full = upscale(net, lq, 2)
    tiled = upscale(net, lq, 2, tile=20, overlap=10, tile_batch=4)
    assert tiled.shape == full.shape == (1, 3, 90, 74) and torch.isfinite(tiled).all()
    assert (tiled - full).abs().mean() < 0.05


def _tiny_set(root: Path, name: str, lr_side: int | None = None) -> None:
    """Two 16x16 HR images; with ``lr_side``, LR_bicubic/X2 files of that (wrong unless 8) side."""
    rng = np.random.default_rng(len(name))
    (root / name / "HR").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / name / "HR" / f"im{i}.png")
        if lr_side:
            (root / name / "LR_bicubic" / "X2").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (lr_side, lr_side)).save(root / name / "LR_bicubic" / "X2" / f"im{i}x2.png")


def test_a_failing_set_keeps_the_others_results_and_names_eval_keys(tmp_path: Path, capsys) -> None:
    for name, lr_side in (("Good", None), ("Bad", 5), ("Good2", 8)):
        _tiny_set(tmp_path / "data", name, lr_side)
    cfg = compose_eval([f"paths.data_dir={tmp_path / 'data'}", "eval.sets=[Good,Bad,Good2]", "eval.scales=[2]"],
                       tmp_path / "out")
    with pytest.raises(RuntimeError) as info:
        run_eval(cfg)
    msg = str(info.value)
    assert "Bad x2" in msg and "eval.lr_source=generate" in msg and "data.lr_source" not in msg, msg
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert {(r["set"], r["model"]) for r in rows} == {("Good", "bicubic"), ("Good2", "bicubic")}
    assert len((tmp_path / "out" / "per_image.csv").read_text().splitlines()) == 1 + 4
    assert "Bad" in capsys.readouterr().out  # reported beside the table, not only in the exception
