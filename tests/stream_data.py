"""Small synthetic training images and prepared datasets for the data=stream and prepare.py tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image

from sr_experiments import CONF_DIR

# Sub-images of 48 px every 24: a 100x132 image gives 3 rows x 5 columns (the last flush with the border).
SMALL = ["crop_size=48", "step=24", "scale=[2,4]", "num_workers=1", "part_size=2"]


def make_images(folder: Path, n: int = 3, size: tuple[int, int] = (100, 132), seed: int = 0) -> Path:
    """``n`` photo-like RGB PNGs (smooth colour ramps plus noise), ``size`` = (height, width)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        base = np.stack([(xx * (i + 1)) % 256, (yy * 2 + i * 40) % 256, (xx + yy) % 256], axis=-1).astype(np.float64)
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img{i:02d}.png")
    return folder


def prepare_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="prepare", overrides=overrides)


def prepare(images: Path, output: Path, extra: list[str] = ()) -> Path:
    from sr_experiments.data.prepare import run_prepare

    return run_prepare(prepare_config([f"input={images}", f"output={output}", *SMALL, *extra]))


def stored_items(folder: Path) -> list[dict]:
    """Every stored item of a prepared folder, in storage order."""
    from litdata import StreamingDataset

    ds = StreamingDataset(str(folder))
    return [ds[i] for i in range(len(ds))]


def kill_9_resume_matches_uninterrupted(args: list[str], tmp_path: Path, max_steps: int) -> None:
    """``train.py args`` run whole, and run again killed (SIGKILL) after its first last.ckpt and
    resumed with ``ckpt_path=`` alone (its original overrides): the same final weights (torch.equal)."""
    import signal

    from test_runs import _assert_same_weights, _run, _start, _wait_for

    from sr_experiments.models.weights import read_weights

    reference = _run([*args, f"trainer.max_steps={max_steps}", f"hydra.run.dir={tmp_path / 'reference'}"])
    assert reference.returncode == 0, reference.stderr[-3000:]
    run_dir = tmp_path / "run"
    proc = _start([*args, f"trainer.max_steps={max_steps}", f"hydra.run.dir={run_dir}"])
    _wait_for(run_dir / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < read_weights(run_dir / "checkpoints" / "last.ckpt")["global_step"] < max_steps
    done = _run([f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"])
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_weights(tmp_path / "reference", run_dir)
