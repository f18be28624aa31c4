"""SRCNN: Dong et al., "Learning a Deep Convolutional Network for Image Super-Resolution", ECCV 2014."""

from __future__ import annotations

import torch
from torch import nn

from sr_experiments.imaging.imresize import imresize
from sr_experiments.models.registry import check_scale, register


@register("srcnn")
class SRCNN(nn.Module):
    """The 9-5-5 SRCNN on RGB, applied to the bicubic-upscaled input (pre-upsampling).

    The input is first upscaled with MATLAB bicubic (float path, differentiable), as the paper
    does before the network. The convolutions use 'same' zero padding rather than the paper's
    valid convolutions, so the output has the HR size and is compared with the whole HR image
    instead of a centre crop. No global residual: the network predicts the HR image itself.

    Args:
        scale: upscaling factor (integer >= 2).
        n1: filters of the 9x9 patch-extraction layer (paper: n1 = 64).
        n2: filters of the 5x5 non-linear mapping layer (paper: n2 = 32).
    """

    def __init__(self, scale: int, n1: int = 64, n2: int = 32) -> None:
        super().__init__()
        self.scale = check_scale(type(self), scale)
        self.body = nn.Sequential(
            nn.Conv2d(3, n1, 9, padding=4),
            nn.ReLU(inplace=True),
            nn.Conv2d(n1, n2, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(n2, 3, 5, padding=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(imresize(x, scale=self.scale))
