"""Losses and LR schedules selected by config."""

from __future__ import annotations

import math

import pytest
import torch

from sr_experiments.training.losses import CharbonnierLoss, build_loss
from sr_experiments.training.schedules import build_scheduler


def _lrs(steps: int, **kwargs) -> list[float]:
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, total_steps=steps, **kwargs)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_decays_to_min_lr() -> None:
    lrs = _lrs(100, name="cosine", min_lr=0.01)
    assert lrs[0] == 1.0 and lrs[50] == pytest.approx(0.01 + 0.99 * 0.5, abs=1e-9)
    assert lrs[-1] == pytest.approx(0.01 + 0.99 * (1 + math.cos(math.pi * 99 / 100)) / 2, abs=1e-9)


def test_warmup_then_cosine() -> None:
    lrs = _lrs(100, name="cosine", warmup_steps=10)
    assert lrs[0] == pytest.approx(0.01) and lrs[5] < lrs[9] < 1.0
    assert lrs[10] == pytest.approx(1.0) and lrs[60] < lrs[11]


def test_multistep_halves_at_milestones_counted_from_step_zero() -> None:
    lrs = _lrs(30, name="multistep", milestones=[10, 20], gamma=0.5)
    assert lrs[9] == 1.0 and lrs[10] == 0.5 and lrs[19] == 0.5 and lrs[20] == 0.25
    warm = _lrs(30, name="multistep", milestones=[20], gamma=0.5, warmup_steps=5)
    assert warm[19] == pytest.approx(1.0) and warm[20] == pytest.approx(0.5)


def test_constant_and_errors() -> None:
    assert set(_lrs(10, name="constant")) == {1.0}
    with pytest.raises(ValueError, match="scheduler.name"):
        _lrs(10, name="linear")
    with pytest.raises(ValueError, match="max_steps"):
        _lrs(0, name="cosine")


def test_losses() -> None:
    a, b = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    assert build_loss("l1")(a, b).item() == pytest.approx(0.5)
    assert build_loss("MSE")(a, b).item() == pytest.approx(0.25)
    assert CharbonnierLoss(1e-3)(a, a).item() == pytest.approx(1e-3)
    assert build_loss("charbonnier", 1e-3)(a, b).item() == pytest.approx(math.sqrt(0.25 + 1e-6))
    with pytest.raises(ValueError, match="loss="):
        build_loss("perceptual")
