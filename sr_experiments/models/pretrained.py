"""Load published weights (official ``.pth`` releases or our checkpoints) into a network."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any

from torch import nn

# Official releases wrap the state dict: BasicSR/SwinIR under "params" and/or "params_ema" (the
# EMA weights, better when present), others under "state_dict" or "model"; Lightning checkpoints
# of this framework keep the network under "state_dict" with a "net." prefix.
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")


def unwrap_state_dict(obj: Mapping[str, Any], key: str | None = None) -> dict[str, Any]:
    """The bare network state dict inside a loaded weights file."""
    if key is not None:
        if key not in obj:
            raise KeyError(f"the weights file has no {key!r} entry (it has: {', '.join(map(str, obj))})")
        obj = obj[key]
    else:
        for k in WRAPPER_KEYS:
            if k in obj and isinstance(obj[k], Mapping):
                obj = obj[k]
                break
    state = dict(obj)
    for prefix in ("net.", "module."):  # ours (Lightning), DataParallel / DDP saves
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_pretrained(
    net: nn.Module, source: str | PathLike | Mapping[str, Any], key: str | None = None, origin: str | None = None
) -> nn.Module:
    """Load weights into ``net`` with ``strict=True`` (a key or shape mismatch names the problem).

    ``source`` is a path (read with ``weights_only=True``: no code from the file runs) or a loaded
    dict; ``origin`` names the file a loaded dict came from, for messages. Returns ``net``.
    """
    from sr_experiments.checkpoint_io import load_checkpoint_file

    obj = source if isinstance(source, Mapping) else load_checkpoint_file(source)
    state = unwrap_state_dict(obj, key)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(
            f"weights in {origin or (source if not isinstance(source, Mapping) else 'the given dict')} do not fit "
            f"{type(net).__name__} with these settings (check model=..., scale and the model.* sizes): "
            f"{str(e).splitlines()[0]} {'; '.join(l.strip() for l in str(e).splitlines()[1:3])}"
        ) from None
    return net
