"""``RunRecord``: what a run keeps across resumes beside the weights and the optimizer (the
checkpoint's ``sr_run`` entry): the validation history, the bicubic baseline, the training time
of the runs it resumed and the global RNG states, so a resumed run continues bit-exactly."""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np
import torch


class RunRecord:
    """The validation history and bicubic baseline of a run, its fitting time and its summary."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self.bicubic: dict[str, float] | None = None
        self.prior_train_seconds = 0.0  # training time of the runs this one resumed
        self._fit_started: float | None = None

    def start_fit(self) -> None:
        self._fit_started = time.perf_counter()

    def train_seconds(self) -> float:
        """Wall time of fitting, over this run and every run it resumed."""
        now = time.perf_counter() - self._fit_started if self._fit_started is not None else 0.0
        return self.prior_train_seconds + now

    def add(self, step: int, scores: dict[str, float], raw: dict[str, float] | None) -> dict[str, float]:
        """One validation's entry (``raw``: the raw weights' beside the EMA's); returns what to log."""
        entry = {"step": int(step), **scores}
        if raw is not None:
            entry.update(psnr_raw=raw["psnr"], ssim_raw=raw["ssim"])
        self.history.append(entry)
        base = self.bicubic or {}
        logs = {f"val/{k}": v for k, v in entry.items() if k != "step"}
        logs.update({"val/psnr_best": max(h["psnr"] for h in self.history),
                     "val/psnr_bicubic": base["psnr"], "val/ssim_bicubic": base["ssim"]})
        return logs

    def state(self) -> dict[str, Any]:
        return {"bicubic": self.bicubic, "history": self.history, "train_seconds": self.train_seconds(),
                "rng": rng_state()}

    def load(self, run: dict[str, Any]) -> None:
        self.bicubic = run.get("bicubic")
        self.history = list(run.get("history", []))
        self.prior_train_seconds = float(run.get("train_seconds", 0.0))
        if run.get("rng"):
            set_rng_state(run["rng"])

    def summary(self) -> dict[str, Any]:
        """Best and final validation results, the bicubic baseline and the history."""
        best = max(self.history, key=lambda h: h["psnr"]) if self.history else None
        final = self.history[-1] if self.history else None
        return {"best": best, "final": final, "bicubic": self.bicubic, "history": self.history}


def rng_state() -> dict[str, Any]:
    """Global RNG states (dropout, drop-path, anything not on an explicit generator), as tensors and
    plain lists so a ``weights_only`` load reads them."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
