"""ZSSR's learning-rate policy and stopping rule (official ``ZSSR.py``, ``learning_rate_policy``).

Every ``test_every`` steps the network reconstructs the input from its own downscaled copy and the
mean squared error is recorded. Every ``check_every`` steps, once ``min_steps`` have passed since
the last change, a line is fitted to the last ``slope_range // test_every`` errors; when the fall
it predicts is small against the fit's noise (``-change_ratio * slope < std`` of the slope), the
rate is divided by 10. Training stops when the rate drops below ``min_learning_rate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LRPolicy:
    learning_rate: float = 1e-3  # [learning_rate = 0.001]
    min_learning_rate: float = 9e-6  # [min_learning_rate = 9e-6]
    min_steps: int = 256  # [min_iters = 256]
    change_ratio: float = 1.5  # [learning_rate_change_ratio = 1.5]
    check_every: int = 60  # [learning_rate_policy_check_every = 60]
    slope_range: int = 256  # [learning_rate_slope_range = 256]
    test_every: int = 50  # [run_test_every = 50]
    steps: list[int] = field(default_factory=list)  # where the reconstruction error was measured
    errors: list[float] = field(default_factory=list)
    changes: list[int] = field(default_factory=lambda: [0])  # steps at which the rate changed

    def record(self, step: int, error: float) -> None:
        """The reconstruction error measured at ``step``."""
        self.steps.append(step)
        self.errors.append(float(error))

    def update(self, step: int) -> bool:
        """Apply the policy after ``step``; True when it lowered the rate."""
        if (1 + step) % self.check_every or step - self.changes[-1] <= self.min_steps:
            return False
        n = self.slope_range // self.test_every
        x, y = np.asarray(self.steps[-n:], float), np.asarray(self.errors[-n:], float)
        if len(x) < 4:  # np.polyfit(..., cov=True) needs more points than degree + 2
            return False
        (slope, _), cov = np.polyfit(x, y, 1, cov=True)
        std = float(np.sqrt(cov[0, 0]))
        if -self.change_ratio * slope < std:
            self.learning_rate /= 10
            self.changes.append(step)
            return True
        return False

    @property
    def done(self) -> bool:
        """The stopping rule: the rate fell below ``min_learning_rate``."""
        return self.learning_rate < self.min_learning_rate
