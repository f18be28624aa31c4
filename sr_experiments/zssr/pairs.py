"""ZSSR's training pairs, drawn from the test image alone.

"HR fathers" are random crops of the image and of downscaled copies of it (scale augmentation),
rotated/flipped; "LR sons" are the fathers downscaled by the SR factor, with the framework's
MATLAB-exact bicubic (``imaging/imresize.py``, as the official code's ``downscale_method='cubic'``)
or with a user's kernel (``kernel=PATH.npy``, e.g. one estimated by KernelGAN).

Two ways to draw fathers (``augment``):

* ``ladder``: a fixed ladder of MATLAB-bicubic downscaled copies, chosen with probability
  proportional to their pixel count (the paper's description), and the 8 exact rotations/flips;
* ``official`` (the default of ``zssr.augment``; 0.12 dB above the ladder on Set5): the
  official code's ``random_augment``, ported: 5% plain crops, 45% crops under one
  of the 8 rotations/flips, 50% interpolated affine warps (random scale in [min_scale, max_scale],
  x/y scale difference, shear and any rotation angle; OpenCV's bicubic ``warpPerspective``, as the
  official code) of the source whose scale is the smallest one above the drawn scale; in the
  official gradual configuration the sources grow with each stage's output. Its warps can reach
  outside the source; those pixels are black in the official code, and are here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import IterableDataset

from sr_experiments.imaging.imresize import imresize


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


Factor = int | tuple[float, float]  # an integer scale, or (vertical, horizontal) of a fractional stage


def factor_pair(scale: Factor) -> tuple[float, float]:
    """``(vertical, horizontal)`` of an integer or per-axis factor."""
    return (float(scale), float(scale)) if isinstance(scale, (int, float)) else (float(scale[0]), float(scale[1]))


def downscale(
    x: torch.Tensor, scale: Factor, kernel: torch.Tensor | None = None, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """``x`` (..., H, W) made ``scale`` times smaller: MATLAB bicubic (``imresize``, float path), or
    blurred with ``kernel`` and subsampled as the official ``numeric_kernel`` does (correlation with
    mirrored borders, then every ``scale``-th pixel from the first). A per-axis (fractional) factor
    is bicubic only; ``size`` fixes its output shape (official ``output_shape``)."""
    if not isinstance(scale, int):
        if kernel is not None:
            raise ValueError("a blur kernel is for one integer factor; fractional stages downscale with bicubic")
        sy, sx = factor_pair(scale)
        return imresize(x, scale=(1 / sy, 1 / sx), size=size)
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


def official_augment(
    sources: list[np.ndarray],
    base_scales: list[float],
    rng: np.random.Generator,
    *,
    leave_as_is: float = 0.05,
    no_interp: float = 0.45,
    min_scale: float = 0.5,
    max_scale: float = 1.0,
    allow_rotation: bool = True,
    scale_diff_sigma: float = 0.25,
    shear_sigma: float = 0.1,
    crop_size: int = 128,
) -> np.ndarray:
    """One father, ``crop_size`` square (H, W, 3) float32, as the official ``random_augment`` draws
    it (configs.py defaults). ``sources`` are (H, W, 3) float32 images, ``base_scales`` their scales
    relative to the input (the smaller of the two axes for a per-axis one), ascending."""
    import cv2  # OpenCV's warp, as the official code: the port of its interpolation is exact

    chooser = rng.random()
    mode = "leave_as_is" if chooser < leave_as_is else ("no_interp" if chooser < leave_as_is + no_interp else "affine")
    scale = 1.0 if mode == "leave_as_is" else rng.random() * (max_scale - min_scale) + min_scale
    # the smallest source whose scale is at least the drawn one (the official tolerance of 1e-6)
    index = next((i for i, b in enumerate(base_scales) if b > scale - 1e-6), len(base_scales) - 1)
    im, base = sources[index], base_scales[index]
    h, w = im.shape[:2]
    to_centre = np.array([[1, 0, -w / 2.0], [0, 1, -h / 2.0], [0, 0, 1]])
    from_centre = np.array([[1, 0, w / 2.0], [0, 1, h / 2.0], [0, 0, 1]])
    if mode != "affine":  # integer shifts keep the warp free of interpolation
        to_centre, from_centre = np.round(to_centre), np.round(from_centre)
    if mode == "affine":
        scale /= base
        diff = rng.standard_normal() * scale_diff_sigma
    else:
        scale, diff = 1.0, 0.0
    reflect = 1.0 if mode == "leave_as_is" or not allow_rotation else float(np.sign(rng.standard_normal()))
    scale_mat = np.array([[reflect * (scale + diff / 2), 0, 0], [0, scale - diff / 2, 0], [0, 0, 1]])
    shift_x = rng.random() * np.clip(scale * w - crop_size, 0, None)
    shift_y = rng.random() * np.clip(scale * h - crop_size, 0, None)
    shift = np.array([[1, 0, -shift_x], [0, 1, -shift_y], [0, 0, 1]])
    if mode != "affine":
        shift = np.round(shift)
    if not allow_rotation or mode == "leave_as_is":
        theta = 0.0
    else:
        theta = rng.random() * 2 * np.pi if mode == "affine" else int(rng.integers(4)) * np.pi / 2
    rotation = np.array([[np.cos(theta), np.sin(theta), 0], [-np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    sx, sy = (rng.standard_normal() * shear_sigma, rng.standard_normal() * shear_sigma) if mode == "affine" else (0, 0)
    shear = np.array([[1, sx, 0], [sy, 1, 0], [0, 0, 1]])
    transform = from_centre @ shift @ shear @ rotation @ scale_mat @ to_centre
    out = cv2.warpPerspective(im, transform, (crop_size, crop_size), flags=cv2.INTER_CUBIC)
    return np.clip(out, 0, 1)


class FatherSonPairs(IterableDataset):
    """An endless stream of (LR son, HR father) batches from one image, reproducible from ``seed``.

    Each batch (``augment="ladder"``): a source picked with probability proportional to its pixel
    count, a random rotation/flip, ``batch_size`` random ``crop_size`` crops (cut to a multiple of
    ``scale`` so that a son is exactly ``1/scale`` of its father), sons = ``downscale(fathers)`` plus
    Gaussian noise of ``noise_std`` (official ``noise_std = 0``). ``augment="official"``: each
    father from ``official_augment`` over ``sources`` (default: the image alone) with ``base_scales``
    and ``max_scale``; ``scale`` may then be a per-axis fractional factor (a gradual stage), whose
    sons are ``ceil(crop / scale)`` pixels.
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
        augment: str = "ladder",
        sources: list[torch.Tensor] | None = None,
        base_scales: list[float] | None = None,
        max_scale: float = 1.0,
        augment_options: dict | None = None,
    ) -> None:
        super().__init__()
        if augment not in ("ladder", "official"):
            raise ValueError(f"augment must be 'ladder' or 'official', got {augment!r}")
        if augment == "ladder" and not isinstance(scale, int):
            raise ValueError("a fractional stage needs augment='official' (the ladder crops to multiples of an integer)")
        self.scale, self.crop_size, self.batch_size = scale, crop_size, batch_size
        self.flips, self.noise_std, self.kernel, self.seed, self.steps = flips, noise_std, kernel, seed, steps
        self.augment = augment
        if augment == "official":
            srcs = sources if sources is not None else [image]
            self.official_sources = [np.ascontiguousarray(t.float().permute(1, 2, 0).numpy()) for t in srcs]
            self.base_scales = list(base_scales) if base_scales is not None else [1.0] * len(srcs)
            self.official_options = {"min_scale": min_scale, "max_scale": max_scale, "allow_rotation": flips,
                                     "crop_size": crop_size, **(augment_options or {})}
            self.sources = [image.float()]
        else:
            self.sources = father_sources(image.float(), scale, min_scale, scale_count, crop_size)
        sizes = np.array([s.shape[-2] * s.shape[-1] for s in self.sources], dtype=np.float64)
        self.weights = torch.from_numpy(sizes / sizes.sum())

    def __len__(self) -> int:
        # Lightning's epoch length (and the progress bar's total) when a step cap is given.
        if self.steps is None:
            raise TypeError("an endless pair stream has no length")
        return self.steps

    def sample(self, g: torch.Generator, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One (sons, fathers) batch: (B, 3, c/s, c/s) and (B, 3, c, c)."""
        if self.augment == "official":
            rng = rng if rng is not None else np.random.default_rng(self.seed)
            fathers = torch.stack([
                torch.from_numpy(official_augment(self.official_sources, self.base_scales, rng, **self.official_options)).permute(2, 0, 1)
                for _ in range(self.batch_size)])
            return self._sons(fathers, g), fathers.contiguous()
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
        return self._sons(fathers, g), fathers.contiguous()

    def _sons(self, fathers: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        sons = downscale(fathers, self.scale, self.kernel)
        if self.noise_std:
            sons = sons + torch.randn(sons.shape, generator=g) * self.noise_std
        return sons.clamp(0, 1).contiguous()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        n = 0
        while self.steps is None or n < self.steps:
            yield self.sample(g, rng)
            n += 1
