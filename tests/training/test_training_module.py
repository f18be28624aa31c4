"""The training algorithm stays slim, and validation measures what eval.py measures (issue 26, item 3;
the layering of training/ below runs/ is tests/test_layering.py's)."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from conftest import FAST, compose_train

from sr_experiments.evaluation.protocol import InferenceOptions, evaluate_set, resolve_eval_sources
from sr_experiments.models import build_network
from sr_experiments.models.bicubic import Bicubic
from sr_experiments.runs.run import train
from sr_experiments.training.module import SRLitModule

def test_sr_lit_module_is_under_200_lines() -> None:
    lines = len(inspect.getsource(SRLitModule).splitlines())
    assert lines < 200, f"SRLitModule is {lines} lines: move a job into a collaborator (training/*.py)"


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
