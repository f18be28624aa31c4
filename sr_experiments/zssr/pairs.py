"""ZSSR's training pairs, drawn from the test image alone.

"HR fathers" are random crops of the image and of downscaled copies of it (scale augmentation),
rotated/flipped; "LR sons" are the fathers downscaled by the SR factor, with the framework's
MATLAB-exact bicubic (``evaluation/imresize.py``, as the official code's ``downscale_method='cubic'``)
or with a user's kernel (``kernel=PATH.npy``, e.g. one estimated by KernelGAN).

Deviation from the official ``random_augment``: fathers come from a fixed ladder of downscaled
copies chosen with probability proportional to their pixel count (the paper's description) and the
8 exact rotations/flips; the official code's interpolated affine warps with random shear are left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import IterableDataset

from sr_experiments.evaluation.imresize import imresize


def load_kernel(path: str | Path) -> torch.Tensor:
    """A 2-D downscaling kernel from a ``.npy`` file, normalised to sum to one; bad files are one
    clear ``ValueError`` naming the key and the file."""
    try:
        k = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"kernel={path}: cannot read it as a .npy array ({e}); give a 2-D float array saved with np.save") from None
    if k.ndim != 2 or min(k.shape) < 1 or not np.isfinite(k).all():
        raise ValueError(f"kernel={path}: expected a finite 2-D array, got shape {k.shape}")
    total = float(k.sum())
    if total <= 0:
        raise ValueError(f"kernel={path}: its values sum to {total:g}; a blur kernel sums to 1")
    return torch.from_numpy(k.astype(np.float64) / total)


def downscale(x: torch.Tensor, scale: int, kernel: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` (..., H, W) made ``scale`` times smaller: MATLAB bicubic (``imresize``, float path), or
    blurred with ``kernel`` and subsampled as the official ``numeric_kernel`` does (correlation with
    mirrored borders, then every ``scale``-th pixel from the first)."""
    if kernel is None:
        return imresize(x, scale=1 / scale)
    kh, kw = kernel.shape
    shape = x.shape
    flat = x.reshape(-1, 1, *shape[-2:])
    k = kernel.to(flat.dtype).to(flat.device)[None, None]
    padded = F.pad(flat, (kw // 2, (kw - 1) // 2, kh // 2, (kh - 1) // 2), mode="reflect")
    out = F.conv2d(padded, k)[..., ::scale, ::scale]
    return out.reshape(*shape[:-2], *out.shape[-2:])


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th of the 8 rotations/flips of ``x`` (..., H, W): ``k % 4`` quarter turns, then a
    horizontal flip when ``k >= 4``."""
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return y.flip(-1) if k >= 4 else y


def undo_dihedral(y: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of ``dihedral(., k)``."""
    if k >= 4:
        y = y.flip(-1)
    return torch.rot90(y, -(k % 4), dims=(-2, -1))


def father_sources(image: torch.Tensor, scale: int, min_scale: float, count: int, crop: int) -> list[torch.Tensor]:
    """The image and ``count - 1`` downscaled copies of it (factors evenly spaced from 1 down to
    ``min_scale``, MATLAB bicubic); copies too small to give a son of at least one pixel per
    ``scale`` (or smaller than a quarter crop) are left out. ``image`` is (3, H, W) in [0, 1]."""
    factors = np.linspace(1.0, min_scale, max(count, 1)) if count > 1 else [1.0]
    sources = []
    for f in factors:
        src = image if f == 1.0 else imresize(image, scale=float(f)).clamp(0, 1)
        small = min(src.shape[-2:])
        if f != 1.0 and (small < 2 * scale or small < min(crop // 4, min(image.shape[-2:]))):
            continue
        sources.append(src)
    return sources


class FatherSonPairs(IterableDataset):
    """An endless stream of (LR son, HR father) batches from one image, reproducible from ``seed``.

    Each batch: a source picked with probability proportional to its pixel count, a random
    rotation/flip, ``batch_size`` random ``crop_size`` crops (cut to a multiple of ``scale`` so that
    a son is exactly ``1/scale`` of its father), sons = ``downscale(fathers)`` plus Gaussian noise
    of ``noise_std`` (official ``noise_std = 0``).
    """

    def __init__(
        self,
        image: torch.Tensor,
        scale: int,
        *,
        crop_size: int = 128,
        batch_size: int = 1,
        min_scale: float = 0.5,
        scale_count: int = 6,
        flips: bool = True,
        noise_std: float = 0.0,
        kernel: torch.Tensor | None = None,
        seed: int = 0,
        steps: int | None = None,
    ) -> None:
        super().__init__()
        self.scale, self.crop_size, self.batch_size = scale, crop_size, batch_size
        self.flips, self.noise_std, self.kernel, self.seed, self.steps = flips, noise_std, kernel, seed, steps
        self.sources = father_sources(image.float(), scale, min_scale, scale_count, crop_size)
        sizes = np.array([s.shape[-2] * s.shape[-1] for s in self.sources], dtype=np.float64)
        self.weights = torch.from_numpy(sizes / sizes.sum())

    def __len__(self) -> int:
        # Lightning's epoch length (and the progress bar's total) when a step cap is given.
        if self.steps is None:
            raise TypeError("an endless pair stream has no length")
        return self.steps

    def sample(self, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One (sons, fathers) batch: (B, 3, c/s, c/s) and (B, 3, c, c)."""
        src = self.sources[int(torch.multinomial(self.weights, 1, generator=g))]
        if self.flips:
            src = dihedral(src, int(torch.randint(8, (1,), generator=g)))
        h, w = src.shape[-2:]
        s = self.scale
        ch, cw = (min(self.crop_size, h) // s) * s, (min(self.crop_size, w) // s) * s
        crops = []
        for _ in range(self.batch_size):
            y = int(torch.randint(h - ch + 1, (1,), generator=g))
            x = int(torch.randint(w - cw + 1, (1,), generator=g))
            crops.append(src[:, y : y + ch, x : x + cw])
        fathers = torch.stack(crops)
        sons = downscale(fathers, s, self.kernel)
        if self.noise_std:
            sons = sons + torch.randn(sons.shape, generator=g) * self.noise_std
        return sons.clamp(0, 1).contiguous(), fathers.contiguous()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed)
        n = 0
        while self.steps is None or n < self.steps:
            yield self.sample(g)
            n += 1
