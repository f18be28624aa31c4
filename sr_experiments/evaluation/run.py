"""Compose an evaluation from the Hydra config: model or checkpoint, sets x scales, outputs."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from omegaconf import DictConfig, ListConfig, OmegaConf

from sr_experiments.evaluation.protocol import (
    InferenceOptions,
    SetResult,
    SetsFailed,
    _HRCache,
    eval_degradation,
    evaluate_set,
    format_table,
    methods_table,
    ways_to_get,
    locate_set,
    resolve_eval_sources,
    write_results,
)
from sr_experiments.evaluation.perceptual import PerceptualScorer, perceptual_names
from sr_experiments.evaluation.video import VIDEO_SETS, evaluate_video_set
from sr_experiments.extras import require_logger_packages
from sr_experiments.hardware import resolve_device
from sr_experiments.inference.engines import torch_engine
from sr_experiments.models import build_network, count_parameters, model_label
from sr_experiments.models.bicubic import Bicubic
from sr_experiments.models.weights import find_latest_checkpoint, load_network
from sr_experiments.outputs import check_owner, record_owner
from sr_experiments.provenance import checkpoint_info, provenance

log = logging.getLogger(__name__)


def checkpoint_paths(value: Any, runs_dir: str) -> list[str]:
    """``ckpt_path`` as a list of files: one path, ``latest``, or a list of them (``[a.ckpt,b.ckpt]``)."""
    if not value:
        return []
    items = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    paths = []
    for item in items:
        if str(item) == "latest":
            item = find_latest_checkpoint(runs_dir)
            print(f"checkpoint: {item}")
        paths.append(str(item))
    return paths


def method_labels(specs: list[dict[str, Any]], paths: list[str]) -> list[str]:
    """Each checkpoint's label (the preset it was trained as, ``shallow``; files without one: the
    network's name). Where two share one, the settings that differ tell them apart (a sweep's
    ``shallow (depth=8)``), else the run folder (or file name)."""
    names = [model_label(s) for s in specs]
    labels = []
    for name, spec, path in zip(names, specs, paths):
        if names.count(name) > 1:
            others = [s for n, s in zip(names, specs) if n == name]
            where = _differing_settings(spec, others)
            if not where or sum(_differing_settings(s, others) == where for s in others) > 1:
                p = Path(path).resolve()
                where = p.parent.parent.name if p.parent.name == "checkpoints" else p.stem
            name = f"{name} ({where})"
        labels.append(name)
    named = list(labels)
    for i, label in enumerate(named):  # still equal (same run folder name): number them
        if named.count(label) > 1:
            labels[i] = f"{label} #{named[:i].count(label) + 1}"
    return labels


def _differing_settings(spec: dict[str, Any], others: list[dict[str, Any]]) -> str:
    """``depth=8, width=64``: the network settings of ``spec`` that not all of ``others`` share."""
    keys = sorted({k for s in others for k in s} - {"name", "label", "pretrained", "pretrained_key"})
    return ", ".join(f"{k}={spec.get(k)}" for k in keys if len({repr(s.get(k)) for s in others}) > 1)


def given_labels(value: Any, count: int, baseline: bool) -> list[str] | None:
    """``eval.labels=[a,b]``: the names of the ``count`` evaluated methods (ckpt_path's checkpoints
    in order, or the one model=) in every table, or None: their own labels."""
    if value is None or isinstance(value, (list, tuple, ListConfig)) and not value:
        return None
    labels = [str(v) for v in (value if isinstance(value, (list, tuple, ListConfig)) else [value])]
    if len(labels) != count:
        raise ValueError(f"eval.labels names {len(labels)} method(s) ({', '.join(labels)}) but {count} are evaluated "
                         f"(ckpt_path's checkpoints, or one model=): give one label each, in ckpt_path's order")
    if len(set(labels)) != len(labels) or (baseline and "bicubic" in labels):
        raise ValueError(f"eval.labels={labels}: labels must differ from each other"
                         + (" and from 'bicubic' (the baseline's row; or eval.baseline=false)" if baseline else ""))
    return labels


def run_eval(cfg: DictConfig) -> list[SetResult]:
    """Evaluate ``cfg.ckpt_path`` (one checkpoint or a list; else the parameter-free ``cfg.model``)
    on ``cfg.eval.sets``, with bicubic beside it."""
    ev = cfg.eval
    require_logger_packages(cfg.get("logger"))  # before the evaluation, not after it
    out_dir = Path(cfg.paths.output_dir)
    # The folder is eval.py's (claimed by RunDirGuard under Hydra): never a training run's.
    check_owner(out_dir, "eval", "paths.output_dir")
    device = str(resolve_device(str(ev.device)))
    # Perceptual metrics (eval.metrics beyond psnr/ssim): their weights are found (or reported
    # missing, in one line) before any network runs.
    perceptual = None
    names = perceptual_names(ev.get("metrics"), "eval.metrics")
    if names:
        perceptual = PerceptualScorer(names, cfg.paths.get("weights_dir"), str(ev.get("missing_weights", "error")), device)
        for reason in perceptual.skipped.values():
            print(reason, flush=True)
    record_owner(out_dir, "eval")  # after the checks above: a refused run leaves no folder behind
    # model.pretrained=FILE is another way to name the weights (any file spandrel reads, or ours).
    ckpt_paths = checkpoint_paths(cfg.get("ckpt_path") or cfg.model.get("pretrained"), cfg.paths.get("runs_dir", "outputs"))
    models: list[dict[str, Any]] = []  # label, checkpoint, hash, parameters: results.json's "models"
    baseline = bool(ev.baseline)  # bicubic beside the model(s) on the same LR
    if ckpt_paths:
        model_spec = {**OmegaConf.to_container(cfg.model, resolve=True), "scale": int(cfg.scale)}
        loaded = [load_network(p, model=model_spec) for p in ckpt_paths]
        model_scales = {int(spec["scale"]) for _, spec in loaded}
        if len(model_scales) > 1:
            listed = ", ".join(f"{p} x{spec['scale']}" for p, (_, spec) in zip(ckpt_paths, loaded))
            raise ValueError(f"ckpt_path: the checkpoints have different scales ({listed}); evaluate each scale in its own run")
        model_scale = model_scales.pop()
        scales = [int(s) for s in ev.scales] if ev.scales else [model_scale]
        bad = [s for s in scales if s != model_scale]
        if bad:
            raise ValueError(f"the checkpoint's network is x{model_scale}; it cannot evaluate eval.scales={bad}")
        labels = (given_labels(ev.get("labels"), len(ckpt_paths), baseline)
                  or method_labels([spec for _, spec in loaded], ckpt_paths))
        nets = {}
        for lb, (net, spec) in zip(labels, loaded):
            if getattr(net, "multi_frame", False):  # a video network: fp32, whole clips (evaluation/video.py)
                nets[lb] = net.eval().to(device)
                print(f"{lb}: a video network, fp32 on whole clips", flush=True)
                continue
            # Layout (and precision, when eval.precision is not 32) measured on this machine, cached.
            engine = torch_engine(net, spec, torch.device(device), str(ev.get("precision", 32)), ev.get("channels_last", "auto"))
            print(f"{lb}: precision {engine.precision.precision}{', channels_last' if engine.channels_last else ''} "
                  f"({engine.speed.reason})", flush=True)
            nets[lb] = engine
        models = [{"label": lb, **checkpoint_info(p), "params": count_parameters(net)}
                  for lb, p, (net, _) in zip(labels, ckpt_paths, loaded)]
        label = labels[0]
        make_nets = lambda s: dict(nets)  # noqa: E731
    elif cfg.model.get("zssr") is not None:  # trained on each test image: no weights (sr_experiments/zssr)
        from sr_experiments.zssr.method import PerImageZSSR, ZSSRSettings

        if ev.self_ensemble:
            raise ValueError("model=zssr has its own x8 ensemble with back-projection: set model.zssr.ensemble, "
                             "not eval.self_ensemble")
        settings = ZSSRSettings.from_config(cfg.model.zssr, "model.zssr")
        label = (given_labels(ev.get("labels"), 1, baseline) or ["zssr"])[0]
        labels = [label]
        scales = [int(s) for s in ev.scales] if ev.scales else [int(cfg.scale)]
        make_nets = lambda s: {label: PerImageZSSR(settings, s, device)}  # noqa: E731
        params = count_parameters(build_network({**settings.spec(2)}))
        models = [{"label": label, **checkpoint_info(None), "params": params, "trained_per_image": True,
                   "zssr": OmegaConf.to_container(cfg.model.zssr, resolve=True)}]
    else:
        spec = OmegaConf.to_container(cfg.model, resolve=True)
        baseline = baseline and spec["name"] != "bicubic"  # model=bicubic is its own baseline
        label = (given_labels(ev.get("labels"), 1, baseline) or [model_label(spec)])[0]
        labels = [label]
        probe = build_network({**spec, "scale": 2})
        if any(True for _ in probe.parameters()):
            raise ValueError(f"model={label} has parameters: pass the trained weights with ckpt_path=PATH")
        scales = [int(s) for s in ev.scales] if ev.scales else [int(cfg.scale)]
        make_nets = lambda s: {label: build_network({**spec, "scale": s}).to(device)}  # noqa: E731
        models = [{"label": label, **checkpoint_info(None), "params": 0}]
    if baseline:
        models.append({"label": "bicubic", **checkpoint_info(None), "params": 0})

    options = InferenceOptions(device, bool(ev.self_ensemble), ev.tile, int(ev.tile_overlap), int(ev.tile_batch))
    # eval.degradation=realesrgan|bsrgan: each LR made from its HR, the same for every model (per scale).
    degraded = {s: eval_degradation(ev.get("degradation"), int(ev.get("degradation_seed", 0)), s) for s in scales}
    if any(degraded.values()):
        print(f"LR: degradation={ev.degradation}, seed {int(ev.get('degradation_seed', 0))} (made from each HR; "
              f"eval.lr_source is not used)", flush=True)
    results: list[SetResult] = []
    missing: list[str] = []
    failed: list[str] = []  # "Set x2: reason": one bad set must not lose the others' results
    start = time.perf_counter()
    for name in ev.sets:
        if str(name) in VIDEO_SETS:  # REDS4, Vid4, Vimeo90K-T: clips, by their papers' protocol (evaluation/video.py)
            for s in scales:
                nets = {**make_nets(s), **({"bicubic": Bicubic(s).to(device)} if ev.baseline and label != "bicubic" else {})}
                try:
                    results += evaluate_video_set(nets, str(name), cfg.paths.data_dir, s, device,
                                                  str(ev.get("video_degradation", "BI")), str(ev.lr_source))
                except (ValueError, OSError, RuntimeError) as e:
                    failed.append(f"{name} x{s}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            continue
        found = locate_set(str(name), cfg.paths.data_dir)
        if found is None:
            missing.append(str(name))
            continue
        display, spec_path = found
        cache = _HRCache()
        for s in scales:
            nets = make_nets(s)
            if baseline:
                nets["bicubic"] = Bicubic(s).to(device)
            save_dir = out_dir / "images" if ev.save_images else None
            try:
                sources = resolve_eval_sources(spec_path, s, ev.lr_source)
                results += evaluate_set(nets, display, sources, s, options, cache, save_dir,
                                        perceptual if perceptual is not None and perceptual.metrics else None,
                                        degraded[s])
            except (ValueError, OSError, RuntimeError) as e:
                failed.append(f"{display} x{s}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    elapsed = time.perf_counter() - start

    if missing and (results or failed):  # one line for them all, with the way to get each
        print(f"not under {cfg.paths.data_dir} (skipped): {ways_to_get(missing, cfg.paths.data_dir)}", flush=True)
    if not results and not failed:
        raise FileNotFoundError(f"none of eval.sets={list(ev.sets)} is under paths.data_dir={cfg.paths.data_dir}: "
                                f"{ways_to_get(missing, cfg.paths.data_dir)}")
    if results:
        # One checkpoint: its table with bicubic and the gain; several: methods x sets, best in bold.
        table = format_table(results, label) if len(labels) == 1 else methods_table(results, "md")
        meta = {"models": models, "provenance": provenance(device, scales, str(ev.lr_source))}
        if any(degraded.values()):
            d = next(v for v in degraded.values() if v)
            meta["degradation"] = {"name": d.pipeline.name, "seed": d.seed,
                                   "config": f"sr_experiments/conf/degradation/{d.pipeline.name}.yaml, usm_gt=false"}
        if perceptual is not None:
            meta["perceptual"] = perceptual.describe()
        write_results(results, out_dir, table, meta, methods_table(results, "tex"))
        name = label if len(labels) == 1 else ", ".join(labels)
        shown = len(table.splitlines()) - 2  # the rows the table above has (below its header and rule)
        pairs, methods = len({(r.set, r.scale) for r in results}), len({r.model for r in results})
        print(f"\n{table}\n\n{name}: {shown} table rows ({pairs} set x scale, {methods} method(s)) in {elapsed:.1f} s; "
              f"results in {out_dir}/results.json", flush=True)
        _log_to_loggers(cfg, results)
    for line in failed:
        print(f"{line} (failed)", flush=True)
    if failed:
        kept = f"the other results are in {out_dir}/results.json" if results else "nothing was evaluated"
        raise SetsFailed(f"{len(failed)} evaluation(s) failed ({kept}): {'; '.join(failed)}")
    return results


def _log_to_loggers(cfg: DictConfig, results: list[SetResult]) -> None:
    """The results as a W&B table, TensorBoard text, or metrics for any other logger."""
    if not cfg.get("logger"):
        return
    rows = [r.row() for r in results]
    columns = list(rows[0])
    for c in cfg.logger.values():
        logger = instantiate(c)
        # isinstance: our subclasses (SweepWandbLogger, HParamsTensorBoardLogger) are what the configs name.
        if isinstance(logger, WandbLogger):
            logger.log_table(key="eval/results", columns=columns, data=[[r[k] for k in columns] for r in rows])
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_text("eval/results", format_table(results, rows[0]["model"]))
        metrics: dict[str, Any] = {}
        for r, result in zip(rows, results):
            for name in ("psnr", "ssim", *result.scores):
                metrics[f"eval/{r['set']}_x{r['scale']}/{r['model']}/{name}"] = r[name]
        logger.log_metrics(metrics)
        logger.finalize("success")
