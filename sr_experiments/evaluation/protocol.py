"""Benchmark evaluation: standard sets x scales, the paper protocol, tables and per-image rows."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from sr_experiments import CONF_DIR
from sr_experiments.console import progress
from sr_experiments.data.degradations import Degradation, build_degradation, degrade_image
from sr_experiments.imaging.io import load_rgb
from sr_experiments.data.pairs import load_pair
from sr_experiments.data.sources import SAMPLE_PREFIX, ImageSource, resolve_sources
from sr_experiments.imaging.tiling import upscale
from sr_experiments.evaluation.metrics import protocol_scores
from sr_experiments.evaluation.perceptual import LABELS, LOWER_IS_BETTER, PerceptualScorer
from sr_experiments.models.bicubic import Bicubic
from sr_experiments.outputs import write_text

log = logging.getLogger(__name__)

ALIASES = {"B100": "BSD100", "BSD100": "B100"}  # folder names both spellings are found under
# The sets `make data` downloads (sr_experiments/tools/download.py ARCHIVES; a test keeps the two equal),
# and those it cannot: Manga109 is licensed per user by its authors.
DOWNLOADED_SETS = ("Set5", "Set14", "BSD100", "Urban100")
REQUESTED_SETS = {"Manga109": "http://www.manga109.org/en/"}


def ways_to_get(missing: list[str], data_dir: str | Path) -> str:
    """How to get each of the ``missing`` sets into ``data_dir``, grouped, on one line."""
    fetched = [n for n in missing if (ALIASES.get(n) in DOWNLOADED_SETS or n in DOWNLOADED_SETS)]
    requested = [n for n in missing if n in REQUESTED_SETS]
    own = [n for n in missing if n not in fetched and n not in requested]
    data = "" if str(data_dir) == "data" else f" DATA={data_dir}"
    ways = [f"{', '.join(fetched)}: `make data{data}` downloads {'it' if len(fetched) == 1 else 'them'}"] if fetched else []
    ways += [f"{n}: request it from its authors at {REQUESTED_SETS[n]} and put it in {Path(data_dir) / n}/HR"
             for n in requested]
    if own:
        ways.append(f"{', '.join(own)}: put {'it' if len(own) == 1 else 'them'} there as <set>/HR/*.png "
                    "[+ LR_bicubic/X<s>/<name>x<s>.png]")
    return "; ".join(ways)


class SetsFailed(RuntimeError):
    """Some set x scale evaluations failed; the others' results are written. Names each with its reason."""


@dataclass
class ImageResult:
    set: str
    scale: int
    model: str
    image: str
    psnr: float
    ssim: float
    scores: dict[str, float] = field(default_factory=dict)  # eval.metrics beyond PSNR/SSIM: lpips, dists, niqe
    seconds: float | None = None  # wall time of a network trained on each image (model=zssr), else None

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("scores")
        if d["seconds"] is None:
            d.pop("seconds")
        else:
            d["seconds"] = round(self.seconds, 2)
        d["psnr"], d["ssim"] = round(self.psnr, 4), round(self.ssim, 6)
        return {**d, **_rounded(self.scores)}


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4 if k == "niqe" else 6) for k, v in scores.items()}


@dataclass
class SetResult:
    set: str
    scale: int
    model: str
    psnr: float
    ssim: float
    images: int
    lr_from: str  # "files" (MATLAB-made LR_bicubic) or "imresize" (made by the framework)
    per_image: list[ImageResult] = field(default_factory=list, repr=False)
    scores: dict[str, float] = field(default_factory=dict)  # means of the per-image perceptual scores

    def row(self) -> dict[str, Any]:
        """set, scale, model, psnr, ssim[, lpips, dists, niqe], images, lr_from."""
        d = {k: v for k, v in asdict(self).items() if k not in ("per_image", "scores")}
        d["psnr"], d["ssim"] = round(self.psnr, 4), round(self.ssim, 6)
        head = {k: d.pop(k) for k in ("set", "scale", "model", "psnr", "ssim")}
        return {**head, **_rounded(self.scores), **d}



def locate_set(name: str, data_dir: str | Path) -> tuple[str, str] | None:
    """(display name, source spec) of a set, or None when it is absent.

    ``name`` is a set folder under ``data_dir`` (``B100`` and ``BSD100`` are one set), an
    absolute path to such a folder, or ``sample:val``.
    """
    if name.startswith(SAMPLE_PREFIX):
        return name, name
    canonical = "BSD100" if name in ("B100", "BSD100") else name
    candidates = [Path(name)] if Path(name).is_absolute() else [Path(data_dir) / name]
    if name in ALIASES:
        candidates.append(Path(data_dir) / ALIASES[name])
    for c in candidates:
        if (c / "HR").is_dir() or (c.is_dir() and any(c.iterdir())):
            return (canonical if not Path(name).is_absolute() else c.name), str(c)
    return None


class _HRCache:
    """Decoded HR images, shared across scales (decoding is a third of a bicubic evaluation)."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[np.ndarray, bool]] = {}

    def get(self, path: Path) -> tuple[np.ndarray, bool]:
        if path not in self._cache:
            self._cache[path] = load_rgb(path)
        return self._cache[path]


@dataclass
class EvalDegradation:
    """``eval.degradation`` / ``eval.degradation_seed``: LR made from the HR by a degradation pipeline."""

    pipeline: Degradation
    seed: int

    @property
    def label(self) -> str:
        return f"{self.pipeline.name} (seed {self.seed})"

    def lr(self, hr_uint8: torch.Tensor, name: str) -> torch.Tensor:
        """(1, 3, h, w) float LR of the (3, H, W) uint8 HR image ``name``."""
        return degrade_image(hr_uint8.float() / 255, self.pipeline, self.seed, name).lq


def eval_degradation(name: str | None, seed: int, scale: int) -> EvalDegradation | None:
    """The pipeline ``eval.degradation=NAME`` names, with the settings of conf/degradation/NAME.yaml
    (its training defaults) except ``usm_gt``: evaluation degrades, and scores against, the plain HR."""
    if name in (None, "", "bicubic", "none"):
        return None
    path = CONF_DIR / "degradation" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONF_DIR / "degradation").glob("*.yaml"))
        raise ValueError(f"eval.degradation={name}: no such degradation (known: {', '.join(known)})")
    node = OmegaConf.load(path)
    settings = {k: node[k] for k in node if k != "seed"}  # seed is the training run's ${seed}
    settings = {**OmegaConf.to_container(OmegaConf.create(settings), resolve=True), "usm_gt": False}
    pipeline = build_degradation(settings, scale)
    return EvalDegradation(pipeline, int(seed)) if pipeline is not None else None


@dataclass
class InferenceOptions:
    device: str = "cpu"
    self_ensemble: bool = False
    tile: int | None = None
    tile_overlap: int = 32
    tile_batch: int = 1


def evaluate_set(
    nets: dict[str, nn.Module],
    set_name: str,
    sources: list[ImageSource],
    scale: int,
    options: InferenceOptions,
    cache: _HRCache | None = None,
    save_dir: Path | None = None,
    perceptual: PerceptualScorer | None = None,
    degradation: EvalDegradation | None = None,
) -> list[SetResult]:
    """PSNR/SSIM (and ``perceptual``'s metrics) of each network in ``nets`` (label -> module) on
    one set at one scale.

    The first entry is the evaluated model (its outputs are saved when ``save_dir`` is given);
    the others are baselines run on the same LR. With ``degradation``, the LR of each image is
    made from its HR by that pipeline, with the draws of ``(seed, image name)``, on the CPU: the
    same LR for every model, run and device.
    """
    model_label = next(iter(nets))
    cache = cache or _HRCache()
    results = {label: SetResult(set_name, scale, label, 0.0, 0.0, 0, "") for label in nets}
    device = torch.device(options.device)
    lr_from = "files" if all(s.lq is not None for s in sources) else (
        "imresize" if all(s.lq is None for s in sources) else "files+imresize"
    )
    if degradation is not None:
        lr_from = degradation.label
    for source in progress(sources, desc=f"{set_name} x{scale}", unit="img"):
        pair = load_pair(source, scale, cache.get(source.gt), lr_key="eval.lr_source")
        gray = pair.gray
        lq_f = pair.lq[None].to(device).float() / 255
        gt_f = pair.gt[None].to(device).float() / 255
        if degradation is not None:
            lq_f = degradation.lr(pair.gt, source.name).to(device)
        for label, net in nets.items():
            seconds = None
            if isinstance(net, Bicubic):  # exact, parameter-free: no tiling or ensemble needed
                with torch.inference_mode():
                    sr = net(lq_f)
            elif getattr(net, "trains_per_image", False):  # ZSSR: trains on this LR (autograd on), its own ensemble
                start = time.perf_counter()
                sr = net(lq_f, name=f"{set_name}/{source.name}")
                seconds = time.perf_counter() - start
            else:
                sr = upscale(net, lq_f, scale, options.tile, options.tile_overlap, options.self_ensemble, options.tile_batch)
            sr, p, s = protocol_scores(sr, gt_f, scale, torch.tensor([gray]))
            # Perceptual metrics: RGB of the same 8-bit output, the same border crop.
            extra = {k: float(v) for k, v in perceptual(sr, gt_f, scale).items()} if perceptual else {}
            results[label].per_image.append(ImageResult(set_name, scale, label, source.name, float(p), float(s), extra, seconds))
            if save_dir is not None and label == model_label:
                out = save_dir / set_name / f"x{scale}"
                out.mkdir(parents=True, exist_ok=True)
                img = (sr[0] * 255 + 0.5).floor().byte().permute(1, 2, 0).cpu().numpy()
                Image.fromarray(img[..., 0] if gray else img).save(out / f"{source.name}.png")
    for r in results.values():
        r.images = len(r.per_image)
        r.psnr = float(np.mean([i.psnr for i in r.per_image]))
        r.ssim = float(np.mean([i.ssim for i in r.per_image]))
        r.scores = {k: float(np.mean([i.scores[k] for i in r.per_image])) for k in perceptual.names} if perceptual else {}
        r.lr_from = lr_from
    return list(results.values())


def _extra_names(results: list[SetResult]) -> list[str]:
    """The perceptual metrics the results hold, in eval.metrics order."""
    return list(dict.fromkeys(k for r in results for k in r.scores))


def _label(name: str, arrow: str = "↓") -> str:
    """Column label; lower-is-better metrics carry an arrow (PSNR/SSIM: higher, as ever)."""
    return LABELS.get(name, name.upper()) + (arrow if name in LOWER_IS_BETTER else "")


def format_table(results: list[SetResult], model: str) -> str:
    """Set x scale table; for a trained model, bicubic and the gain beside it; then one column per
    perceptual metric (and its bicubic value) when eval.metrics asks for them."""
    by_key: dict[tuple[str, int], dict[str, SetResult]] = {}
    for r in results:
        by_key.setdefault((r.set, r.scale), {})[r.model] = r
    with_baseline = model != "bicubic" and any("bicubic" in v for v in by_key.values())
    head = f"| {'set':<10} | scale | {model + ' PSNR/SSIM':>22} |"
    sep = "|" + "-" * 12 + "|-------|" + "-" * 24 + "|"
    if with_baseline:
        head += f" {'bicubic PSNR/SSIM':>18} | {'gain':>17} |"
        sep += "-" * 20 + "|" + "-" * 19 + "|"
    extra = _extra_names(results)
    extra_heads = [f"{who} {_label(n)}" for n in extra for who in ([model, "bicubic"] if with_baseline else [model])]
    for h in extra_heads:
        head += f" {h:>8} |"
        sep += "-" * (max(len(h), 8) + 2) + "|"
    lines = [head, sep]
    for (set_name, scale), rows in by_key.items():
        m = rows[model]
        line = f"| {set_name:<10} | x{scale:<4} | {m.psnr:>13.2f} / {m.ssim:.4f} |"
        if with_baseline:
            b = rows["bicubic"]
            line += f" {b.psnr:>9.2f} / {b.ssim:.4f} | {m.psnr - b.psnr:>+7.2f} / {m.ssim - b.ssim:+.4f} |"
        values = [r.scores.get(n) for n in extra for r in ([m, rows["bicubic"]] if with_baseline else [m])]
        # A metric a set does not have (an image set beside a video set's tOF): a dash, not nan.
        line += "".join(f" {'—' if v is None else f'{v:.4f}':>{max(len(h), 8)}} |" for v, h in zip(values, extra_heads))
        lines.append(line)
    return "\n".join(lines)


def methods_table(results: list[SetResult], fmt: str = "md") -> str:
    """Methods (rows, in evaluation order) x set/scale (columns) of PSNR / SSIM [/ the perceptual
    metrics], the best of each in bold (the lowest for LPIPS, DISTS, NIQE); ``fmt`` is ``md``
    (Markdown) or ``tex`` (a booktabs tabular)."""
    methods = list(dict.fromkeys(r.model for r in results))
    columns = list(dict.fromkeys((r.set, r.scale) for r in results))
    cell = {(r.model, r.set, r.scale): r for r in results}
    extra = _extra_names(results)
    best = {}
    best_extra: dict[tuple[str, int], dict[str, str]] = {}
    for key in columns:
        found = [cell[(m, *key)] for m in methods if (m, *key) in cell]
        best[key] = (max(r.psnr for r in found), max(r.ssim for r in found))
        best_extra[key] = {}
        for n in extra:
            vals = [r.scores[n] for r in found if n in r.scores and not math.isnan(r.scores[n])]
            if vals:
                best_extra[key][n] = f"{(min if n in LOWER_IS_BETTER else max)(vals):.4f}"
    bold = (lambda s: f"**{s}**") if fmt == "md" else (lambda s: f"\\textbf{{{s}}}")

    def entry(method: str, key: tuple[str, int]) -> str:
        r = cell.get((method, *key))
        if r is None:
            return "—" if fmt == "md" else "--"
        psnr, ssim = f"{r.psnr:.2f}", f"{r.ssim:.4f}"
        # Compare as printed: a tie at the shown precision is bold in both rows.
        psnr = bold(psnr) if psnr == f"{best[key][0]:.2f}" else psnr
        ssim = bold(ssim) if ssim == f"{best[key][1]:.4f}" else ssim
        values = [psnr, ssim]
        for n in extra:
            v = f"{r.scores[n]:.4f}" if n in r.scores else ("—" if fmt == "md" else "--")
            values.append(bold(v) if v == best_extra[key].get(n) else v)
        return " / ".join(values)

    heads = [f"{s} x{k}" for s, k in columns]
    body = [[m, *(entry(m, key) for key in columns)] for m in methods]
    if fmt == "md":
        # With perceptual metrics the first header says what each cell holds, in order.
        first = "method" if not extra else "method (" + " / ".join(["PSNR", "SSIM", *map(_label, extra)]) + ")"
        widths = [max(len(x) for x in col) for col in zip([first, *heads], *body)]
        line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
        return "\n".join([line([first, *heads]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])
    heads = [f"{_tex(s)} $\\times${k}" for s, k in columns]
    what = " / ".join(["PSNR", "SSIM", *(_label(n, r"$\downarrow$") for n in extra)])
    lines = [f"\\begin{{tabular}}{{l{'c' * len(columns)}}}", "\\toprule",
             " & ".join(["Method", *heads]) + " \\\\", " & ".join([""] + [what] * len(columns)) + " \\\\",
             "\\midrule", *(" & ".join([_tex(row[0]), *row[1:]]) + " \\\\" for row in body), "\\bottomrule",
             "\\end{tabular}"]
    return "\n".join(lines)


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(text: str) -> str:
    """A method or set name with LaTeX's special characters escaped."""
    return "".join(_TEX.get(c, c) for c in text)


def write_results(results: list[SetResult], out_dir: Path, table: str, meta: Mapping[str, Any] | None = None,
                  tex: str | None = None) -> None:
    """results.json (rows under ``results``, plus ``meta``: models and provenance) / .csv / .md
    [/ .tex] and per_image.json / .csv in ``out_dir``, each written atomically (a full disk raises
    ``OutputError`` in one line and leaves no 0-byte or partial file)."""
    rows = [r.row() for r in results]
    per_image = [i.row() for r in results for i in r.per_image]
    files = {
        "results.json": json.dumps({"results": rows, **(meta or {})}, indent=2),
        "results.csv": _csv_text(rows),
        "results.md": table + "\n",
        **({"results.tex": tex + "\n"} if tex is not None else {}),
        "per_image.json": json.dumps(per_image, indent=2),
        "per_image.csv": _csv_text(per_image),
    }
    for name, text in files.items():
        write_text(out_dir / name, text)


def _csv_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    text = io.StringIO()
    # Every row's keys (a per-image trained model's rows add ``seconds``; its baseline's lack it).
    w = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    w.writeheader()
    w.writerows(rows)
    return text.getvalue()


def resolve_eval_sources(spec: str, scale: int, lr_source: str = "auto") -> list[ImageSource]:
    return resolve_sources(spec, scale, lr_source=lr_source, key="eval.sets")
