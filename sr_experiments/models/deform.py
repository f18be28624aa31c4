"""The modulated deformable convolution (DCNv2) weights shared by EDVR's ``DCNv2Pack`` and
BasicVSR++'s ``SecondOrderDeformableAlignment``, computed by ``torchvision.ops.deform_conv2d``.

BasicSR and mmagic keep these weights in ``ModulatedDeformConv`` (``basicsr/ops/dcn/deform_conv.py``,
mmcv's ``ModulatedDeformConv2d``): ``weight`` (out, in, k, k) and ``bias`` (out) beside the
subclass's ``conv_offset``. The same names and shapes here, so their checkpoints load; the kernel is
torchvision's (CPU and CUDA, no compiled extension), whose offset layout ((dy, dx) per kernel point
per group) and mask layout are mmcv's, as BasicSR's own torchvision code path relies on.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import deform_conv2d


class ModulatedDeformConv(nn.Module):
    """Weights of a k x k modulated deformable conv; subclasses predict the offsets and mask.

    Args:
        in_channels: input channels (split evenly among the offset groups).
        out_channels: output channels.
        kernel_size: k (3 in EDVR and BasicVSR++).
        padding: zero padding, k // 2 keeps the size.
        deformable_groups: offset groups, each with its own offsets for its slice of channels.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1,
                 deformable_groups: int = 8) -> None:
        super().__init__()
        if in_channels % deformable_groups:
            raise ValueError(f"deformable conv: {in_channels} input channels do not split into "
                             f"{deformable_groups} deformable groups")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.padding, self.deformable_groups = padding, deformable_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        stdv = 1.0 / math.sqrt(in_channels * kernel_size**2)  # mmcv/BasicSR init_weights
        with torch.no_grad():
            self.weight.uniform_(-stdv, stdv)
            self.bias.zero_()

    def deform(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The conv of ``x`` sampled at the kernel points shifted by ``offset`` (N, 2*G*k*k, H, W),
        each weighted by ``mask`` (N, G*k*k, H, W) in [0, 1]."""
        return deform_conv2d(x, offset, self.weight, self.bias, padding=(self.padding, self.padding), mask=mask)

    def zero_last(self, conv: nn.Conv2d) -> None:
        """Start ``conv`` (the offset/mask predictor's last layer) at zero: no extra offset, mask 0.5."""
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
