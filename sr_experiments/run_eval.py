"""Compose an evaluation from the Hydra config: model or checkpoint, sets x scales, outputs."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from sr_experiments.engines import torch_engine
from sr_experiments.evaluation import (
    HOW_TO_GET,
    InferenceOptions,
    SetResult,
    _HRCache,
    evaluate_set,
    find_latest_checkpoint,
    format_table,
    load_network,
    locate_set,
    resolve_eval_sources,
    write_results,
)
from sr_experiments.models import build_network
from sr_experiments.models.bicubic import Bicubic

log = logging.getLogger(__name__)


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def run_eval(cfg: DictConfig) -> list[SetResult]:
    """Evaluate ``cfg.ckpt_path`` (or the parameter-free ``cfg.model``) on ``cfg.eval.sets``."""
    ev = cfg.eval
    out_dir = Path(cfg.paths.output_dir)
    device = _device(ev.device)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "latest":
        ckpt_path = find_latest_checkpoint(cfg.paths.get("runs_dir", "outputs"))
        print(f"checkpoint: {ckpt_path}")
    if ckpt_path:
        model_spec = {**OmegaConf.to_container(cfg.model, resolve=True), "scale": int(cfg.scale)}
        net, spec = load_network(ckpt_path, model=model_spec)
        model_scale = int(spec["scale"])
        scales = [int(s) for s in ev.scales] if ev.scales else [model_scale]
        bad = [s for s in scales if s != model_scale]
        if bad:
            raise ValueError(f"the checkpoint's network is x{model_scale}; it cannot evaluate eval.scales={bad}")
        label = spec["name"]
        # Layout (and precision, when eval.precision is not 32) measured on this machine, cached.
        engine = torch_engine(net, spec, torch.device(device), str(ev.get("precision", 32)), ev.get("channels_last", "auto"))
        print(f"{label}: precision {engine.precision.precision}{', channels_last' if engine.channels_last else ''} "
              f"({engine.speed.reason})", flush=True)
        make_nets = lambda s: {label: engine}  # noqa: E731
    else:
        spec = OmegaConf.to_container(cfg.model, resolve=True)
        label = spec["name"]
        probe = build_network({**spec, "scale": 2})
        if any(True for _ in probe.parameters()):
            raise ValueError(f"model={label} has parameters: pass the trained weights with ckpt_path=PATH")
        scales = [int(s) for s in ev.scales] if ev.scales else [int(cfg.scale)]
        make_nets = lambda s: {label: build_network({**spec, "scale": s}).to(device)}  # noqa: E731

    options = InferenceOptions(device, bool(ev.self_ensemble), ev.tile, int(ev.tile_overlap), int(ev.tile_batch))
    results: list[SetResult] = []
    missing: list[str] = []
    start = time.perf_counter()
    for name in ev.sets:
        found = locate_set(str(name), cfg.paths.data_dir)
        if found is None:
            missing.append(str(name))
            continue
        display, spec_path = found
        cache = _HRCache()
        for s in scales:
            nets = make_nets(s)
            if ev.baseline and label != "bicubic":
                nets["bicubic"] = Bicubic(s).to(device)
            sources = resolve_eval_sources(spec_path, s, ev.lr_source)
            save_dir = out_dir / "images" if ev.save_images else None
            results += evaluate_set(nets, display, sources, s, options, cache, save_dir)
    elapsed = time.perf_counter() - start

    for name in missing:
        print(f"{name}: not found under {cfg.paths.data_dir} — {HOW_TO_GET}")
    if not results:
        raise FileNotFoundError(
            f"none of eval.sets={list(ev.sets)} is under paths.data_dir={cfg.paths.data_dir}; {HOW_TO_GET}"
        )
    table = format_table(results, label)
    write_results(results, out_dir, table)
    print(f"\n{table}\n\n{label}: {len(results)} rows in {elapsed:.1f} s; results in {out_dir}/results.json", flush=True)
    _log_to_loggers(cfg, results)
    return results


def _log_to_loggers(cfg: DictConfig, results: list[SetResult]) -> None:
    """The results as a W&B table, TensorBoard text, or metrics for any other logger."""
    if not cfg.get("logger"):
        return
    rows = [r.row() for r in results]
    columns = list(rows[0])
    for c in cfg.logger.values():
        logger = instantiate(c)
        kind = type(logger).__name__
        if kind == "WandbLogger":
            logger.log_table(key="eval/results", columns=columns, data=[[r[k] for k in columns] for r in rows])
        elif kind == "TensorBoardLogger":
            logger.experiment.add_text("eval/results", format_table(results, rows[0]["model"]))
        metrics: dict[str, Any] = {}
        for r in rows:
            metrics[f"eval/{r['set']}_x{r['scale']}/{r['model']}/psnr"] = r["psnr"]
            metrics[f"eval/{r['set']}_x{r['scale']}/{r['model']}/ssim"] = r["ssim"]
        logger.log_metrics(metrics)
        logger.finalize("success")
