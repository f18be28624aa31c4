"""On-device degradation of training batches (``degradation=realesrgan|bsrgan``): each batch's LR made
from its HR by the pipeline of ``data/degradations/``, on the batch's device, reproducibly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from sr_experiments.data.degradations import build_degradation
from sr_experiments.data.sampler import derived_seed


class BatchDegrader:
    """The degradation pipeline of a run and its seed. The draws of micro-batch ``m`` of step ``n``
    on rank ``r`` come from a generator seeded by ``(seed, n, r, m)``: the same LR on a rerun and
    after a resume (the micro-batch count restarts with each step)."""

    def __init__(self, config: Mapping[str, Any], pipeline: Any) -> None:
        self.config = dict(config)
        self.pipeline = pipeline
        self.seed = int(self.config.get("seed") or 0)
        self._last: tuple[tuple[int, int], int] | None = None

    @classmethod
    def build(cls, config: Mapping[str, Any] | None, scale: int) -> BatchDegrader | None:
        """The degrader of the ``degradation`` node, or None where the dataset's LR is kept
        (``bicubic`` or no node)."""
        pipeline = build_degradation(config, int(scale))
        return cls(config, pipeline) if pipeline is not None else None

    def __call__(self, batch: dict, step: int, rank: int) -> dict:
        key = (int(step), int(rank))
        micro = 0 if self._last is None or self._last[0] != key else self._last[1] + 1
        self._last = (key, micro)
        g = torch.Generator().manual_seed(derived_seed(self.seed, 0x5EED, *key, micro))
        out = self.pipeline(batch["gt"].float(), g)
        # gt: the target of the pixel and perceptual terms (USM-sharpened where usm_gt);
        # gt_real: the plain HR, which a discriminator sees as real (Real-ESRGAN's gan_gt_usm=False).
        return {**batch, "lq": out.lq, "gt": out.gt, "gt_real": batch["gt"]}
