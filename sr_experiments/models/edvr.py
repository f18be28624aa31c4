"""EDVR: Wang et al., "EDVR: Video Restoration with Enhanced Deformable Convolutional Networks",
CVPRW 2019.

Laid out as BasicSR's ``basicsr/archs/edvr_arch.py`` (``PCDAlignment``, ``TSAFusion``, ``EDVR``;
``DCNv2Pack`` from ``arch_util.py`` keeping its ``conv_offset``), so BasicSR's EDVR releases
(``EDVR_M_x4_SR_REDS_official-32075921.pth``) load with ``strict=True``. Deformable convs run on
``torchvision.ops.deform_conv2d`` (CPU and CUDA). The predeblur / HR-input variants (EDVR's
deblurring models) are not included.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sr_experiments.models.basicvsr import check_clip
from sr_experiments.models.blocks import ResidualBlockNoBN
from sr_experiments.models.deform import ModulatedDeformConv
from sr_experiments.models.registry import check_scale, register


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, k // 2)


class DCNv2Pack(ModulatedDeformConv):
    """Modulated deformable conv whose offsets and mask come from a separate feature (BasicSR's
    ``DCNv2Pack``): ``conv_offset`` maps it to (dy, dx) x 9 x groups offsets and 9 x groups masks."""

    def __init__(self, channels: int, deformable_groups: int) -> None:
        super().__init__(channels, channels, 3, 1, deformable_groups)
        self.conv_offset = _conv(channels, deformable_groups * 27)
        self.zero_last(self.conv_offset)

    def forward(self, x: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        o1, o2, mask = torch.chunk(self.conv_offset(feat), 3, dim=1)
        return self.deform(x, torch.cat((o1, o2), dim=1), torch.sigmoid(mask))


class PCDAlignment(nn.Module):
    """Pyramid, cascading and deformable alignment of a neighbour's features to the reference's, over
    three levels (l3: 1/4 size, first; l1: full size), then one cascading deformable conv."""

    def __init__(self, num_feat: int = 64, deformable_groups: int = 8) -> None:
        super().__init__()
        c = num_feat
        self.offset_conv1, self.offset_conv2, self.offset_conv3 = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
        self.dcn_pack, self.feat_conv = nn.ModuleDict(), nn.ModuleDict()
        for i in (3, 2, 1):  # creation order as BasicSR's (state-dict order)
            level = f"l{i}"
            self.offset_conv1[level] = _conv(2 * c, c)
            self.offset_conv2[level] = _conv(c if i == 3 else 2 * c, c)  # levels below l3 also see the coarser offset
            if i < 3:
                self.offset_conv3[level] = _conv(c, c)
            self.dcn_pack[level] = DCNv2Pack(c, deformable_groups)
            if i < 3:
                self.feat_conv[level] = _conv(2 * c, c)
        self.cas_offset_conv1 = _conv(2 * c, c)
        self.cas_offset_conv2 = _conv(c, c)
        self.cas_dcnpack = DCNv2Pack(c, deformable_groups)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, nbr: list[torch.Tensor], ref: list[torch.Tensor]) -> torch.Tensor:
        up_offset = up_feat = None
        for i in (3, 2, 1):
            level = f"l{i}"
            offset = self.lrelu(self.offset_conv1[level](torch.cat([nbr[i - 1], ref[i - 1]], dim=1)))
            if i == 3:
                offset = self.lrelu(self.offset_conv2[level](offset))
            else:
                offset = self.lrelu(self.offset_conv2[level](torch.cat([offset, up_offset], dim=1)))
                offset = self.lrelu(self.offset_conv3[level](offset))
            feat = self.dcn_pack[level](nbr[i - 1], offset)
            if i < 3:
                feat = self.feat_conv[level](torch.cat([feat, up_feat], dim=1))
            if i > 1:
                feat = self.lrelu(feat)
                # offsets are in pixels of their level: twice as many one level up
                up_offset = F.interpolate(offset, scale_factor=2, mode="bilinear", align_corners=False) * 2
                up_feat = F.interpolate(feat, scale_factor=2, mode="bilinear", align_corners=False)
        offset = self.lrelu(self.cas_offset_conv2(self.lrelu(self.cas_offset_conv1(torch.cat([feat, ref[0]], 1)))))
        return self.lrelu(self.cas_dcnpack(feat, offset))


class TSAFusion(nn.Module):
    """Temporal and spatial attention fusion of the T aligned features into one: each frame weighted
    by its per-pixel correlation with the reference, fused by a 1x1 conv, then modulated by a
    two-level pyramid spatial attention (multiplicative and additive)."""

    def __init__(self, num_feat: int = 64, num_frame: int = 5, center_frame_idx: int = 2) -> None:
        super().__init__()
        c, tc = num_feat, num_frame * num_feat
        self.center_frame_idx = center_frame_idx
        self.temporal_attn1, self.temporal_attn2 = _conv(c, c), _conv(c, c)
        self.feat_fusion = _conv(tc, c, 1)
        self.max_pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avg_pool = nn.AvgPool2d(3, stride=2, padding=1)
        self.spatial_attn1, self.spatial_attn2 = _conv(tc, c, 1), _conv(2 * c, c, 1)
        self.spatial_attn3, self.spatial_attn4, self.spatial_attn5 = _conv(c, c), _conv(c, c, 1), _conv(c, c)
        self.spatial_attn_l1, self.spatial_attn_l2, self.spatial_attn_l3 = _conv(c, c, 1), _conv(2 * c, c), _conv(c, c)
        self.spatial_attn_add1, self.spatial_attn_add2 = _conv(c, c, 1), _conv(c, c, 1)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)

    def _pool_pair(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.max_pool(x), self.avg_pool(x)], dim=1)

    def forward(self, aligned: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = aligned.shape
        ref = self.temporal_attn1(aligned[:, self.center_frame_idx])
        emb = self.temporal_attn2(aligned.reshape(-1, c, h, w)).view(b, t, c, h, w)
        corr = torch.sigmoid((emb * ref.unsqueeze(1)).sum(2, keepdim=True))  # (b, t, 1, h, w)
        weighted = (aligned * corr).reshape(b, t * c, h, w)
        feat = self.lrelu(self.feat_fusion(weighted))
        attn = self.lrelu(self.spatial_attn1(weighted))
        attn = self.lrelu(self.spatial_attn2(self._pool_pair(attn)))
        level = self.lrelu(self.spatial_attn_l1(attn))
        level = self.lrelu(self.spatial_attn_l3(self.lrelu(self.spatial_attn_l2(self._pool_pair(level)))))
        up = {"scale_factor": 2, "mode": "bilinear", "align_corners": False}
        attn = self.lrelu(self.spatial_attn3(attn)) + F.interpolate(level, **up)
        attn = self.spatial_attn5(F.interpolate(self.lrelu(self.spatial_attn4(attn)), **up))
        attn_add = self.spatial_attn_add2(self.lrelu(self.spatial_attn_add1(attn)))
        return feat * torch.sigmoid(attn) * 2 + attn_add  # x2: the sigmoid starts near 0.5


@register("edvr_m", scales=(4,))
class EDVR(nn.Module):
    """EDVR (BasicSR layout): a sliding-window network restoring the centre of ``num_frame`` frames
    with PCD alignment and TSA fusion. x4 only. With the defaults it is EDVR-M: 3,300,131 parameters.

    ``forward`` takes (B, num_frame, 3, H, W) LR in [0, 1], H and W multiples of 4 (two stride-2
    pyramid levels), and returns the centre frame (B, 3, 4H, 4W).

    Args:
        scale: upscaling factor, 4 only.
        num_feat: feature channels (BasicSR ``num_feat``; 64 EDVR-M, 128 EDVR-L).
        num_frame: frames in the window (BasicSR ``num_frame``, 5; 7 for Vimeo-90K).
        deformable_groups: offset groups of the deformable convs (8); divides ``num_feat``.
        num_extract_block: residual blocks before the pyramid (5).
        num_reconstruct_block: residual blocks after fusion (10; 40 EDVR-L).
        center_frame_idx: the reference frame; None: ``num_frame // 2``.
        with_tsa: TSA fusion (True); False: a 1x1 conv over the concatenated frames.
    """

    multi_frame = True  # takes (B, T, C, H, W) clips
    frames_out = "center"  # returns one frame: the window's centre (a sliding window over a clip)

    def __init__(self, scale: int = 4, num_feat: int = 64, num_frame: int = 5, deformable_groups: int = 8,
                 num_extract_block: int = 5, num_reconstruct_block: int = 10, center_frame_idx: int | None = None,
                 with_tsa: bool = True) -> None:
        super().__init__()
        self.scale = check_scale(type(self), scale)
        self.num_frame = num_frame  # the window a caller must hand over
        self.center_frame_idx = num_frame // 2 if center_frame_idx is None else center_frame_idx
        self.with_tsa = with_tsa
        c = num_feat
        self.conv_first = _conv(3, c)
        self.feature_extraction = nn.Sequential(*(ResidualBlockNoBN(c) for _ in range(num_extract_block)))
        self.conv_l2_1, self.conv_l2_2 = _conv(c, c, stride=2), _conv(c, c)
        self.conv_l3_1, self.conv_l3_2 = _conv(c, c, stride=2), _conv(c, c)
        self.pcd_align = PCDAlignment(c, deformable_groups)
        self.fusion = TSAFusion(c, num_frame, self.center_frame_idx) if with_tsa else _conv(num_frame * c, c, 1)
        self.reconstruction = nn.Sequential(*(ResidualBlockNoBN(c) for _ in range(num_reconstruct_block)))
        self.upconv1, self.upconv2 = _conv(c, c * 4), _conv(c, 64 * 4)
        self.conv_hr, self.conv_last = _conv(64, 64), _conv(64, 3)
        self.lrelu = nn.LeakyReLU(0.1, inplace=True)

    def _pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of every frame at full, 1/2 and 1/4 size, each (B, T, C, h, w)."""
        b, t, c, h, w = x.shape
        l1 = self.feature_extraction(self.lrelu(self.conv_first(x.reshape(-1, c, h, w))))
        l2 = self.lrelu(self.conv_l2_2(self.lrelu(self.conv_l2_1(l1))))
        l3 = self.lrelu(self.conv_l3_2(self.lrelu(self.conv_l3_1(l2))))
        return [f.view(b, t, *f.shape[1:]) for f in (l1, l2, l3)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_clip(self, x)
        b, t, _, h, w = x.shape
        if t != self.num_frame or h % 4 or w % 4:
            raise ValueError(f"edvr_m takes windows of {self.num_frame} frames with H and W multiples of 4, "
                             f"got shape {tuple(x.shape)}")
        levels = self._pyramid(x)
        ref = [f[:, self.center_frame_idx] for f in levels]
        aligned = torch.stack([self.pcd_align([f[:, i] for f in levels], ref) for i in range(t)], dim=1)
        feat = self.fusion(aligned if self.with_tsa else aligned.reshape(b, -1, h, w))
        out = self.reconstruction(feat)
        out = self.lrelu(F.pixel_shuffle(self.upconv1(out), 2))
        out = self.lrelu(F.pixel_shuffle(self.upconv2(out), 2))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        centre = x[:, self.center_frame_idx]
        return out + F.interpolate(centre, scale_factor=4, mode="bilinear", align_corners=False)
