"""DRCT: Hsu et al., "DRCT: Saving Image Super-Resolution Away from Information Bottleneck",
CVPR Workshops (NTIRE) 2024.

Official code: github.com/ming053l/DRCT. Architecture code: spandrel's (``spandrel.architectures.DRCT``),
see ``community.py``. Defaults: DRCT (``options/test/DRCT_SRx4.yml``), 14.13M parameters at x4 in the
README's table; preset ``drct_l`` (DRCT-L, 27.58M).
"""

from __future__ import annotations

from spandrel.architectures.DRCT import DRCT as _DRCT

from sr_experiments.models.community import SpandrelNetwork
from sr_experiments.models.registry import register


@register("drct", scales=(2, 3, 4, 8))
class DRCT(SpandrelNetwork, _DRCT):
    """Dense-residual-connected Swin transformer. Each group has five Swin blocks whatever
    ``depths`` says (only its length counts). spandrel's forward does not pad: inputs are
    reflect-padded to the window here, as the official test code (``DRCTModel.pre_process``) does."""

    SPANDREL_ID = "DRCT"
    DEFAULTS = dict(
        img_size=64, window_size=16, img_range=1.0, depths=[6] * 6, embed_dim=180, num_heads=[6] * 6,
        mlp_ratio=2.0, upsampler="pixelshuffle", resi_connection="1conv",
    )  # fmt: skip
    PAD_MULTIPLE = "window_size"
