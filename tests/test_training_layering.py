"""The training algorithm stays slim and below the run infrastructure, and validation measures what
eval.py measures (issue 26, item 3)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import torch
from conftest import FAST, compose_train

import sr_experiments
from sr_experiments.evaluation.protocol import InferenceOptions, evaluate_set, resolve_eval_sources
from sr_experiments.models import build_network
from sr_experiments.models.bicubic import Bicubic
from sr_experiments.runs.run import train
from sr_experiments.training.module import SRLitModule

PACKAGE = Path(sr_experiments.__file__).parent
OWN = ("training", "runs")


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).glob("*.py"))


def test_sr_lit_module_is_under_200_lines() -> None:
    lines = len(inspect.getsource(SRLitModule).splitlines())
    assert lines < 200, f"SRLitModule is {lines} lines: move a job into a collaborator (training/*.py)"


def test_no_function_in_training_or_runs_exceeds_80_lines() -> None:
    long = []
    for path in (p for folder in OWN for p in _modules(folder)):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_training_imports_nothing_from_runs() -> None:
    found = {f"{p.name}: {m}" for p in _modules("training") for m in _imported_modules(p)
             if m == "sr_experiments.runs" or m.startswith("sr_experiments.runs.")}
    assert not found, f"training/ (the algorithm) must not import the run infrastructure: {sorted(found)}"
    # ... and the check can fail: runs/ does import training/.
    assert any(m.startswith("sr_experiments.training") for m in _imported_modules(PACKAGE / "runs" / "run.py"))


def test_validation_psnr_is_what_the_eval_protocol_gives(tmp_path: Path) -> None:
    """A tiny run's last val/psnr (and its bicubic baseline) recomputed by eval.py's evaluate_set on
    the same weights (read from last.ckpt) and the same validation images."""
    summary = train(compose_train([*FAST, "trainer.max_steps=2"], tmp_path))
    final = summary["final"]
    assert final["step"] == 2
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    net = build_network(state["hyper_parameters"]["network"])
    net.load_state_dict({k[len("net."):]: v for k, v in state["state_dict"].items() if k.startswith("net.")})
    net.eval()
    sources = resolve_eval_sources("sample:val", 2, lr_source="generate")
    model, bicubic = evaluate_set({"model": net, "bicubic": Bicubic(2)}, "sample", sources, 2, InferenceOptions())
    assert model.images == summary["bicubic"]["images"] == len(sources) == 2
    assert abs(model.psnr - final["psnr"]) < 1e-6, (model.psnr, final["psnr"])
    assert abs(model.ssim - final["ssim"]) < 1e-8
    assert abs(bicubic.psnr - summary["bicubic"]["psnr"]) < 1e-6
    assert abs(model.psnr - bicubic.psnr) > 1e-3  # the network's output, not the baseline's, was compared
