"""IMDN: Hui et al., "Lightweight Image Super-Resolution with Information Multi-distillation
Network", ACM MM 2019.

Follows the official release (github.com/Zheng222/IMDN, ``model/architecture.py`` ``IMDN`` and
``model/block.py``): module names match, so its released state dicts load with ``strict=True``
(the official checkpoints may carry a DataParallel ``module.`` prefix, which must be stripped).
As in the official code the network sees the input in [0, 1] directly: no mean shift, no
``img_range`` scaling, and no clamp of the output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sr_experiments.models.blocks import UpsampleOneStep
from sr_experiments.models.registry import check_scale, register


def _conv(in_ch: int, out_ch: int, kernel_size: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2)


def _stdv_channels(x: torch.Tensor) -> torch.Tensor:
    # Population (biased) standard deviation per channel, as the official ``stdv_channels``.
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).pow(0.5)


class CCALayer(nn.Module):
    """Contrast-aware channel attention: (std + mean) per channel -> 1x1 squeeze/excite -> sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(_stdv_channels(x) + x.mean(dim=(2, 3), keepdim=True))


class IMDModule(nn.Module):
    """Information multi-distillation block: each 3x3 conv keeps a quarter of its channels
    (distilled) and passes the rest on; the four distilled parts are fused by CCA + 1x1 conv."""

    def __init__(self, channels: int, distillation_rate: float = 0.25) -> None:
        super().__init__()
        self.distilled = int(channels * distillation_rate)
        self.remaining = channels - self.distilled
        self.c1 = _conv(channels, channels, 3)
        self.c2 = _conv(self.remaining, channels, 3)
        self.c3 = _conv(self.remaining, channels, 3)
        self.c4 = _conv(self.remaining, self.distilled, 3)
        self.act = nn.LeakyReLU(0.05, inplace=True)
        self.c5 = _conv(self.distilled * 4, channels, 1)
        self.cca = CCALayer(self.distilled * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = (self.distilled, self.remaining)
        d1, r1 = torch.split(self.act(self.c1(x)), split, dim=1)
        d2, r2 = torch.split(self.act(self.c2(r1)), split, dim=1)
        d3, r3 = torch.split(self.act(self.c3(r2)), split, dim=1)
        out = torch.cat([d1, d2, d3, self.c4(r3)], dim=1)
        return self.c5(self.cca(out)) + x


@register("imdn")
class IMDN(nn.Module):
    """IMDN (official layout). The defaults are the paper's model (694 K parameters at x2).

    Args:
        scale: upscaling factor, any integer >= 2 (official ``upscale``).
        depth: number of IMDBs (official ``num_modules``; 6). They are attributes ``IMDB1`` ...
            ``IMDB{depth}`` as in the official code, which hard-codes six.
        width: feature channels (official ``nf``; 64): a multiple of 4 (the distillation
            quarter) and >= 16 (the CCA squeezes ``width`` channels by 16).
    """

    def __init__(self, scale: int, depth: int = 6, width: int = 64) -> None:
        super().__init__()
        self.scale = check_scale(type(self), scale)
        if depth < 1 or width % 4 or width < 16:
            raise ValueError(f"imdn needs depth >= 1 and width a multiple of 4, >= 16; got {depth=}, {width=}")
        self.depth = depth
        self.fea_conv = _conv(3, width, 3)
        for i in range(1, depth + 1):
            setattr(self, f"IMDB{i}", IMDModule(width))
        # The official conv_block(..., act_type='lrelu'): Sequential(conv, LeakyReLU) -> keys "c.0.*".
        self.c = nn.Sequential(_conv(width * depth, width, 1), nn.LeakyReLU(0.05, inplace=True))
        self.LR_conv = _conv(width, width, 3)
        self.upsampler = UpsampleOneStep(scale, width, 3)  # the official pixelshuffle_block

    @classmethod
    def spec_from_state_dict(cls, state: Mapping[str, Any]) -> dict[str, Any] | None:
        """The spec whose keys and shapes ``state`` (the official layout) may have, or None: width
        from ``fea_conv``, depth from the ``IMDB{i}`` blocks, scale from the upsampler's outputs."""
        first, tail = state.get("fea_conv.weight"), state.get("upsampler.0.weight")
        if not isinstance(first, torch.Tensor) or not isinstance(tail, torch.Tensor) or first.dim() != 4:
            return None
        depth = sum(1 for k in state if k.startswith("IMDB") and k.endswith(".c1.weight"))
        scale = math.isqrt(tail.shape[0] // 3)
        if depth < 1 or scale < 2 or scale * scale * 3 != tail.shape[0]:
            return None
        return {"name": "imdn", "scale": scale, "depth": depth, "width": int(first.shape[0])}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.fea_conv(x)
        outs = []
        out = fea
        for i in range(1, self.depth + 1):
            out = getattr(self, f"IMDB{i}")(out)
            outs.append(out)
        out = self.LR_conv(self.c(torch.cat(outs, dim=1))) + fea
        return self.upsampler(out)
