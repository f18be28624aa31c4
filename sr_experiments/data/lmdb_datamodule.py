"""``LmdbDataModule``: ``SRDataModule`` with its training patches read lazily from BasicSR LMDBs.

    python train.py data=lmdb data.train_dir=DIV2K_train_HR_sub.lmdb data.lr_dir=DIV2K_train_LR_bicubic_X4_sub.lmdb scale=4

Validation, patch sampling, flips, exact resume and DDP are the parent's; only where the training
images come from differs (``lmdb_source.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sr_experiments.data.datamodule import SRDataModule, _as_list
from sr_experiments.data.lmdb_source import LmdbPairs, LmdbPatchDataset

log = logging.getLogger(__name__)


class LmdbDataModule(SRDataModule):
    """Training pairs from LMDBs, validation images from folders.

    Args:
        train_dir: HR ``*.lmdb`` folder(s) in BasicSR's layout (``data.mdb`` + ``meta_info.txt``).
        lr_dir: the matching LR ``*.lmdb`` folder(s), same keys, one per ``train_dir``; ``None``
            makes every LR from its HR with the MATLAB-compatible downscale.
        val_dir, scale, ...: as ``SRDataModule`` (validation stays whole images from folders).
    """

    def __init__(
        self, train_dir: str | Sequence[str], val_dir: str | Sequence[str], lr_dir: str | Sequence[str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(train_dir, val_dir, **kwargs)
        self.lr_dirs = _as_list(lr_dir)

    def _setup_train(self) -> None:
        """Training pairs from the LMDBs, decoded per patch (the parent's hook for another backend)."""
        if not self.train_dirs:
            raise ValueError("data.train_dir is empty: name the HR *.lmdb folder(s) to train on")
        pairs = LmdbPairs(self.train_dirs, self.lr_dirs, self.scale)
        self.train_set = LmdbPatchDataset(pairs, self.scale, self.patch_size, self.epoch_length, self.augment,
                                          seed=self.seed)
        self.train_pairs = self.train_set.pairs  # lazy
        if self.train_set.skipped:
            log.warning("%d LMDB images are smaller than the %dx%d LR patch and are skipped: %s",
                        len(self.train_set.skipped), self.patch_size, self.patch_size,
                        ", ".join(self.train_set.skipped[:10]))
        log.info("data: %d training images in %d LMDB(s) (read per patch), x%d, LR patch %d, batch %d",
                 len(self.train_set.pairs), len(self.train_dirs), self.scale, self.patch_size, self.batch_size)

    def setup(self, stage: str | None = None) -> None:
        # Training set first: the parent then sees it built and loads only the validation images.
        if stage in (None, "fit") and self.train_set is None:
            self._setup_train()
        super().setup(stage)
