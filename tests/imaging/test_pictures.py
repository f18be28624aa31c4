"""Pictures that say what they show: the upscale compare's zoomed detail, labelled kernel panels,
PSNR and step on validation panels."""

from __future__ import annotations

import numpy as np

from sr_experiments.imaging.annotate import detail_box, font_size, label_strip


def test_detail_box_finds_where_two_images_differ_most() -> None:
    a = np.zeros((64, 96, 3), np.float32)
    b = a.copy()
    b[40:50, 70:80] = 1.0  # the only difference
    y, x, side = detail_box(a, b, 16)
    assert side == 16 and y <= 40 and y + 16 >= 50 and x <= 70 and x + 16 >= 80


def test_compare_image_adds_the_enlarged_detail_below_the_frames() -> None:
    from sr_experiments.imaging.io import Picture
    from sr_experiments.inference.upscale import compare_image

    rng = np.random.default_rng(0)
    lr = rng.random((16, 24, 3)).astype(np.float32)
    sr = np.kron(lr, np.ones((2, 2, 1), np.float32))  # nearest x2: differs from bicubic at every edge
    sr[4:12, 30:38] = 0.0  # and most here
    pic = compare_image(Picture(lr, None, False, 8, None, "RGB"), Picture(sr, None, False, 8, None, "RGB"), 2, "SR (x)")
    img = pic.rgb
    strip = label_strip(8, [], font_size(48)).shape[0]
    assert img.shape[1] == 2 * 48 + 8
    frames = img[strip : strip + 32]
    red = (frames == [1.0, 0.0, 0.0]).all(-1)
    assert red[:, :48].any() and red[:, 56:].any()  # the detail's square, outlined in both frames
    ys, xs = np.nonzero(red[:, 56:])
    assert ys.min() <= 4 and xs.min() <= 30 and xs.max() >= 37  # around the square that differs most
    zoom = 48 // 16  # the square's side is a quarter of the short side (at least 16), enlarged to the width
    detail = img[2 * strip + 32 :]
    assert detail.shape[0] == 16 * zoom
    y0, x0 = ys.min(), xs.min()
    assert np.array_equal(detail[:zoom, 56 : 56 + zoom], np.broadcast_to(sr[y0, x0], (zoom, zoom, 3)))


def test_kernel_panels_are_labelled_with_name_size_and_peak() -> None:
    import torch

    from sr_experiments.data.degradations.files import kernel_panel

    k1 = torch.zeros(1, 21, 21, dtype=torch.float64)
    k1[0, 10, 10] = 0.5
    sinc = torch.full((1, 21, 21), 1 / 441, dtype=torch.float64)
    panel = np.asarray(kernel_panel({"kernel1": k1, "sinc": sinc}, 0))
    strip = label_strip(8, [], font_size(168)).shape[0]
    assert panel.shape == (strip + 168, 2 * 168 + 8, 3)
    for x0 in (0, 176):  # dark text on white above each tile
        label = panel[:strip, x0 : x0 + 168]
        assert label.min() < 100 and (label == 255).mean() > 0.5
    assert (panel[strip + 80 : strip + 88, 80:88] == 255).all()  # kernel1's peak, scaled to white


def test_validation_panels_carry_psnr_and_step() -> None:
    import torch

    from sr_experiments.evaluation.metrics import sr_psnr_ssim
    from sr_experiments.runs.callbacks import panel_labels, panel_row

    torch.manual_seed(0)
    lr, hr = torch.rand(3, 32, 32), torch.rand(3, 64, 64)
    bic, sr = (hr + 0.1 * torch.randn(3, 64, 64)).clamp(0, 1), (hr + 0.05 * torch.randn(3, 64, 64)).clamp(0, 1)
    labels = panel_labels(bic, sr, hr, 2, step=7)
    expected = [float(sr_psnr_ssim(x[None], hr[None], 2, torch.tensor([False]))[0][0]) for x in (bic, sr)]
    assert labels == ["LR", f"bicubic {expected[0]:.2f} dB", f"SR {expected[1]:.2f} dB", "HR, step 7"]
    assert expected[1] > expected[0]
    plain, at_7, at_8 = (panel_row(lr, bic, sr, hr, 48, step=s) for s in (None, 7, 8))
    assert at_7.shape == plain.shape and not np.array_equal(at_7, plain) and not np.array_equal(at_7, at_8)


def test_gan_demo_colour_error_is_the_mean_colour_shift_per_channel() -> None:
    import torch

    from sr_experiments.tools.gan_demo import colour_error, panel

    hr = torch.rand(3, 64, 64)
    cast = hr.clone()
    cast[1] -= 10 / 255  # green down by 10 levels, as a magenta cast
    assert colour_error(cast, hr) == [0.0, -10.0, 0.0] and colour_error(hr, hr) == [0.0, 0.0, 0.0]
    img = panel(torch.rand(3, 16, 16), cast.clamp(0, 1), hr, hr, crop=64)
    assert img.shape[1] == 4 * 64 + 3 * 4
