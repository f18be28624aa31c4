"""EMA of the weights (model.ema_decay): the closed form, validation of both, bit-exact resume,
and every loader (eval, upscale, export) using the EMA weights, exports carrying both."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import FAST, ROOT, compose_train
from hydra.utils import instantiate
from torch import nn

from sr_experiments.inference.export import export_weights
from sr_experiments.models import build_network
from sr_experiments.models.weights import ema_entry, read_weights, load_network, unwrap_state_dict
from sr_experiments.training.ema import ema_state_for_load, ema_update_
from sr_experiments.runs.run import train

pytestmark = pytest.mark.usefixtures("one_thread")

EXACT = ["trainer.precision=32", "model.channels_last=false"]  # one mode, no measuring: reproducible


def _closed_form(w0: torch.Tensor, ws: list[torch.Tensor], d: float) -> torch.Tensor:
    """ema_n = d^n w_0 + sum_k (1 - d) d^(n-k) w_k."""
    n = len(ws)
    return d**n * w0 + sum((1 - d) * d ** (n - k) * w for k, w in enumerate(ws, start=1))


def test_ema_update_is_the_closed_form_average() -> None:
    net, ema = nn.Linear(3, 2), nn.Linear(3, 2)
    # Exact in binary: decay 0.5 and small integers.
    w0 = torch.arange(6.0).view(2, 3)
    ws = [torch.full((2, 3), 4.0), torch.full((2, 3), -2.0), torch.arange(6.0).view(2, 3) * 2]
    with torch.no_grad():
        net.weight.copy_(w0)
    ema_update_(ema, net, 0.0)  # the start: a copy
    assert torch.equal(ema.weight, w0) and torch.equal(ema.bias, net.bias)
    for w in ws:
        with torch.no_grad():
            net.weight.copy_(w)
        ema_update_(ema, net, 0.5)
    assert torch.equal(ema.weight, _closed_form(w0, ws, 0.5))
    # And a realistic decay, to float precision.
    for w in ws:
        with torch.no_grad():
            net.weight.copy_(w)
        ema_update_(ema, net, 0.999)
    assert torch.allclose(ema.weight, _closed_form(_closed_form(w0, ws, 0.5), ws, 0.999), atol=1e-6)


class _Recorder(L.Callback):
    """The raw weights at the start and after every optimizer step."""

    def __init__(self) -> None:
        self.weights: list[dict[str, torch.Tensor]] = []

    def _save(self, pl_module: L.LightningModule) -> None:
        self.weights.append({k: v.detach().clone() for k, v in pl_module.net.named_parameters()})

    def on_train_start(self, trainer, pl_module) -> None:
        self._save(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._save(pl_module)


def test_training_keeps_the_closed_form_ema_of_its_steps(tmp_path: Path) -> None:
    cfg = compose_train([*FAST, *EXACT, "model.ema_decay=0.9", "model.depth=1", "model.width=8"], tmp_path)
    module = instantiate(cfg.module, _recursive_=False)
    assert module.net_ema is not None and not any(p.requires_grad for p in module.net_ema.parameters())
    recorder = _Recorder()
    trainer = L.Trainer(max_steps=3, callbacks=[recorder], logger=False, enable_checkpointing=False, limit_val_batches=0,
                        enable_progress_bar=False, enable_model_summary=False, precision="32")
    trainer.fit(module, datamodule=instantiate(cfg.data))
    assert len(recorder.weights) == 4 and int(module.ema_updates) == 3
    for name, p in module.net_ema.named_parameters():
        expected = _closed_form(recorder.weights[0][name], [w[name] for w in recorder.weights[1:]], 0.9)
        assert torch.allclose(p, expected, atol=1e-6), name
        assert not torch.equal(p, recorder.weights[-1][name])  # an average, not the last weights


def test_ema_survives_a_resume_bit_exactly_and_validation_reports_both(tmp_path: Path) -> None:
    # A constant rate: the first part stops at 4 of 8 steps with the same schedule as the reference.
    base = [o for o in FAST if not o.startswith("trainer.max_steps")] + EXACT + ["model.ema_decay=0.9", "scheduler=constant"]
    reference = train(compose_train([*base, "trainer.max_steps=8"], tmp_path / "ref"))
    train(compose_train([*base, "trainer.max_steps=4"], tmp_path / "a"))
    first = tmp_path / "a" / "checkpoints" / "last.ckpt"
    resumed = train(compose_train([*base, "trainer.max_steps=8", f"ckpt_path={first}"], tmp_path / "b"))
    ref = read_weights(tmp_path / "ref" / "checkpoints" / "last.ckpt")["state_dict"]
    got = read_weights(tmp_path / "b" / "checkpoints" / "last.ckpt")["state_dict"]
    assert any(k.startswith("net_ema.") for k in ref) and any(k.startswith("net.") for k in ref)  # both kept
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    assert int(got["ema_updates"]) == 8
    # Validation: val/psnr is the EMA's, val/psnr_raw the raw weights', at the same steps.
    assert resumed["history"] == reference["history"]
    last = reference["history"][-1]
    assert {"psnr", "psnr_raw", "ssim", "ssim_raw"} <= set(last) and last["psnr"] != last["psnr_raw"]


def test_the_raw_weights_of_a_run_with_ema_are_those_of_the_run_without(tmp_path: Path) -> None:
    # What lets one run give "with and without EMA, same steps, same seed" (BENCHMARKS.md): the
    # average never feeds back into training, nor draws from the random streams.
    runs = {d: train(compose_train([*FAST, *EXACT, f"model.ema_decay={d}"], tmp_path / str(d))) for d in (0, 0.9)}
    off, on = (read_weights(tmp_path / str(d) / "checkpoints" / "last.ckpt")["state_dict"] for d in (0, 0.9))
    raw = {k: v for k, v in on.items() if k.startswith("net.")}
    assert raw.keys() == {k for k in off if k.startswith("net.")} and any(k.startswith("net_ema.") for k in on)
    assert all(torch.equal(raw[k], off[k]) for k in raw)
    assert runs[0.9]["history"][-1]["psnr_raw"] == runs[0]["history"][-1]["psnr"]


def test_ema_switched_on_or_off_at_a_resume_adapts_the_checkpoint() -> None:
    raw = {"net.w": torch.ones(2), "net.b": torch.zeros(1)}
    with_ema = ema_state_for_load(raw, want_ema=True)
    assert torch.equal(with_ema["net_ema.w"], raw["net.w"]) and int(with_ema["ema_updates"]) == 0
    assert ema_state_for_load(with_ema, want_ema=False).keys() == raw.keys()
    assert ema_state_for_load(with_ema, want_ema=True).keys() == with_ema.keys()


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("ema_run")
    train(compose_train([*FAST, *EXACT, "model.ema_decay=0.5"], run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


def test_loaders_use_the_ema_weights_and_say_so(ema_run: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = read_weights(ema_run)
    assert ema_entry(ckpt) == "net_ema"
    net, spec = load_network(ema_run)  # what eval.py, upscale.py and export.py call
    assert "using its EMA weights" in capsys.readouterr().out
    state = ckpt["state_dict"]
    for k, v in net.state_dict().items():
        assert torch.equal(v, state["net_ema." + k]), k
    raw, _ = load_network(ema_run, ema=False)
    assert all(torch.equal(v, state["net." + k]) for k, v in raw.state_dict().items())
    assert not all(torch.equal(v, state["net_ema." + k]) for k, v in raw.state_dict().items())
    # Fine-tuning (ckpt_path=... resume=false, model.pretrained=...) starts from the EMA too, as
    # BasicSR's param_key_g: params_ema.
    assert unwrap_state_dict(ckpt).keys() == net.state_dict().keys()


def test_a_released_pth_carries_params_ema_and_params(tmp_path: Path, ema_run: Path) -> None:
    ema, spec = load_network(ema_run, quiet=True)
    raw, _ = load_network(ema_run, ema=False, quiet=True)
    path = tmp_path / "model.pth"
    export_weights(ema, spec, "pth", path, raw=raw)
    saved = torch.load(path, weights_only=True)
    assert {"params_ema", "params", "network"} <= set(saved)
    for k, v in ema.state_dict().items():  # BasicSR layout: bare keys, EMA under params_ema
        assert torch.equal(saved["params_ema"][k], v) and torch.equal(saved["params"][k], raw.state_dict()[k])
    reloaded, _ = load_network(path, quiet=True)
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), ema.state_dict().values()))


@pytest.mark.slow
def test_export_cli_writes_params_ema_for_a_run_with_ema(tmp_path: Path, ema_run: Path) -> None:
    out = tmp_path / "released.pth"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "export.py"), f"ckpt_path={ema_run}", "format=pth", f"output={out}",
                           f"hydra.run.dir={tmp_path / 'hydra'}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "using its EMA weights" in proc.stdout
    saved = torch.load(out, weights_only=True)
    assert set(saved["params_ema"]) == set(saved["params"]) == set(build_network(saved["network"]).state_dict())
