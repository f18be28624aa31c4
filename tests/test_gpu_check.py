"""bench/gpu_check.py: refusal without CUDA, the data-wait arithmetic, failures and timeouts kept to
one line each, and (slow) its plumbing end to end on the CPU (--device cpu --dry-run)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import gpu_check

SCRIPT = ROOT / "bench" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")], capture_output=True, text=True, check=False,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no CUDA device" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cpu_is_only_for_the_dry_run() -> None:
    assert gpu_check.main(["--device", "cpu"]) == 2


def test_data_wait_share_and_throughput(tmp_path: Path, monkeypatch) -> None:
    """Steps of 100 ms of which 20 ms waiting for the batch; the first (warm-up) one is left out."""
    clock = iter([0.0, 0.02, 0.1, 0.12, 0.2, 0.23, 0.3, 0.32, 0.4])
    monkeypatch.setattr(gpu_check.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    cb = gpu_check.DataWait(str(tmp_path / "speed.json"), warmup=1)
    trainer = SimpleNamespace(world_size=2, is_global_zero=True)
    batch = {"lq": torch.zeros(4, 3, 2, 2)}
    cb.on_train_epoch_start()
    cb._end = next(clock)  # the end of a step before: 0.0
    for _ in range(4):
        cb.on_train_batch_start()
        cb.on_train_batch_end(trainer, None, None, batch, 0)
    cb.on_train_end(trainer, None)
    result = json.loads((tmp_path / "speed.json").read_text())
    assert result["steps"] == 3  # 4 measured, 1 warm-up
    assert result["data_wait_share"] == pytest.approx((0.02 + 0.03 + 0.02) / 0.3)
    assert result["patches_per_s"] == pytest.approx(3 * 8 / 0.3)  # batch 4 x world size 2 per step
    assert result["step_ms"] == pytest.approx(100)


def _check(tmp_path: Path, budget: float = 60) -> gpu_check.Check:
    args = SimpleNamespace(out=tmp_path, budget=budget, device="cpu", data=None)
    return gpu_check.Check(args)


def test_failures_and_timeouts_are_lines_not_crashes(tmp_path: Path) -> None:
    check = _check(tmp_path)
    ok, _ = check.step("fails", [sys.executable, "-c", "import sys; print('bad input: x.png'); sys.exit(3)"], 30)
    assert not ok
    marker = tmp_path / "grandchild_alive"
    # A child that starts a grandchild (as DDP ranks and Ray workers are) and outlives the limit:
    # the whole process group is stopped.
    grandchild = tmp_path / "grandchild.py"
    grandchild.write_text(f"import time\ntime.sleep(3)\nopen({str(marker)!r}, 'w').close()\n")
    code = f"import subprocess, sys, time; subprocess.Popen([sys.executable, {str(grandchild)!r}]); time.sleep(60)"
    start = time.monotonic()
    ok, _ = check.step("hangs", [sys.executable, "-c", code], 1.5)
    assert not ok and time.monotonic() - start < 20
    time.sleep(4)
    assert not marker.exists()
    rows = {r["part"]: r for r in check.rows}
    assert rows["fails"]["status"] == "failed" and "exit 3: bad input: x.png" in rows["fails"]["detail"]
    assert rows["hangs"]["status"] == "timeout"
    text = gpu_check.section(check, "cpu", 5.0)
    assert "| fails | failed | exit 3: bad input: x.png (log: fails.log) |" in text and "| hangs | timeout |" in text


def test_a_spent_budget_skips_the_rest(tmp_path: Path) -> None:
    check = _check(tmp_path, budget=5)
    ok, _ = check.step("late", [sys.executable, "-c", "pass"], 30)
    assert not ok and check.rows[0]["status"] == "skipped" and "budget" in check.rows[0]["detail"]


@pytest.mark.slow
def test_dry_run_records_a_section_in_benchmarks(tmp_path: Path) -> None:
    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text("# Benchmarks\n")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--dry-run", "--parts", "memory,eval", "--models", "edsr",
         "--out", str(tmp_path / "out"), "--benchmarks", str(bench)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = bench.read_text()
    assert text.startswith("# Benchmarks\n\n## GPU check: cpu (dry run")
    assert "| train_edsr_memory | ok |" in text and "patches/s, data wait" in text
    assert "| eval | ok | Set5 x4:" in text or "| eval | ok | SampleVal x4:" in text
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["part"] for r in results["parts"]] == ["train_edsr_memory", "eval"]


def test_an_error_reading_a_part_is_its_line(tmp_path: Path) -> None:
    check = _check(tmp_path)

    def broken(check: gpu_check.Check) -> None:
        raise FileNotFoundError("metrics.json: no such file\nmore")

    gpu_check.guarded(check, "train_edsr_memory", broken)
    assert check.rows[0]["status"] == "failed" and check.rows[0]["detail"] == "FileNotFoundError: metrics.json: no such file"
