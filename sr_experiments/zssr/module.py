"""The LightningModule that trains one image's ZSSR network on its pair stream."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from sr_experiments.zssr.lr_policy import LRPolicy
from sr_experiments.zssr.pairs import Factor, downscale


def reconstruction_target(image: torch.Tensor, scale: Factor, max_side: int) -> torch.Tensor:
    """The part of ``image`` (1, 3, H, W) the reconstruction error is measured on: all of it
    (official ``quick_test``), cut to a multiple of an integer ``scale``, or its centre ``max_side``
    square on large images (a whole-image pass every ``test_every`` steps would cost more than the
    training)."""
    h, w = image.shape[-2:]
    s = scale if isinstance(scale, int) else 1  # a fractional stage's son is sized, not divided
    ch, cw = (min(h, max_side) // s) * s, (min(w, max_side) // s) * s
    y, x = (h - ch) // 2, (w - cw) // 2
    return image[..., y : y + ch, x : x + cw]


class ZSSRModule(L.LightningModule):
    """L1 on (son, father) batches with Adam; every ``policy.test_every`` steps the reconstruction
    error of the input from its downscaled copy drives ``policy`` (rate drops, stop).

    Args:
        net: the image-specific network (``model=zssr``).
        image: the test image (1, 3, H, W) in [0, 1].
        scale: the factor of this network (2 per stage in gradual SR), or a per-axis fractional
            factor (a stage of the official gradual configuration).
        policy: the learning-rate policy and stopping rule.
        kernel: the downscaling kernel (None: MATLAB bicubic).
        channels_last: run the network in channels_last (measured by ``speed.py``).
        autocast_dtype: the dtype of Lightning's mixed precision, for the reconstruction test.
        test_max_side: largest side of the reconstruction test.
    """

    def __init__(
        self,
        net: nn.Module,
        image: torch.Tensor,
        scale: Factor,
        policy: LRPolicy,
        kernel: torch.Tensor | None = None,
        channels_last: bool = False,
        autocast_dtype: torch.dtype | None = None,
        test_max_side: int = 512,
    ) -> None:
        super().__init__()
        self.net, self.scale, self.policy, self.kernel = net, scale, policy, kernel
        self.channels_last, self.autocast_dtype = channels_last, autocast_dtype
        self.target = reconstruction_target(image.float(), scale, test_max_side)
        self.stopped_by = "step cap"
        if channels_last:
            self.net.to(memory_format=torch.channels_last)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if isinstance(self.scale, int) and size is None:
            return self.net(self._layout(x))  # (a plain network call: tiling and zoo networks take one argument)
        return self.net(self._layout(x), size=size, scale=self.scale)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.policy.learning_rate)  # official: Adam

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        sons, fathers = batch
        loss = F.l1_loss(self(sons, tuple(fathers.shape[-2:])).float(), fathers)  # official: mean absolute error
        self.log("zssr/loss", loss, on_step=True, on_epoch=False, batch_size=sons.shape[0])
        return loss

    @torch.no_grad()
    def reconstruction_error(self) -> float:
        """MSE of the input against the network's SR of the input's own downscaled copy."""
        target = self.target.to(self.device)
        son = downscale(target, self.scale, self.kernel)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                            enabled=self.autocast_dtype is not None):
            out = self(son, tuple(target.shape[-2:])).float()
        return float(F.mse_loss(out.clamp(0, 1), target))

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        step = self.global_step - 1  # the official loop's iteration index (0-based)
        if step % self.policy.test_every == 0:
            error = self.reconstruction_error()
            self.policy.record(step, error)
            self.log("zssr/reconstruction_mse", error, on_step=True, on_epoch=False, batch_size=1)
            self.log("zssr/lr", self.policy.learning_rate, on_step=True, on_epoch=False, batch_size=1)
        if self.policy.update(step):
            for group in self.trainer.optimizers[0].param_groups:
                group["lr"] = self.policy.learning_rate
        if self.policy.done:
            self.stopped_by = "learning-rate policy"
            self.trainer.should_stop = True
