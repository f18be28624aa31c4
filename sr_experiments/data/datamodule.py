"""``SRDataModule``: paired patch sampling for training, whole images for validation."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from sr_experiments.console import progress
from sr_experiments.data.datasets import PairedImageDataset, PairedPatchDataset
from sr_experiments.data.pairs import ImagePair, ImageTooSmallError, load_pair
from sr_experiments.data.sampler import ResumableSampler
from sr_experiments.data.sources import ImageSource, resolve_sources

log = logging.getLogger(__name__)


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def default_num_workers() -> int:
    """Workers for ``num_workers=auto``: none when training on the CPU, where a worker would take a
    core from the network's threads while the main process already crops and augments ~80x
    faster than even a bf16 model consumes (bench/train_overhead.py); with a GPU, one worker per
    spare core (up to 8), so the CPU prepares batches while the GPU computes."""
    if not torch.cuda.is_available():
        return 0
    per_gpu = (os.cpu_count() or 2) // max(1, torch.cuda.device_count())
    return max(1, min(8, per_gpu - 1))


class ResumableDataLoader(DataLoader):
    """A DataLoader that Lightning treats as resumable mid-epoch, which it is: its
    ``ResumableSampler`` starts each iteration at the patch the trainer has reached, so there is no
    position of its own to save."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass


class ResumablePatches:
    """The resumable patch stream of a data module (``SRDataModule``, ``ClipDataModule``): epochs
    of whole batches, the patch a resumed run continues from, the stream's seed in checkpoints,
    and the training loader that starts there. Mixed into a ``LightningDataModule`` that sets
    ``patches_per_epoch``, ``batch_size``, ``seed``, ``num_workers`` and ``train_set``."""

    patches_per_epoch: int
    batch_size: int
    seed: int
    num_workers: int
    train_set: Any
    trainer: Any
    pin_memory: bool = False

    @property
    def epoch_length(self) -> int:
        """Patches per epoch, whole batches only."""
        return self.patches_per_epoch // self.batch_size * self.batch_size

    def _patches_consumed(self) -> int:
        trainer = self.trainer
        if trainer is None:
            return 0
        if trainer.world_size > 1:
            # Lightning wraps the sampler in a DistributedSampler that needs whole epochs: DDP
            # resumes at the start of the interrupted epoch.
            return trainer.current_epoch * self.epoch_length
        return trainer.global_step * trainer.accumulate_grad_batches * self.batch_size

    def state_dict(self) -> dict:
        return {"seed": self.seed}

    def load_state_dict(self, state_dict: dict) -> None:
        # Before setup() on resume: the dataset is built with the checkpoint's seed.
        self.seed = int(state_dict.get("seed", self.seed))
        if self.train_set is not None:
            self.train_set.seed = self.seed

    def train_dataloader(self) -> DataLoader:
        return ResumableDataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=ResumableSampler(self.epoch_length, self.seed, self._patches_consumed),
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
        )


class SRDataModule(ResumablePatches, L.LightningDataModule):
    """Training patches and validation images for one scale.

    Args:
        train_dir: folder(s) of training images, each a set root in the standard layout
            (``<root>/HR``, optional ``<root>/LR_bicubic/X{s}``) or a plain image folder, or
            ``sample:train`` for the photos bundled with scikit-image.
        val_dir: the same for validation (whole images, HR mod-cropped to the scale).
        scale: upscaling factor.
        patch_size: LR patch side; the HR patch is ``patch_size * scale``.
        batch_size: training patches per step.
        patches_per_epoch: epoch length in patches (validation runs once per epoch).
        num_workers: DataLoader worker processes for training patches (0 = in the main process);
            ``auto``: see ``default_num_workers``.
        lr_source: ``auto`` (LR files where present, else MATLAB-compatible downscale),
            ``folder`` or ``generate``.
        augment: random flips and 90-degree rotations.
        pin_memory: pin host memory for faster GPU transfer; ``None`` = when CUDA is available.
        seed: seed of the patch stream (which crops, flips and order); ``None`` draws one. It is
            saved in checkpoints, so a resumed run continues the same stream.
    """

    def __init__(
        self,
        train_dir: str | Sequence[str],
        val_dir: str | Sequence[str],
        scale: int = 2,
        patch_size: int = 48,
        batch_size: int = 16,
        patches_per_epoch: int = 16000,
        num_workers: int | str = "auto",
        lr_source: str = "auto",
        augment: bool = True,
        pin_memory: bool | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 2:
            raise ValueError(f"scale must be an integer >= 2 (2, 3 or 4 for the benchmarks), got {scale!r}")
        self.train_dirs, self.val_dirs = _as_list(train_dir), _as_list(val_dir)
        if not self.val_dirs:
            raise ValueError("data.val_dir is empty: validation needs at least one folder of images")
        self.scale, self.patch_size, self.batch_size = int(scale), int(patch_size), int(batch_size)
        self.patches_per_epoch = int(patches_per_epoch)
        if self.batch_size < 1 or self.patches_per_epoch < self.batch_size:
            raise ValueError(
                f"data.patches_per_epoch ({patches_per_epoch}) must be at least data.batch_size ({batch_size}), "
                "and data.batch_size at least 1"
            )
        self.seed = int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,)))
        self.num_workers = default_num_workers() if str(num_workers) == "auto" else int(num_workers)
        self.lr_source, self.augment = lr_source, augment
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.train_pairs: list[ImagePair] | None = None
        self.val_pairs: list[ImagePair] | None = None
        self.train_set: PairedPatchDataset | None = None
        self.val_set: PairedImageDataset | None = None

    def _load(self, dirs: list[str], key: str, skip_tiny: bool = False) -> list[ImagePair]:
        """Decoded pairs of ``dirs``; with ``skip_tiny``, images smaller than the scale are left out
        with a warning (a training set may hold a stray icon) instead of stopping the run."""
        sources: list[ImageSource] = []
        for d in dirs:
            sources += resolve_sources(d, self.scale, self.lr_source, key=key)

        def load(source: ImageSource) -> ImagePair | None:
            try:
                return load_pair(source, self.scale)
            except ImageTooSmallError as e:
                if not skip_tiny:
                    raise
                log.warning("%s (skipped)", e)
                return None

        # Decoding and resizing release the GIL: threads overlap them.
        with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
            pairs = progress(pool.map(load, sources), total=len(sources), desc=f"decoding {key}", unit="img")
            return [p for p in pairs if p is not None]

    def setup(self, stage: str | None = None) -> None:
        if self.val_pairs is None:
            self.val_pairs = self._load(self.val_dirs, "data.val_dir")
            self.val_set = PairedImageDataset(self.val_pairs)
        if stage in (None, "fit") and self.train_set is None:
            if not self.train_dirs:
                raise ValueError("data.train_dir is empty: training needs at least one folder of images")
            self._setup_train()

    def _setup_train(self) -> None:
        """Build ``train_set`` (the hook another backend replaces: stream.py)."""
        self.train_pairs = self._load(self.train_dirs, "data.train_dir", skip_tiny=True)
        self.train_set = PairedPatchDataset(
            self.train_pairs, self.scale, self.patch_size, self.epoch_length, self.augment, seed=self.seed
        )
        if self.train_set.skipped:
            log.warning(
                "%d training images are smaller than the %dx%d LR patch and are skipped: %s",
                len(self.train_set.skipped), self.patch_size, self.patch_size, ", ".join(self.train_set.skipped[:10]),
            )
        log.info(
            "data: %d training images, %d validation images, x%d, LR patch %d, batch %d",
            len(self.train_set.pairs), len(self.val_pairs), self.scale, self.patch_size, self.batch_size,
        )

    def val_dataloader(self) -> DataLoader:
        # Whole images differ in size: one per batch.
        return DataLoader(self.val_set, batch_size=1, shuffle=False, num_workers=0, pin_memory=self.pin_memory)
