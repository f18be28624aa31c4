"""Lightning checkpoint IO that never leaves a torn file and never executes code on load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from sr_experiments.models.weights import read_weights
from sr_experiments.outputs import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes to a temporary file in the same folder, fsyncs, then renames over the target
    (``outputs.atomic_write``): a full disk raises ``OutputError`` (one line naming the file) and
    leaves the previous checkpoint as it was, with no partial file beside it."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        with atomic_write(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return read_weights(path, map_location=map_location or "cpu")
