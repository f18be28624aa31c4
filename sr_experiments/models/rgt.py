"""RGT: Chen et al., "Recursive Generalization Transformer for Image Super-Resolution", ICLR 2024.

Official code: github.com/zhengchen1999/RGT. Architecture code: spandrel's (``spandrel.architectures.RGT``),
see ``community.py``. Defaults: RGT (``options/test/test_RGT_x4.yml``), 13.37M parameters at x4 in the
README's table; preset ``rgt_s`` (RGT-S, 10.20M).
"""

from __future__ import annotations

from spandrel.architectures.RGT import RGT as _RGT

from sr_experiments.models.community import SpandrelNetwork
from sr_experiments.models.registry import register


@register("rgt", scales=(2, 3, 4, 8))
class RGT(SpandrelNetwork, _RGT):
    """Recursive-generalization self-attention (global, on recursively pooled features) mixed with
    local window attention. The pooling needs inputs of 16 pixels or more (official training uses
    64): smaller ones are reflect-padded to 16."""

    SPANDREL_ID = "RGT"
    DEFAULTS = dict(
        img_size=64, img_range=1.0, depth=[6] * 8, embed_dim=180, num_heads=[6] * 8, mlp_ratio=2.0,
        resi_connection="1conv", split_size=[8, 32], c_ratio=0.5,
    )  # fmt: skip
    MIN_SIZE = 16
