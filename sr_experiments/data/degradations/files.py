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

from sr_experiments.data.degradations import build_degradation, degrade_image
from sr_experiments.inference.image_files import Picture, check_writable, find_inputs, read_picture, write_picture


def kernel_panel(kernels: dict[str, torch.Tensor], index: int, zoom: int = 8) -> Image.Image:
    """The kernels of image ``index`` side by side (nearest-neighbour zoom, each scaled to its peak),
    each under its name, size and peak value (``kernel1 21x21, peak 0.083``)."""
    from sr_experiments.annotate import with_labels

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


def run_degrade(cfg: DictConfig) -> list[str]:
    """Degrade every input; returns the inputs that failed."""
    degradation = build_degradation(cfg.degradation, int(cfg.scale))
    if degradation is None:
        raise ValueError("degradation=bicubic has no random pipeline: use degradation=realesrgan or bsrgan "
                         "(the bicubic LR is what the data sets' LR_bicubic folders hold)")
    inputs = find_inputs(str(cfg.input))
    out_dir = Path(str(cfg.output))
    out_dir.mkdir(parents=True, exist_ok=True)
    check_writable(out_dir)
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
        write_picture(out_dir / f"{path.stem}.png", Picture(lq, None, False, 8, pic.icc_profile, "RGB"))
        if cfg.verbose:
            info = {"input": str(path), "degradation": OmegaConf.to_container(cfg.degradation, resolve=True),
                    "seed": int(cfg.seed), "scale": int(cfg.scale), "lr_size": list(lq.shape[:2]),
                    "params": out.params[0]}
            (out_dir / f"{path.stem}_params.json").write_text(json.dumps(info, indent=2))
            np.savez(out_dir / f"{path.stem}_kernels.npz", **{k: v[0].numpy() for k, v in out.kernels.items()})
            kernel_panel(out.kernels, 0).save(out_dir / f"{path.stem}_kernels.png")
    print(f"degrade: {len(inputs) - len(failures)} of {len(inputs)} images written to {out_dir} "
          f"(degradation={degradation.name}, x{degradation.scale}, seed {int(cfg.seed)})", flush=True)
    return failures


def main(cfg: DictConfig) -> int:
    try:
        failures = run_degrade(cfg)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"degrade: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    return 1 if failures else 0
