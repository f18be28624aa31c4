"""Speed defaults: precision chosen per device (and said why), channels_last for convolutional
networks, metrics in full precision under autocast, torch.compile with portable checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import FAST, compose_train
from hydra.utils import instantiate

from sr_experiments import hardware
from sr_experiments.models.loading import load_checkpoint_file
from sr_experiments.data.datamodule import default_num_workers
from sr_experiments.hardware import choose_channels_last
from sr_experiments.training.module import SRLitModule
from sr_experiments.evaluation.metrics import SRMetrics
from sr_experiments.models import build_network
from sr_experiments.models.bicubic import Bicubic
from sr_experiments.training.run import train


@pytest.mark.parametrize(("amx", "avx512_bf16", "expected"), [(True, False, "bf16-mixed"), (False, True, "bf16-mixed"), (False, False, "32")])
def test_auto_precision_follows_the_cpu(monkeypatch: pytest.MonkeyPatch, amx: bool, avx512_bf16: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    choice = hardware.choose_precision("auto", "cpu")
    assert choice.precision == expected
    assert ("emulated" in choice.reason) == (expected == "32")


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16-mixed"), (False, "32")])
def test_auto_precision_follows_the_gpu(monkeypatch: pytest.MonkeyPatch, bf16: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU")
    assert hardware.choose_precision("auto", "gpu").precision == expected
    assert hardware.choose_precision("auto", "auto").precision == expected


@pytest.mark.parametrize(("requested", "expected"), [(32, "32"), ("32-true", "32"), ("bf16", "bf16-mixed"), ("16-mixed", "16-mixed")])
def test_explicit_precision_is_kept(requested, expected: str) -> None:
    choice = hardware.choose_precision(requested, "cpu")
    assert choice.precision == expected and "explicitly" in choice.reason


def test_run_records_and_logs_its_precision(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = compose_train(FAST, tmp_path)
    assert cfg.trainer.precision == "auto"
    with caplog.at_level("INFO"):
        train(cfg)
    expected = hardware.choose_precision("auto", "cpu")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["precision"] == expected.precision and saved["precision_reason"] == expected.reason
    assert f"precision: {expected.precision} ({expected.reason})" in caplog.text
    assert saved["channels_last"] is True and saved["compile"] is False


@pytest.mark.parametrize(("model", "expected"), [("edsr", True), ("espcn", True), ("imdn", True), ("swinir_light", False)])
def test_channels_last_auto_is_on_for_convolutional_networks(model: str, expected: bool) -> None:
    net = build_network({"name": model, "scale": 2})
    on, why = choose_channels_last(net, "auto")
    assert on is expected and "convolutions" in why


def test_channels_last_weights_and_inputs(tmp_path: Path) -> None:
    module = instantiate(compose_train([], tmp_path).module, _recursive_=False)
    conv = next(m for m in module.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    batch = module.on_after_batch_transfer({"lr": torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "hr": torch.zeros(2, 3, 16, 16, dtype=torch.uint8)}, 0)
    assert batch["lr"].is_contiguous(memory_format=torch.channels_last) and batch["lr"].dtype == torch.float32
    off = instantiate(compose_train(["model.channels_last=false"], tmp_path).module, _recursive_=False)
    assert all(p.is_contiguous() for p in off.net.parameters()) and off.channels_last is False
    with pytest.raises(Exception, match="model.channels_last must be true, false or auto"):
        instantiate(compose_train(["model.channels_last=sometimes"], tmp_path).module, _recursive_=False)


def test_runtime_keys_are_not_constructor_arguments() -> None:
    net = build_network({"name": "espcn", "scale": 2, "compile": True, "channels_last": False})
    assert isinstance(net, torch.nn.Module)


def test_metrics_and_bicubic_are_exact_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    hr = torch.rand(2, 3, 40, 40)
    sr = (hr + 0.03 * torch.randn_like(hr)).clamp(0, 1)
    lr = torch.rand(2, 3, 20, 20)
    results = []
    for enabled in (False, True):
        metric = SRMetrics(border=2)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            metric.update(sr, hr, torch.arange(2))
            bic = Bicubic(2)(lr)
        results.append((metric.compute(), bic))
    (m32, b32), (m16, b16) = results
    assert m16["psnr"].item() == m32["psnr"].item() and m16["ssim"].item() == m32["ssim"].item()
    assert torch.equal(b16, b32)


def test_auto_workers_none_on_cpu_spare_cores_per_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_num_workers() == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert default_num_workers() == 7


@pytest.mark.slow
def test_compiled_training_writes_checkpoints_that_load_either_way(tmp_path: Path) -> None:
    compiled_dir, plain_dir = tmp_path / "compiled", tmp_path / "plain"
    summary = train(compose_train([*FAST, "model.compile=true"], compiled_dir))
    assert summary["compile"] is True and summary["final"]["psnr"] > 0
    ckpt = compiled_dir / "checkpoints" / "last.ckpt"
    state = load_checkpoint_file(ckpt)["state_dict"]
    assert state and all(k.startswith("net.") and "_orig_mod" not in k for k in state)
    plain = SRLitModule(**{**state_hparams(ckpt)})
    plain.load_state_dict(state)  # strict: same keys without compile
    # ... and a plain checkpoint resumes into a compiled run.
    train(compose_train([*FAST, "trainer.max_steps=2"], plain_dir))
    resumed = train(compose_train([*FAST, "model.compile=true", f"ckpt_path={plain_dir / 'checkpoints' / 'last.ckpt'}"], tmp_path / "resumed"))
    assert resumed["steps"] == 4


def state_hparams(ckpt: Path) -> dict:
    return dict(load_checkpoint_file(ckpt)["hyper_parameters"])


@pytest.mark.parametrize(("model", "expected"), [("espcn", True), ("swinir_light", False)])
def test_upscale_engine_uses_channels_last_for_convolutional_networks_in_bf16(model: str, expected: bool) -> None:
    from sr_experiments.inference.engines import torch_engine

    spec = {"name": model, "scale": 2}
    assert torch_engine(build_network(spec), spec, torch.device("cpu"), "bf16").channels_last is expected
    assert torch_engine(build_network(spec), spec, torch.device("cpu"), "32").channels_last is False
