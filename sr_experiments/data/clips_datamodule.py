"""Clip datasets and ``ClipDataModule``: T-frame training patches (one aligned crop, the same flips
and transpose on every frame, random temporal reversal) and whole clips for validation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from sr_experiments.data.clips import Clip, load_clip, resolve_clip_sources
from sr_experiments.data.clips_synthetic import synthetic_clips
from sr_experiments.data.datamodule import ResumablePatches, default_num_workers
from sr_experiments.data.datasets import apply_dihedral
from sr_experiments.data.sampler import derived_seed

log = logging.getLogger(__name__)


def augment_clip(lq: torch.Tensor, gt: torch.Tensor, flags: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The same horizontal flip, vertical flip, transpose (all 8 dihedral transforms) on every
    frame of (T, C, H, W) ``lq`` and ``gt``, and with ``flags[3]`` the frames in reverse order."""
    *dihedral, reverse = flags
    lq, gt = apply_dihedral(lq, gt, *dihedral)
    if reverse:
        lq, gt = lq.flip(0), gt.flip(0)
    return lq, gt


def sample_clip_patch(lq: torch.Tensor, gt: torch.Tensor, num_frame: int, patch_size: int, scale: int,
                      flips: tuple[bool, bool], seed: int) -> dict[str, torch.Tensor]:
    """The training patch of a clip (uint8 ``lq`` (T, 3, h, w), ``gt`` (T, 3, h*s, w*s)) drawn by
    ``seed``: ``num_frame`` consecutive frames from a random start, one aligned random crop, then
    the same flips/transpose on every frame (``flips[0]``, augment) and random temporal reversal
    (``flips[1]``). The one clip sampler of every backend (in memory here, streamed in clips_stream.py)."""
    augment, reverse = flips
    g = torch.Generator().manual_seed(seed)
    t = int(torch.randint(0, lq.shape[0] - num_frame + 1, (1,), generator=g))
    h, w = lq.shape[-2:]
    p, s = patch_size, scale
    y = int(torch.randint(0, h - p + 1, (1,), generator=g))
    x = int(torch.randint(0, w - p + 1, (1,), generator=g))
    lq = lq[t : t + num_frame, :, y : y + p, x : x + p]
    gt = gt[t : t + num_frame, :, y * s : (y + p) * s, x * s : (x + p) * s]
    flags = torch.randint(0, 2, (4,), generator=g).tolist()
    flags = [f if augment else 0 for f in flags[:3]] + [flags[3] if reverse else 0]
    lq, gt = augment_clip(lq, gt, flags)
    return {"lq": lq.contiguous(), "gt": gt.contiguous()}


class ClipPatchDataset(Dataset):
    """Random aligned (LR, HR) clip patches: ``num_frame`` consecutive frames of one clip, one crop.

    Item ``n`` comes from clip ``n % len(clips)`` with its start frame, crop and flips drawn from a
    generator seeded by ``(seed, n)`` (as ``PairedPatchDataset``: exact resume with
    ``ResumableSampler``). Items are uint8 ``lq`` (T, 3, p, p) and ``gt`` (T, 3, p*s, p*s).
    """

    def __init__(self, clips: list[Clip], scale: int, num_frame: int, patch_size: int, length: int,
                 augment: bool = True, reverse: bool = True, seed: int = 0) -> None:
        usable = [c for c in clips if c.num_frames >= num_frame and min(c.lq.shape[-2:]) >= patch_size]
        if not usable:
            raise ValueError(f"no training clip has {num_frame} frames of at least {patch_size}x{patch_size} LR pixels; "
                             "lower data.num_frame or data.patch_size")
        self.clips, self.scale, self.num_frame, self.patch_size = usable, scale, num_frame, patch_size
        self.length, self.augment, self.reverse, self.seed = length, augment, reverse, int(seed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        clip = self.clips[i % len(self.clips)]
        return sample_clip_patch(clip.lq, clip.gt, self.num_frame, self.patch_size, self.scale,
                                 (self.augment, self.reverse), derived_seed(self.seed, 0, i))


class ClipDataset(Dataset):
    """Whole clips for validation: ``lq`` (T, 3, h, w), ``gt`` (T, 3, H, W), index and name."""

    def __init__(self, clips: list[Clip]) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, Any]:
        c = self.clips[i]
        return {"lq": c.lq, "gt": c.gt, "index": i, "name": c.name}


class ClipDataModule(ResumablePatches, L.LightningDataModule):
    """Training clip patches and validation clips for one scale.

    Args:
        train: ``{layout, root, split}`` of the training clips: layout ``synthetic`` (the embedded
            default, split train), ``reds`` (split train: all clips but REDS4), ``vimeo90k`` (split
            train: ``sep_trainlist.txt``) or ``vid4``.
        val: the same for validation (``synthetic`` val, ``reds`` reds4, ``vimeo90k`` test, ``vid4``).
        scale: upscaling factor (the papers' video sets: 4).
        num_frame: frames per training clip (T).
        patch_size: LR patch side; the HR patch is ``patch_size * scale``.
        batch_size: clips per step.
        patches_per_epoch: epoch length in clip patches (validation runs once per epoch).
        degradation: ``BI`` (MATLAB bicubic) or ``BD`` (Gaussian sigma 1.6, every s-th pixel) for
            LR made here; LR files of that degradation are used where present.
        lr_source: ``auto`` (LR files where present), ``folder`` (required) or ``generate``.
        augment: the same random flips/transpose on every frame; ``reverse``: random temporal reversal.
        val_max_frames: validate on the first N frames of each clip (None: all), to bound CPU time.
        num_workers: DataLoader workers (``auto``: ``default_num_workers``).
        seed: seed of the patch stream (saved in checkpoints for exact resume) and of the synthetic clips.
    """

    def __init__(self, train: Mapping[str, Any], val: Mapping[str, Any], scale: int = 4, num_frame: int = 5,
                 patch_size: int = 32, batch_size: int = 4, patches_per_epoch: int = 800, degradation: str = "BI",
                 lr_source: str = "auto", augment: bool = True, reverse: bool = True,
                 val_max_frames: int | None = None, num_workers: int | str = "auto", seed: int | None = None) -> None:
        super().__init__()
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 2:
            raise ValueError(f"scale must be an integer >= 2 (4 for the video benchmarks), got {scale!r}")
        if int(num_frame) < 2:
            raise ValueError(f"data.num_frame must be at least 2 (a clip), got {num_frame}")
        if int(batch_size) < 1 or int(patches_per_epoch) < int(batch_size):
            raise ValueError(f"data.patches_per_epoch ({patches_per_epoch}) must be at least data.batch_size ({batch_size}) >= 1")
        self.train_spec, self.val_spec = dict(train or {}), dict(val or {})
        self.scale, self.num_frame, self.patch_size = int(scale), int(num_frame), int(patch_size)
        self.batch_size, self.patches_per_epoch = int(batch_size), int(patches_per_epoch)
        self.degradation, self.lr_source = str(degradation).upper(), lr_source
        self.augment, self.reverse = bool(augment), bool(reverse)
        self.val_max_frames = int(val_max_frames) if val_max_frames else None
        self.seed = int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,)))
        self.num_workers = default_num_workers() if str(num_workers) == "auto" else int(num_workers)
        self.train_set: ClipPatchDataset | None = None
        self.val_set: ClipDataset | None = None

    def load(self, spec: Mapping[str, Any], key: str, max_frames: int | None = None) -> list[Clip]:
        """Decoded clips of ``spec``; the synthetic ones depend on the seed only through their split."""
        if spec.get("layout") == "synthetic":
            clips = synthetic_clips(str(spec.get("split", "train")), self.scale, self.degradation)
            if max_frames:
                clips = [Clip(c.name, c.gt[:max_frames], c.lq[:max_frames]) for c in clips]
            return clips
        sources = resolve_clip_sources(spec, self.scale, self.lr_source, self.degradation, key)
        return [load_clip(s, self.scale, self.degradation, max_frames) for s in sources]

    def setup(self, stage: str | None = None) -> None:
        if self.val_set is None:
            self.val_set = ClipDataset(self.load(self.val_spec, "data.val", self.val_max_frames))
        if stage in (None, "fit") and self.train_set is None:
            self._setup_train()

    def _setup_train(self) -> None:
        """Build ``train_set`` (the hook another backend replaces: clips_stream.py)."""
        clips = self.load(self.train_spec, "data.train")
        self.train_set = ClipPatchDataset(clips, self.scale, self.num_frame, self.patch_size, self.epoch_length,
                                          self.augment, self.reverse, self.seed)
        log.info("data: %d training clips, %d validation clips, x%d, %d frames of %d LR px, batch %d",
                 len(self.train_set.clips), len(self.val_set), self.scale, self.num_frame, self.patch_size,
                 self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=1, shuffle=False, num_workers=0)
