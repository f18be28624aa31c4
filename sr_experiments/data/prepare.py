"""``prepare.py``: cut HR images into sub-images with their LR, stored in litdata chunks.

``python prepare.py input=DIV2K/DIV2K_train_HR output=data/div2k_sub scale=[2,3,4]``
(sr_experiments/conf/prepare.yaml). Sub-images are BasicSR's (``extract_subimages.py``: 480-pixel
crops every 240 pixels, one more flush with the border, ``prepared.subimage_boxes``); each LR is
our MATLAB-exact ``imresize`` of its HR sub-image, or the same place cut from the LR images given
in ``lr_dirs``. litdata's ``optimize`` writes the chunks, in parallel over ``num_workers`` processes.

Resumable: images go in parts of ``part_size``; a finished part is renamed into ``.parts/`` (atomic),
so a killed preparation continues at the first unfinished part. The folder is claimed with the
config's SHA-256 (``outputs.record_owner``): a folder that holds another dataset or other files is
refused. ``sr_manifest.json``, written last and atomically, marks a complete dataset.

``kind=clips`` prepares video clips instead (one item per window of frames; clips_prepare.py),
through the same parts, resume, claim and manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from sr_experiments.imaging.io import IMAGE_SUFFIXES, list_images, load_rgb
from sr_experiments.data.pairs import mod_crop
from sr_experiments.data.prepared import (CODECS, FORMAT, FORMAT_VERSION, MANIFEST, PreparedDataError, encode_image,
                                          image_size, scales_lcm, subimage_boxes)
from sr_experiments.imaging.imresize import imresize
from sr_experiments.extras import require
from sr_experiments.outputs import check_owner, check_targets, read_owner, record_owner, write_text

log = logging.getLogger(__name__)
COMMAND = "prepare"


def _scales(value: Any) -> list[int]:
    scales = [value] if isinstance(value, int) else list(value)
    if not scales or any(not isinstance(s, int) or isinstance(s, bool) or s < 2 for s in scales) or len(set(scales)) < len(scales):
        raise ValueError(f"scale={value!r}: give distinct integers >= 2, e.g. scale=[2,3,4]")
    return sorted(scales)


def _folder_images(folder: Path, key: str) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{key}: folder '{folder}' does not exist")
    root = folder / "HR" if (folder / "HR").is_dir() else folder
    files = list_images(root)
    if not files:
        raise FileNotFoundError(f"{key}: no images (png, jpg, bmp, tif, webp) in '{root}'")
    return files


def _lr_file(lr_dir: Path, stem: str, scale: int) -> Path:
    """The LR of ``stem`` in ``lr_dir``: DIV2K's ``<stem>x<s>.<ext>`` or the same name."""
    for name in (f"{stem}x{scale}", stem):
        for suffix in IMAGE_SUFFIXES:
            if (lr_dir / f"{name}{suffix}").is_file():
                return lr_dir / f"{name}{suffix}"
    raise FileNotFoundError(f"lr_dirs: no LR image for '{stem}' in '{lr_dir}' (looked for {stem}x{scale}.png and "
                            f"{stem}.png)")


def plan(cfg: DictConfig) -> dict[str, Any]:
    """Everything the preparation will do, checked before any work (one-line errors)."""
    scales = _scales(OmegaConf.to_object(cfg.scale) if OmegaConf.is_config(cfg.scale) else cfg.scale)
    crop, step, thresh = int(cfg.crop_size), int(cfg.step), int(cfg.thresh_size)
    lcm = scales_lcm(scales)
    codec = str(cfg.get("codec", "png"))
    if codec not in CODECS:
        raise ValueError(f"codec={codec} is not one of {', '.join(CODECS)} (png: a third of the disk; raw: no "
                         "decoding in the loader workers)")
    if crop % lcm or step % lcm or step < 1:
        raise ValueError(f"crop_size={crop} and step={step} must be multiples of {lcm} (every scale in {scales}), "
                         "so each LR crop is aligned with its HR crop")
    inputs = [Path(str(p)).expanduser().resolve() for p in ([cfg.input] if isinstance(cfg.input, str) else cfg.input)]
    lr_dirs = [] if cfg.lr_dirs is None else [Path(str(p)).expanduser().resolve() for p in cfg.lr_dirs]
    if lr_dirs and len(lr_dirs) != len(scales):
        raise ValueError(f"lr_dirs: give one LR folder per scale in scale={scales} (in that order), got {len(lr_dirs)}")
    tasks, skipped, seen = [], [], {}
    for folder in inputs:
        for hr in _folder_images(folder, "input"):
            if hr.stem in seen:
                raise ValueError(f"input: '{hr}' and '{seen[hr.stem]}' have the same name; sub-image names must be unique")
            seen[hr.stem] = hr
            h, w = image_size(hr)
            h, w = h - h % lcm, w - w % lcm
            count = len(subimage_boxes(h, w, crop, step, thresh))
            if not count:
                skipped.append(str(hr))
                continue
            lrs = {}
            for s, lr_dir in zip(scales, lr_dirs):
                lr = _lr_file(lr_dir, hr.stem, s)
                lh, lw = image_size(lr)
                if lh < h // s or lw < w // s or lh > (h + lcm) // s or lw > (w + lcm) // s:
                    raise ValueError(f"lr_dirs: '{lr}' is {lw}x{lh}, but the LR x{s} of '{hr}' must be about "
                                     f"{w // s}x{h // s}: is it another scale's LR? (lr_dirs follow scale={scales})")
                lrs[s] = str(lr)
            tasks.append({"hr": str(hr), "lr": lrs, "subimages": count})
    if not tasks:
        raise ValueError(f"input: no image in {', '.join(map(str, inputs))} is at least {crop}x{crop} pixels "
                         "(crop_size)")
    config = {"format_version": FORMAT_VERSION, "inputs": [str(p) for p in inputs], "lr_dirs": [str(p) for p in lr_dirs],
              "scales": scales, "crop_size": crop, "step": step, "thresh_size": thresh, "png_level": int(cfg.png_level),
              # png, the first codec, is left out: folders prepared before codec= keep their config hash
              **({"codec": codec} if codec != "png" else {})}
    sha = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    return {"config": config, "config_sha256": sha, "tasks": tasks, "skipped": skipped}


def image_items(task: dict[str, Any], config: dict[str, Any]):
    """The stored items of one HR image (litdata's ``optimize`` fn: runs in its worker processes)."""
    torch.set_num_threads(1)  # one process per core already
    scales, crop, step = config["scales"], config["crop_size"], config["step"]
    gt = mod_crop(load_rgb(task["hr"])[0], scales_lcm(scales))
    lrs = {int(s): load_rgb(p)[0] for s, p in task["lr"].items()}
    stem = Path(task["hr"]).stem
    for n, (y, x) in enumerate(subimage_boxes(gt.shape[0], gt.shape[1], crop, step, config["thresh_size"]), start=1):
        sub = np.ascontiguousarray(gt[y:y + crop, x:x + crop])
        item = {"name": f"{stem}_s{n:03d}", "gt": encode_image(sub, config.get("codec", "png"), config["png_level"])}
        for s in scales:
            if s in lrs:
                lr = lrs[s][y // s:(y + crop) // s, x // s:(x + crop) // s]
            else:
                lr = imresize(torch.from_numpy(sub).permute(2, 0, 1), scale=1 / s).permute(1, 2, 0).numpy()
            item[f"lq_x{s}"] = encode_image(lr, config.get("codec", "png"), config["png_level"])
        yield item


def claim_output(output: Path, sha: str, inputs: list[str]) -> bool:
    """Claim ``output`` for this preparation; False when it already holds exactly this dataset.

    Refused (one line naming the folder): an input folder, a folder of another command or of
    another preparation (another config), a folder with files no preparation wrote.
    """
    key = "output"
    check_targets([output], inputs, overwrite=True, key=key)
    for src in map(Path, inputs):
        if src in output.parents:
            raise PreparedDataError(f"{key}={output} is inside the input {src}: choose a folder outside it")
    if output.is_dir() and any(output.iterdir()):
        owner = read_owner(output)
        if owner is None:
            raise PreparedDataError(f"{key}={output} holds other files (not a preparation's): choose an empty or new "
                                    "folder")
        check_owner(output, COMMAND, key=key)
        if owner.get("config_sha256") != sha:
            done = (output / MANIFEST).is_file()
            raise PreparedDataError(f"{key}={output} holds another dataset ({'prepared' if done else 'being prepared'}"
                                    f" from {', '.join(owner.get('inputs', ['?']))} with other settings): choose "
                                    "another folder")
        if (output / MANIFEST).is_file():
            return False
    output.mkdir(parents=True, exist_ok=True)
    record_owner(output, COMMAND, config_sha256=sha, inputs=inputs)
    return True


def _image_items_list(task: dict[str, Any], config: dict[str, Any]) -> list[dict]:
    return list(image_items(task, config))


def _write_parts(groups: list[list[dict]], parts: list[Path], cut: Callable[[dict], list[dict]], workers: int,
                 chunk_bytes: str, bar: tqdm) -> None:
    """Write each unfinished part with litdata's chunk writer, its inputs (images or clips) cut into
    items by ``cut`` in ``workers`` processes.

    Not ``litdata.optimize``: it starts its worker processes anew for each call (~45 s per part on
    the 2-core development machine, longer than the part's work) and cannot resume a fn that yields
    many items per input. One pool for the whole run, and litdata's ``BinaryWriter`` (what
    ``optimize`` writes with) in this process, in input order: the same input makes the same chunks.
    A part is written into a temporary folder and renamed when complete (atomic), so a killed run
    leaves no partial part.
    """
    import multiprocessing as mp

    from litdata.streaming.writer import BinaryWriter

    todo = [(g, part) for g, part in zip(groups, parts) if not part.is_dir()]
    # fork: the workers inherit the imported modules (spawn re-imports torch: ~30 s on a loaded 2-core machine);
    # this process has run no torch operation yet, so no thread pool is copied half-way.
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    pool = ctx.Pool(workers) if workers > 1 else None
    try:
        results = pool.imap(cut, [t for g, _ in todo for t in g]) if pool else map(cut, (t for g, _ in todo for t in g))
        for group, part in todo:
            tmp = part.with_name(f".tmp-{part.name}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            writer, n = BinaryWriter(str(tmp), chunk_bytes=chunk_bytes), 0
            for _ in group:
                for item in next(results):
                    writer[n] = item
                    n += 1
                bar.update(1)
            writer.done()
            writer.merge()
            os.replace(tmp, part)
    finally:
        if pool:
            pool.terminate()


def _merge_parts(parts: list[Path], output: Path) -> int:
    """One litdata index over the parts' chunks, moved (renamed) into ``output``.

    Written here because litdata's ``merge_datasets`` copies every chunk (twice the disk for a
    moment, minutes for DIV2K); on one file system a rename is enough. Returns the chunk count.
    """
    chunks, config = [], None
    for k, part in enumerate(parts):
        index = json.loads((part / "index.json").read_text())
        config = config or index["config"]
        for chunk in index["chunks"]:
            name = f"chunk-{k:05d}-{chunk['filename'].removeprefix('chunk-')}"
            src = part / chunk["filename"]
            if src.exists():  # absent when an earlier, killed merge moved it already
                os.replace(src, output / name)
            chunks.append({**chunk, "filename": name})
    write_text(output / "index.json", json.dumps({"chunks": chunks, "config": config, "updated_at": str(time.time())}))
    return len(chunks)


def _image_manifest(p: dict[str, Any], n_chunks: int) -> dict[str, Any]:
    tasks = p["tasks"]
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "config_sha256": p["config_sha256"],
            "config": p["config"], "scales": p["config"]["scales"], "crop_size": p["config"]["crop_size"],
            "counts": {"images": len(tasks), "subimages": sum(t["subimages"] for t in tasks), "chunks": n_chunks,
                       "skipped_small": len(p["skipped"])},
            "sources": [{"file": t["hr"], "lr": t["lr"], "subimages": t["subimages"]} for t in tasks],
            "skipped_small": p["skipped"]}


def run_prepare(cfg: DictConfig) -> Path:
    """Prepare ``cfg.input`` into ``cfg.output`` (see the module docstring; ``kind=clips``:
    clips_prepare.py); returns the output folder."""
    litdata = require("litdata", "prepare.py")

    kind = str(cfg.get("kind", "images"))
    if kind not in ("images", "clips"):
        raise ValueError(f"kind={kind}: prepare images (kind=images) or video clips (kind=clips)")
    clips = kind == "clips"
    if clips:
        from sr_experiments.data.clips_prepare import clip_items_list, clip_manifest, plan_clips
    p = plan_clips(cfg) if clips else plan(cfg)
    output = Path(str(cfg.output)).expanduser().resolve()
    if not claim_output(output, p["config_sha256"], p["config"]["inputs"] + p["config"].get("lr_dirs", [])):
        print(f"prepare: {output} already holds this dataset (same config, SHA-256 {p['config_sha256'][:12]}): "
              "nothing to do", flush=True)
        return output
    tasks, part_size, unit = p["tasks"], max(1, int(cfg.part_size)), "clip" if clips else "image"
    workers = os.cpu_count() or 1 if str(cfg.num_workers) == "auto" else max(1, int(cfg.num_workers))
    if p.get("in_process"):
        workers = 1  # clips decoded here already (synthetic): no process is forked after torch ran
    parts_dir = output / ".parts"
    parts_dir.mkdir(exist_ok=True)
    groups = [tasks[i:i + part_size] for i in range(0, len(tasks), part_size)]
    parts = [parts_dir / f"{k:05d}" for k in range(len(groups))]
    done = sum(len(g) for g, part in zip(groups, parts) if part.is_dir())
    if done:
        print(f"prepare: resuming: {done} of {len(tasks)} {unit}s were prepared by an earlier run", flush=True)
    cut = partial(clip_items_list if clips else _image_items_list, config=p["config"])
    with tqdm(total=len(tasks), initial=done, unit=unit, desc="prepare", dynamic_ncols=True) as bar:
        _write_parts(groups, parts, cut, workers, str(cfg.chunk_bytes), bar)
    n_chunks = _merge_parts(parts, output)
    manifest = clip_manifest(p, n_chunks) if clips else _image_manifest(p, n_chunks)
    manifest.update(litdata=litdata.__version__, created_at=round(time.time(), 3))
    write_text(output / MANIFEST, json.dumps(manifest, indent=1))
    shutil.rmtree(parts_dir, ignore_errors=True)
    counts = manifest["counts"]
    what = (f"{counts['items']} clip items ({counts['frames']} frames) of {len(tasks)} clips" if clips else
            f"{counts['subimages']} sub-images of {len(tasks)} images")
    print(f"prepare: {what} (x{p['config']['scales']}) in {output}", flush=True)
    return output
