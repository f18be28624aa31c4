"""ZSSR's image-specific network: Shocher, Cohen and Irani, "'Zero-Shot' Super-Resolution using Deep
Internal Learning", CVPR 2018 (official code: github.com/assafshocher/ZSSR, ``configs.py``/``ZSSR.py``).

The network is the paper's: 8 conv layers of 64 channels with ReLU, predicting the residual over
the interpolated input. That is a shallow VDSR, so it is VDSR's code with ZSSR's depth and init.
It is trained on each test image (``sr_experiments/zssr``), so it has no released weights.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from sr_experiments.imaging.imresize import imresize
from sr_experiments.models.registry import register
from sr_experiments.models.vdsr import VDSR


@register("zssr")
class ZSSRNet(VDSR):
    """Eight 3x3 convs (3 -> 64 -> ... -> 64 -> 3), ReLU between, added to the MATLAB-bicubic
    upscaled input (the official code interpolates with its own MATLAB-imresize port too).

    Args:
        scale: upscaling factor (integer >= 2; gradual SR runs an x2 network several times).
        depth: conv layers, first and last included (paper: 8).
        width: channels of the hidden layers (paper: 64).
        init_variance: weights drawn from N(0, init_variance / fan_in) (official ``configs.py``:
            ``init_variance = 0.1``; smaller than He's 2/fan_in, so the untrained network starts
            close to bicubic).
        bias: give the convs biases (zero-initialised); the official network has none.
    """

    def __init__(self, scale: int, depth: int = 8, width: int = 64, init_variance: float = 0.1, bias: bool = False) -> None:
        super().__init__(scale, depth, width)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                nn.init.normal_(m.weight, std=math.sqrt(init_variance / fan_in))
                if bias:
                    nn.init.zeros_(m.bias)
                else:
                    # The official convs have no bias. With biases, training at lr 1e-3 could drive
                    # every ReLU dead on smooth images (Set5 head, baby): the output was then exactly
                    # bicubic + back-projection (BENCHMARKS.md, Zero-shot SR).
                    m.register_parameter("bias", None)

    def forward(
        self, x: torch.Tensor, size: tuple[int, int] | None = None, scale: int | tuple[float, float] | None = None
    ) -> torch.Tensor:
        """SR of ``x`` by the network's scale, or by ``scale`` (one network serves every stage of the
        official gradual configuration: only the interpolation knows the factor, per axis); ``size``
        fixes the output shape (a father's, whose son was rounded up)."""
        # The interpolation and the residual sum stay in fp32 under bf16 autocast: imresize is a
        # matmul, which autocast would round to bf16 (~0.4% per pixel, visible at 37 dB).
        work = x.to(torch.promote_types(x.dtype, torch.float32))
        # (meta tensors, for counting MACs, have no autocast)
        off = torch.autocast(x.device.type, enabled=False) if x.device.type in ("cpu", "cuda") else contextlib.nullcontext()
        with off:
            up = imresize(work, scale=self.scale if scale is None else scale, size=size)
        residual = self.conv_last(self.body(self.conv_first(up.to(x.dtype))))
        return (up + residual.to(up.dtype)).to(x.dtype)
