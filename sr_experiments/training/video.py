"""``VideoSRLitModule``: ``SRLitModule`` for multi-frame networks on (B, T, C, H, W) clip batches.

What differs from images, and nothing else: the loss over all output frames (or the centre GT
frame for a sliding-window network, EDVR), SpyNet frozen for the first ``fix_flow_steps`` steps
and trained at ``flow_lr_mul`` times the rate afterwards (BasicSR ``train_BasicVSR_REDS.yml``:
``fix_flow: 5000``, ``flow_lr_mul: 0.125``; mmagic ``fix_iter=5000``, ``lr_mult=0.125`` for
``spynet``), validation on whole clips under the video protocol (``evaluation/video.py``), and,
where no SpyNet file was given, SpyNet pre-trained on the training clips' true motion before the
first step (``spynet_pretrain_steps``: the synthetic clips know their motion; no download).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from sr_experiments.evaluation.video import ClipMetrics, run_clip
from sr_experiments.models.spynet import spynet_pretrain_recipe
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
        spynet_pretrain_steps: before the first step of a fresh run, fit a randomly initialised
            SpyNet (no ``model.spynet_pretrained`` file) to the training clips' true motion for this
            many steps (``models/spynet.py``: ``spynet_pretrain_recipe``); 0: never.
        spynet_pretrain_lr: Adam learning rate of that pre-training.
    """

    def __init__(self, *args: Any, fix_flow_steps: int = 0, flow_lr_mul: float = 1.0, val_channel: str = "y",
                 val_border: int = 0, val_center_only: bool = False, spynet_pretrain_steps: int = 0,
                 spynet_pretrain_lr: float = 1e-3, **kwargs: Any) -> None:
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
                                   "val_center_only": bool(val_center_only),
                                   "spynet_pretrain_steps": int(spynet_pretrain_steps),
                                   "spynet_pretrain_lr": float(spynet_pretrain_lr)})
        options = (val_channel, int(val_border), bool(val_center_only))
        self.validator = ClipValidator(int(self.hparams.scale), self.net_ema is not None, options)
        self.example_input_array = torch.zeros(1, 3, 3, 32, 32)  # (B, T, C, H, W) for the model summary
        self.flow_params = [p for n, p in self.net.named_parameters() if any(k in n for k in FLOW_KEYS)]
        self._flow_frozen: bool | None = None
        network = kwargs.get("network", args[0] if args else {})
        self._start_weights = network.get("pretrained")  # model.pretrained=FILE: the whole network's weights
        self.spynet_source = self._initial_spynet_source()
        # The weights as built: changed by on_fit_start means a fine-tuning start checkpoint set them.
        self._spynet_built = self._spynet_fingerprint()
        self._resumed = False

    def _initial_spynet_source(self) -> str | None:
        """Where the flow network's weights come from, as far as construction knows (None: no SpyNet)."""
        if getattr(self.net, "spynet", None) is None:
            return None
        if self._start_weights:
            return f"spynet: from {self._start_weights} (model.pretrained)"
        if self.hparams.network.get("spynet_pretrained"):
            return f"spynet: from {self.hparams.network['spynet_pretrained']}"
        return "spynet: random init (no model.spynet_pretrained, module.spynet_pretrain_steps=0)"

    def _spynet_fingerprint(self) -> torch.Tensor | None:
        spynet = getattr(self.net, "spynet", None)
        params = list(spynet.parameters()) if spynet is not None else []
        return params[0].detach().clone() if params else None

    def on_fit_start(self) -> None:
        """Pre-train a random SpyNet on the training clips' true motion (a fresh run only: resumed and
        fine-tuned runs start from their checkpoint's flow network) and say which was used; the line
        goes to the log, ``metrics.json`` (``spynet``) and the checkpoints (``sr_spynet``)."""
        super().on_fit_start()
        now = self._spynet_fingerprint()
        if now is None:
            return
        if self._resumed:
            pass  # the checkpoint's flow network, and the line it recorded
        elif not torch.equal(now.cpu(), self._spynet_built.cpu()):
            self.spynet_source = "spynet: from the start checkpoint's weights (fine-tuning)"
        elif self.hparams.spynet_pretrain_steps > 0 and self.spynet_source.startswith("spynet: random"):
            self.spynet_source = self._pretrain_spynet(int(self.hparams.spynet_pretrain_steps))
        log.info(self.spynet_source)

    def _pretrain_spynet(self, steps: int) -> str:
        datamodule = getattr(self.trainer, "datamodule", None)
        clips = getattr(getattr(datamodule, "train_set", None), "clips", None) or []
        if not any(getattr(c, "flow_fwd", None) is not None for c in clips):
            log.warning("module.spynet_pretrain_steps=%d: the training clips carry no true motion (only "
                        "data=video_synthetic does); SpyNet stays random: give model.spynet_pretrained=FILE", steps)
            return "spynet: random init (the training clips carry no true motion to pre-train it on)"
        patch = int(getattr(datamodule, "patch_size", 32))
        done = spynet_pretrain_recipe(self.net, clips, steps, float(self.hparams.spynet_pretrain_lr),
                                      patch=patch, seed=int(getattr(datamodule, "seed", 0)))
        return done.describe() if done is not None else str(self.spynet_source)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["sr_spynet"] = self.spynet_source

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.spynet_source = checkpoint.get("sr_spynet", self.spynet_source)
        self._resumed = "loops" in checkpoint  # a resume (a weights-only load is not one)

    def run_summary(self) -> dict[str, Any]:
        return {**super().run_summary(), "spynet": self.spynet_source}

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
