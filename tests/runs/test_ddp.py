"""trainer=ddp_cpu: two gloo processes validate each image once, in one run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
from conftest import ROOT, compose_train

from sr_experiments.data import SRDataModule
from sr_experiments.training.module import SRLitModule

TINY = ["data.patches_per_epoch=16", "data.batch_size=4", "data.patch_size=16", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "callbacks.image_panel.num_images=1"]


def test_ddp_configs_compose(tmp_path: Path) -> None:
    cpu = compose_train(["trainer=ddp_cpu"], tmp_path).trainer
    assert cpu.accelerator == "cpu" and cpu.devices == 2 and cpu.strategy.process_group_backend == "gloo"
    gpu = compose_train(["trainer=ddp"], tmp_path).trainer
    assert gpu.accelerator == "gpu" and gpu.devices == -1 and gpu.strategy == "ddp"


@pytest.mark.slow
def test_two_process_validation_equals_single_process(tmp_path: Path, data_dir: Path) -> None:
    # Set5 has 5 images: the distributed sampler pads rank 1 with a duplicate of image 0.
    run_root = tmp_path / "runs"
    args = ["trainer=ddp_cpu", "data=t91", f"paths.data_dir={data_dir}", "trainer.max_steps=4", *TINY,
            f"hydra.run.dir={run_root}/" + "${now:%H-%M-%S-%f}"]  # a per-process ${now} would split the run
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    (run_dir,) = run_root.iterdir()  # one directory for both processes
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4
    assert metrics["val_images"] == 5 and metrics["bicubic"]["images"] == 5  # the padding duplicate dropped
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert len(list((run_dir / "csv").glob("metrics*.csv"))) == 1

    # The same checkpoint, one process: the same PSNR to 1e-4 dB, and the same bicubic baseline.
    module = SRLitModule.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert module.record.history[-1] == metrics["history"][-1]
    module.record.history, module.record.bicubic = [], None
    data = SRDataModule(train_dir=[], val_dir=str(data_dir / "Set5"), scale=2)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    trainer.validate(module, datamodule=data, verbose=False)
    single = module.record.history[-1]
    print(f"DDP vs single-process val/psnr: {metrics['history'][-1]['psnr']!r} vs {single['psnr']!r}")
    assert abs(single["psnr"] - metrics["history"][-1]["psnr"]) < 1e-4
    assert abs(single["ssim"] - metrics["history"][-1]["ssim"]) < 1e-6
    assert module.record.bicubic["images"] == 5
    assert abs(module.record.bicubic["psnr"] - metrics["bicubic"]["psnr"]) < 1e-4


@pytest.mark.slow
def test_ddp_inside_a_multirun_is_refused_with_the_alternatives(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "train.py", "-m", "trainer=ddp_cpu", "lr=1e-3,2e-3", *TINY,
                           f"hydra.sweep.dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "inside a multirun" in proc.stderr and "hydra/launcher=gpus" in proc.stderr
    assert not list(tmp_path.glob("*/metrics.json"))
