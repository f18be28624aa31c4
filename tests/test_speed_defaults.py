"""Speed defaults: precision and layout chosen by measuring (fake timers force each branch), cached
per machine and configuration, said why; metrics in full precision under autocast; torch.compile
with portable checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import FAST, compose_train
from hydra.utils import instantiate

from sr_experiments import speed
from sr_experiments.models.loading import load_checkpoint_file
from sr_experiments.data.datamodule import default_num_workers
from sr_experiments.training.distributed import launch_rank
from sr_experiments.hardware import choose_channels_last
from sr_experiments.training.module import SRLitModule
from sr_experiments.evaluation.metrics import SRMetrics
from sr_experiments.models import build_network
from sr_experiments.models.bicubic import Bicubic
from sr_experiments.training.run import train


# Step times (ms) of the Intel Xeon with AVX512-BF16 and no AMX: bf16 is slower than fp32.
XEON = {"fp32": 1441.0, "fp32-cl": 1283.0, "bf16-cl": 1970.0, "bf16": 2130.0}
EPYC = {"fp32": 850.0, "fp32-cl": 720.0, "bf16-cl": 372.0, "bf16": 389.0}
SPEC = {"name": "edsr", "scale": 2, "depth": 2, "width": 8}


class FakeClock:
    """Time that passes only when a fake step runs: the step of mode m takes ``times[m]`` ms."""

    def __init__(self, times: dict[str, float]) -> None:
        self.now, self.times, self.calls = 0.0, times, dict.fromkeys(times, 0)

    def __call__(self) -> float:
        return self.now

    def make_step(self, mode: speed.Mode):
        def step() -> None:
            self.calls[mode.name] += 1
            self.now += self.times[mode.name] / 1000

        return step

    def measure(self, modes: list[speed.Mode]):
        return speed.measure_modes(modes, self.make_step, clock=self)


def choose_cpu(measure, precision="auto", channels_last="auto", spec=SPEC, batch=4, patch=16, rank=0):
    net = build_network(spec)
    return speed.choose_training(net, spec, precision=precision, channels_last=channels_last, device="cpu", batch=batch,
                                 patch=patch, scale=2, loss_fn=torch.nn.functional.l1_loss,
                                 optimizer=lambda p: torch.optim.Adam(list(p)), rank=rank, measure=measure)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "speed.json"


@pytest.mark.parametrize(("times", "winner", "precision", "channels_last"), [
    (XEON, "fp32-cl", "32", True),  # bf16 flags present, bf16 slower: fp32 wins
    ({**XEON, "fp32": 1200.0}, "fp32", "32", False),
    (EPYC, "bf16-cl", "bf16-mixed", True),
    ({**EPYC, "bf16": 300.0}, "bf16", "bf16-mixed", False),
])
def test_auto_picks_the_mode_that_measures_fastest(cache: Path, times, winner, precision, channels_last) -> None:
    clock = FakeClock(times)
    choice = choose_cpu(clock.measure)
    assert choice.mode.name == winner and not choice.cached
    assert choice.precision.precision == precision and choice.mode.channels_last is channels_last
    assert choice.step_ms[winner] == pytest.approx(times[winner])
    assert winner in choice.reason and "calibration" in choice.precision.reason
    assert json.loads(cache.read_text())  # cached for the next run
    # Modes clearly slower than the best stop after one round; none runs more than 8 rounds.
    assert all(2 <= n <= 1 + 8 * 20 for n in clock.calls.values())


@pytest.mark.parametrize(("bf16_ms", "winner"), [(705.0, "fp32-cl"), (680.0, "bf16-cl")])
def test_a_lower_precision_must_win_by_more_than_noise(cache: Path, bf16_ms: float, winner: str) -> None:
    choice = choose_cpu(FakeClock({"fp32": 900.0, "fp32-cl": 720.0, "bf16": 900.0, "bf16-cl": bf16_ms}).measure)
    assert choice.mode.name == winner  # 2% faster: fp32 kept (exact); 5.6% faster: bf16


def test_clearly_slower_modes_stop_early_and_the_budget_holds() -> None:
    clock = FakeClock({"fp32": 300.0, "fp32-cl": 250.0, "bf16": 1200.0, "bf16-cl": 1100.0})  # emulated bf16
    timings = speed.measure_modes(speed.candidate_modes("cpu"), clock.make_step, clock=clock)
    assert clock.calls["bf16"] == clock.calls["bf16-cl"] == 2  # warm-up + one round
    assert clock.calls["fp32"] == clock.calls["fp32-cl"] >= 4 and clock.now <= speed.CALIBRATION_BUDGET_S
    assert set(timings.step_ms) == {"fp32", "fp32-cl", "bf16", "bf16-cl"} and not timings.noisy
    slow = FakeClock({"fp32": 3000.0, "fp32-cl": 2500.0, "bf16": 2000.0, "bf16-cl": 1500.0})
    speed.measure_modes(speed.candidate_modes("cpu"), slow.make_step, clock=slow)
    assert set(slow.calls.values()) == {2}  # over the budget: one round, never none


def test_noisy_timings_are_measured_again_once_the_machine_is_quieter(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def measure(modes):
        calls.append(1)
        return speed.Timings(dict(EPYC), noisy="the two fastest steps of fp32 differ by 40%")

    monkeypatch.setattr(speed, "machine_busy", lambda device: "load 4.0 on 2 CPUs")
    first = choose_cpu(measure)
    assert "noisy" in first.reason and "load 4.0" in first.reason
    assert choose_cpu(measure).cached and len(calls) == 1  # still busy: reused
    monkeypatch.setattr(speed, "machine_busy", lambda device: "")
    assert not choose_cpu(measure).cached and len(calls) == 2  # quieter: measured again


def test_a_mode_that_cannot_run_is_skipped(cache: Path) -> None:
    clock = FakeClock(EPYC)

    def make_step(mode):
        if mode.kind == "bf16":
            raise RuntimeError("bf16 autocast is not supported here\nlong trace")
        return clock.make_step(mode)

    choice = choose_cpu(lambda modes: speed.measure_modes(modes, make_step, clock=clock))
    assert choice.mode.name == "fp32-cl" and choice.skipped == {m: "bf16 autocast is not supported here" for m in ("bf16", "bf16-cl")}


def test_cache_hit_measures_nothing_and_is_keyed_by_network_and_shape(cache: Path) -> None:
    calls = []

    def measure(modes):
        calls.append(1)
        return FakeClock(EPYC).measure(modes)

    first, again = choose_cpu(measure), choose_cpu(measure)
    assert len(calls) == 1 and again.cached and not first.cached
    assert again.mode == first.mode and again.step_ms == first.step_ms and "cached" in again.reason
    for other in ({"spec": {**SPEC, "depth": 3}}, {"spec": {"name": "espcn", "scale": 2, "width": 8}}, {"patch": 24}, {"batch": 8},
                  {"channels_last": True}):
        choose_cpu(measure, **other)
    assert len(calls) == 6  # another network, shape or candidate set is measured afresh
    fields = speed.cache_fields("train", "cpu", {**SPEC, "compile": True, "pretrained": "x.pth"}, {"batch": 4}, [])
    assert fields["network"] == SPEC and fields["machine"] == speed.machine_name("cpu")
    assert speed.cache_path() == cache


def test_explicit_settings_fix_their_axis(cache: Path) -> None:
    names = lambda *a: [m.name for m in speed.candidate_modes("cpu", *a)]  # noqa: E731
    assert names("32", "auto") == ["fp32", "fp32-cl"] and names("bf16", "auto") == ["bf16", "bf16-cl"]
    assert names("auto", True) == ["fp32-cl", "bf16-cl"] and names("32-true", False) == ["fp32"]
    choice = choose_cpu(lambda modes: pytest.fail("nothing to measure"), precision=32, channels_last=False)
    assert choice.mode.name == "fp32" and "explicitly" in choice.precision.reason and not cache.exists()
    with pytest.raises(ValueError, match="model.channels_last must be true, false or auto"):
        speed.candidate_modes("cpu", "auto", "sometimes")


def test_cuda_candidates_include_tf32_and_fp16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    modes = speed.candidate_modes("cuda", "auto", False)
    assert [(m.name, m.precision, m.tf32) for m in modes] == [
        ("fp32", "32", False), ("tf32", "32", True), ("bf16", "bf16-mixed", None), ("fp16", "16-mixed", None)]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert [m.name for m in speed.candidate_modes("cuda")] == ["fp32", "fp32-cl", "fp16", "fp16-cl"]
    assert [m.tf32 for m in speed.candidate_modes("cuda", "32")] == [None, None]  # explicit: torch's defaults
    assert speed.pick(modes, {"fp32": 10.0, "tf32": 5.0, "bf16": 4.9, "fp16": 4.0})[0].name == "fp16"
    assert speed.pick(modes, {"fp32": 10.0, "tf32": 4.9, "bf16": 4.85, "fp16": 4.8})[0].name == "tf32"


def test_other_ranks_run_what_rank_0_chose(cache: Path) -> None:
    with pytest.raises(RuntimeError, match="rank 0's speed calibration"):
        speed.choose("train", "cpu", SPEC, {"batch": 4}, "auto", "auto", pytest.fail, rank=1, wait_s=0.1)
    chosen = speed.choose("train", "cpu", SPEC, {"batch": 4}, "auto", "auto", FakeClock(XEON).measure)
    other = speed.choose("train", "cpu", SPEC, {"batch": 4}, "auto", "auto", pytest.fail, rank=1, wait_s=0.1)
    assert other.mode == chosen.mode and other.cached


def test_launch_rank_reads_the_launcher_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "NODE_RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert launch_rank() == 0
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launch_rank() == 1


def test_run_records_its_measured_choice_and_trains_the_same_from_the_cache(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(speed, "CALIBRATION_BUDGET_S", 1.0)
    monkeypatch.setattr(speed, "CALIBRATION_SHARE", math.inf)  # a 4-step run measures all the same
    monkeypatch.setattr(speed, "machine_busy", lambda device: "busy")  # noisy or not, the second run reads the cache
    cfg = compose_train(FAST, tmp_path / "measured")
    assert cfg.trainer.precision == "auto" and cfg.model.channels_last == "auto"
    with caplog.at_level("INFO"):
        measured = train(cfg)
    cached = train(compose_train(FAST, tmp_path / "cached"))
    saved = json.loads((tmp_path / "measured" / "metrics.json").read_text())
    choice = saved["speed_choice"]
    assert not choice["cached"] and cached["speed_choice"]["cached"]
    assert set(choice["step_ms"]) == {"fp32", "fp32-cl", "bf16", "bf16-cl"} and choice["calibration_s"] > 0
    mode = next(m for m in speed.candidate_modes("cpu") if m.name == choice["mode"])
    assert saved["precision"] == mode.precision and saved["channels_last"] is mode.channels_last
    assert f"precision: {saved['precision']} ({saved['precision_reason']})" in caplog.text
    assert "memory format: " in caplog.text and choice["mode"] in saved["precision_reason"]
    assert cached["speed_choice"]["mode"] == choice["mode"] and cached["channels_last"] is mode.channels_last
    # Measuring leaves the seeded run untouched: the same weights whether it measured or read the cache.
    weights = [load_checkpoint_file(tmp_path / d / "checkpoints" / "last.ckpt")["state_dict"] for d in ("measured", "cached")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert measured["final"] == cached["final"]


def test_run_follows_the_timings(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    times = {"fp32": 300.0, "fp32-cl": 200.0, "bf16": 200.0, "bf16-cl": 100.0}
    monkeypatch.setattr(speed, "CALIBRATION_SHARE", math.inf)
    monkeypatch.setattr(speed, "measure_modes", lambda modes, make_step, **k: speed.Timings({m.name: times[m.name] for m in modes}))
    summary = train(compose_train([*FAST, "trainer.max_steps=1"], tmp_path))
    assert summary["precision"] == "bf16-mixed" and summary["channels_last"] is True and summary["speed_choice"]["mode"] == "bf16-cl"


def test_a_run_too_short_to_pay_for_calibration_runs_fp32_unmeasured(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    measured = []
    monkeypatch.setattr(speed, "measure_modes", lambda modes, make_step, **k: measured.append(1) or speed.Timings({m.name: 1.0 for m in modes}))
    # 4 candidate modes: a calibration runs 8+ steps, more than 10% of a 79-step run, not of an 80-step one.
    for steps, expect_measured in ((79, False), (80, True)):
        choice = speed.choose("train", "cpu", {"name": "espcn"}, {"batch": 1}, "auto", "auto",
                              lambda modes: speed.measure_modes(modes, lambda m: lambda: None), run_steps=steps)
        assert bool(measured) is expect_measured
    assert speed.choose("train", "cpu", {"name": "espcn"}, {"batch": 2}, "auto", "auto", pytest.fail, run_steps=79).mode.name == "fp32"
    summary = train(compose_train([*FAST, "trainer.max_steps=2"], tmp_path))
    assert summary["precision"] == "32" and summary["channels_last"] is False and "not measured" in summary["precision_reason"]
    # Neither the short choice nor the short run measured or wrote anything: only the 80-step entry is cached.
    assert len(measured) == 1 and not summary["speed_choice"]["step_ms"] and len(json.loads(cache.read_text())) == 1


def test_explicit_run_settings_measure_nothing(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speed, "measure_modes", lambda *a, **k: pytest.fail("nothing to measure"))
    summary = train(compose_train([*FAST, "trainer.max_steps=1", "trainer.precision=32", "model.channels_last=true"], tmp_path))
    assert summary["precision"] == "32" and summary["channels_last"] is True
    assert summary["precision_reason"] == "precision=32 was set explicitly" and not cache.exists()


@pytest.mark.parametrize(("model", "expected"), [("edsr", True), ("espcn", True), ("imdn", True), ("swinir_light", False)])
def test_unmeasured_module_uses_the_convolution_rule(model: str, expected: bool) -> None:
    net = build_network({"name": model, "scale": 2})
    on, why = choose_channels_last(net, "auto")
    assert on is expected and "convolutions" in why


def test_channels_last_weights_and_inputs(tmp_path: Path) -> None:
    module = instantiate(compose_train([], tmp_path).module, _recursive_=False)
    conv = next(m for m in module.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    batch = module.on_after_batch_transfer({"lq": torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "gt": torch.zeros(2, 3, 16, 16, dtype=torch.uint8)}, 0)
    assert batch["lq"].is_contiguous(memory_format=torch.channels_last) and batch["lq"].dtype == torch.float32
    off = instantiate(compose_train(["model.channels_last=false"], tmp_path).module, _recursive_=False)
    assert all(p.is_contiguous() for p in off.net.parameters()) and off.channels_last is False
    with pytest.raises(Exception, match="model.channels_last must be true, false or auto"):
        instantiate(compose_train(["model.channels_last=sometimes"], tmp_path).module, _recursive_=False)


def test_runtime_keys_are_not_constructor_arguments() -> None:
    net = build_network({"name": "espcn", "scale": 2, "compile": True, "channels_last": False})
    assert isinstance(net, torch.nn.Module)


def test_metrics_and_bicubic_are_exact_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    gt = torch.rand(2, 3, 40, 40)
    sr = (gt + 0.03 * torch.randn_like(gt)).clamp(0, 1)
    lq = torch.rand(2, 3, 20, 20)
    results = []
    for enabled in (False, True):
        metric = SRMetrics(border=2)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
            metric.update(sr, gt, torch.arange(2))
            bic = Bicubic(2)(lq)
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


@pytest.mark.parametrize(("winner", "precision", "channels_last"), [("fp32", "auto", "auto"), ("bf16-cl", "auto", "auto"),
                                                                  ("bf16", "bf16", "auto"), ("fp32-cl", "32", "auto")])
def test_upscale_engine_runs_the_measured_mode(cache: Path, winner: str, precision: str, channels_last: str) -> None:
    from sr_experiments.inference.engines import torch_engine

    spec = {"name": "espcn", "scale": 2}
    times = {m: (100.0 if m == winner else 300.0) for m in ("fp32", "fp32-cl", "bf16", "bf16-cl")}
    engine = torch_engine(build_network(spec), spec, torch.device("cpu"), precision, channels_last, measure=FakeClock(times).measure)
    assert engine.speed.mode.name == winner and engine.channels_last is winner.endswith("-cl")
    assert (engine.precision.autocast_dtype is torch.bfloat16) is winner.startswith("bf16")
    conv = next(m for m in engine.forward.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) is engine.channels_last
    assert engine(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


def test_upscale_engine_measures_for_real_and_caches(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sr_experiments.inference.engines import torch_engine

    monkeypatch.setattr(speed, "machine_busy", lambda device: "busy")  # noisy or not, the second call reads the cache
    spec = {"name": "espcn", "scale": 2}
    first = torch_engine(build_network(spec), spec, torch.device("cpu"), "auto").speed
    again = torch_engine(build_network(spec), spec, torch.device("cpu"), "auto").speed
    assert set(first.step_ms) == {"fp32", "fp32-cl", "bf16", "bf16-cl"} and not first.cached
    assert again.cached and again.mode == first.mode
    bicubic = torch_engine(build_network({"name": "bicubic", "scale": 2}), {"name": "bicubic", "scale": 2},
                           torch.device("cpu"), "auto")
    assert bicubic.speed.mode.name == "fp32" and "no parameters" in bicubic.precision.reason
