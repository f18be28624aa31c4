"""Networks on spandrel's architecture code: the shared part of ``hat.py``, ``dat.py``, ``atd.py``,
``omnisr.py``, ``span.py``, ``plksr.py`` (PLKSR and RealPLKSR), ``drct.py`` and ``rgt.py``.

The architecture code is spandrel's (``spandrel.architectures.<X>``), not a copy: each registered
network subclasses spandrel's class (``class HAT(SpandrelNetwork, spandrel_hat.HAT)``), so

* its state dict has exactly spandrel's keys, which are the official releases' keys: official
  files load with ``strict=True`` (``model.pretrained=FILE``), and spandrel's ``ModelLoader``
  detects our checkpoints as the same architecture and scale;
* ``spec_from_spandrel(model)`` turns a module spandrel built from any such file back into our
  model spec (``{"name", "scale", **hyperparameters}``); ``build_network(spec)`` then has the
  same state-dict keys and shapes and computes the same output.

What ``SpandrelNetwork`` adds to the spandrel class:

* The constructor: ``scale`` (checked against the registration, passed on as spandrel's
  ``upscale`` / ``upscaling_factor`` / ``up_scale``), then every keyword hyperparameter of the
  spandrel class with the paper's model as default (``DEFAULTS``: the authors' released option
  files). It has a real signature, so ``build_network`` names a mistyped ``model.X``. Image
  channels are fixed at 3 and class-valued arguments (``norm_layer``, ``act_layer``) at spandrel's
  defaults. Input and output are spandrel's: RGB in [0, 1].
* Input sizes: ``PAD_MULTIPLE`` (a hyperparameter, usually ``window_size``), ``MIN_SIZE`` and
  ``PAD_MODE`` pad inputs that spandrel's forward cannot take, and crop the output: DRCT does not
  pad to its window at all (the official test code pads with ``reflect``), HAT and ATD fail on
  inputs under half a window, OmniSR and RGT on inputs under 16 pixels. The padding is the one
  spandrel's forward (or the official test code) applies, so any input spandrel's forward takes
  gives the same output here; inputs too small for one reflection are mirrored repeatedly.
* Meta-device construction: spandrel's constructors read their drop-path schedules with
  ``torch.linspace(...).item()``, which meta tensors refuse; under ``torch.device("meta")`` that
  one ``linspace`` is computed on the CPU (and the weight initialisations are skipped), so
  ``info.py`` counts parameters and MACs without allocating anything, as for the other networks.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from sr_experiments.models.registry import _registered_name, check_scale
from sr_experiments.models.swinir import pad_to_multiple

__all__ = ["SpandrelLayout", "SpandrelNetwork"]

# spandrel's names for the upscaling factor, and for the image channels (fixed: RGB).
_SCALE_ARGS = ("upscale", "upscaling_factor", "up_scale")
_CHANNEL_ARGS = ("in_chans", "num_in_ch", "num_out_ch")


def _tuples_as_lists(value: Any) -> Any:
    """Tuples as lists (as YAML and OmegaConf configs hold them), recursively."""
    if isinstance(value, (list, tuple)):
        return [_tuples_as_lists(v) for v in value]
    return value


# The in-place ops of torch.nn.init (trunc_normal_, kaiming_uniform_, constant_ ...): none changes a shape.
_INIT_OPS = frozenset({"uniform_", "normal_", "erfinv_", "mul_", "add_", "clamp_", "fill_", "zero_"})


class _MetaBuild(TorchFunctionMode):
    """Building on the meta device, two things differently. ``torch.linspace`` runs on the CPU:
    spandrel's constructors read their drop-path schedules with ``[x.item() for x in
    torch.linspace(...)]``, which meta tensors refuse. The weight initialisations' in-place ops on
    meta tensors (``_INIT_OPS``) return the tensor at once: they change no shape, and their meta
    kernels made a build of the larger models take a second or more."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.linspace:
            kwargs = {**kwargs, "device": "cpu"}
        elif getattr(func, "__name__", None) in _INIT_OPS and args and getattr(args[0], "is_meta", False):
            return args[0]
        return func(*args, **kwargs)


class SpandrelLayout:
    """Mixin for a zoo network on its own code whose files spandrel reads as ``SPANDREL_ID``, the
    class ``spandrel.architectures.<ID>.<ID>`` (RCAN, SAFMN, ESRGAN): it answers
    ``spec_from_spandrel`` for a module of exactly that class through ``spec_from_hyperparameters``
    (spandrel's ``hyperparameters`` -> our spec, or None for a variant this network is not).
    spandrel is imported only when asked."""

    SPANDREL_ID: ClassVar[str]

    @classmethod
    def spec_from_spandrel(cls, model: nn.Module) -> dict[str, Any] | None:
        architecture = importlib.import_module(f"spandrel.architectures.{cls.SPANDREL_ID}")
        if type(model) is not getattr(architecture, cls.SPANDREL_ID):
            return None
        return cls.spec_from_hyperparameters(model.hyperparameters)  # type: ignore[attr-defined]

    @staticmethod
    def spec_from_hyperparameters(hp: dict[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError


class SpandrelNetwork:
    """Mixin that makes a spandrel architecture class a registered network (see the module docstring).

    Subclasses list it first, then the spandrel class, and set:

    * ``SPANDREL_ID``: spandrel's ``architecture.id`` for it (``"HAT"``; ``"PLKSR"`` for both
      ``plksr`` and ``realplksr``, told apart by ``SPANDREL_CLASS``, the spandrel base class);
    * ``DEFAULTS``: the paper model's hyperparameters (spandrel's own defaults fill the rest);
    * optionally ``PAD_MULTIPLE``, ``MIN_SIZE``, ``PAD_MODE`` (``reflect``, ``symmetric`` or
      ``constant``) for the input sizes spandrel's forward does not handle.
    """

    SPANDREL_ID: ClassVar[str]
    SPANDREL_CLASS: ClassVar[type[nn.Module]]
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    PAD_MULTIPLE: ClassVar[str | None] = None
    MIN_SIZE: ClassVar[int] = 1
    PAD_MODE: ClassVar[str] = "reflect"
    HYPERPARAMETERS: ClassVar[tuple[str, ...]]  # the constructor's arguments after ``scale``
    _scale_arg: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        base = next(b for b in cls.__mro__ if b.__module__.startswith("spandrel."))
        params = inspect.signature(base.__init__).parameters  # spandrel's, through its wrapper
        cls.SPANDREL_CLASS = base
        cls._scale_arg = next(name for name in _SCALE_ARGS if name in params)
        hyper = [
            p.replace(default=cls.DEFAULTS.get(p.name, p.default))
            for p in params.values()
            if p.kind is p.KEYWORD_ONLY
            and p.name not in (cls._scale_arg, *_CHANNEL_ARGS)
            and not isinstance(p.default, type)  # norm_layer=nn.LayerNorm etc.
        ]
        cls.HYPERPARAMETERS = tuple(p.name for p in hyper)
        unknown = set(cls.DEFAULTS) - set(cls.HYPERPARAMETERS)
        if unknown:
            raise TypeError(f"{cls.__name__}.DEFAULTS: {', '.join(sorted(unknown))} not arguments of {base.__name__}")
        signature = inspect.Signature(
            [
                inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
                inspect.Parameter("scale", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=int),
                *hyper,
            ]
        )

        def __init__(self: SpandrelNetwork, *args: Any, **kwargs: Any) -> None:
            bound = signature.bind(self, *args, **kwargs)  # a TypeError naming an unknown argument
            bound.apply_defaults()
            arguments = copy.deepcopy({k: v for k, v in bound.arguments.items() if k != "self"})
            self._build(check_scale(type(self), arguments.pop("scale")), arguments)

        __init__.__signature__ = signature  # type: ignore[attr-defined]
        __init__.__qualname__ = f"{cls.__qualname__}.__init__"
        __init__.__doc__ = f"Build {cls.__name__}: ``scale`` and {base.__name__}'s hyperparameters (see the class)."
        cls.__init__ = __init__  # type: ignore[method-assign]

    def _build(self, scale: int, hyperparameters: dict[str, Any]) -> None:
        params = inspect.signature(self.SPANDREL_CLASS.__init__).parameters
        kwargs = {**{c: 3 for c in _CHANNEL_ARGS if c in params}, self._scale_arg: scale, **hyperparameters}
        with _MetaBuild() if torch.get_default_device().type == "meta" else contextlib.nullcontext():
            super().__init__(**kwargs)  # the spandrel class's (it records ``self.hyperparameters``)

    @property
    def scale(self) -> int:
        """The upscaling factor (spandrel's ``upscale`` / ``upscaling_factor`` / ``up_scale``)."""
        return self.hyperparameters[self._scale_arg]  # type: ignore[attr-defined]

    @classmethod
    def spec_from_spandrel(cls, model: nn.Module) -> dict[str, Any] | None:
        """Our model spec for ``model``, a module spandrel built (``ModelLoader().load_from_state_dict
        (sd).model``), if it is an instance of this network's spandrel class; else None.

        ``build_network(spec)`` then has ``model``'s state-dict keys and shapes and computes its
        output. A ValueError if ``model`` is this architecture in a form the framework does not run:
        other than 3 image channels, or a scale the registration does not list (x1 restoration).
        """
        if not isinstance(model, cls.SPANDREL_CLASS):
            return None
        name = _registered_name(cls)
        hyper = model.hyperparameters  # type: ignore[attr-defined]
        for arg in _CHANNEL_ARGS:
            if hyper.get(arg, 3) != 3:
                raise ValueError(f"{cls.SPANDREL_ID} with {arg}={hyper[arg]}: the networks here are RGB to RGB")
        scale = check_scale(cls, hyper[cls._scale_arg])
        return {"name": name, "scale": scale, **{k: _tuples_as_lists(hyper[k]) for k in cls.HYPERPARAMETERS}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        multiple = self.hyperparameters[self.PAD_MULTIPLE] if self.PAD_MULTIPLE else 1  # type: ignore[attr-defined]
        th, tw = (max(-(-n // multiple) * multiple, self.MIN_SIZE) for n in (h, w))
        if (th, tw) == (h, w):
            return super().forward(x)  # type: ignore[misc]
        if self.PAD_MODE == "symmetric" or (self.PAD_MODE == "reflect" and (th - h >= h or tw - w >= w)):
            x = pad_to_multiple(x, multiple, self.MIN_SIZE)  # reflect needs a padding below the size
        else:
            x = F.pad(x, (0, tw - w, 0, th - h), mode=self.PAD_MODE)
        return super().forward(x)[..., : h * self.scale, : w * self.scale]  # type: ignore[misc]
