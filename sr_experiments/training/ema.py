"""Exponential moving average (EMA) of the network's weights (``model.ema_decay``, e.g. 0.999).

``SRLitModule`` keeps ``net_ema``, a frozen copy of ``net``, and after every optimizer step sets
``ema = decay * ema + (1 - decay) * w`` for each parameter (buffers are copied), starting from the
weights the run starts with: BasicSR's ``model_ema`` and KAIR's ``E_decay``. After n steps with
weights ``w_1..w_n`` from ``w_0``: ``ema_n = decay^n w_0 + sum_k (1 - decay) decay^(n-k) w_k``.

Why not Lightning's ``WeightAveraging`` / ``EMAWeightAveraging`` callback (Lightning 2.6): it
averages the whole LightningModule (with a GAN, the discriminator as well), averages integer
buffers with the float formula, swaps the averaged weights into the module in place during
validation (so the raw weights cannot be measured beside them for ``val/psnr_raw``), and copies
the average over the raw weights when ``fit`` ends, so the last checkpoint written after it
(``finish_run``) would lose the raw weights a resume needs. Here the average is a submodule:
Lightning's own state dict saves both (``net.*`` and ``net_ema.*``, plus the update count), a
resume restores them bit-exactly with everything else, and DDP keeps it identical on every rank
with no extra code.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

EMA_PREFIX = "net_ema."
RAW_PREFIX = "net."
COUNT_KEY = "ema_updates"


@torch.no_grad()
def ema_update_(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * net`` for parameters (``decay=0``: a copy); buffers copied."""
    ema_params = [p for p in ema.parameters()]
    params = [p.detach() for p in net.parameters()]
    if decay == 0.0:
        torch._foreach_copy_(ema_params, params)
    else:
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), net.buffers()):
        b_ema.copy_(b)


def ema_state_for_load(state: Mapping[str, Any], want_ema: bool) -> dict[str, Any]:
    """A checkpoint's module state dict made to fit a module with (``want_ema``) or without EMA:
    a checkpoint without EMA gets the raw weights as its average (restarted from them, count 0);
    one with EMA loses it. Unchanged where they already fit."""
    state = dict(state)
    has_ema = any(k.startswith(EMA_PREFIX) for k in state)
    if want_ema and not has_ema:
        log.info("the checkpoint has no EMA weights: the average starts from its weights")
        state.update({EMA_PREFIX + k[len(RAW_PREFIX):]: v.clone() for k, v in state.items() if k.startswith(RAW_PREFIX)})
        state[COUNT_KEY] = torch.zeros((), dtype=torch.long)
    elif has_ema and not want_ema:
        log.info("model.ema_decay=0: the checkpoint's EMA weights are dropped; training continues from its raw weights")
        state = {k: v for k, v in state.items() if not k.startswith(EMA_PREFIX) and k != COUNT_KEY}
    return state


def make_ema(net: nn.Module, decay: float) -> nn.Module | None:
    """The frozen copy of ``net`` that holds the average, or None for ``decay == 0`` (no EMA)."""
    return copy.deepcopy(net).requires_grad_(False) if decay > 0 else None


def start_ema(ema: nn.Module, net: nn.Module, updates: torch.Tensor, decay: float) -> None:
    """At the start of fitting, after any restore: a run (or a resume of a run without EMA) starts
    its average at the weights it trains from (pretrained, fine-tuned or resumed), as BasicSR does."""
    if int(updates) == 0:
        ema_update_(ema, net, 0.0)
    log.info("EMA of the weights (decay %g): val/psnr, best.ckpt's choice and the weights eval.py, upscale.py "
             "and export.py load are the EMA's; val/psnr_raw is the raw weights'", decay)
