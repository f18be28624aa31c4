"""MATLAB bicubic upscaling: the parameter-free baseline every SR paper reports."""

from __future__ import annotations

import torch
from torch import nn

from sr_experiments.imaging.imresize import imresize
from sr_experiments.models.registry import check_scale, register


@register("bicubic")
class Bicubic(nn.Module):
    """Bicubic interpolation exactly as MATLAB's ``imresize(im2uint8(x), scale)``.

    The input is quantised to ``uint8`` first and each resize pass rounds, so the output equals
    the bicubic rows of published tables (which were computed on 8-bit images), not a float
    interpolation that differs by up to half a grey level. It has no parameters and passes no
    gradient; train nothing with it.

    Args:
        scale: upscaling factor (integer >= 2).
    """

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = check_scale(type(self), scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Quantise in at least float32: x * 255 in float16 can land on the wrong side of .5.
        work = x.detach().to(torch.promote_types(x.dtype, torch.float32))
        x_uint8 = torch.floor(work.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
        return imresize(x_uint8, scale=self.scale).to(x.dtype) / 255

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
