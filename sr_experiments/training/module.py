"""``SRLitModule``: any registered SR network, its loss, optimizer, schedule and metrics."""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate

from sr_experiments.config_values import plain
from sr_experiments.hardware import choose_channels_last
from sr_experiments.training.ema import ema_update_, ema_state_for_load
from sr_experiments.training.losses import build_losses
from sr_experiments.evaluation.metrics import SRMetrics
from sr_experiments.evaluation.perceptual import PerceptualMeans, PerceptualScorer, perceptual_names
from sr_experiments.models.weights import FROM_FILE, build_model, resolve_from_file
from sr_experiments.models import count_parameters, model_label
from sr_experiments.models.bicubic import Bicubic
from sr_experiments.data.degradations import build_degradation
from sr_experiments.data.sampler import derived_seed

log = logging.getLogger(__name__)

DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 2e-4, "betas": [0.9, 0.999]}


class SRLitModule(L.LightningModule):
    """Trains ``network`` on (LR, HR) patches and validates with the SR metric protocol.

    Args:
        network: network spec ``{"name": ..., "scale": ..., **constructor args}`` (the ``model``
            config node); stored in the checkpoint so a model can be rebuilt without its config.
        scale: upscaling factor; also the border shaved before measuring.
        loss: ``l1``, ``mse`` or ``charbonnier``.
        optimizer: Hydra ``_partial_`` config of a torch optimizer (``params`` is filled in).
        scheduler: Hydra ``_partial_`` config of ``sr_experiments.training.schedules.build_scheduler``
            (``optimizer`` and ``total_steps`` are filled in), or ``None`` for a constant rate.
        charbonnier_eps: epsilon of the Charbonnier loss.
        val_metrics: validation metrics; psnr and ssim always, plus any of lpips, lpips_vgg, dists,
            niqe (eval.py's conventions; logged as ``val/<name>``). Off by default: they cost time.
        weights_dir: where the perceptual metrics' weights files are looked up first.
        losses: a weighted sum of named loss terms (``training/losses.py``) instead of ``loss``;
            each term is logged as ``train/loss_<name>``.
        ema_decay: the network spec's ``ema_decay`` (``model.ema_decay``) when not given here: keep
            an exponential moving average of the weights (``net_ema``, see ``training/ema.py``) and
            validate it; 0 (default) keeps none.
        degradation: the ``degradation`` config node: ``realesrgan`` / ``bsrgan`` make each training
            batch's LR from its HR on the device (``data/degradations/``), with draws seeded by
            ``(degradation.seed, step)``; ``bicubic`` or ``None`` keep the dataset's LR. Validation
            always uses the dataset's (bicubic) pairs, as Real-ESRGAN does.
    """

    # SRGANModule (training/gan.py) trains with a discriminator; this module refuses an adversarial term.
    adversarial = False

    def __init__(
        self,
        network: Mapping[str, Any],
        scale: int,
        loss: str = "l1",
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        charbonnier_eps: float = 1e-3,
        val_metrics: Any = ("psnr", "ssim"),
        weights_dir: str | None = None,
        losses: Mapping[str, Any] | None = None,
        ema_decay: float | None = None,
        degradation: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        network = dict(plain(network))
        # How the network runs (not part of what a checkpoint rebuilds).
        compile_net = bool(network.pop("compile", False))
        channels_last = network.pop("channels_last", "auto")
        spec_ema = network.pop("ema_decay", None)
        ema_decay = float(ema_decay if ema_decay is not None else (spec_ema or 0.0))
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"model.ema_decay={ema_decay}: must be in [0, 1) (0: no EMA)")
        if int(network.get("scale", scale)) != int(scale):
            raise ValueError(f"model.scale={network['scale']} differs from scale={scale}; set the top-level scale only")
        network["scale"] = int(scale)
        if network.get("name") == FROM_FILE:  # the detected architecture is what the checkpoint rebuilds
            network = resolve_from_file(network)
        # The checkpoint must rebuild the network without the pretrained file it started from.
        saved_spec = {k: v for k, v in network.items() if k not in ("pretrained", "pretrained_key")}
        degradation = plain(degradation)
        self.degrader = build_degradation(degradation, int(scale))
        # Recorded only where a pipeline runs: bicubic runs keep the hyperparameters they always had.
        extra = {"degradation": dict(degradation)} if self.degrader is not None else {}
        self.degradation_seed = int((degradation or {}).get("seed") or 0)
        self._degrade_step: tuple[int, int] | None = None
        self.save_hyperparameters(
            {
                **extra,
                "network": saved_spec,
                "scale": int(scale),
                "loss": str(loss),
                "optimizer": plain(optimizer) if optimizer is not None else dict(DEFAULT_OPTIMIZER),
                "scheduler": plain(scheduler),
                "charbonnier_eps": float(charbonnier_eps),
                "losses": plain(losses) or None,
                "ema_decay": ema_decay,
            }
        )
        self.net = build_model(network)
        # train.py measures the layout and calls set_channels_last; this rule serves modules built
        # on their own (a checkpoint loaded for validation, the benchmarks).
        self.set_channels_last(*choose_channels_last(self.net, channels_last))
        self.compiled = compile_net
        # Training steps go through the compiled wrapper; ``self.net`` (and so the state dict keys,
        # ``net.*``) stays the plain module, so checkpoints load with or without compile, and
        # validation on whole images of varying sizes does not recompile per size.
        object.__setattr__(self, "_train_net", torch.compile(self.net) if compile_net else self.net)
        # Lets Lightning's model summary count FLOPs (one 48x48 LR patch) instead of printing zeros.
        self.example_input_array = torch.zeros(1, 3, 48, 48)
        gan_terms = [k for k, t in (self.hparams.losses or {}).items() if isinstance(t, Mapping) and t.get("type") == "gan"]
        if gan_terms and not self.adversarial:  # before building the terms (a VGG) for nothing
            raise ValueError(f"losses.{gan_terms[0]} is adversarial: it needs a discriminator "
                             "(discriminator=vgg128|unet_sn, or experiment=esrgan_x4)")
        self.criterion = build_losses(self.hparams.losses, loss, charbonnier_eps)
        if self.criterion.adversarial is not None and not self.adversarial:
            raise ValueError(f"losses.{self.criterion.adversarial[0]} is adversarial: it needs a discriminator")
        # The pixel terms: what the speed calibration (and the benchmarks) time as "the loss".
        self.loss_fn = self.criterion.pixel_only()
        self.log_terms = bool(self.hparams.losses)
        # EMA of the weights: a frozen copy, updated after every optimizer step (training/ema.py).
        self.ema_decay = ema_decay
        self.net_ema = copy.deepcopy(self.net).requires_grad_(False) if ema_decay > 0 else None
        if self.net_ema is not None:
            self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self.raw_metrics = SRMetrics(border=int(scale)) if self.net_ema is not None else None
        self.bicubic = Bicubic(int(scale))
        self.val_metrics = SRMetrics(border=int(scale))
        self.bicubic_metrics = SRMetrics(border=int(scale))
        # Perceptual validation metrics (module.val_metrics): weights found now, before training.
        names = perceptual_names(plain(val_metrics), "module.val_metrics")
        self.perceptual_scorer = PerceptualScorer(names, weights_dir, key="module.val_metrics", skip_key=None) if names else None
        self.perceptual_metrics = PerceptualMeans(names) if names else None
        # Run state, kept across resumes through on_save/load_checkpoint.
        self.bicubic_result: dict[str, float] | None = None
        self.history: list[dict[str, float]] = []
        self.prior_train_seconds = 0.0  # training time of the runs this one resumed
        self._fit_started: float | None = None

    def set_channels_last(self, on: bool, why: str) -> None:
        """Weights (and from then on, input batches) in channels_last or contiguous layout, and why."""
        self.channels_last, self.channels_last_reason = bool(on), why
        self.net.to(memory_format=torch.channels_last if on else torch.contiguous_format)
        if getattr(self, "net_ema", None) is not None:
            self.net_ema.to(memory_format=torch.channels_last if on else torch.contiguous_format)

    @property
    def num_params(self) -> int:
        return count_parameters(self.net)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return self.net(lq)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if not isinstance(batch, dict):  # the model summary's example input
            return batch
        # Batches travel as uint8 (4x less to copy); convert on the device.
        for key in ("lq", "gt"):
            if key in batch and batch[key].dtype == torch.uint8:
                batch[key] = batch[key].float().div_(255.0)
        trainer = self._trainer  # the property raises when no trainer is attached
        if self.degrader is not None and trainer is not None and trainer.training and "index" not in batch:
            batch = self.degrade(batch)
        if self.channels_last and batch.get("lq") is not None and batch["lq"].dim() == 4:
            batch["lq"] = batch["lq"].contiguous(memory_format=torch.channels_last)
        return batch

    def degrade(self, batch: dict) -> dict:
        """The batch's LR made from its HR by the degradation pipeline, on the batch's device. The
        draws of micro-batch ``m`` of step ``n`` on rank ``r`` come from a generator seeded by
        ``(seed, n, r, m)``: the same LR on a rerun and after a resume."""
        key = (int(self.global_step), int(self.global_rank))
        micro = 0 if self._degrade_step is None or self._degrade_step[0] != key else self._degrade_step[1] + 1
        self._degrade_step = (key, micro)
        g = torch.Generator().manual_seed(derived_seed(self.degradation_seed, 0x5EED, *key, micro))
        out = self.degrader(batch["gt"].float(), g)
        # gt: the target of the pixel and perceptual terms (USM-sharpened where usm_gt);
        # gt_real: the plain HR, which a discriminator sees as real (Real-ESRGAN's gan_gt_usm=False).
        return {**batch, "lq": out.lq, "gt": out.gt, "gt_real": batch["gt"]}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        sr = self._train_net(batch["lq"])
        # The loss in fp32 whatever the autocast dtype of the network.
        terms = self.criterion(sr, batch["gt"])
        loss = sum(terms.values())
        # Checking every step would force a device->host sync on each step; the logging interval
        # catches a diverged run just as well.
        if self.global_step % self.trainer.log_every_n_steps == 0 and not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at step {self.global_step}; lower lr (now "
                f"{self.optimizers().param_groups[0]['lr']:.3g}) or add scheduler.warmup_steps"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=len(sr))
        if self.log_terms:
            self.log_dict({f"train/loss_{k}": v.detach() for k, v in terms.items()}, batch_size=len(sr))
        self.log("lr", self.optimizers().param_groups[0]["lr"], batch_size=len(sr))
        return loss

    # --- EMA ------------------------------------------------------------------------------------

    def on_train_start(self) -> None:
        if self.net_ema is None:
            return
        # After any restore: a run (or a resume of a run without EMA) starts its average at the
        # weights it trains from (pretrained, fine-tuned or resumed), as BasicSR does.
        if int(self.ema_updates) == 0:
            ema_update_(self.net_ema, self.net, 0.0)
        log.info("EMA of the weights (decay %g): val/psnr, best.ckpt's choice and the weights eval.py, upscale.py "
                 "and export.py load are the EMA's; val/psnr_raw is the raw weights'", self.ema_decay)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.update_ema()

    def update_ema(self) -> None:
        """One EMA step after an optimizer step of the network (SRGANModule calls it itself)."""
        if self.net_ema is not None:
            ema_update_(self.net_ema, self.net, self.ema_decay)
            self.ema_updates += 1

    def validation_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        lq, gt = batch["lq"], batch["gt"]
        # Validation in fp32 whatever the training precision: val/psnr is then the number eval.py
        # (and a paper's table) gives for the same weights, not a bf16 approximation of it.
        net = self.net_ema if self.net_ema is not None else self.net
        with torch.autocast(lq.device.type, enabled=False):
            sr = net(lq.float()).float().clamp(0, 1)
            if self.raw_metrics is not None:  # the raw weights too, for val/psnr_raw
                raw = self.net(lq.float()).float().clamp(0, 1)
                self.raw_metrics.update(raw, gt, batch["index"], batch["gray"])
        self.val_metrics.update(sr, gt, batch["index"], batch["gray"])
        if self.perceptual_scorer is not None:
            scores = self.perceptual_scorer.to(sr.device)(sr, gt, int(self.hparams.scale))
            self.perceptual_metrics.update(scores, batch["index"])
        if self.bicubic_result is None:
            self.bicubic_metrics.update(self.bicubic(lq), gt, batch["index"], batch["gray"])
        return {"sr": sr}

    def on_validation_epoch_end(self) -> None:
        m = self.val_metrics.compute()
        self.val_metrics.reset()
        perceptual = {}
        if self.perceptual_metrics is not None:
            perceptual = {k: float(v) for k, v in self.perceptual_metrics.compute().items()}
            self.perceptual_metrics.reset()
        raw = None
        if self.raw_metrics is not None:
            raw = self.raw_metrics.compute()
            self.raw_metrics.reset()
        if self.trainer.sanity_checking:
            self.bicubic_metrics.reset()
            return
        if self.bicubic_result is None:
            b = self.bicubic_metrics.compute()
            self.bicubic_metrics.reset()
            self.bicubic_result = {"psnr": float(b["psnr"]), "ssim": float(b["ssim"]), "images": int(b["images"])}
        psnr, ssim = float(m["psnr"]), float(m["ssim"])
        entry = {"step": int(self.global_step), "psnr": psnr, "ssim": ssim, **perceptual}
        if raw is not None:  # val/psnr is the EMA's: the raw weights beside it, same step and images
            entry.update(psnr_raw=float(raw["psnr"]), ssim_raw=float(raw["ssim"]))
            self.log_dict({"val/psnr_raw": entry["psnr_raw"], "val/ssim_raw": entry["ssim_raw"]})
        self.history.append(entry)
        best = max(h["psnr"] for h in self.history)
        # Metric states are already synchronised across processes: every rank logs the same value.
        self.log_dict(
            {
                "val/psnr": psnr,
                "val/ssim": ssim,
                "val/psnr_best": best,
                "val/psnr_bicubic": self.bicubic_result["psnr"],
                "val/ssim_bicubic": self.bicubic_result["ssim"],
                **{f"val/{k}": v for k, v in perceptual.items()},
            },
            prog_bar=False,
        )
        self.log("val/psnr_gain", psnr - self.bicubic_result["psnr"], prog_bar=True)

    def parameter_groups(self) -> list[Any]:
        """What the optimizer updates: the trainable parameters (a subclass: groups with their own lr)."""
        return [p for p in self.net.parameters() if p.requires_grad]

    def configure_optimizers(self) -> dict[str, Any]:
        params = self.parameter_groups()
        if not params:
            raise ValueError(
                f"model={self.hparams.network['name']} has no trainable parameters; there is nothing to train "
                "(evaluate it with eval.py instead)"
            )
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
        self._fit_started = time.perf_counter()

    def train_seconds(self) -> float:
        """Wall time of fitting, over this run and every run it resumed."""
        now = time.perf_counter() - self._fit_started if self._fit_started is not None else 0.0
        return self.prior_train_seconds + now

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["sr_run"] = {
            "bicubic": self.bicubic_result,
            "history": self.history,
            "train_seconds": self.train_seconds(),
            "rng": _rng_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "state_dict" in checkpoint:  # EMA switched on or off since the checkpoint: adapt, say so
            checkpoint["state_dict"] = ema_state_for_load(checkpoint["state_dict"], self.net_ema is not None)
        run = checkpoint.get("sr_run") or {}
        self.bicubic_result = run.get("bicubic")
        self.history = list(run.get("history", []))
        self.prior_train_seconds = float(run.get("train_seconds", 0.0))
        if run.get("rng"):
            _set_rng_state(run["rng"])

    def run_summary(self) -> dict[str, Any]:
        """Best and final validation results, the bicubic baseline and the network size."""
        best = max(self.history, key=lambda h: h["psnr"]) if self.history else None
        final = self.history[-1] if self.history else None
        return {
            "model": model_label(self.hparams.network),  # the preset (shallow, deep), as tables show it
            "network": self.hparams.network["name"],
            "scale": self.hparams.scale,
            "params": self.num_params,
            "ema_decay": self.ema_decay,
            "losses": self.criterion.describe() if self.log_terms else None,
            "channels_last": self.channels_last,
            "compile": self.compiled,
            "best": best,
            "final": final,
            "bicubic": self.bicubic_result,
            "history": self.history,
        }


def _rng_state() -> dict[str, Any]:
    """Global RNG states (dropout, drop-path, anything not on an explicit generator), as tensors and
    plain lists so a ``weights_only`` load reads them."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
