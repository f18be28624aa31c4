"""Training throughput in patches per second, for every logger."""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class Throughput(L.Callback):
    """Logs ``train/patches_per_s``: training patches over wall time between logging steps.

    Measured from batch end to batch end, so data loading counts and validation does not (the
    clock restarts after each validation). Logged at the steps Lightning writes logs
    (``trainer.log_every_n_steps``), averaged over the patches since the previous log.
    """

    def __init__(self) -> None:
        self._patches = 0
        self._seconds = 0.0
        self._last: float | None = None

    def _restart_clock(self, *_: Any) -> None:
        self._last = time.perf_counter()

    on_train_epoch_start = _restart_clock
    on_validation_end = _restart_clock

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self._seconds += now - self._last
            self._patches += len(batch["lq"]) * trainer.world_size
        self._last = now
        every = trainer.log_every_n_steps
        if every and trainer.global_step % every == 0 and self._seconds > 0:
            pl_module.log("train/patches_per_s", self._patches / self._seconds, on_step=True, on_epoch=False,
                          batch_size=len(batch["lq"]))
            self._patches, self._seconds = 0, 0.0
