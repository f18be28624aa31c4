"""Data pipeline: decoding modes, aligned crops, augmentation, the datamodule and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sr_experiments.data import PairedPatchDataset, SRDataModule, load_pair, resolve_sources
from sr_experiments.data.datasets import augment, random_crop
from sr_experiments.data.sources import SAMPLE_SPLITS, ImageSource
from sr_experiments.imaging.imresize import imresize
from sr_experiments.imaging.io import ImageLoadError, load_rgb

KERNEL_MARGIN = 3  # LR pixels whose x1/s kernel reaches outside a crop (4 / 2 taps, +1 for rounding)


def _photo(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(base).resize((w, h), Image.BICUBIC))


def _write(path: Path, arr: np.ndarray, mode: str | None = None) -> Path:
    Image.fromarray(arr, mode=mode).save(path)
    return path


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_lr_patch_equals_downscale_of_its_hr_patch(tmp_path: Path, scale: int) -> None:
    src = _write(tmp_path / "a.png", _photo(96, 120))
    pair = load_pair(ImageSource(src), scale)
    g = torch.Generator().manual_seed(scale)
    m = KERNEL_MARGIN
    for _ in range(5):
        lq, gt, _ = random_crop(pair, 16, scale, generator=g)
        assert gt.shape[-1] == lq.shape[-1] * scale
        own = imresize(gt.contiguous(), scale=1 / scale)
        assert torch.equal(own[:, m:-m, m:-m], lq[:, m:-m, m:-m])


def _dihedral(t: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for k in range(4):
        r = torch.rot90(t, k, dims=(-2, -1))
        out += [r, r.flip(-1)]
    return out


def test_augmentation_applies_the_same_transform_to_lr_and_hr() -> None:
    # (A transpose swaps MATLAB's height-first pass order, so a transformed pair is compared
    # with the transformed original pair, not with a fresh downscale.)
    g = torch.Generator().manual_seed(0)
    lq = torch.randint(0, 256, (3, 6, 6), dtype=torch.uint8, generator=g)
    gt = torch.randint(0, 256, (3, 12, 12), dtype=torch.uint8, generator=g)
    for _ in range(30):
        lr_a, hr_a = augment(lq, gt, generator=g)
        matches = [i for i, (l, h) in enumerate(zip(_dihedral(lq), _dihedral(gt))) if torch.equal(l, lr_a) and torch.equal(h, hr_a)]
        assert matches, "LR and HR were transformed differently"


def test_augment_covers_all_eight_transforms() -> None:
    lq = torch.arange(9, dtype=torch.uint8).reshape(1, 3, 3)
    seen = {tuple(augment(lq, lq)[0].flatten().tolist()) for _ in range(400)}
    assert len(seen) == 8


def test_gray_rgba_palette_16bit_are_converted_deliberately(tmp_path: Path) -> None:
    rgb = _photo(20, 24)
    gray = rgb[..., 0]
    arr, is_gray = load_rgb(_write(tmp_path / "g.png", gray))
    assert is_gray and arr.shape == (20, 24, 3) and (arr == gray[..., None]).all()

    rgba = np.dstack([rgb, np.full((20, 24), 255, np.uint8)])
    rgba[0, 0, 3] = 0  # one fully transparent pixel -> white, not its stored colour
    arr, is_gray = load_rgb(_write(tmp_path / "a.png", rgba))
    assert not is_gray and arr.shape == (20, 24, 3)
    assert (arr[0, 0] == 255).all() and (arr[1:, 1:] == rgb[1:, 1:]).all()

    pal = Image.fromarray(rgb).quantize(16)
    pal.save(tmp_path / "p.png")
    arr, _ = load_rgb(tmp_path / "p.png")
    assert arr.shape == (20, 24, 3) and (arr == np.asarray(pal.convert("RGB"))).all()

    sixteen = (gray.astype(np.uint16) * 257)
    Image.fromarray(sixteen).save(tmp_path / "16.png")
    arr, is_gray = load_rgb(tmp_path / "16.png")
    assert is_gray and (arr[..., 0] == gray).all()


def test_unreadable_file_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageLoadError, match="broken.png"):
        load_rgb(bad)


def test_standard_layout_uses_lr_files_and_checks_their_size(tmp_path: Path) -> None:
    (tmp_path / "HR").mkdir()
    (tmp_path / "LR_bicubic" / "X2").mkdir(parents=True)
    gt = _photo(32, 40)
    _write(tmp_path / "HR" / "x.png", gt)
    lr_file = np.zeros((16, 20, 3), np.uint8)
    _write(tmp_path / "LR_bicubic" / "X2" / "xx2.png", lr_file)
    (src,) = resolve_sources(str(tmp_path), 2)
    assert src.lq is not None and torch.equal(load_pair(src, 2).lq, torch.zeros(3, 16, 20, dtype=torch.uint8))
    (gen,) = resolve_sources(str(tmp_path), 2, lr_source="generate")
    assert gen.lq is None
    _write(tmp_path / "LR_bicubic" / "X2" / "xx2.png", np.zeros((10, 20, 3), np.uint8))
    with pytest.raises(ValueError, match="xx2.png"):
        load_pair(src, 2)
    with pytest.raises(FileNotFoundError, match="x3"):
        resolve_sources(str(tmp_path), 3, lr_source="folder")


def test_missing_folder_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="paths.data_dir"):
        resolve_sources(str(tmp_path / "nope"), 2, key="data.train_dir")


def test_hr_is_mod_cropped(tmp_path: Path) -> None:
    pair = load_pair(ImageSource(_write(tmp_path / "o.png", _photo(37, 50))), 3)
    assert pair.gt.shape == (3, 36, 48) and pair.lq.shape == (3, 12, 16)


def test_patch_dataset_epoch_is_counted_in_patches(tmp_path: Path) -> None:
    pairs = [load_pair(ImageSource(_write(tmp_path / f"{i}.png", _photo(64, 64, i))), 2) for i in range(3)]
    ds = PairedPatchDataset(pairs, scale=2, patch_size=8, length=50)
    assert len(ds) == 50
    item = ds[7]
    assert item["lq"].dtype == torch.uint8 and item["lq"].shape == (3, 8, 8) and item["gt"].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="patch_size"):
        PairedPatchDataset(pairs, scale=2, patch_size=64, length=10)


def test_sample_datamodule_loads_without_download() -> None:
    dm = SRDataModule("sample:train", "sample:val", scale=2, patch_size=24, batch_size=4, patches_per_epoch=8)
    dm.setup("fit")
    assert len(dm.train_set.pairs) == len(SAMPLE_SPLITS["train"]) and len(dm.val_set) == 2
    batch = next(iter(dm.train_dataloader()))
    assert batch["lq"].shape == (4, 3, 24, 24) and batch["gt"].shape == (4, 3, 48, 48)
    val = next(iter(dm.val_dataloader()))
    assert val["gt"].shape[-1] == val["lq"].shape[-1] * 2 and val["index"].tolist() == [0]
    assert set(SAMPLE_SPLITS["train"]).isdisjoint(SAMPLE_SPLITS["val"])


def test_worker_processes_deliver_batches() -> None:
    dm = SRDataModule("sample:val", "sample:val", scale=2, patch_size=16, batch_size=2, patches_per_epoch=8, num_workers=2)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 4 and all(b["lq"].shape == (2, 3, 16, 16) for b in batches)
