"""Compare the runs of one or more sweeps from their ``metrics.json`` files: table and plots.

Needs no network and no W&B: every run of ``train.py`` writes ``metrics.json`` (best and final
validation results, bicubic baseline, parameters, steps, wall time, history, overrides).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sr_experiments.config_values import parse_overrides
from sr_experiments.extras import MissingExtra, require
from sr_experiments.outputs import atomic_write, check_targets, write_text


@dataclass
class Run:
    """One run's results, read from its ``metrics.json``."""

    path: Path
    params: dict[str, str]  # override key -> value, as typed on the command line
    metrics: dict[str, Any] = field(repr=False)
    root: Path | None = None  # the compared folder it was found under (the table shows the path from there)

    @property
    def status(self) -> str:
        """finished / interrupted / failed, as train.py recorded it; a metrics.json without a status
        was written by a run that finished (older runs wrote it only then)."""
        status = self.metrics.get("status")
        return status if isinstance(status, str) and status else "finished"

    @property
    def where(self) -> str:
        """The run's folder, from the compared folder it was found under."""
        if self.root is not None and self.root.is_dir() and self.path != self.root:
            try:
                return str(self.path.relative_to(self.root))
            except ValueError:
                pass
        return str(self.path)

    @property
    def best_psnr(self) -> float:
        return metric(self.metrics, "best", "psnr")

    @property
    def best_ssim(self) -> float:
        return metric(self.metrics, "best", "ssim")

    @property
    def gain(self) -> float:
        return self.best_psnr - metric(self.metrics, "bicubic", "psnr")


def metric(metrics: Mapping[str, Any], *keys: str) -> float:
    """``metrics[k1][k2]...`` as a float; NaN (shown as —) where a run never wrote it."""
    value: Any = metrics
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def find_runs(paths: list[Path]) -> list[Run]:
    """Every run (a ``metrics.json``) under each path; a path may also be one run or one file.

    A file that is not a JSON object is skipped with one line on stderr: one torn run must not hide
    the others."""
    runs: list[Run] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: expected a sweep directory (train.py -m ...) or a run")
        files = [path] if path.is_file() else sorted(path.rglob("metrics.json"))
        if not files:
            unfinished = unfinished_runs([path])
            raise FileNotFoundError(
                f"no runs under {path}: expected <run>/metrics.json files, as train.py writes in each job directory"
                + (f" ({len(unfinished)} run folders there have none: unfinished or failed)" if unfinished else "")
            )
        for f in files:
            try:
                metrics = json.loads(f.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                print(f"compare.py: skipping {f}: not valid JSON ({e}); was the run interrupted while writing it?",
                      file=sys.stderr)
                continue
            if not isinstance(metrics, dict):
                print(f"compare.py: skipping {f}: holds a JSON {type(metrics).__name__}, not the object train.py "
                      "writes", file=sys.stderr)
                continue
            runs.append(Run(f.parent, parse_overrides(metrics.get("overrides", [])), metrics, path))
    if not runs:
        raise ValueError(f"no readable metrics.json under {', '.join(map(str, paths))} (see the lines above)")
    return runs


RUN_MARKERS = ("checkpoints", "train.log")  # what a train.py run folder holds before metrics.json


def unfinished_runs(paths: list[Path]) -> list[Path]:
    """Run folders under ``paths`` without ``metrics.json``: killed, crashed or still running."""
    found: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            for marker in RUN_MARKERS:
                found.update(p.parent for p in path.rglob(marker))
    return sorted(p for p in found if not (p / "metrics.json").is_file())


def varying_keys(runs: list[Run]) -> list[str]:
    """Override keys whose value differs between runs (a key missing from a run counts as a value)."""
    keys = sorted({k for r in runs for k in r.params})
    return [k for k in keys if len({r.params.get(k) for r in runs}) > 1]


def _short(value: str) -> str:
    """Numbers as 3 significant digits (Optuna's lr=0.0005611516415334506 -> 0.000561); others as is."""
    x = _number(value)
    return value if x is None or not math.isfinite(x) or x == int(x) or len(value) <= 8 else f"{x:.3g}"


def run_label(run: Run, keys: list[str]) -> str:
    """``lr=0.001,model.depth=8``: the run's values of the varied keys (its folder name if none)."""
    return ",".join(f"{k}={_short(run.params[k])}" for k in keys if k in run.params) or run.path.name


def run_labels(runs: list[Run], keys: list[str]) -> dict[int, str]:
    """``run_label`` of each run (by ``id``), made unique: runs that share one (the same settings
    twice, or none varied) get their folder after it, ``lr=0.001 [3]``."""
    labels = {id(r): run_label(r, keys) for r in runs}
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    for r in runs:
        if counts[labels[id(r)]] > 1:
            labels[id(r)] = f"{labels[id(r)]} [{r.where}]" if labels[id(r)] != r.path.name else r.where
    return labels


def by_psnr(runs: list[Run]) -> list[Run]:
    """Highest best PSNR first; runs that never validated last."""
    return sorted(runs, key=lambda r: math.inf if math.isnan(r.best_psnr) else -r.best_psnr)


def _fmt(x: float, digits: int) -> str:
    return "—" if math.isnan(x) else f"{x:.{digits}f}"


def table_rows(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) sorted by best PSNR, highest first; the run column names the varied overrides."""
    keys = varying_keys(runs)
    labels = run_labels(runs, keys)
    header = ["run", "params", "best PSNR (dB)", "SSIM", "gain (dB)", "steps", "wall time (s)", "status", "path"]
    rows = []
    for r in by_psnr(runs):
        m = r.metrics
        params = metric(m, "params")
        rows.append([
            labels[id(r)], "—" if math.isnan(params) else f"{int(params):,}", _fmt(r.best_psnr, 2),
            _fmt(r.best_ssim, 4), _fmt(r.gain, 2), str(m.get("steps", "")), _fmt(metric(m, "train_seconds"), 0),
            r.status, r.where,
        ])
    return header, rows


def write_csv(path: Path, runs: list[Run], overwrite: bool = True) -> None:
    """One row per run (best PSNR first): its label, one column per varied key (the value as typed,
    full precision; empty where a run did not set it), then the results as plain numbers."""
    keys = varying_keys(runs)
    labels = run_labels(runs, keys)
    header = ["run", *keys, "params", "best_psnr", "best_ssim", "gain", "steps", "train_seconds", "status", "path"]

    def num(x: float) -> str:
        return "" if math.isnan(x) else repr(round(x, 6))

    with atomic_write(path, overwrite) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in by_psnr(runs):
            params = metric(r.metrics, "params")
            w.writerow([labels[id(r)], *(r.params.get(k, "") for k in keys),
                        "" if math.isnan(params) else int(params), num(r.best_psnr), num(r.best_ssim), num(r.gain),
                        r.metrics.get("steps", ""), num(metric(r.metrics, "train_seconds")), r.status,
                        str(r.path.resolve())])


def format_markdown(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _bicubic_line(ax: Any, runs: list[Run]) -> None:
    """Bicubic's PSNR dashed, when all runs were validated on the same images (one value)."""
    bics = {round(b, 4) for b in (metric(r.metrics, "bicubic", "psnr") for r in runs) if not math.isnan(b)}
    if len(bics) == 1:
        ax.axhline(bics.pop(), color="gray", ls="--", lw=1, label="bicubic")


def plot_curves(runs: list[Run], out: Path, overwrite: bool = True) -> Path:
    """Validation PSNR against step, one line per run, bicubic dashed."""
    import matplotlib.pyplot as plt

    keys = varying_keys(runs)
    labels = run_labels(runs, keys)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in by_psnr(runs):
        hist = r.metrics.get("history")
        points = [(metric(h, "step"), metric(h, "psnr")) for h in (hist if isinstance(hist, list) else [])]
        points = [p for p in points if not math.isnan(p[0] + p[1])]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3, label=labels[id(r)])
    _bicubic_line(ax, runs)
    ax.set(xlabel="training step", ylabel="validation PSNR (dB)", title=f"Validation PSNR of {len(runs)} runs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", title=", ".join(keys) or None, title_fontsize=7)
    path = out / "psnr_curves.png"
    fig.tight_layout()
    with atomic_write(path, overwrite) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def axis_key(runs: list[Run]) -> str | None:
    """The numeric varied key ``psnr_vs_<key>.png`` plots against (``lr`` first), or None."""
    numeric = [k for k in varying_keys(runs) if all(_number(r.params.get(k)) is not None for r in runs)]
    return ("lr" if "lr" in numeric else numeric[0]) if numeric else None


def plot_axis(runs: list[Run], out: Path, overwrite: bool = True) -> Path | None:
    """Best PSNR against the numeric varied axis (``lr`` first), one line per combination of the
    other varied keys (e.g. one per depth). ``None`` (no plot) when no varied key is numeric."""
    import matplotlib.pyplot as plt

    keys = varying_keys(runs)
    x_key = axis_key(runs)
    if x_key is None:
        return None
    others = [k for k in keys if k != x_key]
    groups: dict[tuple[str, ...], list[Run]] = {}
    for r in runs:
        groups.setdefault(tuple(r.params.get(k, "") for k in others), []).append(r)

    def order(values: tuple[str, ...]) -> tuple:
        return tuple((_number(v) is None, _number(v) or 0.0, v) for v in values)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for values in sorted(groups, key=order):
        pts = sorted((_number(r.params[x_key]), r.best_psnr) for r in groups[values])
        label = ",".join(f"{k}={v}" for k, v in zip(others, values)) or "best PSNR"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    xs = [_number(r.params[x_key]) for r in runs]
    log_x = x_key.rsplit(".", 1)[-1] == "lr" or (min(xs) > 0 and max(xs) / min(xs) >= 10)
    if log_x:
        ax.set_xscale("log")
    _bicubic_line(ax, runs)
    ax.set(xlabel=x_key + (" (log scale)" if log_x else ""), ylabel="best validation PSNR (dB)", title=f"Best validation PSNR vs {x_key}")
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=8, title=", ".join(others) or None, title_fontsize=8)
    path = out / f"psnr_vs_{x_key.replace('/', '_')}.png"
    fig.tight_layout()
    with atomic_write(path, overwrite) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def run_kinds(runs: list[Run]) -> dict[int, str]:
    """``video`` or ``image`` for each run (by ``id``) whose network is registered: video networks
    (``is_multi_frame``: BasicVSR, EDVR...) validate on whole clips under the video protocol
    (``evaluation/video.py``), image networks on images; a network not registered here is left out."""
    named = [(r, r.metrics.get("network")) for r in runs if isinstance(r.metrics.get("network"), str)]
    if not named:
        return {}
    from sr_experiments.models import NETWORKS, is_multi_frame  # imports torch: only when runs name networks

    return {id(r): "video" if is_multi_frame(name) else "image" for r, name in named if name in NETWORKS}


def check_one_kind(runs: list[Run]) -> None:
    """Refuse, in one line, to rank video runs and image runs together: their PSNRs were measured on
    different validation data (clips vs images), so one ranking, one bicubic line would mislead."""
    kinds = run_kinds(runs)
    if len(set(kinds.values())) < 2:
        return

    def some(kind: str) -> str:
        found = [r.where for r in runs if kinds.get(id(r)) == kind]
        return ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")

    raise ValueError(f"video runs ({some('video')}) and image runs ({some('image')}) were validated on different "
                     "data (clips vs images): compare each kind in its own compare.py call, or score both on the "
                     "same clips with eval.py ckpt_path=[A.ckpt,B.ckpt] eval.sets=[Vid4] (image networks run frame "
                     "by frame)")


def compare(paths: list[Path], out: Path | None = None, overwrite: bool = False) -> tuple[str, list[Path]]:
    """Read every run under ``paths``; write ``comparison.md``/``.csv`` and the plots into ``out``
    (default: the first path). Returns the markdown table and the files written.

    Without matplotlib (the ``sweeps`` extra) the table and CSV are still written; one line on
    stderr says the plots were skipped and what to install. Every file is planned before anything is
    written: one that exists is refused (``OutputError``, one line) unless ``overwrite``; each is
    written atomically. Video runs and image runs are not ranked together (``check_one_kind``)."""
    runs = find_runs(paths)
    check_one_kind(runs)
    out = Path(out) if out is not None else Path(paths[0])
    if out.is_file():
        out = out.parent
    md, csv_path = out / "comparison.md", out / "comparison.csv"
    x_key = axis_key(runs)
    planned = [md, csv_path, out / "psnr_curves.png",
               *([out / f"psnr_vs_{x_key.replace('/', '_')}.png"] if x_key else [])]
    check_targets(planned, [r.path / "metrics.json" for r in runs], overwrite, key="--out")
    header, rows = table_rows(runs)
    table = format_markdown(header, rows)
    write_text(md, table + "\n", overwrite)
    write_csv(csv_path, runs, overwrite)
    written = [md, csv_path]
    try:
        matplotlib = require("matplotlib", "compare.py's plots")
    except MissingExtra as e:
        print(f"compare.py: plots skipped: {e}", file=sys.stderr)
        return table, written
    matplotlib.use("Agg")  # files only, no display needed
    written.append(plot_curves(runs, out, overwrite))
    axis_plot = plot_axis(runs, out, overwrite)
    if axis_plot is not None:
        written.append(axis_plot)
    return table, written
