"""``VideoSRLitModule``: ``SRLitModule`` for multi-frame networks on (B, T, C, H, W) clip batches.

What differs from images, and nothing else: the loss over all output frames (or the centre GT
frame for a sliding-window network, EDVR), SpyNet frozen for the first ``fix_flow_steps`` steps
and trained at ``flow_lr_mul`` times the rate afterwards (BasicSR ``train_BasicVSR_REDS.yml``:
``fix_flow: 5000``, ``flow_lr_mul: 0.125``; mmagic ``fix_iter=5000``, ``lr_mult=0.125`` for
``spynet``), and validation on whole clips under the video protocol (``evaluation/video.py``).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from sr_experiments.evaluation.video import ClipMetrics, run_clip
from sr_experiments.training.module import SRLitModule
from sr_experiments.training.validation import Validator

log = logging.getLogger(__name__)

# Parameters of the optical-flow part, by name (BasicSR freezes 'spynet' and IconVSR's 'edvr').
FLOW_KEYS = ("spynet",)


class VideoSRLitModule(SRLitModule):
    """Trains a video network (``multi_frame = True``) on clip patches.

    Args (beyond ``SRLitModule``'s, which pass through ``**kwargs``):
        fix_flow_steps: steps with the flow network frozen at the start (0: never frozen).
        flow_lr_mul: learning-rate factor of the flow network's parameters.
        val_channel: ``rgb`` or ``y`` for validation PSNR/SSIM (REDS4: rgb; Vid4, Vimeo: y).
        val_border: pixels shaved in validation (the video papers: 0).
        val_center_only: measure only each clip's centre frame (Vimeo-90K-T).
    """

    def __init__(self, *args: Any, fix_flow_steps: int = 0, flow_lr_mul: float = 1.0, val_channel: str = "y",
                 val_border: int = 0, val_center_only: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not getattr(self.net, "multi_frame", False):
            raise ValueError(f"model={self.hparams.network['name']} is a single-image network; a clip datamodule "
                             "needs a video network (model=basicvsr, basicvsrpp, edvr_m)")
        if self.degrader is not None:
            raise ValueError("degradation=realesrgan|bsrgan makes single-image LR; for clips use data.degradation=BI|BD")
        if val_channel not in ("rgb", "y"):
            raise ValueError(f"module.val_channel must be rgb or y, got {val_channel!r}")
        self.hparams.update({"fix_flow_steps": int(fix_flow_steps), "flow_lr_mul": float(flow_lr_mul),
                                   "val_channel": val_channel, "val_border": int(val_border),
                                   "val_center_only": bool(val_center_only)})
        options = (val_channel, int(val_border), bool(val_center_only))
        self.validator = ClipValidator(int(self.hparams.scale), self.net_ema is not None, options)
        self.example_input_array = torch.zeros(1, 3, 3, 32, 32)  # (B, T, C, H, W) for the model summary
        self.flow_params = [p for n, p in self.net.named_parameters() if any(k in n for k in FLOW_KEYS)]
        self._flow_frozen: bool | None = None

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        # A sliding-window network restores the centre frame: its target is that GT frame.
        if isinstance(batch, dict) and "index" not in batch and getattr(self.net, "frames_out", "all") == "center":
            gt = batch["gt"]
            batch["gt"] = gt[:, gt.shape[1] // 2]
        return batch

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Freeze or unfreeze the flow network by the step alone (a resumed run does the same)."""
        frozen = int(self.global_step) < self.hparams.fix_flow_steps
        if self.flow_params and frozen != self._flow_frozen:
            for p in self.flow_params:
                p.requires_grad_(not frozen)
                if frozen:
                    p.grad = None
            if frozen:
                log.info("flow network frozen for the first %d steps", self.hparams.fix_flow_steps)
            elif self._flow_frozen:
                log.info("step %d: training all parameters, the flow network at lr x%g", self.global_step,
                         self.hparams.flow_lr_mul)
            self._flow_frozen = frozen

    def parameter_groups(self) -> list[dict[str, Any]]:
        flow = {id(p) for p in self.flow_params}
        rest = [p for p in self.net.parameters() if p.requires_grad and id(p) not in flow]
        groups: list[dict[str, Any]] = [{"params": rest}]
        if self.flow_params:
            lr = float(self.hparams.optimizer.get("lr", 2e-4)) * self.hparams.flow_lr_mul
            groups.append({"params": list(self.flow_params), "lr": lr})
        return groups

    def predict(self, net: nn.Module, lq: torch.Tensor) -> torch.Tensor:
        return run_clip(net, lq, bool(self.hparams.val_center_only))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)  # no outputs: the image panel shows single images only

    def metric_protocol(self) -> dict[str, Any]:
        """What validation measured, for the run's provenance: the video protocol's channel, border and
        averaging (``evaluation/video.py``), in place of the image protocol's."""
        channel, border, center_only = self.validator.options
        frames = "the centre frame of each clip" if center_only else "every frame"
        return {"channel": "RGB" if channel == "rgb" else "Y (BT.601: 16 + 65.481 R + 128.553 G + 24.966 B)",
                "border_crop": border, "averaging": f"per frame ({frames}), mean over a clip, then over clips"}


class ClipValidator(Validator):
    """Validation on whole clips under the video protocol (``evaluation/video.py``); no perceptual
    metrics. ``options``: (channel, border, center_only)."""

    def __init__(self, scale: int, with_raw: bool, options: tuple[str, int, bool]) -> None:
        self.options = options
        super().__init__(scale, with_raw)

    def new_metrics(self) -> ClipMetrics:
        return ClipMetrics(*self.options)

    def inputs(self, batch: dict) -> torch.Tensor:
        return batch["lq"][0].float()

    def measure(self, metrics: ClipMetrics, out: torch.Tensor, batch: dict) -> torch.Tensor:
        sr = out.float().clamp(0, 1)
        metrics.update(sr, batch["gt"][0].float(), batch["index"])
        return sr
