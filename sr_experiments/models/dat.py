"""DAT: Chen et al., "Dual Aggregation Transformer for Image Super-Resolution", ICCV 2023.

Official code: github.com/zhengchen1999/DAT. Architecture code: spandrel's (``spandrel.architectures.DAT``),
see ``community.py``. Defaults: DAT (``options/Test/test_DAT_x4.yml``), 14.80M parameters at x4 in the
README's table; presets ``dat_s`` (DAT-S, 11.21M) and ``dat_light`` (DAT-light, 573K).
"""

from __future__ import annotations

from spandrel.architectures.DAT import DAT as _DAT

from sr_experiments.models.community import SpandrelNetwork
from sr_experiments.models.registry import register


@register("dat", scales=(2, 3, 4, 8))
class DAT(SpandrelNetwork, _DAT):
    """Dual Aggregation Transformer: alternating spatial-window and channel self-attention, with
    the adaptive interaction module and the spatial-gate FFN. Any input size (padded to the split
    size inside spandrel's forward). Its interaction module has a BatchNorm: training needs batches
    of 2 or more, as officially."""

    SPANDREL_ID = "DAT"
    DEFAULTS = dict(
        img_size=64, img_range=1.0, split_size=[8, 32], depth=[6] * 6, embed_dim=180, num_heads=[6] * 6,
        expansion_factor=4.0, resi_connection="1conv", upsampler="pixelshuffle",
    )  # fmt: skip
