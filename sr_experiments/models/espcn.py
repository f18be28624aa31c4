"""ESPCN: Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient
Sub-Pixel Convolutional Neural Network", CVPR 2016."""

from __future__ import annotations

import torch
from torch import nn

from sr_experiments.models.registry import check_scale, register


@register("espcn")
class ESPCN(nn.Module):
    """ESPCN on RGB: three convolutions at LR resolution, then a sub-pixel shuffle.

    (f1, n1) = (5, width), (f2, n2) = (3, width // 2), f3 = 3 with ``3 * scale**2`` outputs
    rearranged by ``PixelShuffle(scale)``. tanh activations, which the paper found better than
    ReLU for this network.

    Args:
        scale: upscaling factor r (integer >= 2).
        width: filters of the first layer n1 (paper: 64); the second has ``width // 2`` (32).
    """

    def __init__(self, scale: int, width: int = 64) -> None:
        super().__init__()
        self.scale = check_scale(type(self), scale)
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 5, padding=2),
            nn.Tanh(),
            nn.Conv2d(width, width // 2, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(width // 2, 3 * scale**2, 3, padding=1),
            nn.PixelShuffle(scale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
