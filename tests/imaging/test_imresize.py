"""MATLAB-compatible bicubic resize: against MATLAB's own LR files, and its invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DATA_DIR, needs_data

from sr_experiments.data import mod_crop
from sr_experiments.imaging.io import list_images, load_rgb
from sr_experiments.data.pairs import to_chw
from sr_experiments.imaging.imresize import imresize, resize_weights


@needs_data
@pytest.mark.parametrize("set_name", ["Set5", "Set14"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_downscale_matches_matlab_lr_files(set_name: str, scale: int) -> None:
    same = total = 0
    for gt_path in list_images(DATA_DIR / set_name / "HR"):
        lr_path = DATA_DIR / set_name / "LR_bicubic" / f"X{scale}" / f"{gt_path.stem}x{scale}.png"
        gt, _ = load_rgb(gt_path)
        ours = imresize(to_chw(mod_crop(gt, scale)), scale=1 / scale)
        matlab = to_chw(load_rgb(lr_path)[0])
        assert ours.shape == matlab.shape, gt_path.name
        same += int((ours == matlab).sum())
        total += matlab.numel()
    # The floor is 98.5%; MATLAB's clamped borders make it exact on these files.
    assert same / total >= 0.985
    assert same / total == 1.0, f"{set_name} x{scale}: {same / total:.4%} of pixels identical"


def test_weights_are_normalised_and_local() -> None:
    w = resize_weights(10, 5, 0.5)
    assert w.shape == (5, 10)
    torch.testing.assert_close(w.sum(1), torch.ones(5, dtype=torch.float64))
    # An antialiased x1/2 kernel spans 8 input pixels (4 / scale).
    assert int((w[2] != 0).sum()) == 8


def test_cubic_kernel_known_weights() -> None:
    # Upscaling x2: output pixel 1 sits at u = 0.75 (1-based), taps at distances 1.75, 0.75, 0.25, 1.25.
    def k(x):
        x = abs(x)
        return 1.5 * x**3 - 2.5 * x**2 + 1 if x <= 1 else -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2

    expected = np.array([k(1.75), k(0.75), k(0.25), k(1.25)])
    expected /= expected.sum()
    w = resize_weights(8, 16, 2.0)
    # Taps at input pixels -1, 0 (clamped to 1) then 1, 2 -> the first two fold onto pixel 1.
    np.testing.assert_allclose(w[0, :2].numpy(), [expected[0] + expected[1] + expected[2], expected[3]], rtol=1e-12)


def test_uint8_in_uint8_out_and_output_size() -> None:
    img = torch.randint(0, 256, (2, 3, 17, 10), dtype=torch.uint8)
    down = imresize(img, scale=1 / 3)
    assert down.dtype == torch.uint8 and down.shape == (2, 3, 6, 4)  # ceil(17/3), ceil(10/3)
    up = imresize(down, scale=2)
    assert up.dtype == torch.uint8 and up.shape == (2, 3, 12, 8)


def test_constant_image_is_preserved() -> None:
    img = torch.full((3, 24, 36), 137, dtype=torch.uint8)
    assert torch.equal(imresize(img, scale=0.25), torch.full((3, 6, 9), 137, dtype=torch.uint8))
    assert torch.equal(imresize(img, scale=3), torch.full((3, 72, 108), 137, dtype=torch.uint8))


def test_uint8_path_rounds_after_each_pass() -> None:
    img = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    per_pass = imresize(img, scale=0.5).double()
    float_once = torch.floor(imresize(img.double(), scale=0.5).clamp(0, 255) + 0.5)
    assert not torch.equal(per_pass, float_once)  # rounding between passes changes pixels
    assert (per_pass - float_once).abs().max() <= 2


def test_float_path_is_differentiable() -> None:
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    imresize(x, scale=2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="needs `scale` or `size`"):
        imresize(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="must be positive"):
        imresize(torch.zeros(3, 4, 4), scale=(2, 0))
    with pytest.raises(ValueError, match="border"):
        imresize(torch.zeros(3, 4, 4), scale=2, border="wrap")
    with pytest.raises(TypeError, match="uint8 or floating"):
        imresize(torch.zeros(3, 4, 4, dtype=torch.int32), scale=2)
