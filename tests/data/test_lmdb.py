"""data=lmdb: BasicSR-style LMDBs read lazily, pixel-exact, the patch stream of the in-memory
backend, a training run from them, and bad LMDBs refused in one line naming the path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest
import torch
from conftest import FAST, ROOT, compose_train
from torch.utils.data import DataLoader

from sr_experiments.data.datasets import PairedPatchDataset
from sr_experiments.data.lmdb_datamodule import LmdbDataModule
from sr_experiments.data.lmdb_source import (
    LmdbError,
    LmdbImages,
    LmdbPairs,
    LmdbPatchDataset,
)
from sr_experiments.data.pairs import load_pair
from sr_experiments.data.sources import ImageSource, resolve_sources
from sr_experiments.imaging.imresize import imresize
from sr_experiments.runs.run import train

SCALE = 2


def make_lmdb(images: Path, lmdb_path: Path) -> None:
    """What BasicSR's make_lmdb_from_imgs writes: key = file stem, value = cv2.imencode PNG (level 1)
    of the cv2-read (BGR) image, and meta_info.txt lines ``name.png (h,w,c) 1``."""
    env = lmdb.open(str(lmdb_path), map_size=1 << 26)
    with env.begin(write=True) as txn, open(lmdb_path / "meta_info.txt", "w") as meta:
        for path in sorted(images.glob("*.png")):
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            h, w, c = (*img.shape, 1) if img.ndim == 2 else img.shape
            _, data = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            txn.put(path.stem.encode("ascii"), data.tobytes())
            meta.write(f"{path.stem}.png ({h},{w},{c}) 1\n")
    env.close()


@pytest.fixture(scope="module")
def sub_images(tmp_path_factory) -> tuple[Path, Path]:
    """HR sub-images (40x40 and one 36x44, one gray) named as BasicSR's extract_subimages.py names
    them, and their x2 LR (MATLAB-exact downscale) under the same names."""
    import skimage.data

    root = tmp_path_factory.mktemp("subs")
    hr_dir, lr_dir = root / "hr", root / "lr"
    hr_dir.mkdir(), lr_dir.mkdir()
    photo, gray = skimage.data.astronaut(), skimage.data.camera()
    crops = {f"0001_s{i + 1:03d}": photo[40 * i : 40 * i + 40, 100:140] for i in range(5)}
    crops["0001_s006"] = photo[300:336, 200:244]
    crops["0002_s001"] = gray[100:140, 100:140]
    for name, hr in crops.items():
        cv2.imwrite(str(hr_dir / f"{name}.png"), hr if hr.ndim == 2 else hr[..., ::-1])
        lr = imresize(torch.from_numpy(np.atleast_3d(hr).transpose(2, 0, 1).copy()), scale=1 / SCALE)
        lr = lr.numpy().transpose(1, 2, 0)
        cv2.imwrite(str(lr_dir / f"{name}.png"), lr[..., 0] if hr.ndim == 2 else lr[..., ::-1])
    return hr_dir, lr_dir


@pytest.fixture(scope="module")
def lmdbs(sub_images, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lmdb")
    hr, lr = root / "DIV2K_train_HR_sub.lmdb", root / "DIV2K_train_LR_bicubic_X2_sub.lmdb"
    make_lmdb(sub_images[0], hr)
    make_lmdb(sub_images[1], lr)
    return hr, lr


def _sources(sub_images) -> list[ImageSource]:
    hr_dir, lr_dir = sub_images
    return [ImageSource(p, lr_dir / p.name) for p in sorted(hr_dir.glob("*.png"))]


def test_pairs_are_pixel_exact_reads_of_the_source_pngs(lmdbs, sub_images) -> None:
    pairs = LmdbPairs([str(lmdbs[0])], [str(lmdbs[1])], SCALE)
    sources = _sources(sub_images)
    assert len(pairs) == len(sources) == 7
    for pair, source in zip(pairs, sources):
        ref = load_pair(source, SCALE)
        assert pair.name == ref.name and pair.gray == ref.gray
        assert torch.equal(pair.gt, ref.gt) and torch.equal(pair.lq, ref.lq)
    assert [p.gray for p in pairs].count(True) == 1


def test_lr_generated_when_no_lr_lmdb(lmdbs, sub_images) -> None:
    pair = LmdbPairs([str(lmdbs[0])], [], SCALE)[0]
    ref = load_pair(ImageSource(_sources(sub_images)[0].gt), SCALE)
    assert torch.equal(pair.lq, ref.lq) and torch.equal(pair.gt, ref.gt)


def test_patch_stream_equals_the_in_memory_backend(lmdbs, sub_images) -> None:
    lazy = LmdbPatchDataset(LmdbPairs([str(lmdbs[0])], [str(lmdbs[1])], SCALE), SCALE, 16, 64, seed=7)
    memory = PairedPatchDataset([load_pair(s, SCALE) for s in _sources(sub_images)], SCALE, 16, 64, seed=7)
    assert lazy.skipped == memory.skipped == []
    for n in (0, 1, 5, 63, 64, 1000):  # n past the epoch: resumed runs number patches from the start
        a, b = lazy[n], memory[n]
        assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])


def test_small_sub_images_are_skipped_by_their_meta_size(lmdbs) -> None:
    ds = LmdbPatchDataset(LmdbPairs([str(lmdbs[0])], [str(lmdbs[1])], SCALE), SCALE, 19, 8)
    assert ds.skipped == ["0001_s006"] and len(ds.pairs) == 6  # 18x22 at LR


def test_setup_decodes_nothing_and_workers_open_their_own_env(lmdbs, sub_images, monkeypatch) -> None:
    reads = []
    original = LmdbImages.read
    monkeypatch.setattr(LmdbImages, "read", lambda self, name: reads.append(name) or original(self, name))
    dm = LmdbDataModule(str(lmdbs[0]), str(sub_images[0]), lr_dir=str(lmdbs[1]), scale=SCALE, patch_size=16,
                        batch_size=4, patches_per_epoch=16, num_workers=0, seed=3)
    dm.setup("fit")
    assert reads == [] and len(dm.train_set) == 16 and len(dm.val_set) == 7
    serial = [b["gt"] for b in dm.train_dataloader()]
    assert len(reads) == 2 * 16  # one HR and one LR decode per patch
    # The parent process has an open environment now; forked workers must open their own.
    loader = DataLoader(dm.train_set, batch_size=4, sampler=list(range(16)), num_workers=2)
    ordered = [dm.train_set[n]["gt"] for n in range(16)]
    assert torch.equal(torch.cat([b["gt"] for b in loader]), torch.stack(ordered))
    assert len(serial) == 4


def test_trains_fast_dev_run_from_lmdb(lmdbs, sub_images, tmp_path: Path) -> None:
    cfg = compose_train(
        ["data=lmdb", f"data.train_dir={lmdbs[0]}", f"data.lr_dir={lmdbs[1]}", f"data.val_dir={sub_images[0]}",
         f"scale={SCALE}", *FAST, "trainer.fast_dev_run=true"],
        tmp_path,
    )
    assert cfg.data._target_.endswith("LmdbDataModule")
    assert train(cfg)["steps"] == 1


def test_data_lmdb_defaults_to_basicsr_names(tmp_path: Path) -> None:
    cfg = compose_train(["data=lmdb", "paths.data_dir=/d", "scale=4"], tmp_path)
    assert cfg.data.train_dir == "/d/DIV2K/DIV2K_train_HR_sub.lmdb"
    assert cfg.data.lr_dir == "/d/DIV2K/DIV2K_train_LR_bicubic_X4_sub.lmdb"


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _break(kind: str, hr: Path, lr: Path, tmp: Path) -> tuple[list[str], list[str], int, Path]:
    """An LMDB pair broken one way; returns (hr_dirs, lr_dirs, scale, the path the message must name)."""
    if kind == "missing":
        return [str(tmp / "nowhere.lmdb")], [str(lr)], SCALE, tmp / "nowhere.lmdb"
    if kind == "not_lmdb":
        (tmp / "plain.lmdb").mkdir()
        return [str(tmp / "plain.lmdb")], [str(lr)], SCALE, tmp / "plain.lmdb"
    bad = _copy(lr, tmp / "bad.lmdb")
    meta = bad / "meta_info.txt"
    lines = meta.read_text().splitlines()
    if kind == "no_meta":
        meta.unlink()
    elif kind == "corrupt_meta":
        meta.write_text("\n".join(lines[:2] + ["0001_s003.png 20x20"] + lines[3:]) + "\n")
    elif kind == "count":
        meta.write_text("\n".join(lines[:-1]) + "\n")
    elif kind == "keys_differ":
        meta.write_text("\n".join(lines[:-1] + [lines[-1].replace("0002_s001", "0003_s001")]) + "\n")
    elif kind == "scale":
        return [str(hr)], [str(lr)], 3, lr
    return [str(hr)], [str(bad)], SCALE, bad


@pytest.mark.parametrize("kind", ["missing", "not_lmdb", "no_meta", "corrupt_meta", "count", "keys_differ", "scale"])
def test_bad_lmdbs_are_refused_in_one_line_naming_the_path(kind: str, lmdbs, tmp_path: Path) -> None:
    hr_dirs, lr_dirs, scale, named = _break(kind, *lmdbs, tmp_path)
    with pytest.raises((LmdbError, FileNotFoundError)) as e:
        LmdbPairs(hr_dirs, lr_dirs, scale)
    message = str(e.value)
    assert "\n" not in message and str(named) in message and message.startswith("data.")


@pytest.mark.slow
def test_cli_refuses_mismatched_scale_in_one_line(lmdbs, sub_images, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "train.py", "data=lmdb", f"data.train_dir={lmdbs[0]}", f"data.lr_dir={lmdbs[1]}",
         f"data.val_dir={sub_images[0]}", "scale=4", "trainer.max_steps=1", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]  # refused before training (sr_experiments/cli.py): 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr and last.startswith("train.py: data.lr_dir: ") and f"is not x4 of '{lmdbs[0]}'" in last


def test_an_lmdb_given_to_the_folder_backend_points_at_data_lmdb(lmdbs) -> None:
    with pytest.raises(ValueError, match=r"is an LMDB, not an image folder: train from it with data=lmdb") as e:
        resolve_sources(str(lmdbs[0]), SCALE, key="data.train_dir")
    assert str(lmdbs[0]) in str(e.value) and "\n" not in str(e.value)
