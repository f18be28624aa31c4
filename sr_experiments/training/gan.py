"""``SRGANModule``: adversarial training of an SR network (SRGAN, ESRGAN, Real-ESRGAN).

Selected by ``discriminator=vgg128|unet_sn`` (``conf/discriminator/``) or a recipe
(``experiment=esrgan_x4``), with a ``losses`` config that has an adversarial term
(``type: gan``; ``conf/losses/esrgan.yaml``). Each training step, as BasicSR's ``SRGANModel`` /
``ESRGANModel``:

1. generator: ``sr = G(lq)``; its loss is the weighted non-adversarial terms (pixel, perceptual)
   plus ``weight * gan.generator(D(sr)[, D(gt)])`` with the discriminator frozen; one step of
   its optimizer, then the EMA update;
2. discriminator: ``gan.discriminator(D(gt), D(sr.detach()))``, one step of its optimizer.

Manual optimisation; every backward goes through ``manual_backward`` and every step through the
strategy's precision plugin, so ``bf16-mixed`` / ``16-mixed`` (gradient scaling) apply to both
networks. The adversarial terms are computed in fp32 whatever the autocast. Both optimizers,
both schedules and the discriminator are in the checkpoint, so a run resumes where it stopped
(bit-exactly on CPU). The generator should start from a PSNR-trained network:
``model.pretrained=FILE`` or ``ckpt_path=PSNR_RUN/checkpoints/best.ckpt resume=false``.

Not tested under DDP: each backward leaves one network without gradients, which DDP accepts only
with ``find_unused_parameters`` (``trainer.strategy=ddp_find_unused_parameters_true``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from hydra.utils import instantiate

from sr_experiments.config_values import plain
from sr_experiments.models.discriminators import build_discriminator
from sr_experiments.training.module import SRLitModule

try:  # Lightning's no-op closure; its location is internal
    from lightning.pytorch.core.optimizer import do_nothing_closure
except ImportError:  # pragma: no cover
    def do_nothing_closure() -> None:
        return None


class SRGANModule(SRLitModule):
    """An ``SRLitModule`` trained against a discriminator ``net_d``.

    Args (beyond ``SRLitModule``'s, which pass through ``**kwargs``):
        discriminator: spec ``{"name": "vgg128" | "unet_sn", **constructor args}``.
        optimizer_d: Hydra ``_partial_`` optimizer config of the discriminator; ``None``: the
            generator's (ESRGAN and Real-ESRGAN use the same Adam settings for both).
        scheduler_d: the discriminator's schedule; ``None``: the generator's.
    """

    adversarial = True

    def __init__(self, *args: Any, discriminator: Mapping[str, Any] | None = None,
                 optimizer_d: Mapping[str, Any] | None = None, scheduler_d: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.criterion.adversarial is None:
            raise ValueError("adversarial training needs a `type: gan` term in losses (e.g. losses=esrgan)")
        if not discriminator:
            raise ValueError("adversarial training needs a discriminator: discriminator=vgg128|unet_sn")
        spec = dict(plain(discriminator))
        self.net_d = build_discriminator(spec)
        self.hparams.update(discriminator=spec, optimizer_d=plain(optimizer_d), scheduler_d=plain(scheduler_d))
        self.gan_name, self.gan_weight, self.gan = self.criterion.adversarial
        self.automatic_optimization = False

    def configure_optimizers(self) -> Any:
        generator = super().configure_optimizers()
        opt_cfg = self.hparams.optimizer_d or self.hparams.optimizer
        opt_d = instantiate(opt_cfg)(params=[p for p in self.net_d.parameters() if p.requires_grad])
        schedulers = [generator["lr_scheduler"]] if "lr_scheduler" in generator else []
        sched_cfg = self.hparams.scheduler_d if self.hparams.scheduler_d is not None else self.hparams.scheduler
        if sched_cfg:
            schedulers.append({"scheduler": instantiate(sched_cfg)(optimizer=opt_d, total_steps=self.schedule_length()),
                               "interval": "step"})
        return [generator["optimizer"], opt_d], schedulers

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        opt_g, opt_d = self.optimizers()
        lq, gt = batch["lq"], batch["gt"]
        real_hr = batch.get("gt_real", gt)  # the plain HR where gt is USM-sharpened (degradation.usm_gt)

        # Generator, the discriminator frozen.
        self.net_d.requires_grad_(False)
        sr = self._train_net(lq)
        terms = self.criterion(sr, gt)
        real = self.net_d(real_hr) if self.gan.gan_type == "ragan" else None  # detached in gan.generator
        terms[self.gan_name] = self.gan_weight * self.gan.generator(self.net_d(sr), real)
        loss_g = sum(terms.values())
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()
        self.update_ema()

        # Discriminator, on the generator's output of this step.
        self.net_d.requires_grad_(True)
        real_d, fake_d = self.net_d(real_hr), self.net_d(sr.detach())
        l_real, l_fake = self.gan.discriminator(real_d, fake_d)
        loss_d = l_real + l_fake
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        # Through the strategy (precision plugin: unscaling, scaler update, hooks) but not through
        # ``opt_d.step()``: Lightning counts every LightningOptimizer step of manual optimisation
        # as a global step, and trainer.global_step (max_steps, schedules, the resumable patch
        # stream) must count iterations, as BasicSR's iterations.
        self.trainer.strategy.optimizer_step(opt_d.optimizer, closure=do_nothing_closure, model=self)

        schedulers = self.lr_schedulers()
        for sch in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
            sch.step()

        if self.global_step % self.trainer.log_every_n_steps == 0 and not (torch.isfinite(loss_g) and torch.isfinite(loss_d)):
            raise FloatingPointError(
                f"training loss is {loss_g.item()} (generator), {loss_d.item()} (discriminator) at step "
                f"{self.global_step}; lower lr or the adversarial weight"
            )
        n = len(sr)
        self.log("train/loss", loss_g.detach(), prog_bar=True, batch_size=n)
        self.log_dict({f"train/loss_{k}": v.detach() for k, v in terms.items()}, batch_size=n)
        self.log_dict({"train/loss_d": loss_d.detach(), "train/d_real": real_d.detach().float().mean(),
                       "train/d_fake": fake_d.detach().float().mean()}, batch_size=n)
        self.log("lr", opt_g.param_groups[0]["lr"], batch_size=n)
        return loss_g.detach()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict") or {}
        if "loops" in checkpoint and not any(k.startswith("net_d.") for k in state):
            raise ValueError(
                "this checkpoint has no discriminator (a PSNR run): start the GAN stage from its weights with "
                "resume=false (ckpt_path=... resume=false) or model.pretrained=FILE"
            )
        super().on_load_checkpoint(checkpoint)
