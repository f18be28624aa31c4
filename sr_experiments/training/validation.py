"""Validation during training under eval.py's protocol: the output of each network is scored by
``evaluation.metrics.protocol_scores``, the function ``evaluate_set`` (eval.py) scores with, so
``val/psnr`` is the number eval.py gives for the same weights and images. Beside the model: the raw
weights where an EMA is validated (``val/psnr_raw``), the bicubic baseline (once per run) and the
perceptual metrics of ``module.val_metrics``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from sr_experiments.evaluation.metrics import SRMetrics, protocol_scores
from sr_experiments.evaluation.perceptual import PerceptualMeans, PerceptualScorer
from sr_experiments.models.bicubic import Bicubic

Predict = Callable[[nn.Module, torch.Tensor], torch.Tensor]


class Validator(nn.Module):
    """The validation metrics of one run (a module so that they follow it to its device; torchmetrics
    states are not saved, so the checkpoint's keys do not change). A video module subclasses it
    (``training/video.py``) with clip metrics."""

    def __init__(self, scale: int, with_raw: bool, perceptual: Iterable[str] = (),
                 weights_dir: str | None = None) -> None:
        super().__init__()
        self.scale = int(scale)
        self.bicubic = Bicubic(self.scale)
        self.sr_metrics, self.bicubic_metrics = self.new_metrics(), self.new_metrics()
        self.raw_metrics = self.new_metrics() if with_raw else None
        names = list(perceptual)
        self.perceptual_scorer = (PerceptualScorer(names, weights_dir, key="module.val_metrics", skip_key=None)
                                  if names else None)
        self.perceptual_metrics = PerceptualMeans(names) if names else None

    def new_metrics(self) -> Any:
        return SRMetrics(border=self.scale)

    def inputs(self, batch: dict) -> torch.Tensor:
        return batch["lq"].float()

    def measure(self, metrics: Any, out: torch.Tensor, batch: dict) -> torch.Tensor:
        """Score ``out`` against the batch's HR into ``metrics``; returns the output as scored."""
        sr, psnr, ssim = protocol_scores(out, batch["gt"], self.scale, batch["gray"])
        metrics.update(sr, batch["gt"], batch["index"], batch["gray"], scores=(psnr, ssim))
        return sr

    def step(self, batch: dict, predict: Predict, net: nn.Module, raw_net: nn.Module | None,
             with_bicubic: bool) -> torch.Tensor:
        """One validation batch: ``predict(net, lq)`` scored, and the raw weights' and bicubic's."""
        lq = self.inputs(batch)
        # In fp32 whatever the training precision: val/psnr is the number eval.py (and a paper's
        # table) gives for the same weights, not a bf16 approximation of it.
        with torch.autocast(lq.device.type, enabled=False):
            sr = self.measure(self.sr_metrics, predict(net, lq), batch)
            if self.raw_metrics is not None and raw_net is not None:
                self.measure(self.raw_metrics, predict(raw_net, lq), batch)
            if with_bicubic:
                self.measure(self.bicubic_metrics, self.bicubic(lq), batch)
        if self.perceptual_scorer is not None:
            scores = self.perceptual_scorer.to(sr.device)(sr, batch["gt"], self.scale)
            self.perceptual_metrics.update(scores, batch["index"])
        return sr

    def compute(self, sanity: bool, with_bicubic: bool) -> tuple[dict, dict | None, dict | None] | None:
        """(scores, raw scores, bicubic scores) of the epoch, each metric reset; None in the sanity
        check (whose numbers are not recorded)."""
        scores = _take(self.sr_metrics)
        if self.perceptual_metrics is not None:
            scores.update({k: float(v) for k, v in self.perceptual_metrics.compute().items()})
            self.perceptual_metrics.reset()
        raw = _take(self.raw_metrics) if self.raw_metrics is not None else None
        if sanity or not with_bicubic:
            self.bicubic_metrics.reset()
            return None if sanity else (scores, raw, None)
        return scores, raw, _take(self.bicubic_metrics, images=True)


def _take(metrics: Any, images: bool = False) -> dict[str, float]:
    m = metrics.compute()
    metrics.reset()
    out = {"psnr": float(m["psnr"]), "ssim": float(m["ssim"])}
    return {**out, "images": int(m["images"])} if images else out
