"""The network of the project's original design sketch, repaired so that it runs."""

from __future__ import annotations

import torch
from torch import nn

from sr_experiments.models.registry import check_scale, register


@register("seed")
class Seed(nn.Module):
    """Three 3x3 convolutions (3->64->128->256, ReLU) then a transposed-convolution upsampler.

    What was broken: the sketch's upsampler began with
    ``ConvTranspose2d(256, 128, 3, padding=1, output_padding=1)`` at the default stride 1, which
    PyTorch rejects (output padding must be smaller than the stride) and which would not have
    upscaled anyway. Fix: that layer gets ``stride=scale`` and ``output_padding=scale - 1``, so its
    output is ``(h - 1) * scale - 2 + 3 + scale - 1 = h * scale`` exactly, for any input size;
    the two 3x3 transposed convolutions after it keep the size (stride 1, padding 1).

    Args:
        scale: upscaling factor (integer >= 2).
    """

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = check_scale(type(self), scale)
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 256, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.upsampler = nn.Sequential(
            nn.ConvTranspose2d(256, 128, kernel_size=3, stride=scale, padding=1, output_padding=scale - 1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(128, 64, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(64, 3, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsampler(self.features(x))
