"""PLKSR: Lee et al., "Partial Large Kernel CNNs for Efficient Super-Resolution", arXiv 2404.11848
(2024), and RealPLKSR, its real-world variant from neosr (GroupNorm, dropout; no paper).

Official code: github.com/dslisleedh/PLKSR; RealPLKSR: github.com/muslll/neosr
(``neosr/archs/realplksr_arch.py``). Architecture code: spandrel's (``spandrel.architectures.PLKSR``,
one ``architecture.id`` "PLKSR" for both), see ``community.py``.
"""

from __future__ import annotations

from spandrel.architectures.PLKSR import PLKSR as _PLKSR
from spandrel.architectures.PLKSR import RealPLKSR as _RealPLKSR

from sr_experiments.models.community import SpandrelNetwork
from sr_experiments.models.registry import register


@register("plksr")
class PLKSR(SpandrelNetwork, _PLKSR):
    """Partial large-kernel convolutions (a 17x17 kernel on a quarter of the channels), a doubled
    convolutional channel mixer and element-wise attention; one-step pixel-shuffle tail, so any
    integer scale and any input size. Defaults: the paper's PLKSR
    (``options/test/test_PLKSR_DIV2K_X4_64_28_0.25_17.yaml``), 7,386,096 parameters at x4."""

    SPANDREL_ID = "PLKSR"
    DEFAULTS = dict(dim=64, n_blocks=28, kernel_size=17, split_ratio=0.25, ccm_type="DCCM", lk_type="PLK", use_ea=True)


@register("realplksr")
class RealPLKSR(SpandrelNetwork, _RealPLKSR):
    """PLKSR for real-world degradations (neosr): GroupNorm in each block, optional dropout before
    the tail. Defaults: neosr's ``realplksr`` (the community's released models),
    7,389,680 parameters at x4."""

    SPANDREL_ID = "PLKSR"
    DEFAULTS = dict(dim=64, n_blocks=28, kernel_size=17, split_ratio=0.25, use_ea=True, norm_groups=4, dropout=0.0)
