"""RRDBNet: the ESRGAN generator, Wang et al., "ESRGAN: Enhanced Super-Resolution Generative
Adversarial Networks", ECCVW 2018.

A copy of BasicSR's ``basicsr/archs/rrdbnet_arch.py`` (``ResidualDenseBlock``, ``RRDB``,
``RRDBNet``, including its 0.1-scaled Kaiming init of the dense blocks): module names match, so
BasicSR / Real-ESRGAN state dicts (the tensors under ``params`` or ``params_ema``) load with
``strict=True``.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn import functional as F

from sr_experiments.models.community import SpandrelLayout
from sr_experiments.models.registry import check_scale, register


class ResidualDenseBlock(nn.Module):
    """Five densely connected convs (each sees the input and all earlier outputs); residual scaled by 0.2."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        # BasicSR's default_init_weights(..., 0.1): small residuals keep the 69 stacked blocks stable.
        with torch.no_grad():
            for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
                nn.init.kaiming_normal_(conv.weight)
                conv.weight.mul_(0.1)
                conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, the whole again residual with scale 0.2."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


@register("rrdbnet", scales=(2, 4))
class RRDBNet(SpandrelLayout, nn.Module):
    """ESRGAN's generator (BasicSR's layout): 16.70 M parameters at x4 with the defaults.

    The upsampler is fixed at x4 (two nearest x2 + conv steps). As in BasicSR, x2 first
    pixel-unshuffles the input by 2 (so ``conv_first`` takes 12 channels); x3 has no such
    variant and is refused. Unlike BasicSR, x2 also accepts odd input sizes (see ``forward``).

    Args:
        scale: upscaling factor, 4 or 2 (BasicSR ``scale``; its x1 variant is outside this
            framework's scale >= 2 contract).
        width: feature channels (BasicSR ``num_feat``, 64).
        depth: number of RRDBs in the trunk (BasicSR ``num_block``, 23).
        growth: channels added by each dense conv (BasicSR ``num_grow_ch``, 32).
    """

    SPANDREL_ID = "ESRGAN"  # spandrel's id: the same layout and key names, so files go both ways

    @staticmethod
    def spec_from_hyperparameters(hp: dict) -> dict | None:
        """Our spec for spandrel's ESRGAN where it is this network (old-arch and ESRGAN+ variants,
        other scales or activations are not: spandrel's module runs those)."""
        # spandrel's x2 is its x4 network behind a pixel unshuffle by 2, as ours.
        layout = (hp["scale"], hp["in_nc"], hp["shuffle_factor"])
        if layout not in ((4, 3, None), (4, 12, 2)) or (hp["out_nc"], hp["plus"], hp["norm"], hp["act"],
                                                        hp["upsampler"], hp["mode"]) != (3, False, None, "leakyrelu", "upconv", "CNA"):
            return None
        return {"name": "rrdbnet", "scale": 4 // (hp["shuffle_factor"] or 1), "width": hp["num_filters"],
                "depth": hp["num_blocks"]}

    def from_official_state_dict(self, state: dict) -> dict:
        """The original ESRGAN layout (``model.0`` ... ``model.10``, as spandrel keeps it) renamed to
        BasicSR's; BasicSR-layout dicts are returned unchanged."""
        if "model.0.weight" not in state:
            return state
        depth = len(self.body)
        fixed = {"model.0.": "conv_first.", f"model.1.sub.{depth}.": "conv_body.", "model.3.": "conv_up1.",
                 "model.6.": "conv_up2.", "model.8.": "conv_hr.", "model.10.": "conv_last."}
        renamed = {}
        for key, value in state.items():
            new = re.sub(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.", r"body.\1.rdb\2.conv\3.", key)
            for old, ours in fixed.items():
                if new.startswith(old):
                    new = ours + new[len(old):]
            renamed[new] = value
        return renamed

    def __init__(self, scale: int, width: int = 64, depth: int = 23, growth: int = 32) -> None:
        super().__init__()
        if scale == 3:  # the reason, not only the scale list
            raise ValueError("rrdbnet does not support scale 3: RRDBNet (ESRGAN) only has x4 and x2 variants")
        self.scale = check_scale(type(self), scale)
        in_ch = 3 * 4 if scale == 2 else 3
        self.conv_first = nn.Conv2d(in_ch, width, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(width, growth) for _ in range(depth)))
        self.conv_body = nn.Conv2d(width, width, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(width, width, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(width, width, 3, 1, 1)
        self.conv_hr = nn.Conv2d(width, width, 3, 1, 1)
        self.conv_last = nn.Conv2d(width, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.scale == 2:
            # BasicSR needs even sizes here; pad odd ones by one reflected row/column, as spandrel
            # (chaiNNer) does, and crop the output back (identical to BasicSR whenever BasicSR accepts
            # the input). A 1-pixel side has nothing to reflect: replicated.
            x = F.pad(x, (0, w % 2, 0, h % 2), mode="reflect" if min(h, w) > 1 else "replicate")
            feat = F.pixel_unshuffle(x, 2)  # same channel order as BasicSR's pixel_unshuffle
        else:
            feat = x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return out[..., : h * self.scale, : w * self.scale]
