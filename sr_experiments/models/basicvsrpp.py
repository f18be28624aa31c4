"""BasicVSR++: Chan et al., "BasicVSR++: Improving Video Super-Resolution with Enhanced Propagation
and Alignment", CVPR 2022.

Laid out as mmagic's ``mmagic/models/editors/basicvsr_plusplus_net/basicvsr_plusplus_net.py`` (the
authors' release, ``basicvsr_plusplus_c64n7_8x1_600k_reds4_20210217-db622b2f.pth``): ``spynet``,
``feat_extract``, ``deform_align.{backward_1,forward_1,backward_2,forward_2}``,
``backbone.{...}``, ``reconstruction``, ``upsample1/2.upsample_conv``, ``conv_hr``, ``conv_last``.
mmagic's SpyNet keys (``.conv.``) and BasicSR's ``basicvsrpp_arch.py`` names (``upconv1/2``) are
renamed on load, so both load with ``strict=True``. The flow-guided deformable alignment runs on
``torchvision.ops.deform_conv2d`` (CPU and CUDA), not mmcv.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from sr_experiments.models.basicvsr import ConvResidualBlocks, check_clip
from sr_experiments.models.deform import ModulatedDeformConv
from sr_experiments.models.registry import check_scale, register
from sr_experiments.models.spynet import build_spynet, clip_flows, flow_warp, from_mmagic_state_dict

BRANCHES = ("backward_1", "forward_1", "backward_2", "forward_2")  # the propagation order
BASICSR_RENAMES = {"upconv1.": "upsample1.upsample_conv.", "upconv2.": "upsample2.upsample_conv."}


class SecondOrderDeformableAlignment(ModulatedDeformConv):
    """Flow-guided deformable alignment of the features one and two steps back (2C channels in, C
    out, 16 offset groups: the first 8 sample the t-1 feature, the last 8 the t-2 one). Offsets are
    the flows plus residues bounded by ``max_residue_magnitude`` (Eq. 6 of the paper)."""

    def __init__(self, channels: int, max_residue_magnitude: float = 10, deformable_groups: int = 16) -> None:
        super().__init__(2 * channels, channels, 3, 1, deformable_groups)
        self.max_residue_magnitude = max_residue_magnitude
        self.conv_offset = nn.Sequential(
            nn.Conv2d(3 * channels + 4, channels, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(channels, 27 * deformable_groups, 3, 1, 1),
        )
        self.zero_last(self.conv_offset[-1])

    def forward(self, x: torch.Tensor, cond: torch.Tensor, flow_1: torch.Tensor, flow_2: torch.Tensor) -> torch.Tensor:
        o1, o2, mask = torch.chunk(self.conv_offset(torch.cat([cond, flow_1, flow_2], dim=1)), 3, dim=1)
        residue_1, residue_2 = torch.chunk(self.max_residue_magnitude * torch.tanh(torch.cat((o1, o2), 1)), 2, dim=1)
        # deform_conv2d wants (dy, dx) per kernel point: the flows (dx, dy) flipped, one copy per point.
        points = residue_1.shape[1] // 2
        offset_1 = residue_1 + flow_1.flip(1).repeat(1, points, 1, 1)
        offset_2 = residue_2 + flow_2.flip(1).repeat(1, points, 1, 1)
        return self.deform(x, torch.cat([offset_1, offset_2], dim=1), torch.sigmoid(mask))


class PixelShufflePack(nn.Module):
    """conv(C, 4 C_out) + PixelShuffle(2), named as mmagic's (``upsample_conv``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.upsample_conv = nn.Conv2d(in_channels, out_channels * 4, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.upsample_conv(x), 2)


@register("basicvsrpp", scales=(4,))
class BasicVSRPlusPlus(nn.Module):
    """BasicVSR++ (mmagic layout): second-order grid propagation (backward, forward, backward,
    forward, each branch seeing all earlier ones) with flow-guided deformable alignment. x4 only.
    With the defaults it is the paper's model: 7,322,927 parameters (1,440,300 of them SpyNet's).

    ``forward`` takes (B, T, 3, H, W) LR in [0, 1] and returns all T frames (B, T, 3, 4H, 4W).
    (mmagic asserts H, W >= 64 for SpyNet's sake; smaller inputs run here, with coarser flow.)

    Args:
        scale: upscaling factor, 4 only.
        mid_channels: feature channels (mmagic ``mid_channels``, 64); a multiple of 8 (16 offset
            groups over 2 x mid_channels).
        num_blocks: residual blocks per propagation branch (mmagic ``num_blocks``, 7).
        max_residue_magnitude: bound of the learned offset residue around the flow (10).
        spynet_pretrained: a SpyNet weights file; None: random init, said in the log.
    """

    multi_frame = True  # takes (B, T, C, H, W) clips
    frames_out = "all"  # returns every input frame upscaled
    num_frame = None  # any clip length

    def __init__(self, scale: int = 4, mid_channels: int = 64, num_blocks: int = 7, max_residue_magnitude: float = 10,
                 spynet_pretrained: str | Path | None = None) -> None:
        super().__init__()
        self.scale = check_scale(type(self), scale)
        if mid_channels % 8:
            raise ValueError(f"basicvsrpp: model.mid_channels={mid_channels} must be a multiple of 8 "
                             "(16 deformable groups over 2 x mid_channels)")
        self.mid_channels = mid_channels
        self.spynet, self.spynet_source = build_spynet(spynet_pretrained)
        self.feat_extract = ConvResidualBlocks(3, mid_channels, 5)
        self.deform_align = nn.ModuleDict(
            {b: SecondOrderDeformableAlignment(mid_channels, max_residue_magnitude) for b in BRANCHES})
        self.backbone = nn.ModuleDict(
            {b: ConvResidualBlocks((2 + i) * mid_channels, mid_channels, num_blocks) for i, b in enumerate(BRANCHES)})
        self.reconstruction = ConvResidualBlocks(5 * mid_channels, mid_channels, 5)
        self.upsample1 = PixelShufflePack(mid_channels, mid_channels)
        self.upsample2 = PixelShufflePack(mid_channels, 64)
        self.conv_hr = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv_last = nn.Conv2d(64, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)

    def from_official_state_dict(self, state: dict) -> dict:
        """mmagic checkpoints (``generator.`` prefix, SpyNet ``.conv.``) and BasicSR's names in ours."""
        return from_mmagic_state_dict(state, BASICSR_RENAMES)

    def compute_flow(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(forward, backward) flows between neighbouring frames (mmagic's name): ``clip_flows``."""
        return clip_flows(self.spynet, x)

    def _align(self, branch: str, prop: list[torch.Tensor], current: torch.Tensor, flows: torch.Tensor,
               flow_idx: list[int], i: int) -> torch.Tensor:
        """The hidden state aligned to the current frame from the states 1 and 2 steps back."""
        feat_1, flow_1 = prop[-1], flows[:, flow_idx[i]]
        cond_1 = flow_warp(feat_1, flow_1)
        feat_2, flow_2, cond_2 = torch.zeros_like(feat_1), torch.zeros_like(flow_1), torch.zeros_like(cond_1)
        if i > 1:  # second order: the flow to t-2 composed through t-1
            feat_2 = prop[-2]
            flow_2 = flow_1 + flow_warp(flows[:, flow_idx[i - 1]], flow_1)
            cond_2 = flow_warp(feat_2, flow_2)
        cond = torch.cat([cond_1, current, cond_2], dim=1)
        return self.deform_align[branch](torch.cat([feat_1, feat_2], dim=1), cond, flow_1, flow_2)

    def propagate(self, feats: dict[str, list[torch.Tensor]], flows: torch.Tensor, branch: str) -> None:
        """Run one branch over the clip, adding ``feats[branch]`` (T features, in frame order)."""
        b, steps, _, h, w = flows.shape
        frame_idx = list(range(steps + 1))
        flow_idx = list(range(-1, steps))
        if branch.startswith("backward"):
            frame_idx = frame_idx[::-1]
            flow_idx = frame_idx
        earlier = [k for k in feats if k != "spatial"]  # the branches already run, in order
        prop: list[torch.Tensor] = []
        feat = flows.new_zeros(b, self.mid_channels, h, w)
        for i, idx in enumerate(frame_idx):
            current = feats["spatial"][idx]
            if i > 0:
                feat = self._align(branch, prop, current, flows, flow_idx, i)
            inputs = [current] + [feats[k][idx] for k in earlier] + [feat]
            feat = feat + self.backbone[branch](torch.cat(inputs, dim=1))
            prop.append(feat)
        feats[branch] = prop[::-1] if branch.startswith("backward") else prop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_clip(self, x)
        b, t, c, h, w = x.shape
        spatial = self.feat_extract(x.reshape(-1, c, h, w)).view(b, t, -1, h, w)
        feats = {"spatial": list(spatial.unbind(1))}
        flows_forward, flows_backward = self.compute_flow(x)
        for branch in BRANCHES:
            self.propagate(feats, flows_backward if branch.startswith("backward") else flows_forward, branch)
        outs = []
        for i in range(t):
            hr = self.reconstruction(torch.cat([feats[k][i] for k in ("spatial", *BRANCHES)], dim=1))
            hr = self.lrelu(self.upsample2(self.lrelu(self.upsample1(hr))))
            hr = self.conv_last(self.lrelu(self.conv_hr(hr)))
            outs.append(hr + F.interpolate(x[:, i], scale_factor=4, mode="bilinear", align_corners=False))
        return torch.stack(outs, dim=1)
