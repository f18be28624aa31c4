"""HAT: Chen et al., "Activating More Pixels in Image Super-Resolution Transformer", CVPR 2023.

Official code: github.com/XPixelGroup/HAT. Architecture code: spandrel's (``spandrel.architectures.HAT``),
see ``community.py``. Defaults: HAT (``options/test/HAT_SRx4.yml``), 20.8M parameters at x4 in the
README's table; presets ``hat_s`` (HAT-S, 9.6M) and ``hat_l`` (HAT-L, 40.8M).
"""

from __future__ import annotations

from spandrel.architectures.HAT import HAT as _HAT

from sr_experiments.models.community import SpandrelNetwork
from sr_experiments.models.registry import register


@register("hat", scales=(2, 3, 4, 8))
class HAT(SpandrelNetwork, _HAT):
    """Hybrid Attention Transformer: window self-attention + channel attention + overlapping
    cross-attention. Inputs are reflect-padded to the window (as the official test code does)."""

    SPANDREL_ID = "HAT"
    DEFAULTS = dict(
        img_size=64, window_size=16, compress_ratio=3, squeeze_factor=30, conv_scale=0.01, overlap_ratio=0.5,
        img_range=1.0, depths=[6] * 6, embed_dim=180, num_heads=[6] * 6, mlp_ratio=2.0, upsampler="pixelshuffle",
        resi_connection="1conv",
    )  # fmt: skip
    PAD_MULTIPLE = "window_size"
