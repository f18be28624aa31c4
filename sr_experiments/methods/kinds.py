"""The kinds of ``Method``: a trained network, an ONNX file, a parameter-free model, per-image ZSSR."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sr_experiments.methods.engines import Engine, onnx_engine
from sr_experiments.methods.base import Method
from sr_experiments.models import build_network, check_scale, count_parameters, model_label
from sr_experiments.models.weights import ema_entry, load_network, read_weights
from sr_experiments.provenance import checkpoint_info


@dataclass
class NetworkMethod(Method):
    """A network with the weights of ``path`` (a file of ours, an official release, a community file)."""

    net: nn.Module | None = field(default=None, repr=False)
    path: str = ""
    model: dict[str, Any] | None = field(default=None, repr=False)  # the model= it was loaded with

    @classmethod
    def load(cls, path: str, model: dict[str, Any] | None) -> NetworkMethod:
        net, spec = load_network(path, model=model)
        provenance = {**checkpoint_info(path), "params": count_parameters(net)}
        multi = bool(getattr(net, "multi_frame", False))  # video: fp32 on whole clips (evaluation/video.py)
        return cls(model_label(spec), int(spec["scale"]), provenance, dict(spec), tuned=not multi, multi_frame=multi,
                   net=net, path=str(path), model=model)

    def _build(self, device: torch.device, scale: int) -> nn.Module:
        return self.net.eval().to(device)

    def raw_network(self) -> nn.Module | None:
        """The same network with the file's raw weights where the file also holds EMA weights
        (loaded by default), else None: ``export.py format=pth`` writes both, as BasicSR does."""
        if not ema_entry(read_weights(self.path)):
            return None
        return load_network(self.path, model=self.model, ema=False, quiet=True)[0]


@dataclass
class OnnxMethod(Method):
    """An ``export.py`` ONNX file, run by onnxruntime (fp32, the scale from its metadata)."""

    onnx: Engine | None = field(default=None, repr=False)

    @classmethod
    def load(cls, path: str, device: torch.device) -> OnnxMethod:
        engine = onnx_engine(path, device)
        return cls(engine.label, engine.scale, {**checkpoint_info(path), "params": None}, onnx=engine)

    def _build(self, device: torch.device, scale: int) -> Engine:
        return self.onnx


@dataclass
class ParameterFreeMethod(Method):
    """A network without weights (``model=bicubic``), at any scale."""

    def _build(self, device: torch.device, scale: int) -> nn.Module:
        return build_network({**(self.spec or {}), "scale": scale}).to(device)


@dataclass
class ZSSRMethod(Method):
    """ZSSR (``model=zssr``): each call trains a network on its input, then upscales it with it."""

    settings: Any = None  # zssr.method.ZSSRSettings
    progress: bool = True

    @classmethod
    def from_config(cls, node: Any, key: str, scale: int, progress: bool = True) -> ZSSRMethod:
        from omegaconf import DictConfig, OmegaConf

        from sr_experiments.zssr.method import ZSSRSettings

        check_scale("zssr", scale)
        settings = ZSSRSettings.from_config(node, key)
        settings.stages(scale)  # a bad gradual/kernel combination fails before any image
        params = count_parameters(build_network(settings.spec(2)))
        config = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
        provenance = {**checkpoint_info(None), "params": params, "trained_per_image": True, "zssr": config}
        return cls("zssr", scale, provenance, settings.spec(scale), any_scale=True, whole_image=True,
                   settings=settings, progress=progress)

    def _build(self, device: torch.device, scale: int) -> nn.Module:
        from sr_experiments.zssr.method import PerImageZSSR

        return PerImageZSSR(self.settings, scale, device, self.progress)

    def engine(self, device: torch.device, precision: str = "32", channels_last: bool | str = "auto",
               scale: int | None = None) -> Engine:
        """ZSSR chooses its own precision and layout per stage (``model.zssr.precision``)."""
        net = self.network(device, scale)
        choice = net.speed(net.scale if net.settings.progressive(net.scale) else net.settings.stages(net.scale)[0])
        return Engine(net, net.scale, self.label, device, choice.precision, choice.mode.channels_last, 0.0, choice)


def is_onnx(path: str | Path) -> bool:
    return str(path).lower().endswith(".onnx")
