"""Name -> network class registry, and ``build_network`` for the ``model:`` config group.

Kept apart from ``__init__`` so that network modules can import ``register`` without a
circular import; ``sr_experiments.models`` re-exports everything here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from torch import nn

__all__ = [
    "NETWORKS", "SCALES", "register", "list_networks", "supports_scale", "build_network", "count_parameters",
    "check_scale", "model_label", "is_multi_frame",
]  # fmt: skip

NETWORKS: dict[str, type[nn.Module]] = {}
# The upscaling factors each network supports, declared once at registration; None: any integer >= 2.
SCALES: dict[str, tuple[int, ...] | None] = {}
# Keys of the ``model`` node that choose how the network runs or what it is called, not how it is
# built (``zssr``: the settings of a network trained on each test image, model=zssr, which
# methods/ reads; it stays here because conf/model/zssr.yaml is also a plain ``zssr`` network spec
# for info.py and the config checks; ``label``: the name results show, model=shallow for an ``edsr``).
RUNTIME_KEYS = ("compile", "channels_last", "ema_decay", "zssr", "label")
# Model names whose architecture a weights file decides (models/weights.py builds them).
FROM_WEIGHTS = ("from_file", "spandrel")

_T = TypeVar("_T", bound=type)


def register(name: str, *, scales: Collection[int] | None = None) -> Callable[[_T], _T]:
    """Class decorator adding a network to ``NETWORKS`` under ``name`` (the config's ``model.name``).

    ``scales`` are the upscaling factors it supports (``None``: any integer >= 2); ``check_scale``
    enforces them and the tests and benchmarks iterate over them.
    """

    def decorator(cls: _T) -> _T:
        if name in NETWORKS:
            raise ValueError(f"network {name!r} is already registered (by {NETWORKS[name].__qualname__})")
        NETWORKS[name] = cls
        SCALES[name] = tuple(sorted(scales)) if scales is not None else None
        return cls

    return decorator


def list_networks() -> list[str]:
    """Registered network names, sorted."""
    return sorted(NETWORKS)


def supports_scale(name: str, scale: int) -> bool:
    """Whether the registered network ``name`` supports the integer factor ``scale``."""
    return scale >= 2 and (SCALES[name] is None or scale in SCALES[name])


def is_multi_frame(network: str | nn.Module | type) -> bool:
    """Whether ``network`` (a registered name, a class or an instance) is a video network: it takes
    (B, T, C, H, W) clips and declares ``frames_out`` ("all": every frame back, (B, T, C, sH, sW);
    "center": the window's centre, (B, C, sH, sW)) and ``num_frame`` (the window it needs, or None).
    Image networks have no ``multi_frame`` class attribute."""
    cls = NETWORKS[network] if isinstance(network, str) else network if isinstance(network, type) else type(network)
    return bool(getattr(cls, "multi_frame", False))


def _registered_name(cls: type) -> str:
    """The name ``cls`` (or, for an unregistered subclass, its nearest registered base) is registered under."""
    for klass in cls.__mro__:
        for name, registered in NETWORKS.items():
            if registered is klass:
                return name
    raise ValueError(f"{cls.__qualname__} is not a registered network")


def _constructor_args(cls: type) -> tuple[list[str], list[str], bool]:
    """(all argument names, required ones, whether it takes ``**kwargs``) of ``cls.__init__``."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # drop self
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    required = [p.name for p in named if p.default is p.empty]
    return [p.name for p in named], required, any(p.kind is p.VAR_KEYWORD for p in params)


def build_network(spec: Mapping[str, Any]) -> nn.Module:
    """Instantiate ``spec["name"]`` with every other key of ``spec`` as a constructor argument.

    ``spec`` may be a plain mapping or an OmegaConf ``DictConfig`` (the Hydra ``model`` node).
    Pure: it builds the architecture and reads no file. ``pretrained`` (a weights file) and
    ``pretrained_key`` are not constructor arguments and are ignored here: the network with its
    weights is ``models.weights.build_model(spec)``, as are the networks detected from a file
    (``from_file``, ``spandrel``). ``compile``,
    ``channels_last`` and ``ema_decay`` are how the network runs or trains, not what it is
    (``SRLitModule`` applies them).
    Argument names are checked against the constructor first, so a typo on the command line
    (``model.dept=8``) gives a ValueError naming the key instead of a TypeError from deep inside.
    """
    from omegaconf import DictConfig, OmegaConf  # imported here: only configs need it

    if isinstance(spec, DictConfig):
        spec = OmegaConf.to_container(spec, resolve=True)
    if not isinstance(spec, Mapping):
        raise ValueError(f"model spec must be a mapping with a 'name' key, got {type(spec).__name__}")
    kwargs = dict(spec)
    if "name" not in kwargs:
        raise ValueError(f"model spec has no 'name' (registered networks: {', '.join(list_networks())})")
    name = kwargs.pop("name")
    if name in FROM_WEIGHTS:
        raise ValueError(f"network {name!r} is detected from a weights file: build it with "
                         "sr_experiments.models.weights.build_model (model.pretrained=PATH)")
    for key in (*RUNTIME_KEYS, "pretrained", "pretrained_key"):
        kwargs.pop(key, None)
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r} (registered: {', '.join(list_networks())})")
    cls = NETWORKS[name]
    accepted, required, var_kwargs = _constructor_args(cls)
    if not var_kwargs:
        for key in kwargs:
            if key not in accepted:
                raise ValueError(
                    f"model.{key} is not an argument of network {name!r} (accepted: {', '.join(accepted)})"
                )
    missing = [key for key in required if key not in kwargs]
    if missing:
        raise ValueError(f"network {name!r} needs {', '.join('model.' + k for k in missing)}")
    return cls(**kwargs)


def model_label(spec: Mapping[str, Any]) -> str:
    """The name results, tables and panels give a network spec: its ``label`` (the preset,
    ``shallow``; conf/model/*.yaml set it), else the network's ``name`` (files written before
    labels existed, bare weights)."""
    label = spec.get("label")
    return str(label) if label not in (None, "") else str(spec.get("name", "?"))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (elements, not tensors) of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def check_scale(network: str | type, scale: Any) -> int:
    """Return ``scale`` if it is an integer >= 2 that ``network`` was registered with, else raise.

    ``network`` is a registered name or class (constructors pass ``type(self)``, so a subclass such
    as ``EDSRLarge`` is checked against, and named by, its own registration). Configs may hand over
    any YAML value, so a float ``2.0`` or a bool is refused here rather than producing a wrong
    output size later.
    """
    name = network if isinstance(network, str) else _registered_name(network)
    ok = isinstance(scale, int) and not isinstance(scale, bool) and supports_scale(name, scale)
    if not ok:
        supported = SCALES[name]
        allowed = ", ".join(map(str, supported)) if supported is not None else "any integer >= 2"
        raise ValueError(f"network {name!r} does not support scale {scale!r} (supported: {allowed})")
    return scale
