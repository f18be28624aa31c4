"""RCAN: Zhang et al., "Image Super-Resolution Using Very Deep Residual Channel Attention Networks", ECCV 2018.

A copy of BasicSR's ``basicsr/archs/rcan_arch.py`` (``ChannelAttention``, ``RCAB``,
``ResidualGroup``, ``RCAN``, with arch_util's ``Upsample``): module names match, so state dicts
in BasicSR's layout load with ``strict=True``. The authors' own checkpoints (EDSR-PyTorch layout:
``head``/``body``/``tail``, ``sub_mean``/``add_mean``) need their keys renamed first.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from sr_experiments.models.blocks import MeanShift, Upsample
from sr_experiments.models.community import SpandrelLayout
from sr_experiments.models.registry import check_scale, register


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: global average pool, 1x1 conv down by ``squeeze``, ReLU, 1x1 up, sigmoid gate."""

    def __init__(self, num_feat: int, squeeze: int = 16) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(num_feat, num_feat // squeeze, 1, padding=0),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_feat // squeeze, num_feat, 1, padding=0),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class RCAB(nn.Module):
    """Residual channel attention block: x + res_scale * CA(conv(ReLU(conv(x))))."""

    def __init__(self, num_feat: int, squeeze: int = 16, res_scale: float = 1.0) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.rcab = nn.Sequential(
            nn.Conv2d(num_feat, num_feat, 3, 1, 1),
            nn.ReLU(True),
            nn.Conv2d(num_feat, num_feat, 3, 1, 1),
            ChannelAttention(num_feat, squeeze),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rcab(x) * self.res_scale + x


class ResidualGroup(nn.Module):
    """``num_block`` RCABs and a closing conv, with a short skip connection around them."""

    def __init__(self, num_feat: int, num_block: int, squeeze: int = 16, res_scale: float = 1.0) -> None:
        super().__init__()
        self.residual_group = nn.Sequential(*(RCAB(num_feat, squeeze, res_scale) for _ in range(num_block)))
        self.conv = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.residual_group(x)) + x


def _to_official(key: str, groups: int, blocks: int) -> str:
    """One BasicSR-layout key in the authors' layout (``groups`` residual groups of ``blocks`` RCABs)."""
    rules = [
        (r"conv_first\.", "head.0."),
        (r"body\.(\d+)\.residual_group\.(\d+)\.rcab\.3\.attention\.1\.", r"body.\1.body.\2.body.3.conv_du.0."),
        (r"body\.(\d+)\.residual_group\.(\d+)\.rcab\.3\.attention\.3\.", r"body.\1.body.\2.body.3.conv_du.2."),
        (r"body\.(\d+)\.residual_group\.(\d+)\.rcab\.(\d+)\.", r"body.\1.body.\2.body.\3."),
        (r"body\.(\d+)\.conv\.", rf"body.\1.body.{blocks}."),
        (r"conv_after_body\.", f"body.{groups}."),
        (r"upsample\.", "tail.0."),
        (r"conv_last\.", "tail.1."),
    ]
    for pattern, replacement in rules:
        new, n = re.subn("^" + pattern, replacement, key)
        if n:
            return new
    return key


@register("rcan", scales=(2, 3, 4, 8))
class RCAN(SpandrelLayout, nn.Module):
    """RCAN (BasicSR's layout). The defaults are the paper's: 15.44 M parameters at x2, 15.59 M at x4.

    Args:
        scale: upscaling factor, 2, 3, 4 or 8 (BasicSR ``upscale``).
        width: feature channels (BasicSR ``num_feat``, paper C = 64).
        groups: residual groups (BasicSR ``num_group``, paper G = 10).
        depth: RCABs per residual group (BasicSR ``num_block``, paper B = 20; BasicSR's default is 16).
        squeeze: channel-attention reduction ratio (BasicSR ``squeeze_factor``, paper r = 16).
        res_scale: residual branch scaling inside each RCAB (BasicSR ``res_scale``; 1 in the paper).
    """

    SPANDREL_ID = "RCAN"

    @staticmethod
    def spec_from_hyperparameters(hp: dict) -> dict | None:
        """Our spec for spandrel's RCAN (the authors' layout) where it is this network."""
        fixed = (hp["n_colors"], hp["rgb_range"], hp["norm"], hp["kernel_size"], hp["act_mode"])
        if fixed != (3, 255, True, 3, "relu") or (hp["unshuffle_mod"] and hp["scale"] <= 2):
            return None
        return {"name": "rcan", "scale": hp["scale"], "width": hp["n_feats"], "groups": hp["n_resgroups"],
                "depth": hp["n_resblocks"], "squeeze": hp["reduction"], "res_scale": float(hp["res_scale"])}

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights in the authors' (EDSR-PyTorch) layout, which spandrel reads: ``head``/``body``/
        ``tail`` and the fixed ``sub_mean``/``add_mean`` 1x1 convs of the DIV2K mean at range 255."""
        state = {_to_official(k, len(self.body), len(self.body[0].residual_group)): v
                 for k, v in self.state_dict().items()}
        mean = self.mean_shift.mean.view(3) * 255.0
        eye = torch.eye(3).view(3, 3, 1, 1)
        state.update({"sub_mean.weight": eye, "sub_mean.bias": -mean, "add_mean.weight": eye.clone(),
                      "add_mean.bias": mean.clone()})
        return state

    def from_official_state_dict(self, state: dict) -> dict:
        """Keys of the authors' layout renamed to ours (the mean convs dropped: fixed here); ours unchanged."""
        if "head.0.weight" not in state:
            return state
        groups, blocks = len(self.body), len(self.body[0].residual_group)
        ours = {_to_official(k, groups, blocks): k for k in self.state_dict()}
        return {ours.get(k, k): v for k, v in state.items() if not k.startswith(("sub_mean.", "add_mean."))}

    def __init__(
        self,
        scale: int,
        width: int = 64,
        groups: int = 10,
        depth: int = 20,
        squeeze: int = 16,
        res_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.scale = check_scale(type(self), scale)
        if width // squeeze < 1:
            raise ValueError(f"rcan: width {width} // squeeze {squeeze} leaves no channel-attention channels")
        self.mean_shift = MeanShift(img_range=255.0)
        self.conv_first = nn.Conv2d(3, width, 3, 1, 1)
        self.body = nn.Sequential(*(ResidualGroup(width, depth, squeeze, res_scale) for _ in range(groups)))
        self.conv_after_body = nn.Conv2d(width, width, 3, 1, 1)
        self.upsample = Upsample(scale, width)
        self.conv_last = nn.Conv2d(width, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_first(self.mean_shift.sub(x))
        res = self.conv_after_body(self.body(x))  # long skip connection around all groups
        res += x
        return self.mean_shift.add(self.conv_last(self.upsample(res)))
