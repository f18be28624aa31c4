"""``degrade.py``: write the degraded LR of each HR image, so a user sees what the network will see.

``python degrade.py input=DIR output=DIR scale=4 degradation=realesrgan seed=0 [verbose=true]``
(sr_experiments/conf/degrade.yaml). Image ``NAME`` gets the draws of ``(seed, NAME)``, the same as
``eval.py eval.degradation=... eval.degradation_seed=SEED`` uses for it; evaluation degrades the
plain HR, so with ``degradation.usm_gt=false`` the LR written is the LR evaluated (the default,
as in training, degrades the USM-sharpened HR). With ``verbose``, beside
each ``NAME.png``: ``NAME_params.json`` (every parameter drawn), ``NAME_kernels.npz`` (the kernels
applied, float64) and ``NAME_kernels.png`` (them side by side, each scaled to its peak, named above).
Exit status: 0 all written, 1 some inputs failed (each named), 2 nothing could start.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from sr_experiments.cli import first_line
from sr_experiments.data.degradations import build_degradation, degrade_image
from sr_experiments.data.degradations.base import Degraded
from sr_experiments.imaging.io import (
    Picture,
    find_inputs,
    plan_outputs,
    read_picture,
    write_picture,
)
from sr_experiments.outputs import (
    WriteError,
    atomic_write,
    check_writable_folder,
    write_text,
)

VERBOSE_FILES = ("_params.json", "_kernels.npz", "_kernels.png")  # beside <stem>.png with verbose=true


def kernel_panel(kernels: dict[str, torch.Tensor], index: int, zoom: int = 8) -> Image.Image:
    """The kernels of image ``index`` side by side (nearest-neighbour zoom, each scaled to its peak),
    each under its name, size and peak value (``kernel1 21x21, peak 0.083``)."""
    from sr_experiments.imaging.annotate import with_labels

    tiles, labels, x = [], [], 0
    height = max((int(k[index].shape[-2]) for k in kernels.values()), default=1) * zoom
    for name, k in kernels.items():
        a = k[index].abs().numpy()
        peak = float(a.max())
        a = a / peak if peak > 0 else a
        tile = np.kron((a * 255).round().astype(np.uint8), np.ones((zoom, zoom), np.uint8))
        tile = np.pad(tile, ((0, height - tile.shape[0]), (0, 0)), constant_values=128)
        labels.append((x, x + tile.shape[1], f"{name} {a.shape[-2]}x{a.shape[-1]}, peak {peak:.3f}"))
        tiles += [tile, np.full((height, zoom), 128, np.uint8)]
        x += tile.shape[1] + zoom
    if not tiles:
        return Image.fromarray(np.zeros((8, 8), np.uint8))
    gray = np.concatenate(tiles[:-1], axis=1)
    return Image.fromarray(with_labels(np.repeat(gray[..., None], 3, axis=-1), labels))


def check_degrade_scale(scale: object) -> int:
    """``scale`` as the whole factor the HR is reduced by (1 or more), else one line naming it."""
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise ValueError(f"scale={scale!r}: the factor the HR is reduced by must be a whole number >= 1 (e.g. scale=4)")
    return scale


def run_degrade(cfg: DictConfig) -> list[str]:
    """Degrade every input; returns the inputs that failed. Every output name is planned and checked
    before any image is degraded (``plan_outputs``: never over an input or a file this run did not
    write, unless ``overwrite=true``)."""
    scale = check_degrade_scale(cfg.scale)
    degradation = build_degradation(cfg.degradation, scale)
    if degradation is None:
        raise ValueError("degradation=bicubic has no random pipeline: use degradation=realesrgan or bsrgan "
                         "(the bicubic LR is what the data sets' LR_bicubic folders hold)")
    inputs = find_inputs(str(cfg.input))
    out_dir = Path(str(cfg.output))
    overwrite = bool(cfg.get("overwrite", False))
    targets = plan_outputs(inputs, out_dir, "png", VERBOSE_FILES if cfg.verbose else (), overwrite, "degrade",
                           cfg.input)
    check_writable_folder(out_dir)
    failures: list[str] = []
    for path in inputs:
        try:
            pic = read_picture(path, int(cfg.max_pixels))
            if not isinstance(pic, Picture):
                raise ValueError("an animation: degrade its frames as separate images")
            hr = torch.from_numpy(np.ascontiguousarray(pic.rgb)).permute(2, 0, 1)
            out = degrade_image(hr, degradation, int(cfg.seed), path.stem)
        except (ValueError, OSError, RuntimeError) as e:
            print(f"degrade: {path}: {str(e).splitlines()[0]} (skipped)", file=sys.stderr, flush=True)
            failures.append(str(path))
            continue
        lq = out.lq[0].permute(1, 2, 0).numpy()
        write_picture(targets[path], Picture(lq, None, False, 8, pic.icc_profile, "RGB"), overwrite=overwrite)
        if cfg.verbose:
            write_details(out_dir, path, cfg, out, lq.shape[:2], overwrite)
    print(f"degrade: {len(inputs) - len(failures)} of {len(inputs)} images written to {out_dir} "
          f"(degradation={degradation.name}, x{degradation.scale}, seed {int(cfg.seed)})", flush=True)
    return failures


def write_details(
    out_dir: Path, path: Path, cfg: DictConfig, out: Degraded, lr_size: tuple[int, int], overwrite: bool
) -> None:
    """verbose=true: the parameters drawn, the kernels (float64) and their panel, each atomically."""
    info = {"input": str(path), "degradation": OmegaConf.to_container(cfg.degradation, resolve=True),
            "seed": int(cfg.seed), "scale": int(cfg.scale), "lr_size": list(lr_size), "params": out.params[0]}
    write_text(out_dir / f"{path.stem}_params.json", json.dumps(info, indent=2), overwrite)
    with atomic_write(out_dir / f"{path.stem}_kernels.npz", overwrite) as tmp:
        np.savez(tmp, **{k: v[0].numpy() for k, v in out.kernels.items()})
    with atomic_write(out_dir / f"{path.stem}_kernels.png", overwrite) as tmp:
        kernel_panel(out.kernels, 0).save(tmp, "PNG")


def main(cfg: DictConfig) -> int:
    """Exit status: 0 all written, 1 some inputs failed or a write failed (a full disk), 2 nothing
    could start (a bad setting, or an output refused by the output policy)."""
    try:
        failures = run_degrade(cfg)
    except WriteError as e:
        print(f"degrade: {first_line(e)}", file=sys.stderr)
        return 1
    except (ValueError, OSError, RuntimeError) as e:
        print(f"degrade: {first_line(e)}", file=sys.stderr)
        return 2
    return 1 if failures else 0
