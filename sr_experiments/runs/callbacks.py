"""Callbacks: the checkpoint of an interrupted run, the validation image panel (LR | bicubic | SR | HR),
and progress as plain log lines where the output is not a terminal."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint, ProgressBar
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from PIL import Image

from sr_experiments.imaging.annotate import with_labels
from sr_experiments.outputs import OutputError
from sr_experiments.console import ProgressLines

log = logging.getLogger(__name__)


class InterruptCheckpoint(Checkpoint):
    """Saves ``<dirpath>/<filename>.ckpt`` when training stops on an exception or a signal
    (Ctrl-C, SIGTERM, a crash), so the run resumes with ``ckpt_path=`` from the step it reached.

    Unlike Lightning's ``OnExceptionCheckpoint``, its presence does not make ``fit()`` resume
    from whatever checkpoint is in the folder: a run resumes only when given ``ckpt_path``. A
    failure before the first step saves nothing (there is nothing to resume).
    """

    FILE_EXTENSION = ".ckpt"

    def __init__(self, dirpath: str, filename: str = "interrupted") -> None:
        super().__init__()
        self.path = Path(dirpath) / f"{filename}{self.FILE_EXTENSION}"

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # A failed write (a full disk) would fail again, and bury its one line under a second
        # traceback: the last checkpoint written is the one to resume from.
        if trainer.global_step > 0 and not isinstance(exception, (OSError, OutputError)):
            trainer.save_checkpoint(self.path, weights_only=False)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Reached only when fit() ends normally: last.ckpt now holds everything this file did.
        if stage == "fit" and trainer.is_global_zero:
            self.path.unlink(missing_ok=True)


PANEL_LABELS = ("LR", "bicubic", "SR", "HR")
GAP = 4  # white pixels between tiles


def panel_row(lq: torch.Tensor, bicubic: torch.Tensor, sr: torch.Tensor, gt: torch.Tensor, crop: int,
              labels: bool = True, step: int | None = None, gray: bool = False) -> np.ndarray:
    """Centre crops (HR side ``crop``) of LR (nearest-upscaled), bicubic, SR and HR side by side, uint8 HWC,
    under a strip naming each tile (``labels``); with ``step``, bicubic and SR carry their PSNR on
    the whole image (the paper protocol, as val/psnr) and HR the training step."""
    scale = gt.shape[-1] // lq.shape[-1]
    crop = min(crop, gt.shape[-2], gt.shape[-1]) // scale * scale
    y = (gt.shape[-2] - crop) // 2 // scale * scale
    x = (gt.shape[-1] - crop) // 2 // scale * scale
    lq_up = lq.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    tiles = [t[..., y : y + crop, x : x + crop] for t in (lq_up, bicubic, sr, gt)]
    gap = torch.ones(3, crop, GAP, device=gt.device)
    row = torch.cat([tiles[0], gap, tiles[1], gap, tiles[2], gap, tiles[3]], dim=-1)
    img = (row.clamp(0, 1) * 255 + 0.5).floor().byte().permute(1, 2, 0).cpu().numpy()
    if not labels:
        return img
    names = panel_labels(bicubic, sr, gt, scale, step, gray) if step is not None else list(PANEL_LABELS)
    return with_labels(img, [(i * (crop + GAP), i * (crop + GAP) + crop, t) for i, t in enumerate(names)])


def panel_labels(bicubic: torch.Tensor, sr: torch.Tensor, gt: torch.Tensor, scale: int, step: int,
                 gray: bool = False) -> list[str]:
    """``LR``, ``bicubic 26.10 dB``, ``SR 27.31 dB``, ``HR, step 400``: PSNR of each whole (3, H, W)
    image under the paper protocol (Y, border ``scale``; as val/psnr)."""
    from sr_experiments.evaluation.metrics import sr_psnr_ssim

    flags = torch.tensor([gray], device=gt.device)
    psnr = [float(sr_psnr_ssim(out[None].float().clamp(0, 1), gt[None].float(), scale, flags)[0][0]) for out in (bicubic, sr)]
    return [PANEL_LABELS[0], f"{PANEL_LABELS[1]} {psnr[0]:.2f} dB", f"{PANEL_LABELS[2]} {psnr[1]:.2f} dB",
            f"{PANEL_LABELS[3]}, step {step}"]


class ImagePanel(L.Callback):
    """After each validation, shows LR | bicubic | SR | HR crops of the first ``num_images`` images.

    Sent to W&B (``log_image``) and TensorBoard (``add_image``) when those loggers are active, and
    always written as ``<run dir>/images/<name>.png`` (latest validation) so a CSV-only run has it too.
    """

    def __init__(self, num_images: int = 4, crop: int = 128, dirpath: str | None = None) -> None:
        self.num_images, self.crop, self.dirpath = num_images, crop, dirpath
        self._rows: list[tuple[str, np.ndarray]] = []

    def on_validation_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if trainer.sanity_checking or batch_idx >= self.num_images or not isinstance(outputs, dict):
            return
        lq, gt, sr = batch["lq"][0], batch["gt"][0], outputs["sr"][0]
        with torch.no_grad():
            bic = pl_module.validator.bicubic(lq[None])[0]
        gray = bool(batch["gray"][0]) if "gray" in batch else False
        self._rows.append((str(batch["name"][0]), panel_row(lq, bic, sr, gt, self.crop, step=int(trainer.global_step),
                                                            gray=gray)))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows, self._rows = self._rows, []
        if not rows or not trainer.is_global_zero:
            return
        out = Path(self.dirpath or trainer.default_root_dir) / "images"
        out.mkdir(parents=True, exist_ok=True)
        for name, img in rows:
            Image.fromarray(img).save(out / f"{name}.png")
        caption = "LR | bicubic | SR | HR"
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(
                    key="val/panel", images=[img for _, img in rows], caption=[f"{n}: {caption}" for n, _ in rows],
                    step=trainer.global_step,
                )
            elif isinstance(logger, TensorBoardLogger):
                for name, img in rows:
                    logger.experiment.add_image(f"val/{name}", img, trainer.global_step, dataformats="HWC")


class LineProgressBar(ProgressBar):
    """Lightning's progress as plain log lines, for a run whose output is not a terminal (a log file,
    CI): a line at every ``every`` share of the planned optimizer steps, with the loss and the time
    left, instead of TQDM's carriage-return bar; validation passes are silent."""

    def __init__(self, every: float = 0.1) -> None:
        super().__init__()
        self.every, self.enabled = every, True
        self.lines: ProgressLines | None = None

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = trainer.estimated_stepping_batches
        planned = int(total) if 0 < total < float("inf") else None
        self.lines = ProgressLines(planned, "train", "steps", self.every, 0.0, write=log.info)
        self.lines.resume_from(trainer.global_step)  # a resumed run counts on from its step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self.enabled or self.lines is None or not trainer.is_global_zero:
            return
        # Optimizer steps, not batches: gradient accumulation and GAN steps advance global_step otherwise.
        step = trainer.global_step
        if step > self.lines.done:
            loss = trainer.callback_metrics.get("train/loss")
            self.lines.update(step - self.lines.done, f"loss {float(loss):.4g}" if loss is not None else "")
