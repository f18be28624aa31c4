"""``prepare.py kind=clips``: video clips in a standard layout cut into litdata items of T frames.

``python prepare.py kind=clips input=<REDS root> layout=reds scale=4 output=data/reds_clips``
(``layout``: reds | vimeo90k | vid4, read by ``clips.resolve_clip_sources``; ``input=synthetic:train``:
the embedded synthetic clips). A clip longer than ``clip_frames`` is cut into windows of that many
frames, every ``clip_step`` frames plus one flush with its end (``prepared.tile_starts``, the
sub-image rule in time: REDS's 100 frames at 20 are 5 windows); frames larger than ``crop_size``
are cut into sub-clips as images into sub-images (a side shorter than it stays whole: Vimeo-90K's
448x256 frames are not cut), so an item of REDS stays a few MB. GT is the clip's frames
mod-cropped to the scale, LR the layout's LR files or made per frame (BI, BD) as the in-memory
backend does (``clips.load_clip``): training from the items sees the pixels it would see in memory.
Parts, resume, the folder claim and the manifest are ``prepare.py``'s.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from sr_experiments.data.clips import ClipSource, load_clip, resolve_clip_sources
from sr_experiments.data.clips_synthetic import synthetic_clips
from sr_experiments.data.prepared import (
    CLIP_FORMAT,
    FORMAT_VERSION,
    encode_frames,
    image_size,
    tile_starts,
)

SYNTHETIC = "synthetic:"  # input=synthetic:train | synthetic:val


def _one_scale(value: Any) -> int:
    scales = [value] if isinstance(value, int) else list(value)
    if len(scales) != 1 or not isinstance(scales[0], int) or isinstance(scales[0], bool) or scales[0] < 2:
        raise ValueError(f"scale={value!r}: kind=clips prepares one scale (the video sets are x4), e.g. scale=4; "
                         "prepare each scale into its own folder")
    return scales[0]


def clip_boxes(h: int, w: int, crop: int | None, step: int, thresh: int) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Top-left corners of the sub-clips of (h, w) frames and their (height, width): ``crop_size``
    squares every ``step`` (BasicSR's sub-image rule), a side shorter than the crop kept whole."""
    bh, bw = (h, w) if not crop else (min(crop, h), min(crop, w))
    return [(y, x) for y in tile_starts(h, bh, step, thresh) for x in tile_starts(w, bw, step, thresh)], (bh, bw)


@lru_cache(maxsize=2)
def _synthetic(split: str, scale: int, degradation: str) -> list:
    return synthetic_clips(split, scale, degradation)


def _sources(cfg: DictConfig, scale: int, degradation: str) -> tuple[str, str, list]:
    """(input, layout, clips): ``ClipSource``s of a layout on disk, or the decoded synthetic clips."""
    inp = str(cfg.input)
    if inp.startswith(SYNTHETIC):
        split = inp[len(SYNTHETIC):]
        if split not in ("train", "val"):
            raise ValueError(f"input={inp}: the synthetic clips are synthetic:train or synthetic:val")
        return inp, "synthetic", _synthetic(split, scale, degradation)
    layout = str(cfg.get("layout"))
    if layout not in ("reds", "vimeo90k", "vid4"):
        raise ValueError(f"layout={layout}: kind=clips reads layout=reds, vimeo90k or vid4 (or input=synthetic:train)")
    root = Path(inp).expanduser().resolve()
    spec = {"layout": layout, "root": str(root), "split": cfg.get("split")}
    return str(root), layout, resolve_clip_sources(spec, scale, str(cfg.lr_source), degradation, key="input")


def _frame_size(source: ClipSource, scale: int) -> tuple[int, int]:
    """(height, width) of a clip on disk mod-cropped to ``scale``, from headers; LR files checked."""
    h, w = image_size(source.gt[0])
    h, w = h - h % scale, w - w % scale
    if source.lq is not None:
        lh, lw = image_size(source.lq[0])
        if (lh, lw) != (h // scale, w // scale):
            raise ValueError(f"input: '{source.lq[0]}' is {lw}x{lh}, but the LR x{scale} of '{source.gt[0]}' must be "
                             f"{w // scale}x{h // scale}: is it another scale's LR? (lr_source=generate makes it)")
    return h, w


def plan_clips(cfg: DictConfig) -> dict[str, Any]:
    """Everything a clip preparation will do, checked before any work (one-line errors)."""
    scale = _one_scale(OmegaConf.to_object(cfg.scale) if OmegaConf.is_config(cfg.scale) else cfg.scale)
    window = int(cfg.clip_frames)
    frame_step = int(cfg.clip_step) if cfg.get("clip_step") else window
    crop, step, thresh = (int(cfg.crop_size) if cfg.crop_size else None), int(cfg.step), int(cfg.thresh_size)
    if str(cfg.get("codec", "png")) != "png":
        raise ValueError(f"codec={cfg.codec}: clips are stored as PNG frames (codec=raw is for sub-images, kind=images)")
    if window < 2 or frame_step < 1:
        raise ValueError(f"clip_frames={window} and clip_step={frame_step}: give at least 2 frames per item, step >= 1")
    if (crop and crop % scale) or step % scale or step < 1:
        raise ValueError(f"crop_size={crop} and step={step} must be multiples of the scale {scale}")
    degradation = str(cfg.clip_degradation).upper()
    inp, layout, clips = _sources(cfg, scale, degradation)
    tasks = []
    for k, clip in enumerate(clips):
        synthetic = layout == "synthetic"
        n = clip.num_frames if synthetic else len(clip.gt)
        h, w = tuple(clip.gt.shape[-2:]) if synthetic else _frame_size(clip, scale)
        frames = min(window, n)
        boxes, box = clip_boxes(h, w, crop, step, thresh)
        starts = tile_starts(n, frames, frame_step)
        tasks.append({"name": clip.name, "synthetic": k if synthetic else None, "frames": n, "size": [h, w],
                      "gt": None if synthetic else [str(f) for f in clip.gt],
                      "lq": None if synthetic or clip.lq is None else [str(f) for f in clip.lq],
                      "starts": starts, "window": frames, "boxes": boxes, "box": list(box),
                      "items": len(boxes) * len(starts)})
    config = {"format_version": FORMAT_VERSION, "kind": "clips", "inputs": [inp], "layout": layout,
              "split": cfg.get("split"), "scales": [scale], "degradation": degradation, "lr_source": str(cfg.lr_source),
              "clip_frames": window, "clip_step": frame_step, "crop_size": crop, "step": step, "thresh_size": thresh,
              "png_level": int(cfg.png_level)}
    sha = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    return {"config": config, "config_sha256": sha, "tasks": tasks, "in_process": layout == "synthetic"}


def clip_items(task: dict[str, Any], config: dict[str, Any]):
    """The stored items of one clip: each window of frames, each sub-clip (litdata item dicts)."""
    torch.set_num_threads(1)  # one process per core already
    scale, level = config["scales"][0], config["png_level"]
    (bh, bw), key = task["box"], f"lq_x{scale}"
    if task["synthetic"] is not None:
        split = config["inputs"][0][len(SYNTHETIC):]
        clip = _synthetic(split, scale, config["degradation"])[task["synthetic"]]
    for start in task["starts"]:
        frames = slice(start, start + task["window"])
        if task["synthetic"] is None:
            lq = None if task["lq"] is None else tuple(map(Path, task["lq"][frames]))
            window = load_clip(ClipSource(task["name"], tuple(map(Path, task["gt"][frames])), lq), scale,
                               config["degradation"])
            gt_frames, lq_frames = window.gt, window.lq
        else:
            gt_frames, lq_frames = clip.gt[frames], clip.lq[frames]
        for n, (y, x) in enumerate(task["boxes"], start=1):
            gt = gt_frames[..., y:y + bh, x:x + bw].permute(0, 2, 3, 1).numpy()
            lq = lq_frames[..., y // scale:(y + bh) // scale, x // scale:(x + bw) // scale].permute(0, 2, 3, 1).numpy()
            yield {"name": f"{task['name']}_t{start:04d}_s{n:03d}", "frames": int(gt.shape[0]),
                   "gt": encode_frames(gt, level), key: encode_frames(lq, level)}


def clip_items_list(task: dict[str, Any], config: dict[str, Any]) -> list[dict]:
    return list(clip_items(task, config))


def clip_manifest(p: dict[str, Any], n_chunks: int) -> dict[str, Any]:
    """The manifest of a finished clip preparation (``stream_clips`` checks ``min_frames`` and
    ``min_lr_side`` against ``data.num_frame`` and ``data.patch_size`` before training)."""
    config, tasks = p["config"], p["tasks"]
    scale = config["scales"][0]
    return {"format": CLIP_FORMAT, "format_version": FORMAT_VERSION, "config_sha256": p["config_sha256"],
            "config": config, "scales": config["scales"], "layout": config["layout"],
            "clip_frames": config["clip_frames"], "min_frames": min(t["window"] for t in tasks),
            "min_lr_side": min(min(t["box"]) for t in tasks) // scale,
            "counts": {"clips": len(tasks), "items": sum(t["items"] for t in tasks),
                       "frames": sum(t["frames"] for t in tasks), "chunks": n_chunks},
            "sources": [{"clip": t["name"], "frames": t["frames"], "size": t["size"], "items": t["items"],
                         "folder": str(Path(t["gt"][0]).parent) if t["gt"] else None} for t in tasks]}
