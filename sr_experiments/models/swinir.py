"""SwinIR: Liang et al., "SwinIR: Image Restoration Using Swin Transformer", ICCVW 2021.

A re-typing of the official ``models/network_swinir.py`` (JingyunLiang/SwinIR) without timm:
module and parameter names match, so the released ``*_SwinIR-M_x*.pth`` / ``*_SwinIR-S_x*.pth``
files load with ``strict=True`` (directly, or with ``load_official`` for the ``{"params": ...}``
wrapper and a file path). Registered as:

* ``swinir``: classical SR, SwinIR-M (6 RSTB x 6 layers, 180 channels, ``pixelshuffle``);
* ``swinir_light``: lightweight SR, SwinIR-S (4 x 6, 60 channels, ``pixelshuffledirect``).

Buffers. The official blocks register ``relative_position_index`` and ``attn_mask`` as
persistent buffers, so the released state dicts carry them. Both are pure functions of
``window_size`` and ``img_size``; here they are *non-persistent* (absent from our state dicts)
and a load_state_dict pre-hook drops them from incoming state dicts. So official files load with
``strict=True`` at any ``img_size`` (the DF2K s64 and DIV2K s48 classical files differ only in
the shape of ``attn_mask``), and a state dict naming any other unknown key is still refused.

Deviations from the official code, none of which touches a parameter:

* ``forward`` pads any h, w up to a multiple of the window size itself, by mirroring (the
  official test script's ``cat([x, flip(x)])``, i.e. symmetric padding that repeats the edge
  pixel; repeated for inputs smaller than half a window) and crops the output back. Unlike that
  script it adds no padding when the size already is a multiple, so 48/64 training patches run
  unpadded as in official training.
* ``use_checkpoint`` passes ``x_size`` (the official call omits it and fails).
* The shifted-window mask for sizes other than ``img_size`` is built on the input's device.
* No ``ape`` (absolute position embedding: it fixes the input size; no SR model uses it),
  no ``patch_size`` (only 1 works officially), no ``norm_layer`` argument (always LayerNorm),
  no ``upsampler=''`` (denoising / JPEG, scale 1), no FLOP counters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import checkpoint

from sr_experiments.models.blocks import MeanShift, Upsample, UpsampleOneStep
from sr_experiments.models.registry import check_scale, register
from sr_experiments.models.weights import read_weights, unwrap_state_dict

__all__ = ["SwinIR", "SwinIRLight", "load_official", "pad_to_multiple"]

# Official buffers that our blocks rebuild instead of loading (see module docstring).
_DERIVED_BUFFERS = ("relative_position_index", "attn_mask")


def _drop_derived_buffers(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    for name in _DERIVED_BUFFERS:
        state_dict.pop(prefix + name, None)


def _to_2tuple(x: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(x, int):
        return (x, x)
    h, w = x
    return (int(h), int(w))


class DropPath(nn.Module):
    """Stochastic depth per sample (timm's ``DropPath``: survivors are scaled by 1/keep)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Mlp(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * num_windows, window_size, window_size, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window_size, window_size, c)


def window_reverse(windows: torch.Tensor, window_size: int, h: int, w: int) -> torch.Tensor:
    """Inverse of ``window_partition``: -> (B, H, W, C)."""
    b = windows.shape[0] // ((h // window_size) * (w // window_size))
    x = windows.view(b, h // window_size, w // window_size, window_size, window_size, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, -1)


def relative_position_index(window_size: tuple[int, int]) -> torch.Tensor:
    """(Wh*Ww, Wh*Ww) index into the (2Wh-1)(2Ww-1) bias table for each token pair of a window."""
    wh, ww = window_size
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()  # N, N, 2
    rel[:, :, 0] += wh - 1  # shift to start from 0
    rel[:, :, 1] += ww - 1
    rel[:, :, 0] *= 2 * ww - 1
    return rel.sum(-1)


class WindowAttention(nn.Module):
    """Window multi-head self-attention with a learned relative position bias (official layout)."""

    def __init__(
        self,
        dim: int,
        window_size: tuple[int, int],
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size[0] - 1) * (2 * window_size[1] - 1), num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)
        self.register_load_state_dict_pre_hook(_drop_derived_buffers)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (num_windows*B, N, C); mask: (num_windows, N, N) of 0 / -100, or None."""
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b_ // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        attn = self.attn_drop(self.softmax(attn))
        x = (attn @ v).transpose(1, 2).reshape(b_, n, c)
        return self.proj_drop(self.proj(x))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}"


class SwinTransformerBlock(nn.Module):
    """(Shifted-)window attention + MLP, each pre-norm with a residual (official layout)."""

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.mlp_ratio = mlp_ratio
        if min(input_resolution) <= window_size:
            # Training patches no larger than a window: one window, nothing to shift (official rule).
            self.shift_size = 0
            self.window_size = min(input_resolution)
        if not 0 <= self.shift_size < self.window_size:
            raise ValueError(f"shift_size must be in [0, window_size), got {self.shift_size}")
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(
            dim, _to_2tuple(self.window_size), num_heads, qkv_bias, qk_scale, attn_drop, proj_drop=drop
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        # The mask for img_size, cached; other sizes get theirs built per call (as officially).
        attn_mask = self.calculate_mask(input_resolution) if self.shift_size > 0 else None
        self.register_buffer("attn_mask", attn_mask, persistent=False)
        self.register_load_state_dict_pre_hook(_drop_derived_buffers)

    def calculate_mask(self, x_size: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
        """(num_windows, ws*ws, ws*ws) mask: -100 between tokens that the cyclic shift brought together."""
        h, w = x_size
        img_mask = torch.zeros((1, h, w, 1), device=device)
        slices = (
            slice(0, -self.window_size),
            slice(-self.window_size, -self.shift_size),
            slice(-self.shift_size, None),
        )
        cnt = 0
        for hs in slices:
            for ws in slices:
                img_mask[:, hs, ws, :] = cnt
                cnt += 1
        mask_windows = window_partition(img_mask, self.window_size).view(-1, self.window_size * self.window_size)
        attn_mask = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
        return attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        h, w = x_size
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        windows = window_partition(x, self.window_size).view(-1, self.window_size * self.window_size, c)
        if self.shift_size == 0:
            mask = None
        elif tuple(x_size) == tuple(self.input_resolution):
            mask = self.attn_mask
        else:
            mask = self.calculate_mask(x_size, x.device).to(x.dtype)
        windows = self.attn(windows, mask=mask).view(-1, self.window_size, self.window_size, c)
        x = window_reverse(windows, self.window_size, h, w)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = shortcut + self.drop_path(x.view(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, input_resolution={self.input_resolution}, num_heads={self.num_heads}, "
            f"window_size={self.window_size}, shift_size={self.shift_size}, mlp_ratio={self.mlp_ratio}"
        )


class BasicLayer(nn.Module):
    """``depth`` Swin blocks alternating unshifted / shifted by half a window."""

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float | Sequence[float] = 0.0,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.depth = depth
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim=dim,
                input_resolution=input_resolution,
                num_heads=num_heads,
                window_size=window_size,
                shift_size=0 if i % 2 == 0 else window_size // 2,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop,
                attn_drop=attn_drop,
                drop_path=drop_path[i] if isinstance(drop_path, Sequence) else drop_path,
            )
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        for blk in self.blocks:
            if self.use_checkpoint and torch.is_grad_enabled():
                x = checkpoint.checkpoint(blk, x, x_size, use_reentrant=False)
            else:
                x = blk(x, x_size)
        return x


class PatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, H*W, C) tokens (patch size 1), optionally LayerNorm-ed."""

    def __init__(self, embed_dim: int, norm: bool = False) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.norm = nn.LayerNorm(embed_dim) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)
        return self.norm(x) if self.norm is not None else x


class PatchUnEmbed(nn.Module):
    """(B, H*W, C) tokens -> (B, C, H, W)."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        return x.transpose(1, 2).reshape(x.shape[0], self.embed_dim, x_size[0], x_size[1])


def _resi_conv(dim: int, resi_connection: str) -> nn.Module:
    """The conv closing each RSTB and the body: one 3x3, or the cheaper 3x3-1x1-3x3 bottleneck."""
    if resi_connection == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if resi_connection == "3conv":
        return nn.Sequential(
            nn.Conv2d(dim, dim // 4, 3, 1, 1),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Conv2d(dim // 4, dim // 4, 1, 1, 0),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Conv2d(dim // 4, dim, 3, 1, 1),
        )
    raise ValueError(f"resi_connection must be '1conv' or '3conv', got {resi_connection!r}")


class RSTB(nn.Module):
    """Residual Swin Transformer Block: Swin blocks, then a conv on the image grid, plus identity."""

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float | Sequence[float] = 0.0,
        use_checkpoint: bool = False,
        resi_connection: str = "1conv",
    ) -> None:
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.residual_group = BasicLayer(
            dim, input_resolution, depth, num_heads, window_size, mlp_ratio, qkv_bias, qk_scale,
            drop, attn_drop, drop_path, use_checkpoint,
        )  # fmt: skip
        self.conv = _resi_conv(dim, resi_connection)
        self.patch_embed = PatchEmbed(dim)  # no norm here, hence no parameters (as officially)
        self.patch_unembed = PatchUnEmbed(dim)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        return self.patch_embed(self.conv(self.patch_unembed(self.residual_group(x, x_size), x_size))) + x


def pad_to_multiple(x: torch.Tensor, multiple: int, minimum: int = 1) -> torch.Tensor:
    """Mirror-pad the bottom and right of (N, C, H, W) up to multiples of ``multiple``, and to at
    least ``minimum`` pixels.

    The official test script's ``cat([x, flip(x)])`` (symmetric: the edge pixel repeats), applied
    again while the input is shorter than the padding; sizes already a multiple are left alone.
    """
    for dim in (-2, -1):
        size = x.shape[dim]
        target = max(-(-size // multiple) * multiple, minimum)
        while x.shape[dim] < target:
            x = torch.cat([x, torch.flip(x, [dim])], dim)
        x = x.narrow(dim, 0, target)
    return x


_UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv")


@register("swinir", scales=(2, 3, 4, 8))
class SwinIR(nn.Module):
    """SwinIR with the official module names. Defaults: classical SR, SwinIR-M (11.75 M params at x2).

    Args:
        scale: upscaling factor (official ``upscale``): 2, 3, 4, 8 for ``pixelshuffle``, any
            integer >= 2 for ``pixelshuffledirect``, 4 for ``nearest+conv``.
        in_chans: image channels (3: RGB, normalised by the DIV2K mean).
        img_size: training patch size (LR). Only sets the cached shifted-window masks and, if
            <= window_size, shrinks the window; no parameter depends on it. Official classical
            files: 48 (DIV2K "s48") or 64 (DF2K "s64"); lightweight: 64.
        embed_dim: channels of the transformer body.
        depths: Swin blocks per RSTB (one entry per RSTB).
        num_heads: attention heads per RSTB.
        window_size: attention window side (LR pixels); inputs are padded to a multiple of it.
        mlp_ratio: MLP hidden width / embed_dim.
        qkv_bias, qk_scale: query/key/value bias; override of head_dim ** -0.5.
        drop_rate, attn_drop_rate: dropout after the MLP/projection, on attention weights.
        drop_path_rate: stochastic depth, rising linearly from 0 over all blocks (official 0.1).
        patch_norm: LayerNorm after the patch embedding.
        use_checkpoint: activation checkpointing of each Swin block (saves memory in training).
        img_range: pixel range the body works in (1.0 for every official SR model).
        upsampler: ``pixelshuffle`` (classical), ``pixelshuffledirect`` (lightweight) or
            ``nearest+conv`` (real-world x4).
        resi_connection: ``1conv`` or ``3conv`` (the bottleneck of the large real-world model).
        pad_mode: how an input is padded to the window: ``symmetric`` (the official test script's
            flip, which published numbers use) or ``reflect`` (the network's own ``check_image_size``,
            as spandrel, chaiNNer and ComfyUI run it). Only the right and bottom edge of inputs that
            are not a multiple of the window differ.
    """

    SPANDREL_ID = "SwinIR"

    @classmethod
    def spec_from_spandrel(cls, model: nn.Module) -> dict | None:
        """Our spec for spandrel's SwinIR ``model`` where it is this network (RGB, patch size 1, no
        absolute position embedding or input unshuffle; the official upsamplers)."""
        from spandrel.architectures.SwinIR import SwinIR as Official

        if type(model) is not Official:
            return None
        hp = model.hyperparameters
        if (hp["patch_size"], hp["in_chans"], hp["ape"], hp.get("start_unshuffle", 1)) != (1, 3, False, 1) or hp["upscale"] < 2:
            return None
        keys = ("img_size", "embed_dim", "depths", "num_heads", "window_size", "mlp_ratio", "qkv_bias", "qk_scale",
                "drop_path_rate", "img_range", "upsampler", "resi_connection")
        spec = {k: list(hp[k]) if isinstance(hp[k], (list, tuple)) else hp[k] for k in keys}
        light = spec["upsampler"] == "pixelshuffledirect"
        return {"name": "swinir_light" if light else "swinir", "scale": hp["upscale"], **spec,
                "mlp_ratio": float(spec["mlp_ratio"]), "img_range": float(spec["img_range"]), "pad_mode": "reflect"}

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict with the derived buffers the official files carry (spandrel reads the
        window size from ``relative_position_index`` and the image size from ``attn_mask``)."""
        state = self.state_dict()
        for name, buffer in self.named_buffers():
            if name.rsplit(".", 1)[-1] in _DERIVED_BUFFERS and buffer is not None:
                state[name] = buffer
        return state

    def __init__(
        self,
        scale: int,
        in_chans: int = 3,
        img_size: int | Sequence[int] = 48,
        embed_dim: int = 180,
        depths: Sequence[int] = (6, 6, 6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6),
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        patch_norm: bool = True,
        use_checkpoint: bool = False,
        img_range: float = 1.0,
        upsampler: str = "pixelshuffle",
        resi_connection: str = "1conv",
        pad_mode: str = "symmetric",
    ) -> None:
        # A port of the official SwinIR constructor (its argument and module names, which official files need): kept whole.
        super().__init__()
        if pad_mode not in ("symmetric", "reflect"):
            raise ValueError(f"pad_mode must be symmetric or reflect, got {pad_mode!r}")
        self.pad_mode = pad_mode
        if upsampler not in _UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {', '.join(_UPSAMPLERS)}, got {upsampler!r}")
        # The upsampler sets the scales: each default one has its network's registered scales.
        name = "swinir_light" if upsampler == "pixelshuffledirect" else "swinir"
        self.scale = check_scale(name, scale)
        if upsampler == "nearest+conv" and scale != 4:
            raise ValueError(
                f"network {name!r} with upsampler nearest+conv does not support scale {scale!r} (supported: 4)"
            )
        if len(depths) != len(num_heads) or not depths:
            raise ValueError(f"depths and num_heads need the same, non-zero length: {depths} vs {num_heads}")
        num_feat = 64
        self.mean_shift = MeanShift(img_range, in_chans)
        self.upsampler = upsampler

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)

        self.patches_resolution = _to_2tuple(img_size)
        # Blocks shrink their window to a patch no larger than it; pad to what they really use.
        self.pad_multiple = min(min(self.patches_resolution), window_size)
        self.patch_embed = PatchEmbed(embed_dim, norm=patch_norm)
        self.patch_unembed = PatchUnEmbed(embed_dim)
        self.pos_drop = nn.Dropout(p=drop_rate)
        # Stochastic-depth decay rule; computed on the CPU so the model also builds on the meta device.
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.layers = nn.ModuleList(
            RSTB(
                dim=embed_dim,
                input_resolution=self.patches_resolution,
                depth=depths[i],
                num_heads=num_heads[i],
                window_size=window_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=dpr[sum(depths[:i]) : sum(depths[: i + 1])],
                use_checkpoint=use_checkpoint,
                resi_connection=resi_connection,
            )
            for i in range(len(depths))
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = _resi_conv(embed_dim, resi_connection)

        if upsampler == "pixelshuffle":
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True)
            )
            self.upsample = Upsample(scale, num_feat)
            self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)
        elif upsampler == "pixelshuffledirect":
            self.upsample = UpsampleOneStep(scale, embed_dim, in_chans)
        else:  # nearest+conv: fewer checkerboard artefacts for real-world SR
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(embed_dim, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True)
            )
            self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)
            self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x_size = (x.shape[2], x.shape[3])
        x = self.pos_drop(self.patch_embed(x))
        for layer in self.layers:
            x = layer(x, x_size)
        return self.patch_unembed(self.norm(x), x_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.pad_mode == "reflect":
            m = self.pad_multiple
            x = F.pad(x, (0, -w % m, 0, -h % m), mode="reflect")
        else:
            x = pad_to_multiple(x, self.pad_multiple)
        x = self.conv_first(self.mean_shift.sub(x))
        x = self.conv_after_body(self.forward_features(x)) + x
        if self.upsampler == "pixelshuffle":
            x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        elif self.upsampler == "pixelshuffledirect":
            x = self.upsample(x)
        else:
            x = self.conv_before_upsample(x)
            x = self.lrelu(self.conv_up1(F.interpolate(x, scale_factor=2, mode="nearest")))
            x = self.lrelu(self.conv_up2(F.interpolate(x, scale_factor=2, mode="nearest")))
            x = self.conv_last(self.lrelu(self.conv_hr(x)))
        return self.mean_shift.add(x)[..., : h * self.scale, : w * self.scale]


@register("swinir_light")
class SwinIRLight(SwinIR):
    """Lightweight SR, SwinIR-S (910 K params at x2): ``SwinIR`` with the official lightweight defaults."""

    def __init__(
        self,
        scale: int,
        in_chans: int = 3,
        img_size: int | Sequence[int] = 64,
        embed_dim: int = 60,
        depths: Sequence[int] = (6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6),
        window_size: int = 8,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        patch_norm: bool = True,
        use_checkpoint: bool = False,
        img_range: float = 1.0,
        upsampler: str = "pixelshuffledirect",
        resi_connection: str = "1conv",
        pad_mode: str = "symmetric",
    ) -> None:
        super().__init__(
            scale, in_chans, img_size, embed_dim, depths, num_heads, window_size, mlp_ratio, qkv_bias,
            qk_scale, drop_rate, attn_drop_rate, drop_path_rate, patch_norm, use_checkpoint, img_range,
            upsampler, resi_connection, pad_mode,
        )  # fmt: skip


def load_official(
    net: nn.Module, checkpoint: str | PathLike | Mapping[str, Any], key: str | None = None, strict: bool = True
) -> Any:
    """Load an official SwinIR release (a path or an already loaded dict) into ``net``.

    Unwraps ``checkpoint[key]`` when present; by default ``"params"``, else ``"params_ema"``
    (``main_test_swinir.py`` takes ``params_ema`` for the real-world models: pass it as ``key``).
    The derived buffers the files carry are dropped by the blocks' load hooks, so plain
    ``load_state_dict`` works too. Returns ``load_state_dict``'s result.
    """
    if not isinstance(checkpoint, Mapping):
        checkpoint = read_weights(checkpoint)
    if key is None and "params" in checkpoint:  # the classical releases: "params", as main_test_swinir.py
        key = "params"
    return net.load_state_dict(unwrap_state_dict(checkpoint, key), strict=strict)
