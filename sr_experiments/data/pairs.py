"""Decoded, aligned (LR, HR) image pairs, cached in memory as uint8."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sr_experiments.imaging.io import load_rgb
from sr_experiments.data.sources import ImageSource
from sr_experiments.imaging.imresize import imresize


class ImageTooSmallError(ValueError):
    """The image has fewer pixels per side than the scale: it has no LR."""


@dataclass
class ImagePair:
    name: str
    lq: torch.Tensor  # (3, h, w) uint8
    gt: torch.Tensor  # (3, h*scale, w*scale) uint8
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

    ``decoded`` is ``load_rgb(source.gt)`` when the caller already has it (evaluation reuses one
    decode across scales); ``lr_key`` is the running command's lr_source key, for the size hint.
    """
    gt_np, gray = decoded if decoded is not None else load_rgb(source.gt)
    gt = to_chw(mod_crop(gt_np, scale))
    if gt.shape[1] < scale or gt.shape[2] < scale:
        raise ImageTooSmallError(f"{source.gt}: image of {gt_np.shape[1]}x{gt_np.shape[0]} is smaller than the scale x{scale}")
    if source.lq is None:
        lq = imresize(gt, scale=1 / scale)
    else:
        lq = to_chw(load_rgb(source.lq)[0])
        expected = (gt.shape[1] // scale, gt.shape[2] // scale)
        if tuple(lq.shape[1:]) != expected:
            raise ValueError(
                f"{source.lq}: LR is {lq.shape[2]}x{lq.shape[1]} but its HR '{source.gt}' mod-cropped to x{scale} "
                f"needs {expected[1]}x{expected[0]}; check the scale, or use {lr_key}=generate"
            )
    return ImagePair(source.name, lq.contiguous(), gt.contiguous(), gray)
