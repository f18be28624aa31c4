"""Pixel losses selected by name from the config (``loss=l1|mse|charbonnier``)."""

from __future__ import annotations

import torch
from torch import nn


class CharbonnierLoss(nn.Module):
    """``mean(sqrt((x - y)^2 + eps^2))``: a differentiable L1 (LapSRN)."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((pred - target).pow(2) + self.eps**2).mean()


LOSSES = {"l1": nn.L1Loss, "mse": nn.MSELoss, "charbonnier": CharbonnierLoss}


def build_loss(name: str, charbonnier_eps: float = 1e-3) -> nn.Module:
    key = str(name).lower()
    if key not in LOSSES:
        raise ValueError(f"loss={name!r} is not known; choose one of {', '.join(LOSSES)}")
    return CharbonnierLoss(charbonnier_eps) if key == "charbonnier" else LOSSES[key]()
