"""Learning-rate schedules built from torch's own schedulers (per optimizer step)."""

from __future__ import annotations

from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    SequentialLR,
)

SCHEDULES = ("cosine", "multistep", "constant")


def build_scheduler(
    optimizer: Optimizer,
    total_steps: int,
    name: str = "cosine",
    warmup_steps: int = 0,
    milestones: Sequence[int] = (),
    gamma: float = 0.5,
    min_lr: float = 0.0,
) -> LRScheduler:
    """A stepwise schedule with optional linear warmup.

    Args:
        optimizer: the optimizer to schedule.
        total_steps: length of training in optimizer steps (``trainer.max_steps``).
        name: ``cosine`` (to ``min_lr`` at ``total_steps``), ``multistep`` (times ``gamma`` at each
            of ``milestones``, counted from step 0, EDSR's "halve every 200k"), or ``constant``.
        warmup_steps: linear warmup from 1% of the learning rate, then the schedule.
    """
    if name not in SCHEDULES:
        raise ValueError(f"scheduler.name={name!r} is not known; choose one of {', '.join(SCHEDULES)}")
    if total_steps <= 0:
        raise ValueError(f"the schedule needs a positive number of steps (trainer.max_steps), got {total_steps}")
    warmup_steps = max(0, min(int(warmup_steps), total_steps - 1))
    rest = total_steps - warmup_steps
    if name == "cosine":
        main: LRScheduler = CosineAnnealingLR(optimizer, T_max=max(1, rest), eta_min=min_lr)
    elif name == "multistep":
        shifted = sorted(max(1, int(m) - warmup_steps) for m in milestones)
        main = MultiStepLR(optimizer, milestones=shifted, gamma=gamma)
    else:
        main = ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup_steps == 0:
        return main
    warmup = LinearLR(optimizer, start_factor=0.01, end_factor=1.0, total_iters=warmup_steps)
    return SequentialLR(optimizer, [warmup, main], milestones=[warmup_steps])
