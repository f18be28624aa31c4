"""ATD: Zhang et al., "Transcending the Limit of Local Window: Advanced Super-Resolution Transformer
with Adaptive Token Dictionary", CVPR 2024.

Official code: github.com/LabShuHangGU/Adaptive-Token-Dictionary. Architecture code: spandrel's
(``spandrel.architectures.ATD``), see ``community.py``. Defaults: ATD
(``options/test/003_ATD_SRx4_finetune.yml``), 20.26M parameters at x4; preset ``atd_light``
(ATD-light, ``103_ATD_light_SRx4_finetune.yml``), 769K at x4 in the paper's lightweight table.
"""

from __future__ import annotations

from spandrel.architectures.ATD import ATD as _ATD

from sr_experiments.models.community import SpandrelNetwork
from sr_experiments.models.registry import register


@register("atd", scales=(2, 3, 4, 8))
class ATD(SpandrelNetwork, _ATD):
    """Adaptive Token Dictionary transformer: window attention plus cross-attention to a learned
    token dictionary and category-based attention. ``category_size`` sets no parameter (spandrel
    guesses it from a file: 128 for the light model, else 256). Inputs are mirror-padded to the
    window (``cat([x, flip(x)])``, as the official code)."""

    SPANDREL_ID = "ATD"
    DEFAULTS = dict(
        img_size=64, embed_dim=210, depths=[6] * 6, num_heads=[6] * 6, window_size=16, category_size=256,
        num_tokens=128, reducted_dim=20, convffn_kernel_size=5, img_range=1.0, mlp_ratio=2.0,
        upsampler="pixelshuffle", resi_connection="1conv",
    )  # fmt: skip
    PAD_MULTIPLE = "window_size"
    PAD_MODE = "symmetric"
