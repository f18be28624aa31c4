"""Weights files, the one place for them: reading (never executing code from a file), unwrapping
the containers other tools save, detecting the network a bare file holds, loading weights into a
network, and building the network a file or a spec with ``pretrained`` stands for.

Import order inside ``models/``: ``registry`` (names, pure ``build_network``) <- ``detection``
(zoo by keys, spandrel) <- ``interop`` (spandrel's modules, official layout) <- ``weights``.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sr_experiments.models.detection import SPANDREL, Detected, UnrecognisedWeights, detect, detect_with_spandrel
from sr_experiments.models.interop import foreign_module
from sr_experiments.models.registry import RUNTIME_KEYS, build_network

log = logging.getLogger(__name__)

# model=from_file: architecture and hyperparameters detected from model.pretrained.
FROM_FILE = "from_file"
SUPPORTED_FORMATS = (".pth, .pt, .bin, .ckpt (PyTorch, read with weights_only=True) or .safetensors, holding a "
                     "state dict (bare or under params_ema / params / state_dict / model)")
# Official releases wrap the state dict: BasicSR/SwinIR under "params" and/or "params_ema" (the
# EMA weights, better when present), others under "state_dict" or "model"; Lightning checkpoints
# of this framework keep the network under "state_dict" with a "net." prefix, and its EMA (a run
# with model.ema_decay > 0) beside it with "net_ema." (a GAN run's discriminator: "net_d.").
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")
EMA_PREFIX, RAW_PREFIX = "net_ema.", "net."


class CheckpointLoadError(RuntimeError):
    """A checkpoint could not be read safely; the message names the file."""


def read_weights(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A weights or checkpoint file as a dict: safetensors (our spec from its header under
    ``network``), or ``torch.load(weights_only=True)`` for anything else: no code from the file runs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    if path.suffix.lower() == ".safetensors":
        return _read_safetensors(path, map_location)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        raise CheckpointLoadError(
            f"checkpoint '{path}' cannot be loaded safely: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
            f"It is truncated, not a checkpoint, or holds Python objects that would run code on load. "
            f"Supported: {SUPPORTED_FORMATS}."
        ) from None
    if not isinstance(obj, Mapping):
        raise CheckpointLoadError(f"'{path}' holds a {type(obj).__name__}, not a state dict. "
                                  f"Supported: {SUPPORTED_FORMATS}.")
    return dict(obj)


def _read_safetensors(path: Path, map_location: Any) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    device = map_location if isinstance(map_location, str) else "cpu"
    try:
        state = load_file(str(path), device=device)
        with open(path, "rb") as f:  # our spec travels in the header's metadata (export.py)
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n)).get("__metadata__") or {}
    except (SafetensorError, OSError, ValueError, struct.error) as e:
        raise CheckpointLoadError(f"'{path}' is not a readable safetensors file ({e}). Supported: {SUPPORTED_FORMATS}.") from None
    return {"params": state, "network": json.loads(header["network"])} if "network" in header else state


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


def saved_spec(checkpoint: Mapping[str, Any]) -> dict[str, Any] | None:
    """The network spec a file of ours carries: a train.py checkpoint's, or an export's (``network``)."""
    hparams = checkpoint.get("hyper_parameters")
    spec = hparams.get("network") if isinstance(hparams, Mapping) else checkpoint.get("network")
    return dict(spec) if isinstance(spec, Mapping) and "name" in spec else None


def load_pretrained(
    net: nn.Module, source: str | PathLike | Mapping[str, Any], key: str | None = None, origin: str | None = None,
    ema: bool = True, announce: bool = True,
) -> nn.Module:
    """Load weights into ``net`` with ``strict=True`` (a key or shape mismatch names the problem).

    ``source`` is a path (``read_weights``) or a loaded dict; ``origin`` names the file a loaded
    dict came from, for messages. A file's EMA weights are preferred (logged when ``announce``)
    unless ``ema=False``. Returns ``net``.
    """
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
    """What the file holds where it did not fit, so the message can say which model= to use."""
    try:
        found = detect(state, "the file")
    except UnrecognisedWeights:
        return ""
    if found.module is None:
        return f". The file holds {found.spec['name']} x{found.scale} (by its keys): use model=from_file, or no model="
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
    spec = saved_spec(checkpoint) if isinstance(checkpoint, Mapping) and "hyper_parameters" in checkpoint else None
    if spec is None:
        return "a bare state dict (no network spec)"
    args = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name" and k not in RUNTIME_KEYS)
    return f"{spec.get('name', '?')} ({args})"


def build_detected(detected: Detected, state: Mapping[str, Any], origin: str) -> nn.Module:
    """The network a detection stands for: the zoo network with the file's weights, or spandrel's module."""
    if not detected.in_zoo:
        return foreign_module(detected.module)
    net = build_network(detected.spec)
    load_pretrained(net, state, origin=origin)
    return net.eval()


def load_any(path: str | Path, state: Mapping[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any], Detected]:
    """Any weights file the zoo's key layouts or spandrel recognise -> (network, spec, detection);
    prints what was detected."""
    obj = read_weights(path) if state is None else state
    bare = unwrap_state_dict(obj)
    detected = detect(bare, str(path))
    print(detected.line(str(path)), flush=True)
    return build_detected(detected, bare, str(path)), dict(detected.spec), detected


def resolve_from_file(spec: Mapping[str, Any]) -> dict[str, Any]:
    """``model=from_file model.pretrained=PATH`` -> the detected spec (still with ``pretrained``)."""
    path = spec.get("pretrained")
    if not path:
        raise ValueError("model=from_file needs model.pretrained=PATH (a .pth/.safetensors file spandrel can read)")
    _, found, detected = load_any(path)
    scale = spec.get("scale")
    if scale is not None and int(scale) != detected.scale:
        raise ValueError(f"model.pretrained='{path}' is a x{detected.scale} network ({detected.architecture}) "
                         f"but scale={scale}: pass scale={detected.scale}")
    extra = {k: v for k, v in spec.items() if k not in ("name", "scale", "pretrained", "pretrained_key")
             and not (k == "label" and v is None)}  # no label: results name the detected architecture
    return {**found, **extra, "pretrained": str(path)}


def build_spandrel(spec: Mapping[str, Any], state: Mapping[str, Any] | None) -> nn.Module:
    """Rebuild ``{"name": "spandrel", ...}`` from weights: ``state`` (a checkpoint's) or ``spec["pretrained"]``."""
    origin = str(spec.get("pretrained") or "the checkpoint")
    if state is None:
        if not spec.get("pretrained"):
            raise ValueError(f"network {SPANDREL!r} ({spec.get('architecture')}) is built from weights: "
                             "pass model=from_file model.pretrained=PATH")
        state = read_weights(spec["pretrained"])
    detected = detect_with_spandrel(unwrap_state_dict(state), origin)
    found = (detected.architecture, detected.scale, detected.params)
    if found != (spec.get("architecture"), int(spec.get("scale", detected.scale)), spec.get("params", detected.params)):
        raise ValueError(f"{origin} holds {detected.architecture} x{detected.scale} ({detected.params:,} parameters), "
                         f"not the {spec.get('architecture')} x{spec.get('scale')} ({spec.get('params')} parameters) "
                         "this run was made with")
    return foreign_module(detected.module)


def build_model(spec: Mapping[str, Any]) -> nn.Module:
    """The network a ``model`` spec stands for, with its weights where it names a file:
    ``model=from_file`` (detected from ``pretrained``), a spandrel module (rebuilt from
    ``pretrained``), or a zoo network (``build_network``) with ``pretrained`` loaded strictly."""
    from omegaconf import DictConfig, OmegaConf  # imported here: only configs need it

    if isinstance(spec, DictConfig):
        spec = OmegaConf.to_container(spec, resolve=True)
    name = spec.get("name") if isinstance(spec, Mapping) else None
    if name == FROM_FILE:
        return build_model(resolve_from_file(spec))
    if name == SPANDREL:
        return build_spandrel(spec, None)
    net = build_network(spec)
    if spec.get("pretrained"):  # model.pretrained=PATH: an official release or a checkpoint of ours
        load_pretrained(net, spec["pretrained"], spec.get("pretrained_key"))
    return net


def load_network(ckpt_path: str | Path, model: Mapping[str, Any] | None = None, ema: bool = True,
                 quiet: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained network from a weights file (read with ``weights_only`` or safetensors).

    A checkpoint of ``train.py`` (or a file from ``export.py``) carries its network spec, so no
    ``model=...`` has to be repeated. A bare weights file (an official release, a community model)
    is loaded into ``model`` when one with parameters is named (``model=NAME scale=S``); otherwise
    its network is detected (printed): a zoo network by its keys, or through spandrel.
    Where the file has EMA weights (``params_ema``, or a run with ``model.ema_decay``) those are
    loaded, and a line says so (not when ``quiet``); ``ema=False`` loads the raw weights.
    """
    ckpt = read_weights(ckpt_path)
    spec = saved_spec(ckpt)
    if spec is None:
        named = ({k: v for k, v in model.items() if k not in ("pretrained", "pretrained_key")}
                 if model is not None and model.get("name") not in (None, "bicubic", FROM_FILE) else None)
        if named is None:
            net, spec, _ = load_any(ckpt_path, ckpt)
            return net.eval(), spec
        net, spec = build_network(named), named
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
