"""The video protocol on small generated sets in the real layouts: bicubic through eval.py equals a
direct computation (REDS4 RGB all frames, Vid4 Y all frames, Vimeo-90K-T Y centre frame)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict
from PIL import Image

from sr_experiments import CONF_DIR
from sr_experiments.data.clips import degrade
from sr_experiments.evaluation.run import run_eval
from sr_experiments.evaluation.video import frame_psnr_ssim
from sr_experiments.models.bicubic import Bicubic


def _clip(root: Path, names: list[str], seed: int, n: int = 3) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    frames = [np.roll(base, t, axis=1) for t in range(n)]
    for name, f in zip(names, frames):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(f).save(root / name)
    return torch.from_numpy(np.stack(frames).transpose(0, 3, 1, 2).copy())


def _direct(gt: torch.Tensor, channel: str, center: bool) -> float:
    sr = Bicubic(4)(degrade(gt, 4, "BI").float() / 255)
    if center:
        sr, gt = sr[1:2], gt[1:2]
    return float(frame_psnr_ssim(sr, gt.float() / 255, channel, 0)[0].mean())


def test_bicubic_through_the_video_protocol_equals_direct(tmp_path: Path):
    reds = [_clip(tmp_path / "REDS" / "train_sharp" / c, [f"{i:08d}.png" for i in range(3)], k)
            for k, c in enumerate(["000", "011"])]
    _clip(tmp_path / "REDS" / "train_sharp" / "005", [f"{i:08d}.png" for i in range(3)], 9)  # not REDS4
    vid4 = _clip(tmp_path / "Vid4" / "GT" / "calendar", [f"{i:03d}.png" for i in range(3)], 3)
    vimeo = _clip(tmp_path / "vimeo90k" / "sequences" / "00001" / "0001", [f"im{i}.png" for i in range(1, 8)], 4, n=7)
    (tmp_path / "vimeo90k" / "sep_testlist.txt").write_text("00001/0001\n")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=["model=bicubic", "scale=4", "eval.sets=[REDS4,Vid4,Vimeo90K-T]",
                                                      f"paths.data_dir={tmp_path}", "eval.device=cpu"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "out")
    results = {r.set: r for r in run_eval(cfg)}
    expect_reds = np.mean([_direct(c, "rgb", False) for c in reds])
    assert abs(results["REDS4-BI"].psnr - expect_reds) < 1e-9 and results["REDS4-BI"].images == 2
    assert [c.image for c in results["REDS4-BI"].per_image] == ["000", "011"]
    assert abs(results["Vid4-BI"].psnr - _direct(vid4, "y", False)) < 1e-9
    # Vimeo-90K-T: the centre frame (im4) of the septuplet only.
    vimeo_direct = Bicubic(4)(degrade(vimeo, 4, "BI").float() / 255)[3:4]
    expect = float(frame_psnr_ssim(vimeo_direct, vimeo[3:4].float() / 255, "y", 0)[0].mean())
    assert abs(results["Vimeo90K-T-BI"].psnr - expect) < 1e-9
    assert json.loads((tmp_path / "out" / "results.json").read_text())


def test_trained_video_checkpoint_through_the_protocol(tmp_path: Path):
    from conftest import compose_train

    from sr_experiments.runs.run import train

    cfg = compose_train(["experiment=video_cpu", "trainer.max_steps=1", "data.patches_per_epoch=2",
                         "data.batch_size=2", "module.spynet_pretrain_steps=0",
                         "data.patch_size=16", "data.val_max_frames=2", "logger=none"], tmp_path / "run")
    train(cfg)
    _clip(tmp_path / "Vid4" / "GT" / "walk", [f"{i:03d}.png" for i in range(3)], 5)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        ev = compose(config_name="eval", overrides=[f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}",
                                                     "eval.sets=[Vid4]", f"paths.data_dir={tmp_path}", "eval.device=cpu"])
    with open_dict(ev):
        ev.paths.output_dir = str(tmp_path / "out")
    rows = {r.model: r for r in run_eval(ev)}
    # The preset names the row (model=basicvsr_tiny), not the network class
    assert set(rows) == {"basicvsr_tiny", "bicubic"} and rows["basicvsr_tiny"].images == 1 and rows["basicvsr_tiny"].psnr > 5
