"""SAFMN: Sun et al., "Spatially-Adaptive Feature Modulation for Efficient Image
Super-Resolution", ICCV 2023.

Follows the official release (github.com/sunny2109/SAFMN, ``basicsr/archs/safmn_arch.py``):
module names match, so its released state dicts load with ``strict=True``. The official
``SqueezeExcitation``, ``ChannelMLP`` and ``MBConv`` classes are unused by SAFMN and left out.
Like the official code, the network sees the input in [0, 1] directly (no mean shift).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sr_experiments.models.blocks import UpsampleOneStep
from sr_experiments.models.community import SpandrelLayout
from sr_experiments.models.registry import check_scale, register


class LayerNorm(nn.Module):
    """Layer norm over the channel dimension of an (N, C, H, W) tensor (the official "channels_first")."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class SAFM(nn.Module):
    """Spatially-adaptive feature modulation: channel chunk i is max-pooled by 2^i, filtered by a
    depthwise 3x3 conv and upsampled back (nearest); the aggregated, GELU'd map gates the input.

    The coarsest level pools to (h // 2^(n_levels-1), w // 2^(n_levels-1)), so, as officially,
    the input needs h, w >= 2^(n_levels-1) (8 by default).
    """

    def __init__(self, dim: int, n_levels: int = 4) -> None:
        super().__init__()
        self.n_levels = n_levels
        chunk_dim = dim // n_levels
        self.mfr = nn.ModuleList(
            [nn.Conv2d(chunk_dim, chunk_dim, 3, 1, 1, groups=chunk_dim) for _ in range(n_levels)]
        )
        self.aggr = nn.Conv2d(dim, dim, 1, 1, 0)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        out = []
        for i, xc in enumerate(x.chunk(self.n_levels, dim=1)):
            if i > 0:
                s = F.adaptive_max_pool2d(xc, (h // 2**i, w // 2**i))
                s = F.interpolate(self.mfr[i](s), size=(h, w), mode="nearest")
            else:
                s = self.mfr[i](xc)
            out.append(s)
        return self.act(self.aggr(torch.cat(out, dim=1))) * x


class CCM(nn.Module):
    """Convolutional channel mixer (the feed-forward part): 3x3 conv expand -> GELU -> 1x1 reduce."""

    def __init__(self, dim: int, growth_rate: float = 2.0) -> None:
        super().__init__()
        hidden_dim = int(dim * growth_rate)
        self.ccm = nn.Sequential(nn.Conv2d(dim, hidden_dim, 3, 1, 1), nn.GELU(), nn.Conv2d(hidden_dim, dim, 1, 1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ccm(x)


class AttBlock(nn.Module):
    """Pre-norm transformer-style block: x + SAFM(LN(x)), then x + CCM(LN(x))."""

    def __init__(self, dim: int, ffn_scale: float = 2.0) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.norm2 = LayerNorm(dim)
        self.safm = SAFM(dim)
        self.ccm = CCM(dim, ffn_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.safm(self.norm1(x)) + x
        return self.ccm(self.norm2(x)) + x


@register("safmn")
class SAFMN(SpandrelLayout, nn.Module):
    """SAFMN (official layout). The defaults are the paper's model (228 K parameters at x2).

    Args:
        scale: upscaling factor, any integer >= 2 (official ``upscaling_factor``).
        depth: number of AttBlocks (official ``n_blocks``; 8).
        width: feature channels (official ``dim``; 36), a multiple of 4 (SAFM's four levels).
        ffn_scale: CCM hidden-channel expansion (official ``ffn_scale``; 2.0).
    """

    SPANDREL_ID = "SAFMN"

    @staticmethod
    def spec_from_hyperparameters(hp: dict) -> dict | None:
        """Our spec for spandrel's SAFMN (the same layout and key names)."""
        return {"name": "safmn", "scale": hp["upscaling_factor"], "depth": hp["n_blocks"], "width": hp["dim"],
                "ffn_scale": float(hp["ffn_scale"])}

    def __init__(self, scale: int, depth: int = 8, width: int = 36, ffn_scale: float = 2.0) -> None:
        super().__init__()
        self.scale = check_scale(type(self), scale)
        if depth < 1 or width < 4 or width % 4:
            raise ValueError(f"safmn needs depth >= 1 and width a positive multiple of 4; got {depth=}, {width=}")
        self.to_feat = nn.Conv2d(3, width, 3, 1, 1)
        self.feats = nn.Sequential(*(AttBlock(width, ffn_scale) for _ in range(depth)))
        self.to_img = UpsampleOneStep(scale, width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.to_feat(x)
        return self.to_img(self.feats(x) + x)
