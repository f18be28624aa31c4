"""Torch datasets over cached image pairs: random aligned patches for training, whole images for validation."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from sr_experiments.data.pairs import ImagePair
from sr_experiments.data.sampler import derived_seed


def random_crop(pair: ImagePair, patch: int, scale: int, generator: torch.Generator | None = None):
    """Aligned crop: LR patch ``patch`` x ``patch`` at (y, x), HR patch ``patch*scale`` at (y*s, x*s)."""
    _, h, w = pair.lq.shape
    y = int(torch.randint(0, h - patch + 1, (1,), generator=generator))
    x = int(torch.randint(0, w - patch + 1, (1,), generator=generator))
    lq = pair.lq[:, y : y + patch, x : x + patch]
    gt = pair.gt[:, y * scale : (y + patch) * scale, x * scale : (x + patch) * scale]
    return lq, gt, (y, x)


def augment(lq: torch.Tensor, gt: torch.Tensor, generator: torch.Generator | None = None):
    """Random horizontal flip, vertical flip and transpose: all 8 dihedral transforms, same on both."""
    return apply_dihedral(lq, gt, *torch.randint(0, 2, (3,), generator=generator).tolist())


def apply_dihedral(lq: torch.Tensor, gt: torch.Tensor, hflip: int, vflip: int,
                   transpose: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same flips and transpose of the last two axes on ``lq`` and ``gt`` (images or clips)."""
    if hflip:
        lq, gt = lq.flip(-1), gt.flip(-1)
    if vflip:
        lq, gt = lq.flip(-2), gt.flip(-2)
    if transpose:
        lq, gt = lq.transpose(-1, -2), gt.transpose(-1, -2)
    return lq, gt


def sample_patch(pair: ImagePair, patch_size: int, scale: int, augment_: bool, seed: int) -> dict[str, torch.Tensor]:
    """The training patch of ``pair`` drawn by ``seed``: an aligned random crop, then (with
    ``augment_``) random flips and transpose. The one patch sampler of every data backend
    (in memory here, streamed in stream.py), so all backends train on the same kind of patches."""
    g = torch.Generator().manual_seed(seed)
    lq, gt, _ = random_crop(pair, patch_size, scale, generator=g)
    if augment_:
        lq, gt = augment(lq, gt, generator=g)
    return {"lq": lq.contiguous(), "gt": gt.contiguous()}


class PairedPatchDataset(Dataset):
    """Random aligned (LR, HR) patches; an epoch is ``length`` patches, not a pass over images.

    Item ``n`` is a patch of image ``n % len(pairs)`` at a random place, so a shuffled epoch visits
    images evenly. Its crop and flips are drawn from a generator seeded by ``(seed, n)``: the same
    item is the same patch in any process, worker or resumed run (``ResumableSampler`` numbers
    patches from the start of training, so ``n`` may exceed ``length``).
    Items are uint8 (3, p, p) / (3, p*s, p*s) tensors; the module converts to float on device.
    """

    def __init__(
        self, pairs: list[ImagePair], scale: int, patch_size: int, length: int, augment: bool = True, seed: int = 0
    ):
        usable = [p for p in pairs if min(p.lq.shape[1:]) >= patch_size]
        if not usable:
            raise ValueError(
                f"no training image is at least {patch_size}x{patch_size} pixels at LR; lower data.patch_size"
            )
        if length < 1:
            raise ValueError(f"data.patches_per_epoch must be positive, got {length}")
        self.pairs, self.scale, self.patch_size = usable, scale, patch_size
        self.length, self.augment, self.seed = length, augment, int(seed)
        self.skipped = [p.name for p in pairs if p not in usable]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        pair = self.pairs[i % len(self.pairs)]
        return sample_patch(pair, self.patch_size, self.scale, self.augment, derived_seed(self.seed, 0, i))


class PairedImageDataset(Dataset):
    """Whole (LR, HR) images with their index (for exact DDP metrics), name and gray flag."""

    def __init__(self, pairs: list[ImagePair]):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict:
        p = self.pairs[i]
        return {"lq": p.lq, "gt": p.gt, "index": i, "gray": p.gray, "name": p.name}
