"""Loading networks and weights, the one place for it: checkpoint files (never executing code from
them), official ``.pth`` releases, and networks rebuilt from our checkpoints."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sr_experiments.models.registry import RUNTIME_KEYS, build_network

log = logging.getLogger(__name__)

class CheckpointLoadError(RuntimeError):
    """A checkpoint could not be read safely; the message names the file."""


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers only, no pickled code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        raise CheckpointLoadError(
            f"checkpoint '{path}' cannot be loaded safely: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
            "It is truncated, not a checkpoint, or holds Python objects that would run code on load."
        ) from None


# Official releases wrap the state dict: BasicSR/SwinIR under "params" and/or "params_ema" (the
# EMA weights, better when present), others under "state_dict" or "model"; Lightning checkpoints
# of this framework keep the network under "state_dict" with a "net." prefix, and its EMA (a run
# with model.ema_decay > 0) beside it with "net_ema." (a GAN run's discriminator: "net_d.").
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")
EMA_PREFIX, RAW_PREFIX = "net_ema.", "net."


def _is_ours(obj: Mapping[str, Any]) -> bool:
    """A train.py (Lightning) checkpoint of this framework."""
    return isinstance(obj.get("state_dict"), Mapping) and isinstance(obj.get("hyper_parameters"), Mapping)


def ema_entry(obj: Mapping[str, Any]) -> str | None:
    """Where a weights file keeps EMA weights that loading prefers (``params_ema``, or our
    checkpoints' ``net_ema.*``), or None when it has none."""
    if isinstance(obj.get("params_ema"), Mapping):
        return "params_ema"
    if _is_ours(obj) and any(str(k).startswith(EMA_PREFIX) for k in obj["state_dict"]):
        return "net_ema"
    return None


def unwrap_state_dict(obj: Mapping[str, Any], key: str | None = None, ema: bool = True) -> dict[str, Any]:
    """The bare network state dict inside a loaded weights file: its EMA weights where it has
    them (``params_ema``; our checkpoints' ``net_ema.*``), unless ``ema=False`` (the raw weights)."""
    if key is None and _is_ours(obj):
        prefix = EMA_PREFIX if ema and ema_entry(obj) == "net_ema" else RAW_PREFIX
        return {k[len(prefix):]: v for k, v in obj["state_dict"].items() if k.startswith(prefix)}
    if key is not None:
        if key not in obj:
            raise KeyError(f"the weights file has no {key!r} entry (it has: {', '.join(map(str, obj))})")
        obj = obj[key]
    else:
        for k in WRAPPER_KEYS:
            if k == "params_ema" and not ema:
                continue
            if k in obj and isinstance(obj[k], Mapping):
                obj = obj[k]
                break
    state = dict(obj)
    for prefix in ("net.", "module."):  # ours (Lightning), DataParallel / DDP saves
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_pretrained(
    net: nn.Module, source: str | PathLike | Mapping[str, Any], key: str | None = None, origin: str | None = None,
    ema: bool = True, announce: bool = True,
) -> nn.Module:
    """Load weights into ``net`` with ``strict=True`` (a key or shape mismatch names the problem).

    ``source`` is a path (read with ``weights_only=True``: no code from the file runs) or a loaded
    dict; ``origin`` names the file a loaded dict came from, for messages. A file's EMA weights are
    preferred (logged when ``announce``) unless ``ema=False``. Returns ``net``.
    """
    from sr_experiments.models.interop import read_weights

    obj = source if isinstance(source, Mapping) else read_weights(source)
    origin = origin or (str(source) if not isinstance(source, Mapping) else "the given weights")
    state = unwrap_state_dict(obj, key, ema=ema)
    if announce and key is None and ema and ema_entry(obj):
        log.info("%s: loading its EMA weights (%s)", origin, ema_entry(obj))
    from_official = getattr(net, "from_official_state_dict", None)
    if from_official is not None:  # the authors' layout, where ours differs (RCAN): renamed, else unchanged
        state = from_official(state)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(mismatch_message(net, state, obj, origin, e) + _detection_hint(state)) from None
    return net


def _detection_hint(state: Mapping[str, Any]) -> str:
    """What spandrel sees in weights that did not fit, so the message can say which model= to use."""
    from sr_experiments.models.interop import UnrecognisedWeights, detect

    try:
        found = detect(state, "the file")
    except UnrecognisedWeights:
        return ""
    name = found.spec["name"] if found.in_zoo else None
    return (f". spandrel detects {found.architecture} x{found.scale} ({found.params:,} parameters) in the file: "
            f"use model=from_file{f' (the zoo network {name})' if name else ''}, or evaluate it with no model=")


def mismatch_message(net: nn.Module, state: Mapping[str, Any], checkpoint: Any, origin: str, error: Exception) -> str:
    """One line: which file, what the network expects against what the file holds, how many keys
    differ (a few examples), and what to do; torch's own message lists every key (76 KB for SwinIR)."""
    expected = net.state_dict()
    derived = {name for name, _ in net.named_buffers()} - set(expected)  # non-persistent: dropped on load
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and k not in derived]
    reshaped = [f"{k} {tuple(state[k].shape)} here {tuple(v.shape)}" for k, v in expected.items()
                if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)]
    parts = [f"{len(keys)} {what} (e.g. {', '.join(keys[:2])})" for what, keys in
             (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)) if keys]
    if not parts:  # neither keys nor shapes: say torch's first reason, shortened
        parts = [" ".join(str(error).split())[:200]]
    return (f"weights in {origin} do not fit {type(net).__name__} ({_count(expected.values()):,} parameters) as "
            f"configured: the file holds {_describe(checkpoint)} ({_count(state.values()):,} parameters); "
            f"keys: {'; '.join(parts)}; pass the model=..., scale and model.* sizes it was trained with, "
            "or a file made for this network")


def _count(tensors: Any) -> int:
    return sum(int(t.numel()) for t in tensors if hasattr(t, "numel"))


def _describe(checkpoint: Any) -> str:
    """``edsr (depth=16, width=64, scale=2)`` from a train.py checkpoint's saved spec, else "a bare state dict"."""
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, Mapping) else None
    spec = hparams.get("network") if isinstance(hparams, Mapping) else None
    if not isinstance(spec, Mapping):
        return "a bare state dict (no network spec)"
    args = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name" and k not in RUNTIME_KEYS)
    return f"{spec.get('name', '?')} ({args})"


def saved_spec(checkpoint: Mapping[str, Any]) -> dict[str, Any] | None:
    """The network spec a file of ours carries: a train.py checkpoint's, or an export's (``network``)."""
    hparams = checkpoint.get("hyper_parameters")
    spec = hparams.get("network") if isinstance(hparams, Mapping) else checkpoint.get("network")
    return dict(spec) if isinstance(spec, Mapping) and "name" in spec else None


def load_network(ckpt_path: str | Path, model: Mapping[str, Any] | None = None, ema: bool = True,
                 quiet: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained network from a weights file (read with ``weights_only`` or safetensors).

    A checkpoint of ``train.py`` (or a file from ``export.py``) carries its network spec, so no
    ``model=...`` has to be repeated. A bare weights file (an official release, a community model)
    is loaded into ``model`` when one with parameters is named (``model=NAME scale=S``); otherwise
    spandrel detects its architecture (printed): the zoo network where it is one, else spandrel's.
    Where the file has EMA weights (``params_ema``, or a run with ``model.ema_decay``) those are
    loaded, and a line says so (not when ``quiet``); ``ema=False`` loads the raw weights.
    """
    from sr_experiments.models.interop import FROM_FILE, SPANDREL, build_spandrel, load_any, read_weights

    ckpt = read_weights(ckpt_path)
    spec = saved_spec(ckpt)
    if spec is None:
        named = ({k: v for k, v in model.items() if k not in ("pretrained", "pretrained_key")}
                 if model is not None and model.get("name") not in (None, "bicubic", FROM_FILE) else None)
        if named is None:
            net, spec, _ = load_any(ckpt_path, ckpt)
            return net.eval(), spec
        net = build_network(named)
        spec = named
    elif spec["name"] == SPANDREL:
        return build_spandrel(spec, ckpt).eval(), spec
    else:
        try:
            # The file holds every weight: a SpyNet initialisation file named at training time
            # (video networks' model.spynet_pretrained) is neither needed nor read again.
            net = build_network({k: v for k, v in spec.items() if k != "spynet_pretrained"})
        except (ValueError, TypeError) as e:
            raise ValueError(f"'{ckpt_path}': its saved network spec {spec!r} cannot be built ({e}); "
                             "it was written by another version or is damaged") from None
    load_pretrained(net, ckpt, origin=str(ckpt_path), ema=ema, announce=False)
    entry = ema_entry(ckpt)
    if entry and ema and not quiet:
        print(f"{ckpt_path}: using its EMA weights ({entry}; ema=false for the raw weights)", flush=True)
    return net.eval(), dict(spec)


def find_latest_checkpoint(root: str | Path = "outputs") -> Path:
    """The newest ``best.ckpt`` (else ``last.ckpt``) under ``root``."""
    root = Path(root)
    found = sorted(root.rglob("best.ckpt"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    if not found and root.is_dir():
        found = sorted(root.rglob("last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(
            f"no checkpoint under '{root}/': train one first (`make train`) or pass ckpt_path=PATH (make eval CKPT=PATH)"
        )
    return found[-1]
