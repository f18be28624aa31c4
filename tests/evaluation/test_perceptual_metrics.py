"""Perceptual metrics (LPIPS, DISTS, NIQE): our figures equal the libraries' own calls on the same
images and the same (random, generated here) weights; nothing is ever downloaded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_eval
from PIL import Image

from sr_experiments.imaging.imresize import imresize
from sr_experiments.evaluation.metrics import quantize
from sr_experiments.evaluation.perceptual import (
    MissingWeights,
    PerceptualMeans,
    PerceptualScorer,
    perceptual_names,
    weights_files,
    write_random_weights,
)
from sr_experiments.evaluation.protocol import SetResult, format_table, methods_table
from sr_experiments.evaluation.run import run_eval
from sr_experiments.extras import MissingExtra

BORDER = 2


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory) -> Path:
    """A torch home whose hub cache holds random stand-ins of every weights file, where torchvision
    (so torchmetrics' own calls) and pyiqa look for them."""
    home = tmp_path_factory.mktemp("torch_home")
    write_random_weights(home / "hub" / "checkpoints", ["lpips", "lpips_vgg", "dists"])
    write_random_weights(home / "hub" / "pyiqa", ["niqe"])
    return home


@pytest.fixture
def weights_home(torch_home: Path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return torch_home


@pytest.fixture
def empty_home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    return tmp_path / "empty_torch_home"


def _pair(side: int = 64, noise: float = 0.08, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An 8-bit HR batch of two smooth images and an SR that differs from it (not yet rounded)."""
    g = torch.Generator().manual_seed(seed)
    hr = torch.nn.functional.interpolate(torch.rand(2, 3, side // 8, side // 8, generator=g), size=(side, side),
                                         mode="bicubic", align_corners=False).clamp(0, 1)
    hr = quantize(hr) / 255
    sr = (hr + noise * torch.randn(hr.shape, generator=g)).clamp(0, 1)
    return sr, hr


def _as_measured(sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The protocol's input, done by hand: 8-bit SR, both cropped by the border."""
    c = slice(BORDER, -BORDER)
    return (quantize(sr) / 255)[..., c, c], hr[..., c, c]


@pytest.mark.parametrize("name, net_type", [("lpips", "alex"), ("lpips_vgg", "vgg")])
def test_lpips_equals_torchmetrics_own_call(weights_home: Path, name: str, net_type: str) -> None:
    from torchmetrics.functional.image.lpips import learned_perceptual_image_patch_similarity

    sr, hr = _pair()
    ours = PerceptualScorer([name])(sr, hr, BORDER)[name]
    # torchmetrics builds its own network; torchvision loads the backbone from the hub cache.
    reference = learned_perceptual_image_patch_similarity(*_as_measured(sr, hr), net_type=net_type,
                                                          reduction="none", normalize=True)
    assert ours.shape == (2,) and ours.min() > 0
    torch.testing.assert_close(ours.float(), reference.float(), rtol=1e-5, atol=1e-7)


def test_dists_equals_torchmetrics_own_call(weights_home: Path) -> None:
    from torchmetrics.functional.image.dists import deep_image_structure_and_texture_similarity

    sr, hr = _pair()
    ours = PerceptualScorer(["dists"])(sr, hr, BORDER)["dists"]
    reference = deep_image_structure_and_texture_similarity(*_as_measured(sr, hr), reduction="none")
    torch.testing.assert_close(ours.float(), reference.detach().float(), rtol=1e-5, atol=1e-7)


def test_niqe_equals_pyiqa_own_call(weights_home: Path) -> None:
    pyiqa = pytest.importorskip("pyiqa", reason="NIQE needs the perceptual extra (pyiqa)")
    sr, hr = _pair(side=128)
    ours = PerceptualScorer(["niqe"])(sr, hr, BORDER)["niqe"]
    params = weights_home / "hub" / "pyiqa" / "niqe_modelparameters.mat"
    from pyiqa.archs.niqe_arch import default_model_urls

    assert weights_files("niqe")[0].url == default_model_urls["niqe"]  # the file pyiqa itself would fetch
    reference = pyiqa.create_metric("niqe", device="cpu", crop_border=BORDER, pretrained_model_path=str(params))
    torch.testing.assert_close(ours, reference(quantize(sr) / 255).reshape(-1).double(), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="96x96"):
        PerceptualScorer(["niqe"])(sr[..., :90, :90], hr[..., :90, :90], BORDER)


def test_identical_images_score_zero_and_distortion_raises_the_score(weights_home: Path) -> None:
    scorer = PerceptualScorer(["lpips", "dists"])
    sr_small, hr = _pair(noise=0.03)
    sr_large, _ = _pair(noise=0.25)
    same, small, large = scorer(hr, hr, BORDER), scorer(sr_small, hr, BORDER), scorer(sr_large, hr, BORDER)
    for name in ("lpips", "dists"):
        assert same[name].abs().max() < 1e-6, (name, same[name])
        assert (small[name] > 1e-4).all() and (large[name] > small[name]).all(), (name, small[name], large[name])


def test_missing_weights_is_one_line_naming_the_file_its_url_and_folder(empty_home: Path) -> None:
    with pytest.raises(MissingWeights) as info:
        PerceptualScorer(["psnr", "dists"])
    msg = str(info.value)
    (spec,) = weights_files("dists")
    assert "\n" not in msg and msg.startswith("dists needs vgg16-397923af.pth"), msg
    assert spec.url == "https://download.pytorch.org/models/vgg16-397923af.pth" and spec.url in msg
    assert str(empty_home / "hub" / "checkpoints") in msg and "eval.missing_weights=skip" in msg


def test_eval_skips_a_metric_without_weights_when_asked(tmp_path: Path, empty_home: Path, torch_home: Path,
                                                         capsys) -> None:
    data = _tiny_set(tmp_path / "data")
    only_alexnet = tmp_path / "weights"
    only_alexnet.mkdir()
    (only_alexnet / "alexnet-owt-7be5be79.pth").symlink_to(torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    overrides = [f"paths.data_dir={data}", "eval.sets=[Mine]", "eval.metrics=[psnr,ssim,lpips,dists]",
                 f"paths.weights_dir={only_alexnet}"]
    with pytest.raises(MissingWeights, match="vgg16-397923af.pth"):  # the default: stop, before any network runs
        run_eval(compose_eval(overrides, tmp_path / "o1"))
    assert not (tmp_path / "o1").exists()
    (result,) = run_eval(compose_eval([*overrides, "eval.missing_weights=skip"], tmp_path / "o2"))
    out = capsys.readouterr().out
    assert set(result.scores) == {"lpips"}
    (note,) = [line for line in out.splitlines() if "dists" in line]
    assert note.startswith("dists: skipped (eval.missing_weights=skip), vgg16-397923af.pth") and "https://" in note
    saved = json.loads((tmp_path / "o2" / "results.json").read_text())
    assert set(saved["perceptual"]["skipped"]) == {"dists"} and "dists" not in saved["results"][0]


def _tiny_set(root: Path) -> Path:
    hr_dir = root / "Mine" / "HR"
    hr_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        small = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(np.asarray(Image.fromarray(small).resize((64, 64), Image.BICUBIC))).save(hr_dir / f"{name}.png")
    return root


def test_eval_writes_the_lpips_column_equal_to_torchmetrics(tmp_path: Path, torch_home: Path, empty_home: Path,
                                                             monkeypatch) -> None:
    from torchmetrics.functional.image.lpips import learned_perceptual_image_patch_similarity

    data = _tiny_set(tmp_path / "data")
    # Weights from paths.weights_dir (the torch hub cache is empty here).
    cfg = compose_eval([f"paths.data_dir={data}", "eval.sets=[Mine]", "eval.metrics=[psnr,ssim,lpips]",
                        f"paths.weights_dir={torch_home / 'hub' / 'checkpoints'}"], tmp_path / "out")
    (result,) = run_eval(cfg)
    (plain,) = run_eval(compose_eval([f"paths.data_dir={data}", "eval.sets=[Mine]"], tmp_path / "plain"))
    assert (result.psnr, result.ssim) == (plain.psnr, plain.ssim)  # PSNR/SSIM untouched
    out = tmp_path / "out"
    assert (out / "results.csv").read_text().splitlines()[0] == "set,scale,model,psnr,ssim,lpips,images,lr_from"
    assert (out / "per_image.csv").read_text().splitlines()[0] == "set,scale,model,image,psnr,ssim,lpips"
    assert "bicubic LPIPS↓" in (out / "results.md").read_text()
    assert "PSNR / SSIM / LPIPS$\\downarrow$" in (out / "results.tex").read_text()
    saved = json.loads((out / "results.json").read_text())
    assert saved["results"][0]["lpips"] == pytest.approx(result.scores["lpips"], abs=1e-6)
    assert saved["perceptual"]["weights"]["lpips"] == [str(torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")]
    # The library's own call on the same bicubic output (LR made by imresize, as eval.py does).
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    hr = torch.from_numpy(np.array(Image.open(data / "Mine" / "HR" / "a.png"))).permute(2, 0, 1)[None]
    sr = imresize(imresize(hr, scale=0.5), scale=2).float() / 255
    reference = learned_perceptual_image_patch_similarity(*_as_measured(sr, hr.float() / 255), net_type="alex",
                                                          normalize=True)
    per_image = {i.image: i for i in result.per_image}
    assert per_image["a"].scores["lpips"] == pytest.approx(float(reference), rel=1e-5, abs=1e-7)


def test_default_eval_output_has_no_perceptual_columns(tmp_path: Path) -> None:
    data = _tiny_set(tmp_path / "data")
    run_eval(compose_eval([f"paths.data_dir={data}", "eval.sets=[Mine]"], tmp_path / "out"))
    out = tmp_path / "out"
    assert (out / "results.csv").read_text().splitlines()[0] == "set,scale,model,psnr,ssim,images,lr_from"
    assert (out / "per_image.csv").read_text().splitlines()[0] == "set,scale,model,image,psnr,ssim"
    assert "perceptual" not in json.loads((out / "results.json").read_text())
    assert "LPIPS" not in (out / "results.md").read_text() and "PSNR / SSIM \\\\" in (out / "results.tex").read_text()


def test_metric_names_and_the_missing_extra_are_one_line(monkeypatch) -> None:
    assert perceptual_names(["psnr", "ssim", "dists", "lpips", "dists"], "k") == ["dists", "lpips"]
    assert perceptual_names("niqe", "k") == ["niqe"] and perceptual_names(None, "k") == []
    with pytest.raises(ValueError, match=r"eval.metrics: unknown metric\(s\) \['fid'\]; choose from"):
        perceptual_names(["psnr", "fid"], "eval.metrics")
    monkeypatch.setitem(sys.modules, "pyiqa", None)  # the perceptual extra is not installed
    with pytest.raises(MissingExtra) as info:
        PerceptualScorer(["niqe"])
    assert str(info.value) == ("eval.metrics=[niqe] needs pyiqa, which is not installed: "
                               "pip install 'sr-experiments[perceptual]'")


def test_tables_show_perceptual_columns_lowest_in_bold() -> None:
    def row(model: str, psnr: float, lpips: float) -> SetResult:
        return SetResult("Set5", 2, model, psnr, 0.9, 5, "files", scores={"lpips": lpips, "dists": 0.1})

    results = [row("edsr", 34.0, 0.12), row("bicubic", 33.0, 0.20)]
    table = format_table(results, "edsr")
    assert "edsr LPIPS↓ | bicubic LPIPS↓ | edsr DISTS↓ | bicubic DISTS↓ |" in table
    assert "|      0.1200 |         0.2000 |" in table
    md = methods_table(results, "md")
    assert "method (PSNR / SSIM / LPIPS↓ / DISTS↓)" in md
    assert "**34.00** / **0.9000** / **0.1200** / **0.1000**" in md and "33.00 / **0.9000** / 0.2000 / **0.1000**" in md
    assert results[0].row() == {"set": "Set5", "scale": 2, "model": "edsr", "psnr": 34.0, "ssim": 0.9,
                                "lpips": 0.12, "dists": 0.1, "images": 5, "lr_from": "files"}


def test_validation_means_count_each_image_once() -> None:
    means = PerceptualMeans(["lpips"])
    means.update({"lpips": torch.tensor([0.1, 0.3])}, torch.tensor([0, 1]))
    means.update({"lpips": torch.tensor([0.3])}, torch.tensor([1]))  # a DistributedSampler's padding duplicate
    assert float(means.compute()["lpips"]) == pytest.approx(0.2)


@pytest.mark.slow
def test_validation_lpips_is_what_eval_reports(tmp_path: Path, weights_home: Path) -> None:
    from conftest import FAST, compose_train

    from sr_experiments.runs.run import train

    run = tmp_path / "run"
    train(compose_train([*FAST, "module.val_metrics=[psnr,ssim,lpips]"], run))
    reported = json.loads((run / "metrics.json").read_text())["best"]
    cfg = compose_eval([f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}", "eval.sets=[sample:val]",
                        "eval.metrics=[lpips]", "eval.baseline=false"], tmp_path / "eval")
    (result,) = run_eval(cfg)
    assert result.psnr == pytest.approx(reported["psnr"], abs=1e-4)
    assert result.scores["lpips"] == pytest.approx(reported["lpips"], rel=1e-5)
