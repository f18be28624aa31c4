"""BasicVSR: Chan et al., "BasicVSR: The Search for Essential Components in Video Super-Resolution
and Beyond", CVPR 2021.

Laid out as BasicSR's ``basicsr/archs/basicvsr_arch.py`` (``BasicVSR``, ``ConvResidualBlocks``):
``spynet``, ``backward_trunk``, ``forward_trunk``, ``fusion``, ``upconv1/2``, ``conv_hr``,
``conv_last``, so BasicSR's ``BasicVSR_REDS4-543c8261.pth`` loads with ``strict=True``; mmagic's
``BasicVSRNet`` layout (``backward_resblocks``, ``upsample1.upsample_conv``) is renamed on load.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from sr_experiments.models.blocks import ResidualBlockNoBN
from sr_experiments.models.registry import check_scale, register
from sr_experiments.models.spynet import build_spynet, clip_flows, flow_warp, from_mmagic_state_dict

MMAGIC_RENAMES = {"backward_resblocks.": "backward_trunk.", "forward_resblocks.": "forward_trunk.",
                  "upsample1.upsample_conv.": "upconv1.", "upsample2.upsample_conv.": "upconv2."}


class ConvResidualBlocks(nn.Module):
    """conv(in, out) + LeakyReLU(0.1) + ``num_block`` residual blocks, as ``main`` (BasicSR's
    ``ConvResidualBlocks``, mmagic's ``ResidualBlocksWithInputConv``: ``main.2.N.conv1``)."""

    def __init__(self, num_in_ch: int, num_out_ch: int, num_block: int) -> None:
        super().__init__()
        blocks = [ResidualBlockNoBN(num_out_ch) for _ in range(num_block)]
        with torch.no_grad():  # BasicSR's default_init_weights(scale=0.1): long residual stacks start near identity
            for conv in (c for b in blocks for c in (b.conv1, b.conv2)):
                nn.init.kaiming_normal_(conv.weight)
                conv.weight.mul_(0.1)
                conv.bias.zero_()
        self.main = nn.Sequential(nn.Conv2d(num_in_ch, num_out_ch, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True),
                                  nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class VideoUpsampler(nn.Module):
    """Mixin of the BasicVSR family's x4 tail: two conv + PixelShuffle(2) steps, conv_hr, conv_last,
    plus the bilinear x4 of the LR frame (the networks learn the residual)."""

    def make_tail(self, num_feat: int) -> None:
        self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
        self.upconv2 = nn.Conv2d(num_feat, 64 * 4, 3, 1, 1)
        self.conv_hr = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv_last = nn.Conv2d(64, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)

    def tail(self, feat: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        feat = self.lrelu(F.pixel_shuffle(self.upconv1(feat), 2))
        feat = self.lrelu(F.pixel_shuffle(self.upconv2(feat), 2))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return out + F.interpolate(lr, scale_factor=4, mode="bilinear", align_corners=False)


def check_clip(net: nn.Module, x: torch.Tensor) -> None:
    """Refuse anything but a (B, T, 3, H, W) clip, in one line."""
    if x.dim() != 5 or x.shape[2] != 3 or x.shape[1] < 1:
        raise ValueError(f"{type(net).__name__} takes (B, T, 3, H, W) clips, got shape {tuple(x.shape)}")


@register("basicvsr", scales=(4,))
class BasicVSR(VideoUpsampler):
    """BasicVSR (BasicSR layout): bidirectional recurrent propagation, each direction aligning the
    previous hidden state to the current frame by SpyNet flow. x4 only. With the defaults it is the
    paper's REDS model: 6,291,311 parameters (1,440,300 of them SpyNet's).

    ``forward`` takes (B, T, 3, H, W) LR in [0, 1] and returns all T frames (B, T, 3, 4H, 4W).

    Args:
        scale: upscaling factor, 4 only (the tail is two fixed x2 steps, as the paper's).
        num_feat: feature channels (BasicSR ``num_feat``, 64).
        num_block: residual blocks per propagation branch (BasicSR ``num_block``; 30 in the
            paper's and BasicSR's REDS/Vimeo configs, 15 the arch file's default).
        spynet_pretrained: a SpyNet weights file (BasicSR's ``spynet_sintel_final-3d2a1287.pth``);
            None: random init, said in the log (pre-train it with ``spynet_pretrain_recipe``).
    """

    multi_frame = True  # takes (B, T, C, H, W) clips: training and evaluation treat it as a video network
    frames_out = "all"  # returns every input frame upscaled
    num_frame = None  # any clip length

    def __init__(self, scale: int = 4, num_feat: int = 64, num_block: int = 30,
                 spynet_pretrained: str | Path | None = None) -> None:
        super().__init__()
        self.scale = check_scale(type(self), scale)
        self.num_feat = num_feat
        self.spynet, self.spynet_source = build_spynet(spynet_pretrained)
        self.backward_trunk = ConvResidualBlocks(num_feat + 3, num_feat, num_block)
        self.forward_trunk = ConvResidualBlocks(num_feat + 3, num_feat, num_block)
        self.fusion = nn.Conv2d(num_feat * 2, num_feat, 1, 1, 0)
        self.make_tail(num_feat)

    def from_official_state_dict(self, state: dict) -> dict:
        """mmagic's BasicVSRNet keys renamed to BasicSR's; BasicSR-layout dicts come back unchanged."""
        return from_mmagic_state_dict(state, MMAGIC_RENAMES)

    def get_flow(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(forward, backward) flows between neighbouring frames (BasicSR's name): ``clip_flows``."""
        return clip_flows(self.spynet, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_clip(self, x)
        flows_forward, flows_backward = self.get_flow(x)
        b, t, _, h, w = x.shape
        backward_feats: list[torch.Tensor] = [x] * t  # placeholders, filled from the last frame back
        feat = x.new_zeros(b, self.num_feat, h, w)
        for i in range(t - 1, -1, -1):
            if i < t - 1:
                feat = flow_warp(feat, flows_backward[:, i])
            feat = self.backward_trunk(torch.cat([x[:, i], feat], dim=1))
            backward_feats[i] = feat
        outs, feat = [], torch.zeros_like(feat)
        for i in range(t):
            if i > 0:
                feat = flow_warp(feat, flows_forward[:, i - 1])
            feat = self.forward_trunk(torch.cat([x[:, i], feat], dim=1))
            fused = self.lrelu(self.fusion(torch.cat([backward_feats[i], feat], dim=1)))
            outs.append(self.tail(fused, x[:, i]))
        return torch.stack(outs, dim=1)
