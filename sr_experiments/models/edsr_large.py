"""The full EDSR of Lim et al. 2017 (paper Table 1, "EDSR"): 32 blocks, 256 channels, res_scale 0.1.

The same network as ``edsr`` (``sr_experiments.models.edsr.EDSR``, BasicSR's layout), only with
the paper's large defaults, so BasicSR's released EDSR_L state dicts load with ``strict=True``.
"""

from __future__ import annotations

from sr_experiments.models.edsr import EDSR
from sr_experiments.models.registry import register


@register("edsr_large", scales=(2, 3, 4, 8))
class EDSRLarge(EDSR):
    """EDSR with the paper's full-size defaults (40.7 M parameters at x2, 43.1 M at x4).

    Args:
        scale: upscaling factor, 2, 3, 4 or 8 (BasicSR ``upscale``).
        depth: number of residual blocks (BasicSR ``num_block``; 32).
        width: feature channels (BasicSR ``num_feat``; 256).
        res_scale: residual branch scaling (BasicSR ``res_scale``; 0.1, which the paper needs to
            train this width stably).
    """

    # An explicit signature (not **kwargs) so that build_network can check model.* keys against it.
    def __init__(self, scale: int, depth: int = 32, width: int = 256, res_scale: float = 0.1) -> None:
        super().__init__(scale, depth=depth, width=width, res_scale=res_scale)
