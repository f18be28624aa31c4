"""``data=stream_clips``: training clip patches streamed from clips prepared by ``prepare.py kind=clips``.

Each stored item is one clip window (``prepared.py``: T frames, GT and LR, lossless). An epoch is
one pass over the items (each once, split across DDP ranks and loader workers by litdata, as
``data=stream``); each visit draws ``data.num_frame`` consecutive frames with one aligned crop, the
same flips on every frame and random temporal reversal, by ``sample_clip_patch`` (the in-memory
backend's sampler) seeded by ``(seed, epoch, item)``. Nothing is decoded up front: memory per
process does not grow with the number of clips. Validation: whole clips, as ``ClipDataModule``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch

from sr_experiments.data.clips_datamodule import ClipDataModule, sample_clip_patch
from sr_experiments.data.prepared import CLIP_FORMAT, PreparedDataError, decode_frames
from sr_experiments.data.sampler import derived_seed
from sr_experiments.data.stream import (
    StreamLoader,
    SubImageStream,
    batches_consumed,
    open_prepared,
)

log = logging.getLogger(__name__)


class ClipWindowStream(SubImageStream):
    """Random aligned (LR, HR) clip patches, one per stored clip window per epoch.

    Args:
        input_dir: folder prepared with ``kind=clips``, or its object-store URI.
        scale: the LR of this scale is read (``lq_x<scale>``).
        num_frame: consecutive frames per patch (T).
        patch_size: LR patch side; the HR patch is ``patch_size * scale``.
        flips: (augment, reverse): the same random flips/transpose on every frame, random reversal.
        seed, cache_dir, max_cache_size: as ``SubImageStream``.
    """

    what = "clip item"

    def __init__(self, input_dir: str, scale: int, num_frame: int, patch_size: int, flips: tuple[bool, bool] = (True, True),
                 seed: int = 0, cache_dir: str | None = None, max_cache_size: str | int = "50GB") -> None:
        super().__init__(input_dir, scale, patch_size, flips[0], seed, cache_dir, max_cache_size)
        self.num_frame, self.flips = int(num_frame), (bool(flips[0]), bool(flips[1]))

    def decode(self, item: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoded uint8 (T, 3, h, w) LR and (T, 3, H, W) GT frames of a stored item."""
        key, frames = self.lq_key(item), int(item.get("frames", 0))
        where = f"{self.where}: clip item {item.get('name', '?')}"
        lq, gt = (torch.from_numpy(decode_frames(item[k], frames, where)).permute(0, 3, 1, 2) for k in (key, "gt"))
        if lq.shape[0] < self.num_frame or min(lq.shape[-2:]) < self.patch_size:
            raise PreparedDataError(f"{where} has {lq.shape[0]} frames of {lq.shape[-1]}x{lq.shape[-2]} LR pixels, "
                                    f"fewer than data.num_frame={self.num_frame} of data.patch_size={self.patch_size}: "
                                    "lower them or prepare with larger clip_frames")
        return lq, gt

    def __getitem__(self, index: Any) -> dict:
        number = int(index.index if hasattr(index, "index") else index)
        lq, gt = self.decode(self.stored(index))
        seed = derived_seed(self.patch_seed, 2, self.current_epoch, number)
        return sample_clip_patch(lq, gt, self.num_frame, self.patch_size, self.scale, self.flips, seed)


class ClipStreamDataModule(ClipDataModule):
    """Training clip patches streamed from a prepared folder; validation clips as ``ClipDataModule``.

    Args:
        train_dir: a folder made by ``prepare.py kind=clips``, or its copy in an object store.
        val: ``{layout, root, split}`` of the validation clips (whole, decoded in memory).
        scale, num_frame, patch_size, batch_size, augment, reverse, val_max_frames, num_workers,
            seed: as ``ClipDataModule``; ``degradation`` and ``lr_source`` apply to validation only
            (the training LR is the one prepared).
        cache_dir, max_cache_size: as ``data=stream``.
        patches_per_epoch: ignored (with a warning), so recipes written for ``ClipDataModule``
            (``experiment=video_cpu``) take ``data=stream_clips`` as they are.
    """

    def __init__(self, train_dir: str, val: Mapping[str, Any], scale: int = 4, num_frame: int = 5,
                 patch_size: int = 32, batch_size: int = 4, degradation: str = "BI", lr_source: str = "auto",
                 augment: bool = True, reverse: bool = True, val_max_frames: int | None = None,
                 num_workers: int | str = "auto", seed: int | None = None, cache_dir: str | None = None,
                 max_cache_size: str | int = "50GB", patches_per_epoch: int | None = None) -> None:
        if patches_per_epoch is not None:  # set by recipes written for in-memory clips (experiment=video_cpu)
            log.warning("data.patches_per_epoch=%s ignored: with data=stream_clips an epoch is one pass over the "
                        "prepared clip items", patches_per_epoch)
        if not isinstance(train_dir, str):
            raise ValueError(f"data.train_dir: data=stream_clips reads one prepared folder, got {train_dir!r}")
        super().__init__({}, val, scale, num_frame, patch_size, batch_size, batch_size, degradation, lr_source,
                         augment, reverse, val_max_frames, num_workers, seed)
        self.train_dir, self.cache_dir, self.max_cache_size = train_dir, cache_dir, max_cache_size
        self.train_set: ClipWindowStream | None = None

    def _setup_train(self) -> None:
        uri, manifest, count = open_prepared(self.train_dir, self.scale, CLIP_FORMAT)
        if manifest is not None:
            frames, side = int(manifest["min_frames"]), int(manifest["min_lr_side"])
            if self.num_frame > frames or self.patch_size > side:
                raise PreparedDataError(f"data.train_dir: the shortest clip items of '{uri}' have {frames} frames "
                                        f"and the smallest {side} LR pixels: data.num_frame={self.num_frame} and "
                                        f"data.patch_size={self.patch_size} must not exceed them (or prepare with "
                                        "larger clip_frames)")
        self.train_set = ClipWindowStream(uri, self.scale, self.num_frame, self.patch_size,
                                          (self.augment, self.reverse), self.seed, self.cache_dir, self.max_cache_size)
        self.train_set.decode(self.train_set.stored(0))  # a wrong scale or an unreadable first chunk: refused now
        log.info("data: streaming %s clip items from %s, %d validation clips, x%d, %d frames of %d LR px, batch %d",
                 count if count is not None else len(self.train_set), uri, len(self.val_set), self.scale,
                 self.num_frame, self.patch_size, self.batch_size)

    def load_state_dict(self, state_dict: dict) -> None:
        # The stream's order and patches come from the seed: another seed in the checkpoint rebuilds it.
        seed = int(state_dict.get("seed", self.seed))
        if seed != self.seed:
            self.seed = seed
            if self.train_set is not None:
                self.train_set = None
                self._setup_train()

    def train_dataloader(self) -> StreamLoader:
        return StreamLoader(self.train_set, lambda: batches_consumed(self.trainer), self.trainer, batch_size=self.batch_size,
                            drop_last=True, num_workers=self.num_workers)
