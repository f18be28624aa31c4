"""Clip data: layouts, frame checks, BI/BD degradations, aligned clip patches, synthetic clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sr_experiments.data.clips import (
    Clip, ClipError, bd_kernel_1d, degrade, load_clip, resolve_clip_sources,
)
from sr_experiments.data.clips_datamodule import ClipDataModule, ClipPatchDataset
from sr_experiments.data.clips_synthetic import synthetic_clips
from sr_experiments.imaging.imresize import imresize


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _frames(n: int, h: int = 32, w: int = 48, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def make_reds(root: Path, clips=("000", "001", "011"), n: int = 4, lr: bool = True) -> Path:
    for c in clips:
        for i, f in enumerate(_frames(n, seed=int(c))):
            _save(root / "train_sharp" / c / f"{i:08d}.png", f)
            if lr:
                lq = imresize(torch.from_numpy(f.transpose(2, 0, 1).copy()), scale=1 / 4).numpy().transpose(1, 2, 0)
                _save(root / "train_sharp_bicubic" / "X4" / c / f"{i:08d}.png", lq)
    return root


def test_bd_matches_mmagic_reference_with_opencv():
    """BD against mmagic's bd_downsample done with OpenCV: 12x12 half-integer Gaussian, filter2D
    anchored at 5 with replicated borders, rows/cols [1:-1:4], floor(x*255+0.5)."""
    cv2 = pytest.importorskip("cv2")
    img = _frames(1, 40, 52, seed=3)[0]
    size = 12
    r = np.arange(-(size - 1) / 2, (size - 1) / 2 + 1)
    xx, yy = np.meshgrid(r, r)
    k = np.exp(-0.5 * (xx**2 + yy**2) / np.float32(1.6**2))
    k /= k.sum()
    out = cv2.filter2D(img.astype(np.float64) / 255, -1, k, anchor=(5, 5), borderType=cv2.BORDER_REPLICATE)
    ref = np.floor(np.clip(out[1:-1:4, 1:-1:4], 0, 1) * 255 + 0.5).astype(np.uint8)
    ours = degrade(torch.from_numpy(img.transpose(2, 0, 1).copy()), 4, "BD").numpy().transpose(1, 2, 0)
    assert ours.shape == ref.shape == (10, 13, 3)
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1  # float32 vs float64 rounding at .5
    assert (ours == ref).mean() > 0.99
    assert bd_kernel_1d(1.6).numel() == 12


def test_bi_is_matlab_imresize_per_frame():
    clip = torch.from_numpy(np.stack(_frames(3, 24, 32)).transpose(0, 3, 1, 2).copy())
    lq = degrade(clip, 4, "BI")
    assert lq.shape == (3, 3, 6, 8)
    for t in range(3):
        assert torch.equal(lq[t], imresize(clip[t], scale=1 / 4))
    with pytest.raises(ValueError, match="BI or BD"):
        degrade(clip, 4, "XX")


def test_reds_layout_splits_and_lr_files(tmp_path):
    root = make_reds(tmp_path / "REDS")
    train = resolve_clip_sources({"layout": "reds", "root": str(root), "split": "train"}, 4)
    test = resolve_clip_sources({"layout": "reds", "root": str(root), "split": "reds4"}, 4)
    assert [s.name for s in train] == ["001"] and [s.name for s in test] == ["000", "011"]
    clip = load_clip(test[0], 4)
    assert clip.gt.shape == (4, 3, 32, 48) and clip.lq.shape == (4, 3, 8, 12)
    assert torch.equal(clip.lq, degrade(clip.gt, 4, "BI"))  # the LR files are the MATLAB BI


def test_missing_frame_and_size_mismatch_refused_naming_the_file(tmp_path):
    root = make_reds(tmp_path / "REDS", clips=("001",), n=4, lr=False)
    (root / "train_sharp" / "001" / "00000002.png").unlink()
    with pytest.raises(ClipError, match=r"001: frame\(s\) 2..2 missing before '00000003.png'"):
        resolve_clip_sources({"layout": "reds", "root": str(root), "split": "train"}, 4)
    _save(root / "train_sharp" / "001" / "00000002.png", _frames(1, 36, 48)[0])
    src = resolve_clip_sources({"layout": "reds", "root": str(root), "split": "train"}, 4)
    with pytest.raises(ClipError, match=r"00000002.png: frame is 48x36 but the clip's first frame is 48x32") as e:
        load_clip(src[0], 4)
    assert "\n" not in str(e.value)


def test_vimeo_and_vid4_layouts(tmp_path):
    vimeo = tmp_path / "vimeo90k"
    for seq in ("00001/0001", "00001/0002"):
        for i, f in enumerate(_frames(7, seed=len(seq))):
            _save(vimeo / "sequences" / seq / f"im{i + 1}.png", f)
            _save(vimeo / "BDx4" / seq / f"im{i + 1}.png", f[::4, ::4])
    (vimeo / "sep_trainlist.txt").write_text("00001/0001\n")
    (vimeo / "sep_testlist.txt").write_text("00001/0002\n")
    train = resolve_clip_sources({"layout": "vimeo90k", "root": str(vimeo), "split": "train"}, 4, degradation="BD")
    assert [s.name for s in train] == ["00001/0001"] and train[0].lq[0].parts[-4] == "BDx4"
    (vimeo / "sequences" / "00001" / "0002" / "im5.png").unlink()
    with pytest.raises(ClipError, match="im5.png: missing frame of septuplet 00001/0002"):
        resolve_clip_sources({"layout": "vimeo90k", "root": str(vimeo), "split": "test"}, 4)
    vid4 = tmp_path / "Vid4"
    for i, f in enumerate(_frames(3)):
        _save(vid4 / "GT" / "calendar" / f"{i:03d}.png", f)
    src = resolve_clip_sources({"layout": "vid4", "root": str(vid4)}, 4, degradation="BD")
    clip = load_clip(src[0], 4, "BD")  # no BDx4 folder: made here
    assert torch.equal(clip.lq, degrade(clip.gt, 4, "BD"))


def _ramp_clip(frames: int = 6, lr: int = 16, scale: int = 2) -> Clip:
    """A clip whose frame t is a fixed random image plus t, and whose HR is the LR repeated
    (so a patch is aligned iff gt[::s, ::s] == lq)."""
    base = torch.randint(0, 200, (3, lr, lr), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    lq = torch.stack([base + t for t in range(frames)])
    gt = lq.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
    return Clip("ramp", gt, lq)


def test_clip_patches_share_one_crop_and_flip_and_reverse_in_time():
    clip = _ramp_clip()
    ds = ClipPatchDataset([clip], scale=2, num_frame=3, patch_size=6, length=64, seed=5)
    reversed_seen = forward_seen = False
    for i in range(64):
        item = ds[i]
        lq, gt = item["lq"].int(), item["gt"].int()
        assert lq.shape == (3, 3, 6, 6) and gt.shape == (3, 3, 12, 12)
        assert torch.equal(gt[..., ::2, ::2], lq)  # LR and HR aligned on every frame
        d = lq - lq[0]
        steps = {int(d[t].min()) for t in range(3)} | {int(d[t].max()) for t in range(3)}
        assert all(torch.all(d[t] == d[t].flatten()[0]) for t in range(3))  # same crop/flip on each frame
        step = int(d[1].flatten()[0])
        assert step in (1, -1) and int(d[2].flatten()[0]) == 2 * step, steps
        reversed_seen |= step == -1
        forward_seen |= step == 1
    assert reversed_seen and forward_seen
    assert torch.equal(ds[7]["lq"], ds[7]["lq"])  # items are a pure function of (seed, n)
    no_rev = ClipPatchDataset([clip], 2, 3, 6, 64, augment=False, reverse=False, seed=5)
    assert all(int((no_rev[i]["lq"][1].int() - no_rev[i]["lq"][0].int()).flatten()[0]) == 1 for i in range(16))


def test_synthetic_clips_motion_is_the_true_flow():
    clips = synthetic_clips("val", 4)
    assert len(clips) == 4 and clips[0].gt.shape == (10, 3, 128, 128) and clips[0].lq.shape == (10, 3, 32, 32)
    c = clips[0]
    lq = c.lq.float()
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    f = c.flow_fwd[0]
    grid = torch.stack([(xs + f[0] + 0.5) / 32 * 2 - 1, (ys + f[1] + 0.5) / 32 * 2 - 1], -1)[None]
    warped = torch.nn.functional.grid_sample(lq[1][None], grid, mode="bicubic", align_corners=False)[0]
    inner = (slice(None), slice(4, -4), slice(4, -4))
    assert (warped - lq[0])[inner].abs().mean() < 0.5 * (lq[1] - lq[0])[inner].abs().mean()
    assert torch.equal(synthetic_clips("val", 4)[1].gt, clips[1].gt)  # the same on every call


def test_datamodule_synthetic_batches():
    dm = ClipDataModule({"layout": "synthetic", "split": "val"}, {"layout": "synthetic", "split": "val"},
                        scale=4, num_frame=3, patch_size=16, batch_size=2, patches_per_epoch=4, num_workers=0, seed=1)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["lq"].shape == (2, 3, 3, 16, 16) and batch["gt"].shape == (2, 3, 3, 64, 64)
    val = next(iter(dm.val_dataloader()))
    assert val["lq"].shape == (1, 10, 3, 32, 32)
    with pytest.raises(ValueError, match="num_frame"):
        ClipDataModule({}, {}, num_frame=1)
