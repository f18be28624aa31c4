"""Config values as plain Python, for what outlives the run's Hydra config: hyperparameters saved
in checkpoints (they must unpickle with ``weights_only=True`` and without Hydra) and the settings
handed to a pipeline."""

from __future__ import annotations

from typing import Any


def plain(value: Any) -> Any:
    """An OmegaConf node (``DictConfig``, ``ListConfig``) as plain dicts and lists, interpolations
    resolved; any other value as it is."""
    from omegaconf import OmegaConf  # lazily: data-loader workers that never see a config skip it

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


# Overrides that say where things are or how they are shown, not what was tried (also left out of
# W&B run names).
NOT_TRIED_PREFIXES = ("hydra.", "paths.", "logger", "callbacks", "ckpt_path", "trainer.enable_", "data.num_workers")


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    """``["lr=0.001", "model=deep", "+x=1"]`` -> ``{"lr": "0.001", "model": "deep", "x": "1"}``."""
    out = {}
    for item in overrides if isinstance(overrides, list) else []:
        if not isinstance(item, str):
            continue
        key, sep, value = item.lstrip("+~").partition("=")
        if sep and not key.startswith(NOT_TRIED_PREFIXES):
            out[key] = value
    return out
