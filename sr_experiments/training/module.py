"""``SRLitModule``: the training algorithm of an SR network (its loss, optimizer, schedule, EMA).

Its collaborators, one job each: ``spec.py`` (the ``model`` node: what builds the network, what the
checkpoint records, the runtime keys compile / channels_last / ema_decay), ``degrade.py`` (LR made
on the device), ``ema.py``, ``validation.py`` (eval.py's protocol on the validation set),
``history.py`` (validation history, training time, RNG states across resumes) and ``losses.py``.
The run around it (folders, loggers, callbacks, resume) is ``sr_experiments/runs``.

A variant subclasses it and adds only what differs, taking its own options as keywords and passing
the rest through ``**kwargs`` (so a new option of this module is declared once): ``gan.py`` (a
discriminator, manual optimisation), ``video.py`` (clip batches, flow-network schedule, clip
metrics). A diffusion module would do the same: build its denoiser and noise schedule in
``__init__``, override ``training_step`` (noise a target, predict, the loss), ``predict`` (the
sampler: steps and seed from its own options) so that validation scores samples under the same
protocol, and ``parameter_groups`` if parts train at other rates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torch import nn

from sr_experiments.evaluation.perceptual import perceptual_names
from sr_experiments.hardware import choose_channels_last
from sr_experiments.models import count_parameters, model_label
from sr_experiments.models.weights import build_model
from sr_experiments.training.degrade import BatchDegrader
from sr_experiments.training.ema import ema_state_for_load, ema_update_, make_ema, start_ema
from sr_experiments.training.history import RunRecord
from sr_experiments.training.losses import build_criterion
from sr_experiments.config_values import plain
from sr_experiments.training.spec import set_memory_format, split_network_spec
from sr_experiments.training.validation import Validator

DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 2e-4, "betas": [0.9, 0.999]}


class SRLitModule(L.LightningModule):
    """Trains ``network`` on (LR, HR) patches and validates with eval.py's protocol.

    Args:
        network: the ``model`` node ``{"name", "scale", **constructor args}``; stored in the checkpoint.
        scale: upscaling factor; also the border shaved before measuring.
        loss: ``l1``, ``mse`` or ``charbonnier`` (with ``charbonnier_eps``).
        optimizer: Hydra ``_partial_`` config of a torch optimizer (``params`` is filled in).
        scheduler: Hydra ``_partial_`` config of ``training.schedules.build_scheduler`` (``optimizer``
            and ``total_steps`` filled in), or ``None`` for a constant rate.
        val_metrics: psnr and ssim always, plus any of lpips, lpips_vgg, dists, niqe (``val/<name>``).
        weights_dir: where the perceptual metrics' weights files are looked up first.
        losses: a weighted sum of named terms (``training/losses.py``) instead of ``loss``.
        ema_decay: ``model.ema_decay`` when not given: validate an EMA of the weights (0: none).
        degradation: the ``degradation`` node: ``realesrgan`` / ``bsrgan`` make each training
            batch's LR on the device (``training/degrade.py``); validation keeps the dataset's pairs.
    """

    adversarial = False  # SRGANModule (gan.py) trains a discriminator; this module refuses a gan term

    def __init__(self, network: Mapping[str, Any], scale: int, loss: str = "l1",
                 optimizer: Mapping[str, Any] | None = None, scheduler: Mapping[str, Any] | None = None,
                 charbonnier_eps: float = 1e-3, val_metrics: Any = ("psnr", "ssim"), weights_dir: str | None = None,
                 losses: Mapping[str, Any] | None = None, ema_decay: float | None = None,
                 degradation: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        spec = split_network_spec(network, scale, ema_decay)
        self.degrader = BatchDegrader.build(plain(degradation), scale)
        # Recorded only where a pipeline runs: bicubic runs keep the hyperparameters they always had.
        extra = {"degradation": self.degrader.config} if self.degrader is not None else {}
        self.save_hyperparameters({
            **extra, "network": spec.saved, "scale": int(scale), "loss": str(loss),
            "optimizer": plain(optimizer) if optimizer is not None else dict(DEFAULT_OPTIMIZER),
            "scheduler": plain(scheduler), "charbonnier_eps": float(charbonnier_eps),
            "losses": plain(losses) or None, "ema_decay": spec.ema_decay,
        })
        self.net = build_model(spec.build)  # pretrained weights too (model.pretrained=FILE)
        self.ema_decay = spec.ema_decay
        self.net_ema = make_ema(self.net, spec.ema_decay)  # a frozen average, updated after each step
        if self.net_ema is not None:
            self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        # train.py measures the layout and calls set_channels_last; this rule serves modules built
        # on their own (a checkpoint loaded for validation, the benchmarks).
        self.set_channels_last(*choose_channels_last(self.net, spec.channels_last))
        self.compiled = spec.compile
        # Training steps go through the compiled wrapper; ``self.net`` (so the state dict keys) stays
        # the plain module: checkpoints load either way, and whole-image validation does not recompile.
        object.__setattr__(self, "_train_net", torch.compile(self.net) if spec.compile else self.net)
        self.example_input_array = torch.zeros(1, 3, 48, 48)  # the model summary's FLOPs (one LR patch)
        self.criterion = build_criterion(self.hparams.losses, loss, charbonnier_eps, self.adversarial)
        self.loss_fn = self.criterion.pixel_only()  # what the speed calibration times as "the loss"
        self.log_terms = bool(self.hparams.losses)
        self.validator = self.make_validator(perceptual_names(plain(val_metrics), "module.val_metrics"), weights_dir)
        self.record = RunRecord()  # kept across resumes in the checkpoint's ``sr_run``

    def make_validator(self, perceptual: list[str], weights_dir: str | None) -> Validator:
        return Validator(int(self.hparams.scale), self.net_ema is not None, perceptual, weights_dir)

    def set_channels_last(self, on: bool, why: str) -> None:
        """Weights (and from then on, input batches) in channels_last or contiguous layout, and why."""
        self.channels_last, self.channels_last_reason = bool(on), why
        set_memory_format([self.net, getattr(self, "net_ema", None)], self.channels_last)

    @property
    def num_params(self) -> int:
        return count_parameters(self.net)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return self.net(lq)

    def predict(self, net: nn.Module, lq: torch.Tensor) -> torch.Tensor:
        """The SR output of ``net`` for a validation LR (a sampler or a clip runner in a subclass)."""
        return net(lq)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if not isinstance(batch, dict):  # the model summary's example input
            return batch
        for key in ("lq", "gt"):  # batches travel as uint8 (4x less to copy); converted on the device
            if key in batch and batch[key].dtype == torch.uint8:
                batch[key] = batch[key].float().div_(255.0)
        trainer = self._trainer  # the property raises when no trainer is attached
        if self.degrader is not None and trainer is not None and trainer.training and "index" not in batch:
            batch = self.degrader(batch, self.global_step, self.global_rank)
        if self.channels_last and batch.get("lq") is not None and batch["lq"].dim() == 4:
            batch["lq"] = batch["lq"].contiguous(memory_format=torch.channels_last)
        return batch

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        sr = self._train_net(batch["lq"])
        terms = self.criterion(sr, batch["gt"])  # in fp32 whatever the autocast dtype of the network
        loss = sum(terms.values())
        self.check_finite(loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(sr))
        if self.log_terms:
            self.log_dict({f"train/loss_{k}": v.detach() for k, v in terms.items()}, batch_size=len(sr))
        self.log("lr", self.optimizers().param_groups[0]["lr"], batch_size=len(sr))
        return loss

    def check_finite(self, loss: torch.Tensor) -> None:
        """A diverged run stops with its step and what to change. Checked at the logging interval only:
        every step would force a device->host sync, and the interval catches divergence just as well."""
        if self.global_step % self.trainer.log_every_n_steps == 0 and not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at step {self.global_step}; lower lr (now "
                f"{self.optimizers().param_groups[0]['lr']:.3g}) or add scheduler.warmup_steps")

    def on_train_start(self) -> None:
        if self.net_ema is not None:
            start_ema(self.net_ema, self.net, self.ema_updates, self.ema_decay)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.update_ema()

    def update_ema(self) -> None:
        """One EMA step after an optimizer step of the network (SRGANModule calls it itself)."""
        if self.net_ema is not None:
            ema_update_(self.net_ema, self.net, self.ema_decay)
            self.ema_updates += 1

    def validation_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        net = self.net_ema if self.net_ema is not None else self.net  # the EMA's where one is kept
        raw = self.net if self.net_ema is not None else None
        return {"sr": self.validator.step(batch, self.predict, net, raw, self.record.bicubic is None)}

    def on_validation_epoch_end(self) -> None:
        result = self.validator.compute(self.trainer.sanity_checking, self.record.bicubic is None)
        if result is None:  # the sanity check: not recorded
            return
        scores, raw, bicubic = result
        self.record.bicubic = bicubic or self.record.bicubic
        # Metric states are already synchronised across processes: every rank logs the same value.
        self.log_dict(self.record.add(int(self.global_step), scores, raw), prog_bar=False)
        self.log("val/psnr_gain", scores["psnr"] - self.record.bicubic["psnr"], prog_bar=True)

    def parameter_groups(self) -> list[Any]:
        """What the optimizer updates: the trainable parameters (a subclass: groups with their own lr)."""
        return [p for p in self.net.parameters() if p.requires_grad]

    def configure_optimizers(self) -> dict[str, Any]:
        params = self.parameter_groups()
        if not params:
            raise ValueError(f"model={self.hparams.network['name']} has no trainable parameters; there is "
                             "nothing to train (evaluate it with eval.py instead)")
        optimizer = instantiate(self.hparams.optimizer)(params=params)
        if not self.hparams.scheduler:
            return {"optimizer": optimizer}
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer, total_steps=self.schedule_length())
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def schedule_length(self) -> int:
        """The steps an LR schedule spans: ``trainer.max_steps``, else what ``max_epochs`` amounts to."""
        total = self.trainer.max_steps
        if total is None or total < 0:
            total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError("set trainer.max_steps (or trainer.max_epochs) so the LR schedule knows its length")
        return int(total)

    def on_fit_start(self) -> None:
        self.record.start_fit()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["sr_run"] = self.record.state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "state_dict" in checkpoint:  # EMA switched on or off since the checkpoint: adapt, say so
            checkpoint["state_dict"] = ema_state_for_load(checkpoint["state_dict"], self.net_ema is not None)
        self.record.load(checkpoint.get("sr_run") or {})

    def run_summary(self) -> dict[str, Any]:
        """Best and final validation results, the bicubic baseline and the network size."""
        return {
            "model": model_label(self.hparams.network),  # the preset (shallow, deep), as tables show it
            "network": self.hparams.network["name"], "scale": self.hparams.scale, "params": self.num_params,
            "ema_decay": self.ema_decay, "losses": self.criterion.describe() if self.log_terms else None,
            "channels_last": self.channels_last, "compile": self.compiled, **self.record.summary(),
        }
