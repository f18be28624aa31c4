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
