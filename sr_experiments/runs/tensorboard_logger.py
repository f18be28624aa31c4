"""TensorBoard logging whose HParams tab compares runs: each run's settings beside its final results.

TensorBoard fills the HParams tab only from an hparams summary written *with* metrics; Lightning's
``TensorBoardLogger`` writes one when ``log_hyperparams`` gets ``metrics=``, so ``finish_run``
(called by ``train.finish_loggers`` after the last validation) does that with the best results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from sr_experiments.config_values import parse_overrides

# Settings shown for every run (dotted paths into the resolved config), plus every override.
HPARAM_KEYS = ("model.label", "model.name", "model.depth", "model.width", "scale", "lr", "loss", "optimizer._target_",
               "scheduler.name", "data.batch_size", "data.patch_size", "trainer.max_steps", "seed")


def _get(config: Mapping[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _scalar(value: Any) -> Any:
    """TensorBoard's hparams take bool, number or string; overrides arrive as typed text."""
    if isinstance(value, (bool, int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def run_hparams(config: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """The run's main settings and every command-line override (the keys a sweep varies)."""
    params = {k: _scalar(v) for k in HPARAM_KEYS if (v := _get(config, k)) is not None}
    params.update({k: _scalar(v) for k, v in parse_overrides(overrides).items()})
    return params


def hparam_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    best, final, bic = summary.get("best"), summary.get("final"), summary.get("bicubic")
    metrics = {}
    if best:
        metrics.update({"hp/psnr_best": best["psnr"], "hp/ssim_best": best["ssim"]})
        if bic:
            metrics["hp/psnr_gain"] = best["psnr"] - bic["psnr"]
    if final:
        metrics["hp/psnr_final"] = final["psnr"]
    return metrics


class HParamsTensorBoardLogger(TensorBoardLogger):
    """``TensorBoardLogger`` that, at the end of a run, logs its settings with ``hp/psnr_best``,
    ``hp/ssim_best``, ``hp/psnr_gain`` and ``hp/psnr_final`` for the HParams tab."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._run_config: Mapping[str, Any] | None = None

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: dict[str, Any] | None = None, step: int | None = None) -> None:
        # The first call with a whole config is train.py's resolved run config (Lightning later
        # passes the module's own hparams too).
        if self._run_config is None and isinstance(params, Mapping) and "trainer" in params:
            self._run_config = params
        super().log_hyperparams(params, metrics=metrics, step=step)

    @rank_zero_only
    def finish_run(self, trainer: L.Trainer, summary: dict[str, Any]) -> None:
        metrics = hparam_metrics(summary)
        if not metrics:  # never validated: nothing to compare
            return
        params = run_hparams(self._run_config or {}, list(summary.get("overrides") or []))
        super().log_hyperparams(params, metrics=metrics, step=int(summary.get("steps") or 0))
        self.experiment.flush()
        self.experiment.close()  # fit() closed the writer already; this closes the one reopened here
