"""Community checkpoints in, ecosystem-readable files out, through spandrel.

spandrel (the loader of chaiNNer and ComfyUI) detects an SR architecture and its hyperparameters
from a bare state dict. Here it identifies any weights file that carries no network spec of ours:
where the architecture is one of the zoo's, the zoo network is built (so it trains with every
feature of the framework); otherwise spandrel's own module runs (eval, upscale, export, and
fine-tuning through ``model=from_file``). Files are read here, never by spandrel: tensors only
(``weights_only=True`` or safetensors), so loading runs no code from the file.

Zoo networks take part through two optional class members: ``SPANDREL_ID`` (spandrel's
architecture id) with ``spec_from_spandrel(model) -> spec | None``, and, where our state-dict
layout differs from the official one, ``official_state_dict()`` / ``from_official_state_dict()``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sr_experiments.models.registry import NETWORKS, build_network, count_parameters

# The name under which a spec rebuilds a module of spandrel's (an architecture not in the zoo):
# {"name": "spandrel", "architecture": "<spandrel id>", "scale": s}; the weights rebuild it.
SPANDREL = "spandrel"
# model=from_file: architecture and hyperparameters detected from model.pretrained.
FROM_FILE = "from_file"
SUPPORTED_FORMATS = (".pth, .pt, .bin, .ckpt (PyTorch, read with weights_only=True) or .safetensors, holding a "
                     "state dict (bare or under params_ema / params / state_dict / model)")


class UnrecognisedWeights(ValueError):
    """spandrel does not recognise the architecture of a weights file; the message names the file."""


@dataclass
class Detected:
    """What a weights file holds, as spandrel reads it."""

    architecture: str  # spandrel's id ("HAT", "ESRGAN", ...)
    scale: int
    params: int
    spec: dict[str, Any]  # ours: a zoo spec, or {"name": "spandrel", ...}
    module: nn.Module  # spandrel's module, weights loaded

    @property
    def in_zoo(self) -> bool:
        return self.spec["name"] != SPANDREL

    def line(self, origin: str) -> str:
        ran_by = (f"zoo network {self.spec['name']}" if self.in_zoo
                  else f"spandrel's {self.architecture} module (not in the zoo)")
        return (f"{origin}: detected {self.architecture} x{self.scale}, {self.params:,} parameters "
                f"({self.params / 1e6:.2f} M); runs as {ran_by}")


def _spandrel():  # imported on use: the registry of 40 architectures takes a moment to build
    import spandrel

    return spandrel


def detect(state: Mapping[str, Any], origin: str) -> Detected:
    """Identify the architecture of a bare state dict with spandrel; raise ``UnrecognisedWeights``."""
    spandrel = _spandrel()
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    try:
        # spandrel modifies the dict it is given (renames, pops): hand it a copy.
        descriptor = spandrel.ModelLoader().load_from_state_dict(dict(tensors))
    except spandrel.UnsupportedModelError:
        raise UnrecognisedWeights(
            f"'{origin}': spandrel does not recognise the architecture of these weights "
            f"({len(tensors)} tensors, e.g. {', '.join(list(tensors)[:2]) or 'none'}); name the network with "
            f"model=NAME scale=S, or pass a file of an architecture spandrel supports"
        ) from None
    except Exception as e:  # a partial key match makes some detectors fail inside spandrel
        raise UnrecognisedWeights(
            f"'{origin}': spandrel cannot build a network from these weights ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:120] if str(e) else ''}); name the network with model=NAME scale=S"
        ) from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.scale < 1:
        raise UnrecognisedWeights(f"'{origin}': holds a {descriptor.architecture.name} model, which is not an "
                                  "image-to-image network this framework can run")
    module = descriptor.model.eval()
    spec = zoo_spec(module)
    params = count_parameters(module)
    if spec is None:  # the size tells apart networks of one architecture (speed cache, checks on rebuild)
        spec = {"name": SPANDREL, "architecture": descriptor.architecture.id, "scale": int(descriptor.scale),
                "params": params}
    return Detected(descriptor.architecture.id, int(descriptor.scale), params, spec, module)


def zoo_spec(module: nn.Module) -> dict[str, Any] | None:
    """The spec of the zoo network equivalent to spandrel's ``module``, or None."""
    for cls in NETWORKS.values():
        to_spec = getattr(cls, "spec_from_spandrel", None)
        try:
            spec = to_spec(module) if to_spec is not None else None
        except ValueError:  # this architecture in a form the zoo does not run (x1, not RGB): spandrel's
            return None
        # A hyperparameter the mapping missed would show as another key or shape: then spandrel's runs.
        if spec is not None and _shapes(_official(_build_on_meta(spec))) == _shapes(module.state_dict()):
            return spec
    return None


def _build_on_meta(spec: Mapping[str, Any]) -> nn.Module:
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        return build_network(spec)


def _official(net: nn.Module) -> Mapping[str, torch.Tensor]:
    to_official = getattr(net, "official_state_dict", None)
    return to_official() if to_official is not None else net.state_dict()


def _shapes(state: Mapping[str, torch.Tensor]) -> list[tuple[int, ...]]:
    # Shapes, not keys: spandrel renames some layouts on load (ESRGAN to its old "model.N" keys).
    return sorted(tuple(v.shape) for v in state.values())


def read_weights(path: str | Path) -> dict[str, Any]:
    """A weights file as a dict: safetensors, or ``torch.load(weights_only=True)`` for anything else."""
    from sr_experiments.models.loading import CheckpointLoadError, load_checkpoint_file

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        try:
            obj = load_checkpoint_file(path)
        except CheckpointLoadError as e:
            raise CheckpointLoadError(f"{e} Supported: {SUPPORTED_FORMATS}.") from None
        if not isinstance(obj, Mapping):
            raise CheckpointLoadError(f"'{path}' holds a {type(obj).__name__}, not a state dict. "
                                      f"Supported: {SUPPORTED_FORMATS}.")
        return dict(obj)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    try:
        state = load_file(str(path), device="cpu")
        with open(path, "rb") as f:  # our spec travels in the header's metadata (export.py)
            header = _safetensors_metadata(f)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointLoadError(f"'{path}' is not a readable safetensors file ({e}). Supported: {SUPPORTED_FORMATS}.") from None
    if "network" in header:
        import json

        return {"params": state, "network": json.loads(header["network"])}
    return state


def _safetensors_metadata(f: Any) -> dict[str, str]:
    import json
    import struct

    (n,) = struct.unpack("<Q", f.read(8))
    return json.loads(f.read(n)).get("__metadata__") or {}


def build_detected(detected: Detected, state: Mapping[str, Any], origin: str) -> nn.Module:
    """The network a detection stands for: the zoo network with the file's weights, or spandrel's module."""
    if not detected.in_zoo:
        return foreign_module(detected.module)
    from sr_experiments.models.loading import load_pretrained

    net = build_network(detected.spec)
    load_pretrained(net, state, origin=origin)
    return net.eval()


def foreign_module(module: nn.Module) -> nn.Module:
    """spandrel's module, made safe to call: some (RCAN, ...) scale their input in place."""
    if not getattr(module, "_sr_clones_input", False):
        module.register_forward_pre_hook(lambda _m, args: (args[0].clone(), *args[1:]))
        module._sr_clones_input = True
    return module


def load_any(path: str | Path, state: Mapping[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any], Detected]:
    """Any weights file spandrel reads -> (network, spec, detection); prints what was detected."""
    from sr_experiments.models.loading import unwrap_state_dict

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
    from sr_experiments.models.loading import unwrap_state_dict

    origin = str(spec.get("pretrained") or "the checkpoint")
    if state is None:
        if not spec.get("pretrained"):
            raise ValueError(f"network {SPANDREL!r} ({spec.get('architecture')}) is built from weights: "
                             "pass model=from_file model.pretrained=PATH")
        state = read_weights(spec["pretrained"])
    detected = detect(unwrap_state_dict(state), origin)
    found = (detected.architecture, detected.scale, detected.params)
    if found != (spec.get("architecture"), int(spec.get("scale", detected.scale)), spec.get("params", detected.params)):
        raise ValueError(f"{origin} holds {detected.architecture} x{detected.scale} ({detected.params:,} parameters), "
                         f"not the {spec.get('architecture')} x{spec.get('scale')} ({spec.get('params')} parameters) "
                         "this run was made with")
    return foreign_module(detected.module)


def official_state_dict(net: nn.Module) -> dict[str, torch.Tensor]:
    """``net``'s weights in the official layout (what spandrel and the authors' code load)."""
    state = _official(net)
    # safetensors refuses shared storage; files hold plain contiguous fp32 tensors
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def check_with_spandrel(net: nn.Module, path: Path, spec: Mapping[str, Any], tolerance: float = 1e-5) -> str:
    """Reload the written file the way chaiNNer does and compare; returns a line, raises on disagreement."""
    expected_id = getattr(type(net), "SPANDREL_ID", None) or spec.get("architecture")
    if expected_id is None:
        return (f"spandrel does not know {spec['name']}: the file loads here (model={spec['name']}, "
                "or by itself: its network spec is stored in it), not in spandrel-based tools")
    state = read_weights(path)
    from sr_experiments.models.loading import unwrap_state_dict

    detected = detect(unwrap_state_dict(state), str(path))
    if detected.architecture != expected_id or detected.scale != int(spec["scale"]):
        raise ValueError(f"{path}: spandrel reads {detected.architecture} x{detected.scale}, "
                         f"expected {expected_id} x{spec['scale']}")
    # Odd sizes exercise the padding, except where ours pads on purpose unlike spandrel (SwinIR's
    # pad_mode=symmetric, the official test script's): there a size both leave alone.
    size, note = (37, 29), ""
    if getattr(net, "pad_mode", "reflect") != "reflect":
        size, note = (48, 64), f" (on a 48x64 input: pad_mode={net.pad_mode} pads other sizes unlike spandrel)"
    x = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        try:
            theirs = detected.module.float()(x.clone())
        except RuntimeError:  # spandrel's DRCT does not pad to its window (ours does): a size it takes
            x = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
            theirs, note = detected.module.float()(x.clone()), f" (on a 48x64 input: spandrel's {expected_id} takes no 37x29)"
        diff = float((theirs - net.float().eval()(x.clone())).abs().max())
    if not diff <= tolerance or math.isnan(diff):
        raise ValueError(f"{path}: spandrel's {expected_id} disagrees with this network by {diff:.3g} (max abs)")
    return f"spandrel reads it as {expected_id} x{detected.scale}, output max abs difference {diff:.1e}{note}"
