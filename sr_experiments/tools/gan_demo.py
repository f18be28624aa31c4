"""The GAN demonstration on CPU: a PSNR stage, a GAN stage from it, and an LR | PSNR model |
GAN model | HR panel of the validation photos with their PSNR / SSIM.

    python -m sr_experiments.tools.gan_demo [--psnr-steps 1000] [--gan-steps 100] [--out DIR] [override ...]

Both stages are ``experiment=gan_cpu_demo`` (``conf/experiment/gan_cpu_demo.yaml``): the PSNR stage
without its adversarial parts (``~losses ~discriminator``, L1, lr 1e-3, cosine, no EMA), the GAN stage from
the PSNR stage's best checkpoint (``ckpt_path=... resume=false``). Extra overrides apply to both
(``paths.data_dir=...``, ``data=t91_bsd200``). Written to ``--out``: the two run folders,
``gan_demo.png`` and ``gan_demo.json`` (the figures, the commands, the VGG weights used).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from sr_experiments.imaging.annotate import with_labels
from sr_experiments.evaluation.metrics import SRMetrics
from sr_experiments.hardware import cpu_model
from sr_experiments.runs.callbacks import GAP

PANEL_LABELS = ("LR", "PSNR model", "GAN model", "HR")
def perceptual_scorer(weights_dir: str | None = None):
    """LPIPS (AlexNet, eval.py's ``lpips``) where its weights files are present; else None, said in one line."""
    from sr_experiments.evaluation.perceptual import PerceptualScorer

    scorer = PerceptualScorer(["lpips"], weights_dir, missing="skip", key="gan_demo", skip_key=None)
    for note in scorer.skipped.values():
        print(f"gan_demo: {note}", flush=True)
    return scorer if scorer.names else None


def _compose(overrides: list[str], out: Path):
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from sr_experiments import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


def _tile(x: torch.Tensor, crop: int, y: int, x0: int) -> torch.Tensor:
    return x[..., y : y + crop, x0 : x0 + crop]


def colour_error(sr: torch.Tensor, gt: torch.Tensor) -> list[float]:
    """Mean colour of ``sr`` minus that of ``gt`` per RGB channel, in 8-bit levels (whole image):
    a colour cast shows here while PSNR on Y hides it."""
    return [round(float(v) * 255, 2) for v in (sr.float().mean((-2, -1)) - gt.float().mean((-2, -1))).reshape(-1)]


def panel(lq: torch.Tensor, psnr_sr: torch.Tensor, gan_sr: torch.Tensor, gt: torch.Tensor, crop: int = 160) -> np.ndarray:
    """Centre crops (HR side ``crop``) side by side: LR (nearest-upscaled), PSNR model, GAN model, HR;
    each model's label carries its colour error against HR on the whole image (largest channel)."""
    scale = gt.shape[-1] // lq.shape[-1]
    crop = min(crop, gt.shape[-2], gt.shape[-1]) // scale * scale
    y = (gt.shape[-2] - crop) // 2 // scale * scale
    x = (gt.shape[-1] - crop) // 2 // scale * scale
    lq_up = lq.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    tiles = [_tile(t, crop, y, x) for t in (lq_up, psnr_sr, gan_sr, gt)]
    gap = torch.ones(3, crop, GAP)
    row = torch.cat([tiles[0], gap, tiles[1], gap, tiles[2], gap, tiles[3]], dim=-1)
    img = (row.clamp(0, 1) * 255 + 0.5).floor().byte().permute(1, 2, 0).numpy()
    errors = [max(map(abs, colour_error(sr, gt))) for sr in (psnr_sr, gan_sr)]
    labels = [PANEL_LABELS[0], *(f"{t}, colour {e:.1f}/255" for t, e in zip(PANEL_LABELS[1:3], errors)), PANEL_LABELS[3]]
    return with_labels(img, [(i * (crop + GAP), i * (crop + GAP) + crop, t) for i, t in enumerate(labels)])


@torch.no_grad()
def compare(psnr_ckpt: Path, gan_ckpt: Path, cfg: Any) -> tuple[dict[str, Any], list[np.ndarray]]:
    """PSNR / SSIM (the paper protocol, as val/psnr) of both models on the validation images, and panels."""
    from hydra.utils import instantiate

    from sr_experiments.models.weights import load_network

    nets = {"psnr": load_network(psnr_ckpt)[0], "gan": load_network(gan_ckpt)[0]}  # EMA weights where kept
    scale = int(cfg.scale)
    data = instantiate(cfg.data)
    data.setup("validate")
    metrics = {k: SRMetrics(border=scale) for k in nets}
    extra: dict[str, list[dict[str, float]]] = {k: [] for k in nets}
    colour: dict[str, list[list[float]]] = {k: [] for k in nets}  # per image: mean RGB of SR - HR
    scorer = perceptual_scorer(cfg.paths.get("weights_dir"))
    rows = []
    for batch in data.val_dataloader():
        lq, gt = batch["lq"].float() / 255, batch["gt"].float() / 255
        out = {k: net(lq).clamp(0, 1) for k, net in nets.items()}
        for k, sr in out.items():
            metrics[k].update(sr, gt, batch["index"], batch["gray"])
            colour[k] += [colour_error(sr[i], gt[i]) for i in range(sr.shape[0])]
            if scorer is not None:  # per image, as eval.py: SR rounded to 8 bits, border cropped
                scores = scorer(sr, gt, scale)  # {name: (N,)}
                extra[k] += [{n: float(v[i]) for n, v in scores.items()} for i in range(sr.shape[0])]
        rows.append(panel(lq[0], out["psnr"][0], out["gan"][0], gt[0]))
    result = {}
    for k, m in metrics.items():
        r = m.compute()
        result[k] = {"psnr": round(float(r["psnr"]), 2), "ssim": round(float(r["ssim"]), 4),
                     # mean over the images of each channel's error, and the largest absolute one
                     "colour_error_rgb": [round(float(v), 2) for v in np.mean(colour[k], axis=0)],
                     "colour_error_max": round(float(np.abs(colour[k]).max()), 2)}
        names = {n for e in extra[k] for n in e}
        result[k].update({n: round(float(np.mean([e[n] for e in extra[k] if n in e])), 4) for n in names})
    return result, rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--psnr-steps", type=int, default=1000)
    parser.add_argument("--gan-steps", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("outputs/gan_demo") / time.strftime("%Y-%m-%d_%H-%M-%S"))
    args, overrides = parser.parse_known_args(argv)
    from sr_experiments.runs.run import train

    out: Path = args.out
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"gan_demo: {out} is not empty; pass another --out")
    # lr 1e-3 and no EMA for the short PSNR stage: over 400 steps an EMA (even at 0.99) lags the raw
    # weights by 1.5 dB (27.2 against 28.7 dB at lr 1e-3, BENCHMARKS.md), and lr 2e-4 gave 27.0.
    # 1000 steps, not 400: RRDBNet has no skip from the input and learns colour from scratch; at 400
    # steps its outputs were still up to 10/255 off HR per channel (a magenta cast; BENCHMARKS.md).
    psnr_overrides = ["experiment=gan_cpu_demo", "~losses", "~discriminator", "lr=1e-3", "model.ema_decay=0", "scheduler=cosine",
                      f"trainer.max_steps={args.psnr_steps}", *overrides]
    gan_overrides = ["experiment=gan_cpu_demo", f"trainer.max_steps={args.gan_steps}", *overrides]
    started = time.perf_counter()
    psnr = train(_compose(psnr_overrides, out / "psnr"))
    psnr_ckpt = Path(psnr["best_checkpoint"])
    gan_overrides += [f"ckpt_path={psnr_ckpt}", "resume=false"]
    gan = train(_compose(gan_overrides, out / "gan"))
    gan_ckpt = Path(gan["run_dir"]) / "checkpoints" / "last.ckpt"  # the GAN's end point, not its PSNR-best
    figures, rows = compare(psnr_ckpt, gan_ckpt, _compose(gan_overrides, out / "gan"))
    image = np.concatenate([r for row in rows for r in (row, np.full((GAP, row.shape[1], 3), 255, np.uint8))][:-1])
    Image.fromarray(image).save(out / "gan_demo.png")
    bicubic = psnr.get("bicubic") or {}
    summary = {
        "machine": cpu_model(), "torch_threads": torch.get_num_threads(),
        "commands": {"psnr": psnr_overrides, "gan": gan_overrides},
        "seconds": {"psnr": psnr["train_seconds"], "gan": gan["train_seconds"], "total": round(time.perf_counter() - started, 1)},
        "steps": {"psnr": psnr["steps"], "gan": gan["steps"]},
        "precision": {"psnr": psnr["precision"], "gan": gan["precision"]},
        "bicubic": {"psnr": round(bicubic.get("psnr", float("nan")), 2), "ssim": round(bicubic.get("ssim", float("nan")), 4)},
        "psnr_model": figures["psnr"], "gan_model": figures["gan"],
        "losses": gan.get("losses"), "panel": str(out / "gan_demo.png"),
        "checkpoints": {"psnr": str(psnr_ckpt), "gan": str(gan_ckpt)},
    }
    (out / "gan_demo.json").write_text(json.dumps(summary, indent=2))
    lines = [f"{'':<12}{'PSNR (dB)':>10}{'SSIM':>9}  colour error vs HR (largest channel, 8-bit levels)"]
    for name, key in (("bicubic", "bicubic"), ("PSNR model", "psnr_model"), ("GAN model", "gan_model")):
        err = summary[key].get("colour_error_max")
        lines.append(f"{name:<12}{summary[key]['psnr']:>10.2f}{summary[key]['ssim']:>9.4f}"
                     + (f"  {err:.2f} (mean RGB {summary[key]['colour_error_rgb']})" if err is not None else ""))
    print("\n".join(lines) + f"\npanel: {out / 'gan_demo.png'} (LR | PSNR model | GAN model | HR); figures: {out / 'gan_demo.json'}")
    return summary


if __name__ == "__main__":
    main()
