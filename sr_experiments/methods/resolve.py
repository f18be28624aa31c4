"""``resolve_methods(cfg)``: the one answer to "which model does this config mean?"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from sr_experiments.methods.base import Method
from sr_experiments.methods.kinds import (
    NetworkMethod,
    OnnxMethod,
    ParameterFreeMethod,
    ZSSRMethod,
    is_onnx,
)
from sr_experiments.models import build_network, model_label
from sr_experiments.models.weights import find_latest_checkpoint
from sr_experiments.provenance import checkpoint_info


def checkpoint_paths(value: Any, runs_dir: str, say: Callable[[str], None] | None = print) -> list[str]:
    """``ckpt_path`` as a list of files: one path, ``latest`` (the newest run's ``best.ckpt``,
    announced with ``say``), or a list of them (``[a.ckpt,b.ckpt]``)."""
    if not value:
        return []
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    paths = []
    for item in items:
        if str(item) == "latest":
            item = find_latest_checkpoint(runs_dir)
            if say is not None:
                say(f"checkpoint: {item}")
        paths.append(str(item))
    return paths


def weights_source(cfg: DictConfig, say: Callable[[str], None] | None = None) -> list[str]:
    """The weights files a config names: ``ckpt_path`` (a path, ``latest`` or a list), else
    ``model.pretrained`` (any file the zoo's keys or spandrel recognise, or ours)."""
    pretrained = cfg.model.get("pretrained") if cfg.get("model") is not None else None
    return checkpoint_paths(cfg.get("ckpt_path") or pretrained, cfg.paths.get("runs_dir", "outputs"), say)


def resolve_methods(cfg: DictConfig, device: torch.device | str = "cpu", paths: list[str] | None = None,
                    say: Callable[[str], None] | None = None, progress: bool = True) -> list[Method]:
    """The methods ``cfg`` means, in ``ckpt_path``'s order: one per weights file, else the one
    ``model=``: ``model=zssr`` (``model.zssr.*``; zssr.py's config: ``zssr.*``), or a
    parameter-free network (``model=bicubic``).
    ``paths``: the weights files already resolved (``weights_source``). A ``model=`` with
    parameters and no weights is a ValueError naming ``ckpt_path``."""
    paths = weights_source(cfg, say) if paths is None else paths
    scale = int(cfg.scale)
    if paths:
        model = {**OmegaConf.to_container(cfg.model, resolve=True), "scale": scale}
        return [OnnxMethod.load(p, torch.device(device)) if is_onnx(p) else NetworkMethod.load(p, model)
                for p in paths]
    if cfg.get("model") is None and cfg.get("zssr") is not None:  # zssr.py: its settings at the top, zssr.*
        return [ZSSRMethod.from_config(cfg.zssr, "zssr", scale, progress)]
    if cfg.model.get("zssr") is not None:  # trained on each image: no weights (sr_experiments/zssr)
        return [ZSSRMethod.from_config(cfg.model.zssr, "model.zssr", scale, progress)]
    spec = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if v is not None}
    label = model_label(spec)
    if any(True for _ in build_network({**spec, "scale": scale}).parameters()):
        raise ValueError(f"model={label} has parameters: pass the trained weights with ckpt_path=PATH")
    return [ParameterFreeMethod(label, scale, {**checkpoint_info(None), "params": 0}, spec, any_scale=True)]


def resolve_method(cfg: DictConfig, device: torch.device | str = "cpu", paths: list[str] | None = None,
                   say: Callable[[str], None] | None = None, progress: bool = True) -> Method:
    """The one method of a command that runs one (upscale.py, export.py, zssr.py)."""
    methods = resolve_methods(cfg, device, paths, say, progress)
    if len(methods) != 1:
        raise ValueError(f"ckpt_path names {len(methods)} files: this command takes one")
    return methods[0]
