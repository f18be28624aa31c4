"""prepare.py: BasicSR's sub-images with MATLAB-imresize (or given) LR in litdata chunks; resumable;
bad inputs and outputs refused in one line naming the path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
from PIL import Image
from stream_data import SMALL, make_images, prepare, stored_items

from sr_experiments.imaging.io import load_rgb
from sr_experiments.data.prepared import MANIFEST, decode_png, subimage_boxes, tile_starts
from sr_experiments.imaging.imresize import imresize
from sr_experiments.outputs import OutputError


def test_tiling_follows_basicsr_extract_subimages() -> None:
    # DIV2K's 2040x1356: every 240 px while 480 fit, then one crop flush with the border.
    assert tile_starts(1356, 480, 240) == [0, 240, 480, 720, 876]
    assert tile_starts(2040, 480, 240) == [0, 240, 480, 720, 960, 1200, 1440, 1560]
    assert tile_starts(960, 480, 240) == [0, 240, 480]  # ends exactly at the border: no extra crop
    assert tile_starts(1000, 480, 240, thresh_size=40) == [0, 240, 480]  # 40 px left: not more than thresh
    assert tile_starts(1000, 480, 240, thresh_size=39) == [0, 240, 480, 520]
    assert tile_starts(479, 480, 240) == []
    assert len(subimage_boxes(1356, 2040, 480, 240)) == 40
    assert subimage_boxes(100, 132, 48, 24)[:6] == [(0, 0), (0, 24), (0, 48), (0, 72), (0, 84), (24, 0)]


def _by_name(items: list[dict]) -> dict[str, dict]:
    return {it["name"]: it for it in items}


def test_subimages_tile_each_image_and_lr_is_imresize_of_the_hr_subimage(tmp_path: Path) -> None:
    images = make_images(tmp_path / "hr", n=3, size=(100, 134))  # 134: mod-cropped to 132 (lcm of 2 and 4 is 4)
    out = prepare(images, tmp_path / "prepared")
    items = _by_name(stored_items(out))
    manifest = json.loads((out / MANIFEST).read_text())
    boxes = subimage_boxes(100, 132, 48, 24)
    assert manifest["counts"] == {"images": 3, "subimages": 3 * len(boxes), "chunks": manifest["counts"]["chunks"],
                                  "skipped_small": 0}
    assert len(items) == 3 * len(boxes) and len(manifest["config_sha256"]) == 64
    for i in range(3):
        hr = load_rgb(images / f"img{i:02d}.png")[0][:100, :132]
        covered = np.zeros(hr.shape[:2], bool)
        for n, (y, x) in enumerate(boxes, start=1):
            item = items[f"img{i:02d}_s{n:03d}"]
            gt = decode_png(item["gt"], "test")
            assert np.array_equal(gt, hr[y:y + 48, x:x + 48])
            covered[y:y + 48, x:x + 48] = True
            for s in (2, 4):
                expected = imresize(torch.from_numpy(gt.copy()).permute(2, 0, 1), scale=1 / s).permute(1, 2, 0).numpy()
                assert np.array_equal(decode_png(item[f"lq_x{s}"], "test"), expected)
        assert covered.all()  # the sub-images tile the (mod-cropped) image


def test_lr_taken_from_lr_dirs_at_the_same_place(tmp_path: Path) -> None:
    images = make_images(tmp_path / "hr", n=2)
    lr_dir = tmp_path / "lr_x2"
    lr_dir.mkdir()
    lrs = {}
    for p in sorted(images.iterdir()):
        lr = imresize(torch.from_numpy(load_rgb(p)[0].copy()).permute(2, 0, 1), scale=0.5).permute(1, 2, 0).numpy()
        Image.fromarray(lr).save(lr_dir / f"{p.stem}x2.png")  # DIV2K's LR names
        lrs[p.stem] = lr
    out = prepare(images, tmp_path / "prepared", ["scale=[2]", f"lr_dirs=[{lr_dir}]"])
    items = _by_name(stored_items(out))
    for n, (y, x) in enumerate(subimage_boxes(100, 132, 48, 24), start=1):
        lq = decode_png(items[f"img01_s{n:03d}"]["lq_x2"], "test")
        assert np.array_equal(lq, lrs["img01"][y // 2:y // 2 + 24, x // 2:x // 2 + 24])


def test_an_interrupted_preparation_resumes_to_the_same_dataset(tmp_path: Path, monkeypatch) -> None:
    from litdata.streaming.writer import BinaryWriter

    images = make_images(tmp_path / "hr", n=5)
    reference = prepare(images, tmp_path / "reference")
    merge, calls = BinaryWriter.merge, []

    def killed_in_the_second_part(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return merge(self, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(BinaryWriter, "merge", killed_in_the_second_part)
        with pytest.raises(KeyboardInterrupt):
            prepare(images, tmp_path / "out")
    assert not (tmp_path / "out" / MANIFEST).exists()
    assert sorted(p.name for p in (tmp_path / "out" / ".parts").iterdir()) == [".tmp-00001", "00000"]
    prepare(images, tmp_path / "out")  # the same command again
    assert stored_items(tmp_path / "out") == stored_items(reference)
    assert not (tmp_path / "out" / ".parts").exists()
    done = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert done["config_sha256"] == json.loads((reference / MANIFEST).read_text())["config_sha256"]
    before = (tmp_path / "out" / "index.json").read_bytes()
    prepare(images, tmp_path / "out")  # complete: nothing to do, nothing rewritten
    assert (tmp_path / "out" / "index.json").read_bytes() == before


def _one_line(excinfo: pytest.ExceptionInfo, path: Path) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message, message
    return message


def test_bad_inputs_are_refused_in_one_line_naming_the_path(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as e:
        prepare(empty, tmp_path / "o1")
    assert "no images" in _one_line(e, empty)

    images = make_images(tmp_path / "hr", n=1)
    x4 = tmp_path / "lr_x4"
    x4.mkdir()
    Image.fromarray(np.zeros((25, 33, 3), np.uint8)).save(x4 / "img00x2.png")  # an x4 LR in the x2 folder
    with pytest.raises(ValueError) as e:
        prepare(images, tmp_path / "o2", ["scale=[2]", f"lr_dirs=[{x4}]"])
    assert "another scale" in _one_line(e, x4 / "img00x2.png")
    assert not (tmp_path / "o2").exists()  # refused before anything was written


def test_an_output_holding_another_dataset_or_other_files_is_refused(tmp_path: Path) -> None:
    images = make_images(tmp_path / "hr", n=1)
    out = prepare(images, tmp_path / "prepared")
    before = {p: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(ValueError) as e:
        prepare(images, out, ["scale=[3]", "crop_size=48"])
    assert "holds another dataset" in _one_line(e, out)
    assert {p: p.read_bytes() for p in out.iterdir() if p.is_file()} == before

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError) as e:
        prepare(images, other)
    assert "holds other files" in _one_line(e, other)
    with pytest.raises(OutputError):
        prepare(images, images)  # the input itself


@pytest.mark.slow
def test_cli_refusal_is_one_line_with_exit_2(tmp_path: Path) -> None:
    images = make_images(tmp_path / "hr", n=1)
    out = prepare(images, tmp_path / "prepared")
    proc = subprocess.run([sys.executable, str(ROOT / "prepare.py"), f"input={images}", f"output={out}", *SMALL,
                           "step=48"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and "another dataset" in lines[0], proc.stderr


def test_raw_codec_stores_the_same_pixels_and_streams_the_same_patches(tmp_path: Path) -> None:
    from sr_experiments.data.stream import SubImageStream

    images = make_images(tmp_path / "hr", n=2)
    png = prepare(images, tmp_path / "png")
    raw = prepare(images, tmp_path / "raw", ["codec=raw"])
    png_items, raw_items = _by_name(stored_items(png)), _by_name(stored_items(raw))
    assert png_items.keys() == raw_items.keys()
    for name, item in raw_items.items():
        assert isinstance(item["gt"], np.ndarray) and isinstance(png_items[name]["gt"], bytes)
        for key in ("gt", "lq_x2", "lq_x4"):
            assert np.array_equal(item[key], decode_png(png_items[name][key], "test"))
    patches = [SubImageStream(str(folder), 2, 8, seed=3)[5] for folder in (png, raw)]
    assert all(torch.equal(patches[0][k], patches[1][k]) for k in ("lq", "gt"))
    with pytest.raises(ValueError, match="codec=jpeg is not one of png, raw"):
        prepare(images, tmp_path / "bad", ["codec=jpeg"])
