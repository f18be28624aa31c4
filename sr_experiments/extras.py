"""Optional dependencies: a missing one is named in one line with the extra that installs it.

The core install (`pip install sr-experiments`) trains, evaluates and upscales; sweeps, ONNX,
TensorBoard and video files come with extras (pyproject.toml), and code that needs one imports it through
``require`` so the user reads what to install rather than an ImportError traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from types import ModuleType
from typing import Any

# Importable module -> the extra of pyproject.toml that installs it.
EXTRAS = {
    "matplotlib": "sweeps",
    "optuna": "sweeps",
    "ray": "sweeps",
    "submitit": "sweeps",
    "hydra_plugins.hydra_optuna_sweeper": "sweeps",
    "hydra_plugins.hydra_ray_launcher": "sweeps",
    "hydra_plugins.hydra_submitit_launcher": "sweeps",
    "pyiqa": "perceptual",
    "onnx": "deploy",
    "onnxruntime": "deploy",
    "tensorboard": "tensorboard",
    "litdata": "stream",
    "av": "video",
}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message is the one line to show."""


def install_hint(module: str) -> str:
    extra = EXTRAS.get(module) or EXTRAS.get(module.split(".")[0])
    return f"pip install 'sr-experiments[{extra}]'" if extra else f"pip install {module.split('.')[0]}"


def require(module: str, purpose: str) -> ModuleType:
    """``import module``, or raise ``MissingExtra`` saying what needs it and what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None) or module
        # A broken install of the package itself (a missing shared library) is not a missing extra.
        if missing.split(".")[0] != module.split(".")[0]:
            raise
        raise MissingExtra(f"{purpose} needs {module}, which is not installed: {install_hint(module)}") from None


# Command-line choices that need a Hydra plugin from an extra: without it Hydra reports only
# "Could not find 'hydra/launcher/ray'" deep inside the config group of our launcher file.
PLUGIN_CHOICES = {
    "hydra/launcher=gpus": ("hydra_plugins.hydra_ray_launcher", "ray"),
    "hydra/launcher=cpu": ("hydra_plugins.hydra_ray_launcher", "ray"),
    "hydra/launcher=slurm": ("hydra_plugins.hydra_submitit_launcher", "submitit"),
    "hparams_search=optuna": ("hydra_plugins.hydra_optuna_sweeper", "optuna"),
}


def missing_plugin(argv: list[str]) -> str | None:
    """The one-line error for a launcher/sweeper chosen in ``argv`` whose plugin is missing, else None."""
    for arg in argv:
        needed = PLUGIN_CHOICES.get(arg.lstrip("+~"))
        if needed is None:
            continue
        for module in needed:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                return f"{arg} needs {module}, which is not installed: {install_hint(module)}"
    return None


def require_logger_packages(logger_cfg: Mapping[str, Any] | None) -> None:
    """``logger=tensorboard`` needs the tensorboard extra: say so before Lightning's traceback."""
    for entry in (logger_cfg or {}).values():
        target = str(entry.get("_target_", "")) if isinstance(entry, Mapping) else ""
        if target.endswith("TensorBoardLogger"):
            require("tensorboard", "logger=tensorboard")
