"""VDSR: Kim et al., "Accurate Image Super-Resolution Using Very Deep Convolutional Networks", CVPR 2016."""

from __future__ import annotations

import torch
from torch import nn

from sr_experiments.imaging.imresize import imresize
from sr_experiments.models.registry import check_scale, register


@register("vdsr")
class VDSR(nn.Module):
    """VDSR on RGB: a plain stack of 3x3 convs predicting the residual over the bicubic input.

    The input is first upscaled with MATLAB bicubic (float path, differentiable), as the paper
    does before the network; the network adds its output to that upscaled image (global
    residual learning). Every conv has zero 'same' padding, as in the paper, so sizes are kept.

    Deviations from the paper: it works on the three RGB channels, not on luminance (Y) only,
    so the first and last convs have 3 channels instead of 1 (668,227 parameters instead of
    665,921 at the defaults). The authors released MATLAB/Caffe models only, so there is no
    official PyTorch state dict to match: the names here (``conv_first``, ``body``,
    ``conv_last``) are this framework's own. Weights use He (fan-in, normal) initialisation
    and zero biases as in the paper; its high-learning-rate SGD with gradient clipping is a
    training choice and not part of the module.

    Args:
        scale: upscaling factor (integer >= 2).
        depth: total number of conv layers, input and output convs included (paper: 20).
        width: channels of every hidden layer (paper: 64).
    """

    def __init__(self, scale: int, depth: int = 20, width: int = 64) -> None:
        super().__init__()
        self.scale = check_scale(type(self), scale)
        if depth < 2:
            raise ValueError(f"vdsr needs depth >= 2 (input and output convs), got {depth}")
        self.conv_first = nn.Conv2d(3, width, 3, padding=1)
        body: list[nn.Module] = [nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            body += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*body)
        self.conv_last = nn.Conv2d(width, 3, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # PyTorch's default init (kaiming_uniform, a=sqrt(5)) shrinks activations layer by
                # layer; through 20 plain layers the paper's He init keeps their scale.
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = imresize(x, scale=self.scale)
        return x + self.conv_last(self.body(self.conv_first(x)))
