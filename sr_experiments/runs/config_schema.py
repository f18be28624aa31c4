"""The typed schema of a training config, checked before any folder is created.

Without it a bad value surfaces as 50-76 lines from inside torch (``lr=-1``), or a run that starts
and trains nothing (``data.batch_size=0``). Groups vary by option (every network has its own
keys), so each model is only checked for what holds for all of them: its integer
hyperparameters (depth, width, heads, ...) are at least 1 and its numbers finite.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


SEED_MAX = 2**32 - 1  # numpy's (and so Lightning's seed_everything's) range


class ConfigError(ValueError):
    """A config value is invalid; the message names the key and says what it takes."""


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class DataSchema(_Open):
    batch_size: int = Field(ge=1)
    patch_size: int = Field(ge=1)
    patches_per_epoch: int | None = Field(default=None, ge=1)  # None: data=stream (an epoch is a pass)
    num_workers: Literal["auto"] | int = "auto"
    lr_source: Literal["auto", "folder", "generate"] = "auto"
    augment: bool = True

    @field_validator("num_workers")
    @classmethod
    def _workers(cls, v: Any) -> Any:
        if isinstance(v, int) and v < 0:
            raise ValueError("must be auto or a count >= 0")
        return v


class ModelSchema(_Open):
    name: str
    ema_decay: float = Field(default=0.0, ge=0, lt=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _sizes(self) -> ModelSchema:
        for key, v in (self.model_extra or {}).items():
            for x in v if isinstance(v, list) else [v]:
                if isinstance(x, bool):
                    continue
                if isinstance(x, int) and x < 1:
                    raise ValueError(f"model.{key}={v!r}: network sizes must be at least 1")
                if isinstance(x, float) and not math.isfinite(x):
                    raise ValueError(f"model.{key}={v!r}: must be a finite number")
        return self


class OptimizerSchema(_Open):
    lr: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    weight_decay: float = Field(default=0.0, ge=0, allow_inf_nan=False)


class LossTermSchema(_Open):
    """One term of ``losses`` (``training/losses.py``); the term checks its own keys when built."""

    type: str | None = None
    weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)


class DiscriminatorSchema(_Open):
    name: str | None = None  # None: a recipe's settings left after ~discriminator (no adversarial training)
    num_feat: int = Field(default=64, ge=1)


class TrainerSchema(_Open):
    max_steps: int = Field(default=-1, ge=-1)
    log_every_n_steps: int = Field(default=50, ge=1)

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, v: int) -> int:
        if v == 0:
            raise ValueError("must be -1 (no limit) or at least 1")
        return v


class TrainSchema(_Open):
    lr: float = Field(gt=0, allow_inf_nan=False)
    scale: int = Field(ge=2)
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    loss: Literal["l1", "mse", "charbonnier"] = "l1"
    losses: dict[str, LossTermSchema | None] | None = None
    discriminator: DiscriminatorSchema | None = None
    ckpt_path: str | None = None
    resume: bool = True
    data: DataSchema | dict[str, Any] = Field(default_factory=dict)
    model: ModelSchema
    optimizer: OptimizerSchema | None = None
    trainer: TrainerSchema = Field(default_factory=TrainerSchema)

    @field_validator("data", mode="before")
    @classmethod
    def _data(cls, v: Any) -> Any:
        # Only the patch datamodule has these keys; another datamodule is its own business.
        return DataSchema.model_validate(v) if isinstance(v, dict) and "batch_size" in v else v


_CHECKED = ("lr", "scale", "seed", "loss", "losses", "discriminator", "ckpt_path", "resume", "data", "model", "optimizer",
            "trainer")


class EvalOptionsSchema(_Open):
    degradation_seed: int = Field(default=0, ge=0, le=SEED_MAX)
    baseline: bool = True
    self_ensemble: bool = False
    save_images: bool = False
    tile: int | None = Field(default=None, ge=1)
    tile_overlap: int = Field(default=32, ge=0)
    tile_batch: int = Field(default=1, ge=1)


class EvalSchema(_Open):
    scale: int = Field(ge=2)
    eval: EvalOptionsSchema = Field(default_factory=EvalOptionsSchema)


def validate_train_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` (one line: ``key=value: what is wrong``) if ``cfg`` has a bad value.

    Works on a config inside or outside a Hydra run: keys whose interpolations cannot resolve yet
    (``paths.output_dir`` before the run directory exists) are not read. The network is built on
    the meta device (no memory, no weights) and the degradation pipeline from its settings, so a
    scale the network lacks or a bad degradation setting is refused before any folder exists.
    """
    _validate(TrainSchema, cfg, _CHECKED)
    _check_buildable(cfg)


def validate_eval_config(cfg: DictConfig) -> None:
    """``validate_train_config`` for eval.py's keys (``scale``, ``eval.*``)."""
    _validate(EvalSchema, cfg, ("scale", "eval"))


def _check_buildable(cfg: DictConfig) -> None:
    import torch  # only once a run starts: --help and completion do not pay for it

    from sr_experiments.data.degradations import build_degradation
    from sr_experiments.models import build_network

    scale = int(cfg.scale)
    try:
        spec = OmegaConf.to_container(cfg.model, resolve=True)
        degradation = OmegaConf.to_container(cfg.degradation, resolve=True) if "degradation" in cfg else None
    except Exception:  # interpolations that resolve only inside the run: checked when it builds them
        return
    for key in ("pretrained", "pretrained_key", "compile", "channels_last", "ema_decay"):
        spec.pop(key, None)
    try:
        if spec.get("name") not in ("from_file", "spandrel"):  # those architectures come from a weights file
            with torch.device("meta"):
                build_network({**spec, "scale": scale})
        if isinstance(degradation, dict):
            build_degradation(degradation, scale)
    except ValueError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(msg if re.match(r"[\w.]+=", msg) else f"model={spec.get('name')} scale={scale}: {msg}") from None


def _validate(schema: type[BaseModel], cfg: DictConfig, checked: tuple[str, ...]) -> None:
    values: dict[str, Any] = {}
    for key in checked:
        node = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
        if isinstance(node, DictConfig):
            node = {
                k: OmegaConf.select(node, k, throw_on_resolution_failure=False)
                for k in node.keys()
                if not OmegaConf.is_missing(node, k)
            }
            node = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in node.items()}
        if node is not None or key in cfg:
            values[key] = node
    try:
        schema.model_validate(values)
    except ValidationError as e:
        messages = [_describe(err) for err in e.errors()]
        # optimizer.lr is ${lr}: one bad value, one message.
        messages = [m for m in messages if not (m.startswith("optimizer.lr=") and m.removeprefix("optimizer.") in messages)]
        raise ConfigError("; ".join(messages)) from None


def _describe(err: dict[str, Any]) -> str:
    msg = err["msg"].removeprefix("Value error, ")
    if re.match(r"[\w.]+=", msg):
        return msg  # the validator named the key itself
    # Union members show up as path parts ("int", "literal['auto']"): keep the config keys only.
    loc = [str(p) for p in err["loc"]]
    loc = [p for p in loc if not p.startswith(("int", "literal[", "str", "float", "bool", "list[", "dict[", "function-"))]
    return f"{'.'.join(loc)}={err.get('input')!r}: {msg}"
