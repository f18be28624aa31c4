"""FSRCNN: Dong et al., "Accelerating the Super-Resolution Convolutional Neural Network", ECCV 2016."""

from __future__ import annotations

import torch
from torch import nn

from sr_experiments.models.registry import check_scale, register


@register("fsrcnn")
class FSRCNN(nn.Module):
    """FSRCNN(d, s, m) on RGB: works at LR resolution and upscales with a final deconvolution.

    Layers: 5x5 feature extraction (3->d), 1x1 shrinking (d->s), m 3x3 mapping layers (s->s),
    1x1 expanding (s->d), each followed by a channel-wise PReLU, then a 9x9 deconvolution
    (d->3) with ``stride=scale``. ``padding=4, output_padding=scale - 1`` make its output exactly
    ``h * scale`` (``(h - 1) * scale - 8 + 9 + scale - 1``).

    Args:
        scale: upscaling factor (integer >= 2).
        d: LR feature dimension (paper: d = 56).
        s: shrunk mapping dimension (paper: s = 12).
        m: number of mapping layers (paper: m = 4).
    """

    def __init__(self, scale: int, d: int = 56, s: int = 12, m: int = 4) -> None:
        super().__init__()
        self.scale = check_scale(type(self), scale)
        layers: list[nn.Module] = [nn.Conv2d(3, d, 5, padding=2), nn.PReLU(d)]
        layers += [nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(d, 3, 9, stride=scale, padding=4, output_padding=scale - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.body(x))
