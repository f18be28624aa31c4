"""Which network a bare state dict is: by its keys and shapes (the zoo's own layouts), else by spandrel.

A weights file that carries no network spec of ours (an official release, a community model) is
identified here, before anything is built for real:

1. **Zoo by keys.** Zoo networks that spandrel does not know (IMDN, EDSR, ...) declare
   ``spec_from_state_dict(state) -> spec | None``: a few dictionary look-ups that read the sizes
   (scale, depth, width) off the keys and shapes. Each spec a class proposes is built on the meta
   device (no memory, no initialisation) and kept only if its state dict has exactly the file's
   keys and shapes. These checks run first: they need no import of spandrel and cost microseconds
   per class; the meta builds run only for classes whose look-up matched.
2. **spandrel.** Any other architecture spandrel (the loader of chaiNNer and ComfyUI) recognises:
   where it is one of the zoo's (``SPANDREL_ID`` + ``spec_from_spandrel``), the zoo network is
   built, else spandrel's own module runs (``interop.foreign_module``).

Files are read by ``weights.read_weights`` (tensors only), never here and never by spandrel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sr_experiments.models.registry import NETWORKS, build_network, count_parameters

__all__ = ["SPANDREL", "Detected", "UnrecognisedWeights", "detect", "detect_by_keys", "detect_with_spandrel",
           "zoo_spec", "build_on_meta", "official_layout"]  # fmt: skip

# The name under which a spec rebuilds a module of spandrel's (an architecture not in the zoo):
# {"name": "spandrel", "architecture": "<spandrel id>", "scale": s}; the weights rebuild it.
SPANDREL = "spandrel"


class UnrecognisedWeights(ValueError):
    """Neither the zoo's key layouts nor spandrel recognise a weights file; the message names the file."""


@dataclass
class Detected:
    """What a weights file holds: a zoo spec (found by keys or through spandrel) or spandrel's module."""

    architecture: str  # spandrel's id ("HAT", "ESRGAN", ...), or the zoo name where found by keys
    scale: int
    params: int
    spec: dict[str, Any]  # ours: a zoo spec, or {"name": "spandrel", ...}
    module: nn.Module | None  # spandrel's module with the weights loaded; None when found by keys

    @property
    def in_zoo(self) -> bool:
        return self.spec["name"] != SPANDREL

    def line(self, origin: str) -> str:
        if self.module is None:
            return f"{origin}: detected {self.spec['name']} x{self.scale} from its keys, {self.params:,} parameters"
        ran_by = (f"zoo network {self.spec['name']}" if self.in_zoo
                  else f"spandrel's {self.architecture} module (not in the zoo)")
        return (f"{origin}: detected {self.architecture} x{self.scale}, {self.params:,} parameters "
                f"({self.params / 1e6:.2f} M); runs as {ran_by}")


def detect(state: Mapping[str, Any], origin: str) -> Detected:
    """Identify a bare state dict: the zoo's key layouts first, then spandrel; ``UnrecognisedWeights``."""
    found = detect_by_keys(state)
    return found if found is not None else detect_with_spandrel(state, origin)


def build_on_meta(spec: Mapping[str, Any]) -> nn.Module:
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        return build_network(spec)


def _key_shapes(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}


def detect_by_keys(state: Mapping[str, Any]) -> Detected | None:
    """The zoo network whose state dict has exactly ``state``'s keys and shapes, or None."""
    wanted = _key_shapes(state)
    proposals = []
    for cls in dict.fromkeys(NETWORKS.values()):  # each defining class proposes once (edsr: edsr_large too)
        propose = vars(cls).get("spec_from_state_dict")
        spec = propose.__func__(cls, state) if propose is not None else None
        if spec is not None:
            proposals.append(spec)
    for spec in proposals:
        try:
            net = build_on_meta(spec)
        except (ValueError, TypeError):  # a proposal the constructor refuses (a scale it does not run)
            continue
        if _key_shapes(net.state_dict()) == wanted:
            return Detected(spec["name"], int(spec["scale"]), count_parameters(net), dict(spec), None)
    return None


def _spandrel():  # imported on use: the registry of 40 architectures takes a moment to build
    import spandrel

    return spandrel


def detect_with_spandrel(state: Mapping[str, Any], origin: str) -> Detected:
    """Identify the architecture of a bare state dict with spandrel; raise ``UnrecognisedWeights``."""
    spandrel = _spandrel()
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    try:
        # spandrel modifies the dict it is given (renames, pops): hand it a copy.
        descriptor = spandrel.ModelLoader().load_from_state_dict(dict(tensors))
    except spandrel.UnsupportedModelError:
        raise UnrecognisedWeights(
            f"'{origin}': spandrel does not recognise the architecture of these weights, nor does any zoo "
            f"network's key layout match ({len(tensors)} tensors, e.g. {', '.join(list(tensors)[:2]) or 'none'}); "
            "name the network with model=NAME scale=S, or pass a file of an architecture spandrel supports"
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
        if spec is not None and _shapes(official_layout(build_on_meta(spec))) == _shapes(module.state_dict()):
            return spec
    return None


def official_layout(net: nn.Module) -> Mapping[str, torch.Tensor]:
    """``net``'s state dict in the authors' layout where ours differs (RCAN), else its own."""
    to_official = getattr(net, "official_state_dict", None)
    return to_official() if to_official is not None else net.state_dict()


def _shapes(state: Mapping[str, torch.Tensor]) -> list[tuple[int, ...]]:
    # Shapes, not keys: spandrel renames some layouts on load (ESRGAN to its old "model.N" keys).
    return sorted(tuple(v.shape) for v in state.values())
