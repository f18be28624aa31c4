"""Super-resolution networks, registered by name for ``build_network(cfg.model)``.

Importing this package imports every network module, which registers it.
"""

from sr_experiments.models import registry
from sr_experiments.models.registry import (
    NETWORKS,
    SCALES,
    build_network,
    check_scale,
    count_parameters,
    is_multi_frame,
    list_networks,
    model_label,
    register,
    supports_scale,
)

# The imports register the networks (one module per registry name; plksr.py holds plksr and realplksr;
# basicvsr, basicvsrpp and edvr_m are video networks: ``is_multi_frame``).
from sr_experiments.models.atd import ATD
from sr_experiments.models.basicvsr import BasicVSR
from sr_experiments.models.basicvsrpp import BasicVSRPlusPlus
from sr_experiments.models.bicubic import Bicubic
from sr_experiments.models.compact import Compact
from sr_experiments.models.dat import DAT
from sr_experiments.models.drct import DRCT
from sr_experiments.models.edsr import EDSR
from sr_experiments.models.edsr_large import EDSRLarge
from sr_experiments.models.edvr import EDVR
from sr_experiments.models.espcn import ESPCN
from sr_experiments.models.fsrcnn import FSRCNN
from sr_experiments.models.hat import HAT
from sr_experiments.models.imdn import IMDN
from sr_experiments.models.omnisr import OmniSR
from sr_experiments.models.plksr import PLKSR, RealPLKSR
from sr_experiments.models.rcan import RCAN
from sr_experiments.models.rgt import RGT
from sr_experiments.models.rrdbnet import RRDBNet
from sr_experiments.models.safmn import SAFMN
from sr_experiments.models.seed import Seed
from sr_experiments.models.span import SPAN
from sr_experiments.models.srcnn import SRCNN
from sr_experiments.models.swinir import SwinIR, SwinIRLight
from sr_experiments.models.vdsr import VDSR
from sr_experiments.models.zssr import ZSSRNet

__all__ = [
    *registry.__all__,
    "ATD",
    "BasicVSR",
    "BasicVSRPlusPlus",
    "Bicubic",
    "Compact",
    "DAT",
    "DRCT",
    "EDSR",
    "EDSRLarge",
    "EDVR",
    "ESPCN",
    "FSRCNN",
    "HAT",
    "IMDN",
    "OmniSR",
    "PLKSR",
    "RCAN",
    "RealPLKSR",
    "RGT",
    "RRDBNet",
    "SAFMN",
    "Seed",
    "SPAN",
    "SRCNN",
    "SwinIR",
    "SwinIRLight",
    "VDSR",
    "ZSSRNet",
]
