"""tOF (TecoGAN's temporal consistency, evaluation/temporal.py): zero for identical videos, larger
for flickering detail than for a constant offset, equal to a reference written here from the
authors' metrics.py, and a lower-is-better column of eval.py's video tables (not of image sets)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import compose_eval
from PIL import Image

from sr_experiments.data.clips import degrade
from sr_experiments.evaluation.protocol import format_table
from sr_experiments.evaluation.run import run_eval
from sr_experiments.evaluation.temporal import flow_crop, tof, tof_pairs
from sr_experiments.evaluation.video import evaluate_video_set
from sr_experiments.models.bicubic import Bicubic


def _moving_clip(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8: a smooth random texture panning 1 pixel right and down per frame."""
    rng = np.random.default_rng(seed)
    big = rng.normal(0, 1, (height + frames, width + frames, 3)).astype(np.float32)
    big = cv2.GaussianBlur(big, (0, 0), 2.0)
    big = 128 + 60 * big / big.std()
    clip = [big[frames - t : frames - t + height, frames - t : frames - t + width] for t in range(frames)]
    return np.clip(np.round(np.stack(clip)), 0, 255).astype(np.uint8)


def _tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


def _flicker(gt: np.ndarray, seed: int = 1) -> np.ndarray:
    """Detail that comes and goes: new blurred noise on every frame."""
    rng = np.random.default_rng(seed)
    noise = np.stack([cv2.GaussianBlur(rng.normal(0, 30, gt.shape[1:]).astype(np.float32), (0, 0), 1.0) for _ in gt])
    return np.clip(np.round(gt + noise), 0, 255).astype(np.uint8)


# The reference: TecoGAN's metrics.py tOF branch, restated for in-memory RGB frames (what it gets
# from cv2.imread(...)[:, :, ::-1]); independent of sr_experiments.
def _teco_crop(img: np.ndarray) -> np.ndarray:
    h0, w0 = img.shape[:2]
    h, w = (h0 // 32) * 32, (w0 // 32) * 32
    while h > h0 - 16:
        h -= 32
    while w > w0 - 16:
        w -= 32
    y, x = (h0 - h) // 2, (w0 - w) // 2
    return img[y : y + h, x : x + w]


def _teco_tof(outputs: np.ndarray, targets: np.ndarray, cutfr: int = 2) -> float:
    found, prev_out, prev_tar = [], None, None
    for i in range(cutfr, len(targets) - cutfr):
        out_grey = cv2.cvtColor(outputs[i], cv2.COLOR_RGB2GRAY)
        tar_grey = cv2.cvtColor(targets[i], cv2.COLOR_RGB2GRAY)
        if i > cutfr:
            tar_of = cv2.calcOpticalFlowFarneback(prev_tar, tar_grey, None, 0.5, 3, 15, 3, 5, 1.2, 0)
            out_of = cv2.calcOpticalFlowFarneback(prev_out, out_grey, None, 0.5, 3, 15, 3, 5, 1.2, 0)
            diff = np.absolute(_teco_crop(tar_of) - _teco_crop(out_of))
            found.append(np.sqrt(np.sum(diff * diff, axis=-1)).mean())
        prev_out, prev_tar = out_grey, tar_grey
    return float(np.float32(found).mean())  # its per-folder mean ("Avg_tOF")


def test_identical_videos_have_zero_tof():
    gt = _tensor(_moving_clip(6, 64, 64))
    assert tof(gt, gt.clone()) == 0.0


def test_flickering_detail_scores_worse_than_a_constant_offset():
    gt = _moving_clip(8, 64, 80)
    offset = np.clip(gt.astype(np.int16) + 12, 0, 255).astype(np.uint8)  # off, but moving as the GT does
    flicker, consistent = tof(_tensor(_flicker(gt)), _tensor(gt)), tof(_tensor(offset), _tensor(gt))
    assert consistent < 0.01 and flicker > 0.1 and flicker > 100 * consistent, (flicker, consistent)


def test_equals_the_tecogan_reference_on_a_generated_clip():
    gt = _moving_clip(9, 80, 104, seed=3)  # crop_8x8 keeps 64 x 64 of 80 x 104
    sr = _flicker(gt, seed=4)
    assert flow_crop(80, 104) == (slice(8, 72), slice(20, 84))
    assert len(tof_pairs(_tensor(sr), _tensor(gt))) == 4  # frames 2..6 of 9: cutfr = 2 at each end
    assert tof(_tensor(sr), _tensor(gt)) == pytest.approx(_teco_tof(sr, gt), rel=1e-5)


def test_vid4_frame_crop_and_short_clips():
    assert flow_crop(576, 720) == (slice(16, 560), slice(8, 712))  # Vid4: 544 x 704 of the flow
    gt = _tensor(_moving_clip(3, 40, 48))
    assert len(tof_pairs(gt, gt)) == 2  # 3 frames: nothing cut, two pairs (TecoGAN's cut would leave none)
    assert math.isnan(tof(gt[:1], gt[:1]))
    with pytest.raises(ValueError, match="one .T, 3, H, W. shape"):
        tof(gt, gt[:2])


def _vid4_clip(root: Path, clip: str, frames: np.ndarray) -> None:
    (root / "Vid4" / "GT" / clip).mkdir(parents=True)
    for t, f in enumerate(frames):
        Image.fromarray(f).save(root / "Vid4" / "GT" / clip / f"{t:03d}.png")


class _Flickering(torch.nn.Module):
    """Bicubic plus new noise on every frame: an image network with temporal flicker."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator().manual_seed(int(x.sum() * 1000) % 2**31)
        up = Bicubic(4)(x)
        return (up + 0.06 * torch.randn(up.shape, generator=gen)).clamp(0, 1)


def test_video_tables_have_a_tof_column_beside_bicubic(tmp_path: Path):
    gt = _moving_clip(7, 64, 64, seed=5)
    _vid4_clip(tmp_path, "calendar", gt)
    results = evaluate_video_set({"flicker": _Flickering(), "bicubic": Bicubic(4)}, "Vid4", tmp_path, 4)
    rows = {r.model: r for r in results}
    bicubic_sr = Bicubic(4)(degrade(torch.from_numpy(gt).permute(0, 3, 1, 2), 4, "BI").float() / 255)
    bicubic_u8 = (bicubic_sr.clamp(0, 1) * 255 + 0.5).floor().byte().permute(0, 2, 3, 1).numpy()
    assert rows["bicubic"].per_image[0].scores["tof"] == pytest.approx(_teco_tof(bicubic_u8, gt), rel=1e-5)
    assert rows["flicker"].scores["tof"] > rows["bicubic"].scores["tof"]
    head = format_table(results, "flicker").splitlines()[0]
    assert "flicker tOF↓" in head and "bicubic tOF↓" in head  # lower is better, said in the header


def test_eval_writes_tof_for_video_sets_only_and_can_leave_it_out(tmp_path: Path):
    _vid4_clip(tmp_path, "walk", _moving_clip(6, 48, 48, seed=6))
    (tmp_path / "Tiny" / "HR").mkdir(parents=True)
    Image.fromarray(_moving_clip(1, 48, 48, seed=7)[0]).save(tmp_path / "Tiny" / "HR" / "a.png")
    base = ["model=bicubic", "scale=4", "eval.sets=[Vid4,Tiny]", f"paths.data_dir={tmp_path}", "eval.device=cpu"]
    run_eval(compose_eval(base, tmp_path / "on"))
    rows = {r["set"]: r for r in json.loads((tmp_path / "on" / "results.json").read_text())["results"]}
    assert rows["Vid4-BI"]["tof"] >= 0 and "tof" not in rows["Tiny"]
    per_clip = json.loads((tmp_path / "on" / "per_image.json").read_text())
    assert [("tof" in r) for r in per_clip] == [True, False]  # the clip's row; the image's has none
    assert "tOF↓" in (tmp_path / "on" / "results.md").read_text().splitlines()[0]
    assert "Farneback" in json.loads((tmp_path / "on" / "results.json").read_text())["tof"]["flow"]
    run_eval(compose_eval([*base, "eval.tof=false"], tmp_path / "off"))
    out = json.loads((tmp_path / "off" / "results.json").read_text())
    assert "tof" not in out and all("tof" not in r for r in out["results"])
    with pytest.raises(ValueError, match="eval.tof=maybe: expected true or false"):
        run_eval(compose_eval([*base, "eval.tof=maybe"], tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()


def test_an_image_set_beside_a_video_set_shows_a_dash_for_tof():
    from sr_experiments.evaluation.protocol import SetResult

    rows = [SetResult("Vid4", 4, "net", 25.0, 0.8, 4, "files", scores={"tof": 0.25}),
            SetResult("Set5", 4, "net", 30.0, 0.9, 5, "files")]
    lines = format_table(rows, "net").splitlines()
    assert lines[2].rstrip().endswith("0.2500 |") and lines[3].rstrip().endswith("— |") and "nan" not in lines[3]
