"""SRVGGNetCompact: the compact network of Real-ESRGAN (Wang et al., ICCVW 2021; xinntao/Real-ESRGAN
``realesrgan/archs/srvgg_arch.py``), the ``realesr-general-x4v3`` / ``realesr-animevideov3`` layout.

A plain VGG-style stack at LR resolution (``num_conv`` 3x3 convolutions of ``num_feat`` channels,
PReLU), one pixel shuffle at the end, plus the nearest-neighbour upscaled input as residual. The
architecture code is spandrel's (``spandrel.architectures.Compact``), see ``community.py``: its
keys (``body.N.weight``) are the official ones, so the released files load strictly. Defaults:
``realesr-general-x4v3`` (num_feat 64, num_conv 32, prelu): 1,213,296 parameters at x4.
"""

from __future__ import annotations

from spandrel.architectures.Compact import Compact as _Compact

from sr_experiments.models.community import SpandrelNetwork
from sr_experiments.models.registry import register


@register("compact")
class Compact(SpandrelNetwork, _Compact):
    """SRVGGNetCompact; any integer scale (the official releases: x4, and x2 for realesr-animevideo).

    ``act_type`` is ``prelu`` (released models), ``relu`` or ``leakyrelu``; spandrel detects only the
    PReLU form from a file, so files of the other two load with ``model=compact model.act_type=...``."""

    SPANDREL_ID = "Compact"
    DEFAULTS = dict(num_feat=64, num_conv=32, act_type="prelu")
