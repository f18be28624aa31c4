"""Real-world degradations: pipeline throughput vs what the network consumes, and bicubic- vs
realesrgan-trained ``compact`` on bicubic and degraded Set14 x4, with a panel on a real photo.

    python bench/degradation.py throughput [--rounds 8] [--batch 16] [--threads 1]
    python bench/degradation.py train --out DIR            # the two runs (train.py, minutes each)
    python bench/degradation.py compare --out DIR          # eval of both + the panel (docs/)
    python bench/degradation.py headroom                   # what simple estimators get on degraded Set14

``throughput``: HR patches of 128x128 (LR 32 at x4) degraded per second by each pipeline on this
CPU, against the patches per second a training step of ``compact`` consumes (forward, L1,
backward, Adam), measured alternately in each round so machine noise hits both alike; CPU time
of the process (one torch thread) and wall time. ``train``: ``experiment=compact_realworld_cpu``
with ``degradation=bicubic`` and ``degradation=realesrgan``, same seed and steps, one thread each.
``compare``: eval.py on Set14 x4 with its bicubic LR files and with ``eval.degradation=realesrgan
eval.degradation_seed=0``, then upscale.py on a real photo with no HR (scikit-image's coffee,
halved and saved as a quality-35 JPEG, a 128x128 crop) with both models: docs/realworld_compact.png.
``headroom``: on the same degraded Set14 x4 (seed 0), bicubic interpolation of the LR, of the LR made
with the same draws but noise (and JPEG) switched off, and the best *linear* x4 upsampler (one 9x9
filter per output phase, least squares on T91 + BSD200 degraded by the same pipeline): what a
network must do beyond a fixed filter to gain on these inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _timed(fn) -> tuple[float, float]:
    c, w = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c, time.perf_counter() - w


def throughput(args: argparse.Namespace) -> dict:
    import torch

    from sr_experiments.data.degradations import build_degradation
    from sr_experiments.hardware import cpu_model
    from sr_experiments.models import build_network

    torch.set_num_threads(args.threads)
    hr = torch.rand(args.batch, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    pipelines = {
        "realesrgan (paper: usm_gt on)": build_degradation({"name": "realesrgan"}, 4),
        "realesrgan, usm_gt off (CPU recipe)": build_degradation({"name": "realesrgan", "usm_gt": False}, 4),
        "bsrgan": build_degradation({"name": "bsrgan"}, 4),
    }
    nets = {
        "compact (64 x 32 convs, realesr-general-x4v3)": {"name": "compact", "scale": 4},
        "compact, 16 convs (compact_realworld_cpu)": {"name": "compact", "scale": 4, "num_conv": 16},
    }
    steps = {}
    for label, spec in nets.items():
        torch.manual_seed(0)
        net = build_network(spec)
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        lq = torch.rand(args.batch, 3, 32, 32)

        def step(net=net, opt=opt, lq=lq) -> None:
            loss = (net(lq) - hr).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        steps[label] = step
    # Round r draws with seed r in every pipeline: the variants see the same draws (same sizes).
    jobs = {**{f"pipeline: {k}": (lambda r, d=d: d(hr, torch.Generator().manual_seed(r))) for k, d in pipelines.items()},
            **{f"train step: {k}": (lambda r, v=v: v()) for k, v in steps.items()}}
    for fn in jobs.values():  # warm-up
        fn(-1)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in jobs}
    for r in range(args.rounds):
        for k, fn in jobs.items():
            times[k].append(_timed(lambda: fn(r)))
    rows = {}
    for k, t in times.items():
        cpu, wall = statistics.median(x[0] for x in t), statistics.median(x[1] for x in t)
        rows[k] = {"patches_per_s_cpu": args.batch / cpu, "patches_per_s_wall": args.batch / wall}
    result = {"machine": f"{cpu_model()} (shared)", "threads": torch.get_num_threads(), "batch": args.batch,
              "hr_patch": 128, "rounds": args.rounds, "rows": rows, "ratios": {}}
    for p in pipelines:
        for n in nets:
            pk, nk = f"pipeline: {p}", f"train step: {n}"
            result["ratios"][f"{p} / {n}"] = {
                "cpu": rows[pk]["patches_per_s_cpu"] / rows[nk]["patches_per_s_cpu"],
                "wall": rows[pk]["patches_per_s_wall"] / rows[nk]["patches_per_s_wall"]}
    print(f"machine: {result['machine']}, {result['threads']} torch thread(s), batch {args.batch} of 128x128 HR (x4)")
    print(f"| {'':<52} | patches/s (CPU time) | patches/s (wall) |\n|{'-' * 54}|---------------------:|-----------------:|")
    for k, r in rows.items():
        print(f"| {k:<52} | {r['patches_per_s_cpu']:>20.1f} | {r['patches_per_s_wall']:>16.1f} |")
    print("\nratio pipeline / consumption:")
    for k, r in result["ratios"].items():
        print(f"  {k}: {r['cpu']:.1f}x (CPU time), {r['wall']:.1f}x (wall)")
    return result


def train_cmd(degradation: str, out: Path, steps: int | None = None) -> list[str]:
    longer = [f"trainer.max_steps={steps}"] if steps else []
    return [sys.executable, str(ROOT / "train.py"), "experiment=compact_realworld_cpu", f"degradation={degradation}",
            f"hydra.run.dir={out / degradation}", "trainer.enable_progress_bar=false", *longer]


def train(args: argparse.Namespace) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(train_cmd(d, args.out, args.steps), env=env, cwd=ROOT) for d in ("bicubic", "realesrgan")]
    for p in procs:
        if p.wait() != 0:
            sys.exit(f"a training run failed (exit {p.returncode})")


def _eval(ckpts: list[str], out: Path, data_dir: str, *extra: str) -> dict:
    from hydra import compose, initialize_config_dir

    from sr_experiments import CONF_DIR
    from sr_experiments.evaluation.run import run_eval

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="eval", overrides=[f"ckpt_path=[{','.join(ckpts)}]", "eval.sets=[Set14]",
                                                      f"paths.data_dir={data_dir}", *extra])
    cfg.paths.output_dir = str(out)
    run_eval(cfg)
    return json.loads((out / "results.json").read_text())


def compare(args: argparse.Namespace) -> dict:
    import numpy as np
    import skimage
    import torch
    from hydra import compose, initialize_config_dir
    from PIL import Image

    from sr_experiments import CONF_DIR
    from sr_experiments.imaging.annotate import with_labels
    from sr_experiments.inference.upscale import run_upscale

    torch.set_num_threads(args.threads)
    runs = {d: args.out / d / "checkpoints" / "last.ckpt" for d in ("bicubic", "realesrgan")}
    ckpts = [str(runs["bicubic"]), str(runs["realesrgan"])]
    clean = _eval(ckpts, args.out / "eval_bicubic_lr", args.data_dir)
    degraded = _eval(ckpts, args.out / "eval_degraded_lr", args.data_dir, "eval.degradation=realesrgan",
                     "eval.degradation_seed=0")
    result: dict = {"set14_x4": {}}
    for name, res in (("bicubic LR (LR_bicubic files)", clean), ("realesrgan-degraded LR (seed 0)", degraded)):
        result["set14_x4"][name] = {r["model"]: {"psnr": r["psnr"], "ssim": r["ssim"]} for r in res["results"]}
    for m in ("metrics",):
        result[m] = {d: json.loads((args.out / d / "metrics.json").read_text())["steps"] for d in runs}
    # A real photo with no HR, as the web serves them: scikit-image's coffee.png (a validation photo,
    # never trained on) halved and saved as a quality-35 JPEG by Pillow (a real codec, not the
    # pipeline's), a 128x128 crop of it upscaled x4.
    photo = Image.open(Path(skimage.data.__file__).parent / "coffee.png").convert("RGB")
    src = args.out / "photo" / "coffee_web.jpg"
    src.parent.mkdir(parents=True, exist_ok=True)
    photo.resize((photo.width // 2, photo.height // 2), Image.BOX).crop((70, 40, 198, 168)).save(src, quality=35)
    crop = np.asarray(Image.open(src).convert("RGB"))
    tiles = [np.kron(crop, np.ones((4, 4, 1), np.uint8))]
    labels = ["input (nearest x4)"]
    for d, ckpt in runs.items():
        out_dir = args.out / "photo" / d
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="upscale", overrides=[f"ckpt_path={ckpt}", f"input={src}", f"output={out_dir}",
                                                            "progress=false", f"threads={args.threads}", "precision=32"])
        summary = run_upscale(cfg)
        assert not summary.failures, summary.failures
        tiles.append(np.asarray(Image.open(out_dir / "coffee_web.png").convert("RGB")))
        labels.append(f"compact, trained on {d}")
    row = np.concatenate(tiles, axis=1)
    w = tiles[0].shape[1]
    panel = with_labels(row, [(i * w, (i + 1) * w, t) for i, t in enumerate(labels)])
    docs = ROOT / "docs" / "realworld_compact.png"
    Image.fromarray(panel).resize((panel.shape[1] // 2, panel.shape[0] // 2), Image.LANCZOS).save(docs)
    result["panel"] = str(docs.relative_to(ROOT))
    print(json.dumps(result, indent=2))
    return result


def _stage_off(**off: bool) -> dict:
    """The eval settings of conf/degradation/realesrgan.yaml with some stage switches set."""
    from omegaconf import OmegaConf

    from sr_experiments import CONF_DIR

    loaded = OmegaConf.load(CONF_DIR / "degradation" / "realesrgan.yaml")
    node = OmegaConf.create({k: loaded[k] for k in loaded if k != "seed"})  # seed is the run's ${seed}
    node.usm_gt = False
    for key, value in off.items():
        OmegaConf.update(node, key.replace("__", "."), value)
    return OmegaConf.to_container(node, resolve=True)


def headroom(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from sr_experiments.data.degradations import build_degradation, degrade_image
    from sr_experiments.imaging.io import load_rgb
    from sr_experiments.imaging.imresize import imresize
    from sr_experiments.evaluation.metrics import sr_psnr_ssim

    torch.set_num_threads(args.threads)
    s, taps = 4, 9
    data = Path(args.data_dir)

    def hr_of(path: Path) -> tuple[torch.Tensor, bool]:
        rgb, gray = load_rgb(path)
        h, w = rgb.shape[0] // s * s, rgb.shape[1] // s * s
        return torch.from_numpy(np.array(rgb[:h, :w])).permute(2, 0, 1).float()[None] / 255, gray

    def features(lr: torch.Tensor) -> torch.Tensor:  # (1, C, h, w) -> (C*h*w, taps^2 + 1), per channel
        c, h, w = lr.shape[1:]
        x = F.unfold(F.pad(lr.reshape(c, 1, h, w), (taps // 2,) * 4, mode="replicate"), taps)
        x = x.permute(0, 2, 1).reshape(-1, taps * taps).double()
        return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)

    def phases(hr: torch.Tensor) -> torch.Tensor:  # (1, C, H, W) -> (C*h*w, s*s): HR pixels of each LR pixel
        c, hh, ww = hr.shape[1:]
        return hr.reshape(c, hh // s, s, ww // s, s).permute(0, 1, 3, 2, 4).reshape(-1, s * s).double()

    full = build_degradation(_stage_off(), s)
    # Least squares on degraded training images (two draws each, seeds disjoint from Set14's).
    ata, atb = torch.zeros(taps * taps + 1, taps * taps + 1, dtype=torch.float64), 0
    train = sorted((data / "T91" / "HR").glob("*.png")) + sorted((data / "BSD200" / "HR").glob("*.png"))
    for path in train:
        hr, _ = hr_of(path)
        for k in range(2):
            a = features(degrade_image(hr, full, 1000 + k, path.stem).lq)
            ata, atb = ata + a.T @ a, atb + a.T @ phases(hr)
    filt = torch.linalg.solve(ata + 1e-6 * torch.eye(len(ata), dtype=ata.dtype), atb)

    variants = {
        "full pipeline (the benchmark's LR)": full,
        "same draws, noise off": build_degradation(_stage_off(first__noise=False, second__noise=False), s),
        "same draws, noise and JPEG off": build_degradation(
            _stage_off(first__noise=False, second__noise=False, first__jpeg=False, second__jpeg=False), s),
    }
    rows: dict[str, list[float]] = {}
    for path in sorted((data / "Set14" / "HR").glob("*.png")):
        hr, gray = hr_of(path)
        g = torch.tensor([gray])
        for label, pipe in variants.items():
            lr = degrade_image(hr, pipe, 0, path.stem).lq
            rows.setdefault(f"bicubic, {label}", []).append(
                sr_psnr_ssim(imresize(lr, scale=s).clamp(0, 1), hr, s, g)[0].item())
            if pipe is full:
                c, h, w = lr.shape[1:]
                out = (features(lr) @ filt).float().reshape(c, h, w, s, s).permute(0, 1, 3, 2, 4).reshape(1, c, h * s, w * s)
                rows.setdefault("best linear x4 filter, full pipeline", []).append(
                    sr_psnr_ssim(out.clamp(0, 1), hr, s, g)[0].item())
    result = {"set14_x4_degraded_seed0_psnr": {k: round(float(np.mean(v)), 4) for k, v in rows.items()},
              "train_images": len(train), "filter_taps": taps}
    for k, v in result["set14_x4_degraded_seed0_psnr"].items():
        print(f"{k:<48} {v:.2f} dB")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["throughput", "train", "compare", "headroom"])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, help="train: trainer.max_steps of both runs (default: the recipe's 2400)")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_degradation"))
    parser.add_argument("--data-dir", default=os.environ.get("SR_DATA", "data"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    result = {"throughput": throughput, "train": train, "compare": compare, "headroom": headroom}[args.what](args)
    if args.json and result:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
