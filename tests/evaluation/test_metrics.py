"""The metric protocol on known values: Y conversion, shave, PSNR/SSIM, averaging, DDP dedup."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import DATA_DIR, needs_data
from skimage.metrics import structural_similarity

from sr_experiments.data import mod_crop
from sr_experiments.imaging.io import list_images, load_rgb
from sr_experiments.data.pairs import to_chw
from sr_experiments.imaging.imresize import imresize
from sr_experiments.evaluation.metrics import SRMetrics, protocol_luma, quantize, rgb_to_y, sr_psnr_ssim


def _img(h: int = 32, w: int = 32, seed: int = 0, lo: float = 0.1, hi: float = 0.8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(1, 3, h, w, generator=g)


def test_y_of_known_pixels() -> None:
    px = torch.tensor([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=torch.float64)
    y = rgb_to_y(px.T.reshape(1, 3, 1, 5)).flatten()
    torch.testing.assert_close(y, torch.tensor([235.0, 16.0, 16 + 65.481, 16 + 128.553, 16 + 24.966], dtype=torch.float64))


def test_quantize_rounds_half_up_and_clamps() -> None:
    x = torch.tensor([-0.2, 0.5 / 255, 1.5 / 255, 2.4999 / 255, 1.3])
    assert quantize(x).tolist() == [0.0, 1.0, 2.0, 2.0, 255.0]


def test_constant_offset_gives_its_psnr() -> None:
    gt = quantize(_img()) / 255
    d = 4
    sr = gt + d / 255  # every RGB channel +4 -> Y moves by 4 * 219/255
    psnr, _ = sr_psnr_ssim(sr, gt, border=2)
    assert psnr.item() == pytest.approx(20 * math.log10(255 / (d * 219 / 255)), abs=1e-9)


def test_constant_offset_on_a_gray_file_is_measured_on_gray_values() -> None:
    gt = quantize(_img()[:, :1].repeat(1, 3, 1, 1)) / 255
    psnr, _ = sr_psnr_ssim(gt + 4 / 255, gt, border=2, gray=torch.tensor([True]))
    assert psnr.item() == pytest.approx(20 * math.log10(255 / 4), abs=1e-9)


def test_identical_images() -> None:
    gt = _img()
    psnr, ssim = sr_psnr_ssim(gt, gt, border=3)
    assert math.isinf(psnr.item())
    assert ssim.item() == pytest.approx(1.0, abs=1e-12)


def test_border_is_shaved() -> None:
    gt = quantize(_img(40, 40)) / 255
    sr = gt.clone()
    sr[..., :3, :] = 0  # damage only the top 3 rows
    assert math.isinf(sr_psnr_ssim(sr, gt, border=3)[0].item())
    assert not math.isinf(sr_psnr_ssim(sr, gt, border=2)[0].item())


def test_output_is_clamped_and_rounded_before_measuring() -> None:
    gt = quantize(_img()) / 255
    wobble = gt + 0.4 / 255 * torch.sign(torch.randn_like(gt))  # rounds back to gt
    assert math.isinf(sr_psnr_ssim(wobble, gt, border=2)[0].item())


def test_ssim_matches_scikit_image_gaussian_ssim() -> None:
    # skimage's Gaussian SSIM (sigma 1.5, truncate 3.5 -> 11 taps) averages over the valid region.
    gt, sr = _img(48, 40, seed=1), _img(48, 40, seed=2)
    sr_l, gt_l = protocol_luma(sr, gt)
    ours = sr_psnr_ssim(sr, gt, border=0)[1].item()
    ref = structural_similarity(
        sr_l[0].numpy(), gt_l[0].numpy(), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ours == pytest.approx(ref, abs=1e-9)


def test_average_is_per_image_not_pooled() -> None:
    m = SRMetrics(border=0)
    gt = quantize(_img()) / 255
    m.update(gt + 1 / 255, gt, torch.tensor([0]))
    m.update(gt + 8 / 255, gt, torch.tensor([1]))
    per_image = [20 * math.log10(255 / (d * 219 / 255)) for d in (1, 8)]
    assert m.compute()["psnr"].item() == pytest.approx(sum(per_image) / 2, abs=1e-9)
    pooled = 10 * math.log10(255**2 / (((1 + 64) / 2) * (219 / 255) ** 2))
    assert abs(m.compute()["psnr"].item() - pooled) > 1.0


def test_duplicate_indices_count_once() -> None:
    # A DistributedSampler pads the last batch with repeats of early images.
    m = SRMetrics(border=0)
    gt = quantize(_img()) / 255
    for index, d in [(0, 1), (1, 8), (0, 1)]:
        m.update(gt + d / 255, gt, torch.tensor([index]))
    out = m.compute()
    assert int(out["images"]) == 2
    expected = np.mean([20 * math.log10(255 / (d * 219 / 255)) for d in (1, 8)])
    assert out["psnr"].item() == pytest.approx(expected, abs=1e-9)


PUBLISHED_BICUBIC = {  # PSNR / SSIM on Y, crop = scale (e.g. EDSR, RCAN papers)
    ("Set5", 2): (33.66, 0.9299), ("Set5", 3): (30.39, 0.8682), ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688), ("Set14", 3): (27.55, 0.7742), ("Set14", 4): (26.00, 0.7027),
}


@needs_data
@pytest.mark.parametrize(("set_name", "scale"), list(PUBLISHED_BICUBIC), ids=[f"{s}-x{x}" for s, x in PUBLISHED_BICUBIC])
def test_bicubic_reproduces_published_numbers(set_name: str, scale: int) -> None:
    m = SRMetrics(border=scale)
    for i, path in enumerate(list_images(DATA_DIR / set_name / "HR")):
        rgb, gray = load_rgb(path)
        gt = to_chw(mod_crop(rgb, scale))[None]
        sr = imresize(imresize(gt, scale=1 / scale), scale=scale)
        m.update(sr.float() / 255, gt.float() / 255, torch.tensor([i]), torch.tensor([gray]))
    out = m.compute()
    psnr, ssim = PUBLISHED_BICUBIC[(set_name, scale)]
    assert out["psnr"].item() == pytest.approx(psnr, abs=0.03)
    assert out["ssim"].item() == pytest.approx(ssim, abs=0.001)
