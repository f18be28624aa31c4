"""Compose an evaluation from the Hydra config: model or checkpoint, sets x scales, outputs."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from omegaconf import DictConfig, ListConfig

from sr_experiments.evaluation.perceptual import PerceptualScorer, perceptual_names
from sr_experiments.evaluation.protocol import (
    InferenceOptions,
    SetResult,
    SetsFailed,
    _HRCache,
    eval_degradation,
    evaluate_set,
    format_table,
    locate_set,
    methods_table,
    resolve_eval_sources,
    ways_to_get,
    write_results,
)
from sr_experiments.evaluation.temporal import TOF_PROTOCOL
from sr_experiments.evaluation.video import VIDEO_SETS, evaluate_video_set
from sr_experiments.extras import require_logger_packages
from sr_experiments.hardware import resolve_device
from sr_experiments.methods import Method, resolve_methods
from sr_experiments.models import model_label
from sr_experiments.models.bicubic import Bicubic
from sr_experiments.outputs import check_owner, record_owner
from sr_experiments.provenance import checkpoint_info, provenance

log = logging.getLogger(__name__)


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
    if not isinstance(ev.get("tof", True), bool):
        raise ValueError(f"eval.tof={ev.tof}: expected true or false (tOF on video sets, evaluation/temporal.py)")
    record_owner(out_dir, "eval")  # after the checks above: a refused run leaves no folder behind
    methods, baseline, scales = _methods(cfg, device)
    runners = {(m.label, s): _runner(m, s, device, ev) for m in methods if not m.any_scale for s in scales}
    make_nets = lambda s: {m.label: runners[m.label, s] if (m.label, s) in runners else m.network(device, s)  # noqa: E731
                           for m in methods}
    label = methods[0].label

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
                                                  str(ev.get("video_degradation", "BI")), str(ev.lr_source),
                                                  ev.get("tof", True))
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
        _report(cfg, results, methods, baseline, device, scales, degraded, perceptual, elapsed)
    for line in failed:
        print(f"{line} (failed)", flush=True)
    if failed:
        kept = f"the other results are in {out_dir}/results.json" if results else "nothing was evaluated"
        raise SetsFailed(f"{len(failed)} evaluation(s) failed ({kept}): {'; '.join(failed)}")
    return results


def _methods(cfg: DictConfig, device: str) -> tuple[list[Method], bool, list[int]]:
    """What to evaluate (``methods.resolve_methods``: ckpt_path's files, one, ``latest`` or a list,
    or model.pretrained=FILE, else the model= itself), named as the tables show them; whether
    bicubic runs beside them; the scales."""
    ev = cfg.eval
    methods = resolve_methods(cfg, device, say=print)
    own = (methods[0].spec or {}).get("name") == "bicubic" and not methods[0].provenance["checkpoint"]
    baseline = bool(ev.baseline) and not own  # model=bicubic is its own baseline
    labels = given_labels(ev.get("labels"), len(methods), baseline) or (
        method_labels([m.spec or {"name": m.label} for m in methods], [m.provenance["checkpoint"] or "" for m in methods])
        if len(methods) > 1 else [methods[0].label])
    for lb, m in zip(labels, methods):
        m.label = lb
    scales = _eval_scales(methods, ev.scales, int(cfg.scale))
    if ev.self_ensemble and any(m.whole_image for m in methods):
        raise ValueError("model=zssr has its own x8 ensemble with back-projection: set model.zssr.ensemble, "
                         "not eval.self_ensemble")
    return methods, baseline, scales


def _report(cfg: DictConfig, results: list[SetResult], methods: list[Method], baseline: bool, device: str,
            scales: list[int], degraded: dict[int, Any], perceptual: PerceptualScorer | None, elapsed: float) -> None:
    """The table on stdout; results.json (with each method's provenance), csv, md, tex; the loggers."""
    ev, out_dir, labels = cfg.eval, Path(cfg.paths.output_dir), [m.label for m in methods]
    models = [{"label": m.label, **m.provenance} for m in methods]
    if baseline:
        models.append({"label": "bicubic", **checkpoint_info(None), "params": 0})
    # One checkpoint: its table with bicubic and the gain; several: methods x sets, best in bold.
    table = format_table(results, labels[0]) if len(labels) == 1 else methods_table(results, "md")
    meta = {"models": models, "provenance": provenance(device, scales, str(ev.lr_source))}
    if any(degraded.values()):
        d = next(v for v in degraded.values() if v)
        meta["degradation"] = {"name": d.pipeline.name, "seed": d.seed,
                               "config": f"sr_experiments/conf/degradation/{d.pipeline.name}.yaml, usm_gt=false"}
    if perceptual is not None:
        meta["perceptual"] = perceptual.describe()
    if any("tof" in r.scores for r in results):  # a video set's temporal column: how it was measured
        meta["tof"] = TOF_PROTOCOL
    write_results(results, out_dir, table, meta, methods_table(results, "tex"))
    name = labels[0] if len(labels) == 1 else ", ".join(labels)
    shown = len(table.splitlines()) - 2  # the rows the table above has (below its header and rule)
    pairs, n_methods = len({(r.set, r.scale) for r in results}), len({r.model for r in results})
    print(f"\n{table}\n\n{name}: {shown} table rows ({pairs} set x scale, {n_methods} method(s)) in {elapsed:.1f} s; "
          f"results in {out_dir}/results.json", flush=True)
    _log_to_loggers(cfg, results)


def _eval_scales(methods: list[Method], asked: Any, default: int) -> list[int]:
    """eval.scales, else the trained networks' one scale (else scale=): every network must be trained for each."""
    fixed = {m.scale for m in methods if not m.any_scale}
    if len(fixed) > 1:
        listed = ", ".join(f"{m.provenance['checkpoint']} x{m.scale}" for m in methods)
        raise ValueError(f"ckpt_path: the checkpoints have different scales ({listed}); evaluate each scale in its own run")
    scales = [int(s) for s in asked] if asked else [next(iter(fixed), default)]
    bad = [s for s in scales if fixed and s not in fixed]
    if bad:
        raise ValueError(f"the checkpoint's network is x{next(iter(fixed))}; it cannot evaluate eval.scales={bad}")
    return scales


def _runner(method: Method, scale: int, device: str, ev: DictConfig) -> Any:
    """A trained network as eval runs it: precision and layout measured here (cached); video
    networks in fp32 on whole clips."""
    if not method.tuned:
        if getattr(method.network(device), "multi_frame", False):
            print(f"{method.label}: a video network, fp32 on whole clips", flush=True)
        return method.network(device, scale)
    engine = method.engine(torch.device(device), str(ev.get("precision", 32)), ev.get("channels_last", "auto"), scale)
    print(f"{method.label}: precision {engine.precision.precision}{', channels_last' if engine.channels_last else ''} "
          f"({engine.speed.reason})", flush=True)
    return engine


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
