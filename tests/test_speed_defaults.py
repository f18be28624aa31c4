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
from sr_experiments.models.weights import read_weights
from sr_experiments.data.datamodule import default_num_workers
from sr_experiments.runs.distributed import launch_rank
from sr_experiments.hardware import choose_channels_last
from sr_experiments.training.module import SRLitModule
from sr_experiments.evaluation.metrics import SRMetrics
from sr_experiments.models import build_network
from sr_experiments.models.bicubic import Bicubic
from sr_experiments.runs.run import train


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

    def measure(self, modes: list[speed.Mode], budget: speed.Budget | None = None):
        return speed.measure_modes(modes, self.make_step, clock=self, budget=budget)


def choose_cpu(measure, precision="auto", channels_last="auto", spec=SPEC, batch=4, patch=16, rank=0):
    net = build_network(spec)
    step = speed.TrainingStep(batch, patch, 2, torch.nn.functional.l1_loss, lambda p: torch.optim.Adam(list(p)))
    return speed.choose_training(net, spec, step, precision=precision, channels_last=channels_last, device="cpu",
                                 rank=rank, measure=measure)


@pytest.fixture(autouse=True)
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU of these tests has native bf16 (AVX512-BF16), so that bf16 is a candidate to time;
    tests of a CPU without it set the flags to none."""
    monkeypatch.setattr(speed, "cpu_bf16_flags", lambda: ["avx512_bf16"])


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
    # Every mode runs its first step; rounds of timed steps only as far as the budget holds (none of
    # the 1.3-2.1 s Xeon steps), never more than 8; the whole stays within the budget and one step.
    assert all(1 <= n <= 1 + 8 * 20 for n in clock.calls.values())
    assert clock.now <= speed.CALIBRATION_BUDGET_S + max(times.values()) / 1000


@pytest.mark.parametrize(("bf16_ms", "winner"), [(705.0, "fp32-cl"), (680.0, "bf16-cl")])
def test_a_lower_precision_must_win_by_more_than_noise(cache: Path, bf16_ms: float, winner: str) -> None:
    choice = choose_cpu(FakeClock({"fp32": 900.0, "fp32-cl": 720.0, "bf16": 900.0, "bf16-cl": bf16_ms}).measure)
    assert choice.mode.name == winner  # 2% faster: fp32 kept (exact); 5.6% faster: bf16


def test_clearly_slower_modes_stop_early_and_the_budget_holds() -> None:
    clock = FakeClock({"fp32": 300.0, "fp32-cl": 250.0, "bf16": 600.0, "bf16-cl": 550.0})
    timings = speed.measure_modes(speed.candidate_modes("cpu"), clock.make_step, clock=clock)
    assert clock.calls["bf16"] == clock.calls["bf16-cl"] == 2  # first step + one round: over 2x, dropped
    assert clock.calls["fp32"] == clock.calls["fp32-cl"] >= 4 and clock.now <= speed.CALIBRATION_BUDGET_S
    assert set(timings.step_ms) == {"fp32", "fp32-cl", "bf16", "bf16-cl"} and not timings.noisy
    emulated = FakeClock({"fp32": 300.0, "fp32-cl": 250.0, "bf16": 1200.0, "bf16-cl": 1100.0})
    timings = speed.measure_modes(speed.candidate_modes("cpu"), emulated.make_step, clock=emulated)
    assert emulated.calls["bf16"] == emulated.calls["bf16-cl"] == 1  # over 3x at the first step: dropped at once
    assert set(timings.step_ms) == {"fp32", "fp32-cl"} and "dropped after its first step" in timings.skipped["bf16"]


def test_a_first_step_over_the_budget_is_dropped_at_once_and_nothing_starts_after_it() -> None:
    # The EPYC under load, had it bf16 flags: bf16 13-41 s a step against 0.3-0.4 s for fp32.
    clock = FakeClock({"fp32": 400.0, "fp32-cl": 300.0, "bf16": 13000.0, "bf16-cl": 41000.0})
    timings = speed.measure_modes(speed.candidate_modes("cpu"), clock.make_step, clock=clock)
    assert clock.calls["bf16"] == 1 and clock.calls["bf16-cl"] == 0  # one step, then the budget is spent
    assert "dropped after its first step (13.00 s" in timings.skipped["bf16"]
    assert "not timed" in timings.skipped["bf16-cl"] and set(timings.step_ms) == {"fp32", "fp32-cl"}
    assert clock.now <= speed.CALIBRATION_BUDGET_S + 13.0 + 0.3


def test_a_large_network_is_judged_by_its_first_steps_within_the_budget() -> None:
    # The model=deep on its loaded EPYC: fp32 4.2 s a step, fp32-cl 2.8 s.
    slow = FakeClock({"fp32": 4200.0, "fp32-cl": 2800.0, "bf16": 2000.0, "bf16-cl": 1500.0})
    timings = speed.measure_modes(speed.candidate_modes("cpu"), slow.make_step, clock=slow)
    # fp32's two layouts are always compared; after them no other step, nor a round of timed steps, fits.
    assert slow.calls == {"fp32": 1, "fp32-cl": 1, "bf16": 0, "bf16-cl": 0} and slow.now == pytest.approx(7.0)
    assert timings.step_ms == {"fp32": 4200.0, "fp32-cl": 2800.0} and "8.0 s were spent" in timings.skipped["bf16"]
    huge = FakeClock({"fp32": 9000.0, "fp32-cl": 8000.0, "bf16": 100.0, "bf16-cl": 100.0})
    timings = speed.measure_modes(speed.candidate_modes("cpu"), huge.make_step, clock=huge)
    assert huge.calls == {"fp32": 1, "fp32-cl": 1, "bf16": 0, "bf16-cl": 0} and timings.step_ms == {"fp32": 9000.0, "fp32-cl": 8000.0}


def test_a_short_run_bounds_the_calibration_to_a_share_of_its_time() -> None:
    clock = FakeClock({"fp32": 100.0, "fp32-cl": 90.0, "bf16": 95.0, "bf16-cl": 85.0})
    speed.measure_modes(speed.candidate_modes("cpu"), clock.make_step, clock=clock, budget=speed.Budget(8.0, run_steps=100))
    # 100 steps of ~0.1 s: 10 s of training, so ~1 s of calibration (10%), not 8.
    assert clock.now <= 1.0 + 0.1


def test_modes_the_device_lacks_are_never_timed(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(speed, "cpu_bf16_flags", lambda: [])  # AVX2 only, as the EPYC
    assert [m.name for m in speed.candidate_modes("cpu")] == ["fp32", "fp32-cl"]
    assert [m.name for m in speed.candidate_modes("cpu", "bf16")] == ["bf16", "bf16-cl"]  # asked for: run
    clock = FakeClock({"fp32": 400.0, "fp32-cl": 300.0, "bf16": 13000.0, "bf16-cl": 41000.0})
    announced = []

    def measure(modes, budget):
        announced.append(caplog.text)  # what was said before the first step
        return clock.measure(modes, budget)

    with caplog.at_level("INFO"):
        choice = choose_cpu(measure)
    assert clock.calls["bf16"] == clock.calls["bf16-cl"] == 0 and choice.mode.name == "fp32-cl"
    assert "speed: measuring fp32, fp32-cl on" in announced[0] and "at most ~8 s" in announced[0]
    assert "no native bf16" in announced[0] and "no native bf16" in choice.skipped["bf16"]
    only = choose_cpu(pytest.fail, channels_last=True)  # fp32-cl alone is left: nothing to measure
    assert only.mode.name == "fp32-cl" and "the only precision" in only.precision.reason
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (6, 1))  # a GTX 1080: slow fp16, no bf16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert [m.name for m in speed.candidate_modes("cuda", "auto", False)] == ["fp32"]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    assert [m.name for m in speed.candidate_modes("cuda", "auto", False)] == ["fp32", "fp16"]


def test_noisy_timings_are_measured_again_once_the_machine_is_quieter(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def measure(modes, budget):
        calls.append(([m.name for m in modes], budget.seconds))
        return speed.Timings({m.name: EPYC[m.name] for m in modes}, noisy="the two fastest steps of fp32 differ by 40%")

    monkeypatch.setattr(speed, "machine_busy", lambda device: "load 4.0 on 2 CPUs")
    first = choose_cpu(measure)
    assert "noisy" in first.reason and "load 4.0" in first.reason
    assert choose_cpu(measure).cached and len(calls) == 1  # still busy: reused
    monkeypatch.setattr(speed, "machine_busy", lambda device: "")
    entries = json.loads(cache.read_text())
    (key,) = entries
    speed.write_cache(key, {**entries[key], "calibration_s": 3.0})  # the first calibration took 3 s
    again = choose_cpu(measure)
    assert not again.cached and len(calls) == 2  # quieter: measured again...
    # ... the contenders only (bf16-cl 372, bf16 389 ms; fp32's are 2x slower), in no more time than the first.
    assert calls[1] == (["bf16", "bf16-cl"], 3.0)
    assert set(again.step_ms) == set(EPYC) and again.mode.name == "bf16-cl"


def test_a_mode_that_cannot_run_is_skipped(cache: Path) -> None:
    clock = FakeClock(EPYC)

    def make_step(mode):
        if mode.kind == "bf16":
            raise RuntimeError("bf16 autocast is not supported here\nlong trace")
        return clock.make_step(mode)

    choice = choose_cpu(lambda modes, budget: speed.measure_modes(modes, make_step, clock=clock, budget=budget))
    assert choice.mode.name == "fp32-cl" and choice.skipped == {m: "bf16 autocast is not supported here" for m in ("bf16", "bf16-cl")}


def test_cache_hit_measures_nothing_and_is_keyed_by_network_and_shape(cache: Path) -> None:
    calls = []

    def measure(modes, budget):
        calls.append(1)
        return FakeClock(EPYC).measure(modes, budget)

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
    choice = choose_cpu(lambda modes, budget: pytest.fail("nothing to measure"), precision=32, channels_last=False)
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
    # Timed, or left out for the budget (1 s here); fp32's two layouts are always timed.
    assert set(choice["step_ms"]) | set(choice["skipped"]) == {"fp32", "fp32-cl", "bf16", "bf16-cl"}
    assert {"fp32", "fp32-cl"} <= set(choice["step_ms"]) and choice["calibration_s"] > 0
    mode = next(m for m in speed.candidate_modes("cpu") if m.name == choice["mode"])
    assert saved["precision"] == mode.precision and saved["channels_last"] is mode.channels_last
    assert f"precision: {saved['precision']} ({saved['precision_reason']})" in caplog.text
    assert "memory format: " in caplog.text and choice["mode"] in saved["precision_reason"]
    assert cached["speed_choice"]["mode"] == choice["mode"] and cached["channels_last"] is mode.channels_last
    # Measuring leaves the seeded run untouched: the same weights whether it measured or read the cache.
    weights = [read_weights(tmp_path / d / "checkpoints" / "last.ckpt")["state_dict"] for d in ("measured", "cached")]
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
                              lambda modes, budget: speed.measure_modes(modes, lambda m: lambda: None), run_steps=steps)
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
    state = read_weights(ckpt)["state_dict"]
    assert state and all(k.startswith("net.") and "_orig_mod" not in k for k in state)
    plain = SRLitModule(**{**state_hparams(ckpt)})
    plain.load_state_dict(state)  # strict: same keys without compile
    # ... and a plain checkpoint resumes into a compiled run.
    train(compose_train([*FAST, "trainer.max_steps=2"], plain_dir))
    resumed = train(compose_train([*FAST, "model.compile=true", f"ckpt_path={plain_dir / 'checkpoints' / 'last.ckpt'}"], tmp_path / "resumed"))
    assert resumed["steps"] == 4


def state_hparams(ckpt: Path) -> dict:
    return dict(read_weights(ckpt)["hyper_parameters"])


@pytest.mark.parametrize(("winner", "precision", "channels_last"), [("fp32", "auto", "auto"), ("bf16-cl", "auto", "auto"),
                                                                  ("bf16", "bf16", "auto"), ("fp32-cl", "32", "auto")])
def test_upscale_engine_runs_the_measured_mode(cache: Path, winner: str, precision: str, channels_last: str) -> None:
    from sr_experiments.methods.engines import torch_engine

    spec = {"name": "espcn", "scale": 2}
    times = {m: (100.0 if m == winner else 300.0) for m in ("fp32", "fp32-cl", "bf16", "bf16-cl")}
    engine = torch_engine(build_network(spec), spec, torch.device("cpu"), precision, channels_last, measure=FakeClock(times).measure)
    assert engine.speed.mode.name == winner and engine.channels_last is winner.endswith("-cl")
    assert (engine.precision.autocast_dtype is torch.bfloat16) is winner.startswith("bf16")
    conv = next(m for m in engine.forward.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) is engine.channels_last
    assert engine(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


def test_upscale_engine_measures_for_real_and_caches(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sr_experiments.methods.engines import torch_engine

    monkeypatch.setattr(speed, "machine_busy", lambda device: "busy")  # noisy or not, the second call reads the cache
    spec = {"name": "espcn", "scale": 2}
    first = torch_engine(build_network(spec), spec, torch.device("cpu"), "auto").speed
    again = torch_engine(build_network(spec), spec, torch.device("cpu"), "auto").speed
    # (with native bf16 pretended: this CPU's emulated bf16 is dropped after its first step, or not started)
    assert set(first.step_ms) | set(first.skipped) == {"fp32", "fp32-cl", "bf16", "bf16-cl"} and not first.cached
    assert {"fp32", "fp32-cl"} <= set(first.step_ms)
    assert again.cached and again.mode == first.mode
    bicubic = torch_engine(build_network({"name": "bicubic", "scale": 2}), {"name": "bicubic", "scale": 2},
                           torch.device("cpu"), "auto")
    assert bicubic.speed.mode.name == "fp32" and "no parameters" in bicubic.precision.reason
