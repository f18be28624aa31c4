"""Decoded, aligned (LR, HR) image pairs, cached in memory as uint8."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sr_experiments.data.image_io import load_rgb
from sr_experiments.data.sources import ImageSource
from sr_experiments.evaluation.imresize import imresize


class ImageTooSmallError(ValueError):
    """The image has fewer pixels per side than the scale: it has no LR."""


@dataclass
class ImagePair:
    name: str
    lr: torch.Tensor  # (3, h, w) uint8
    hr: torch.Tensor  # (3, h*scale, w*scale) uint8
    gray: bool  # the HR file is single-channel


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop an (H, W, C) array so that H and W are multiples of ``scale`` (top-left kept)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def to_chw(img: np.ndarray) -> torch.Tensor:
    # A copy: the decoded array may be read-only (PIL's buffer), which torch warns about.
    return torch.from_numpy(img.transpose(2, 0, 1).copy())


def load_pair(
    source: ImageSource, scale: int, decoded: tuple[np.ndarray, bool] | None = None, lr_key: str = "data.lr_source"
) -> ImagePair:
    """Decode one HR (mod-cropped to ``scale``) and its LR: the LR file, or a MATLAB downscale.

    ``decoded`` is ``load_rgb(source.hr)`` when the caller already has it (evaluation reuses one
    decode across scales); ``lr_key`` is the running command's lr_source key, for the size hint.
    """
    hr_np, gray = decoded if decoded is not None else load_rgb(source.hr)
    hr = to_chw(mod_crop(hr_np, scale))
    if hr.shape[1] < scale or hr.shape[2] < scale:
        raise ImageTooSmallError(f"{source.hr}: image of {hr_np.shape[1]}x{hr_np.shape[0]} is smaller than the scale x{scale}")
    if source.lr is None:
        lr = imresize(hr, scale=1 / scale)
    else:
        lr = to_chw(load_rgb(source.lr)[0])
        expected = (hr.shape[1] // scale, hr.shape[2] // scale)
        if tuple(lr.shape[1:]) != expected:
            raise ValueError(
                f"{source.lr}: LR is {lr.shape[2]}x{lr.shape[1]} but its HR '{source.hr}' mod-cropped to x{scale} "
                f"needs {expected[1]}x{expected[0]}; check the scale, or use {lr_key}=generate"
            )
    return ImagePair(source.name, lr.contiguous(), hr.contiguous(), gray)
