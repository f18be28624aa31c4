"""compare.py: tables and plots from metrics.json files, synthetic and from a real sweep."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from sr_experiments.config_values import parse_overrides
from sr_experiments.tools.compare import by_psnr, compare, find_runs, table_rows, varying_keys

PNG = b"\x89PNG\r\n\x1a\n"


def write_run(root: Path, name: str, overrides: list[str], psnr: float, steps: int = 10, params: int = 1000,
              network: str | None = None) -> None:
    run = root / name
    run.mkdir(parents=True)
    history = [{"step": s, "psnr": psnr - (steps - s) * 0.1, "ssim": 0.9} for s in range(2, steps + 1, 2)]
    metrics = {"params": params, "best": max(history, key=lambda h: h["psnr"]), "bicubic": {"psnr": 30.0, "ssim": 0.85},
               "history": history, "steps": steps, "train_seconds": 12.3,
               "overrides": [*overrides, "trainer.max_steps=10", f"paths.data_dir=/data/{name}"],
               **({"network": network} if network else {})}
    (run / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    psnr = {("1e-4", 8): 31.0, ("1e-4", 16): 31.5, ("1e-3", 8): 32.0, ("1e-3", 16): 32.5, ("1e-2", 8): 30.5, ("1e-2", 16): 29.0}
    for i, ((lr, depth), p) in enumerate(psnr.items()):
        write_run(tmp_path / "sweep", str(i), [f"lr={lr}", f"model.depth={depth}"], p)
    return tmp_path / "sweep"


def test_parse_overrides_drops_locations() -> None:
    assert parse_overrides(["lr=1e-3", "+x=1", "paths.data_dir=/d", "hydra.run.dir=/r", "model=deep"]) == {
        "lr": "1e-3", "x": "1", "model": "deep"}


def test_table_is_sorted_by_psnr_and_names_the_varied_keys(grid: Path) -> None:
    runs = find_runs([grid])
    assert varying_keys(runs) == ["lr", "model.depth"]  # max_steps and data_dir do not vary or are dropped
    header, rows = table_rows(runs)
    assert header[:3] == ["run", "params", "best PSNR (dB)"]
    assert [r[0] for r in rows[:2]] == ["lr=1e-3,model.depth=16", "lr=1e-3,model.depth=8"]
    psnrs = [float(r[2]) for r in rows]
    assert psnrs == sorted(psnrs, reverse=True) and len(rows) == 6
    assert rows[0][4] == "2.50" and rows[0][1] == "1,000"  # gain over bicubic, params


def test_compare_writes_table_csv_and_plots(grid: Path, tmp_path: Path) -> None:
    table, written = compare([grid], tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == ["comparison.csv", "comparison.md", "psnr_curves.png", "psnr_vs_lr.png"]
    for p in written:
        assert p.parent == tmp_path / "out" and p.stat().st_size > 0
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG
    assert (tmp_path / "out" / "comparison.md").read_text().strip() == table
    with (tmp_path / "out" / "comparison.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["run", "lr", "model.depth", "params", "best_psnr", "best_ssim", "gain", "steps",
                             "train_seconds", "status", "path"]
    assert rows[0] == {"run": "lr=1e-3,model.depth=16", "lr": "1e-3", "model.depth": "16", "params": "1000",
                       "best_psnr": "32.5", "best_ssim": "0.9", "gain": "2.5", "steps": "10", "train_seconds": "12.3",
                       "status": "finished", "path": str((grid / "3").resolve())}
    assert [(r["lr"], r["model.depth"]) for r in rows[-2:]] == [("1e-2", "8"), ("1e-2", "16")]


def test_csv_keeps_full_values_and_blanks_for_unset_keys(tmp_path: Path) -> None:
    write_run(tmp_path / "s", "0", ["lr=0.0005611516415334506"], 31.0)
    write_run(tmp_path / "s", "1", ["lr=1e-3", "model=deep"], 30.0)
    compare([tmp_path / "s"])
    with (tmp_path / "s" / "comparison.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], r["lr"], r["model"]) for r in rows] == [
        ("lr=0.000561", "0.0005611516415334506", ""), ("lr=1e-3,model=deep", "1e-3", "deep")]


def test_plots_have_axis_labels_titles_and_legends(grid: Path, tmp_path: Path, monkeypatch) -> None:
    import matplotlib.figure

    saved = {}
    real_savefig = matplotlib.figure.Figure.savefig

    def capture(fig, path, *args, **kwargs):
        ax = fig.axes[0]
        legend = ax.get_legend()
        name = Path(path).name  # written to a temporary ".<stem>.<pid>.<ns>.tmp.png", then renamed
        saved[name[1:].split(".")[0] + ".png" if name.startswith(".") else name] = (ax.get_xlabel(), ax.get_ylabel(), ax.get_title(),
                                  [t.get_text() for t in legend.get_texts()] if legend else [],
                                  legend.get_title().get_text() if legend else "")
        real_savefig(fig, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", capture)
    compare([grid], tmp_path / "out")
    x, y, title, entries, legend_title = saved["psnr_curves.png"]
    assert (x, y) == ("training step", "validation PSNR (dB)") and "6 runs" in title
    assert "lr=1e-3,model.depth=16" in entries and "bicubic" in entries and legend_title == "lr, model.depth"
    x, y, title, entries, legend_title = saved["psnr_vs_lr.png"]
    assert (x, y) == ("lr (log scale)", "best validation PSNR (dB)") and title == "Best validation PSNR vs lr"
    assert entries == ["model.depth=8", "model.depth=16", "bicubic"] and legend_title == "model.depth"


def test_one_varied_axis_and_none(tmp_path: Path) -> None:
    for i, lr in enumerate(["1e-4", "1e-3"]):
        write_run(tmp_path / "one", str(i), [f"lr={lr}"], 30 + i)
    _, written = compare([tmp_path / "one"])
    assert (tmp_path / "one" / "psnr_vs_lr.png").is_file()
    write_run(tmp_path / "none", "0", ["model=deep"], 30)
    _, written = compare([tmp_path / "none"])
    assert not any(p.name.startswith("psnr_vs_") for p in written)


def test_missing_runs_are_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no runs under .*empty.*metrics.json"):
        find_runs([tmp_path / "empty"])
    proc = subprocess.run([sys.executable, "compare.py", str(tmp_path / "nowhere")], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "nowhere" in proc.stderr


@pytest.mark.slow
def test_acceptance_sweep_of_four_runs_then_compare(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    args = ["-m", "lr=1e-4,1e-3", "model=shallow,deep", "trainer.max_steps=10", f"hydra.sweep.dir={sweep}",
            "data.patches_per_epoch=20", "data.batch_size=4", "data.patch_size=16", "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false", "callbacks.image_panel.num_images=1"]
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(sweep.glob("*/metrics.json"))) == 4

    proc = subprocess.run([sys.executable, "compare.py", str(sweep)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("| lr=")]
    assert len(lines) == 4 and {ln.split("|")[1].strip() for ln in lines} == {
        f"lr={lr},model={m}" for lr in ("0.0001", "0.001") for m in ("shallow", "deep")}
    psnrs = [float(ln.split("|")[3]) for ln in lines]
    assert psnrs == sorted(psnrs, reverse=True)
    for name in ("comparison.md", "comparison.csv", "psnr_curves.png", "psnr_vs_lr.png"):
        assert (sweep / name).is_file()
    assert (sweep / "psnr_vs_lr.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("content", ["[]", "3", '"x"', "null", '{"best": '])
def test_a_metrics_file_that_is_not_an_object_is_skipped_with_one_warning(grid: Path, capsys, content: str) -> None:
    bad = grid / "bad" / "metrics.json"
    bad.parent.mkdir()
    bad.write_text(content)
    _, rows = table_rows(find_runs([grid]))
    err = capsys.readouterr().err.strip()
    assert len(rows) == 6 and len(err.splitlines()) == 1 and str(bad) in err, err


def _compare_cli(args: list[str]) -> int:
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_cli", ROOT / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(args)


def test_unfinished_runs_are_listed_and_incomplete_metrics_do_not_crash(grid: Path, capsys) -> None:
    (grid / "killed" / "checkpoints").mkdir(parents=True)  # killed after a checkpoint, before metrics.json
    (grid / "killed" / "checkpoints" / "last.ckpt").write_bytes(b"")
    (grid / "failed").mkdir()
    (grid / "failed" / "train.log").write_text("Traceback ...")
    partial = {"best": {"ssim": 0.9}, "bicubic": {"psnr": None}, "history": [{"step": 2}], "params": "n/a",
               "train_seconds": "?", "overrides": ["lr=5e-4", 3]}
    (grid / "partial").mkdir()
    (grid / "partial" / "metrics.json").write_text(json.dumps(partial))
    assert _compare_cli([str(grid)]) == 0
    out = capsys.readouterr().out
    note = [ln for ln in out.splitlines() if "no metrics.json" in ln]
    assert len(note) == 1 and note[0].startswith("2 runs") and "killed" in note[0] and "failed" in note[0], out
    assert "| lr=5e-4 " in out and len([ln for ln in out.splitlines() if ln.startswith("| lr=")]) == 7


def test_status_and_path_columns_and_unique_labels(tmp_path: Path) -> None:
    """An interrupted run is marked as such (its metrics.json says so), each row names its folder, and
    two runs with the same settings get two labels."""
    write_run(tmp_path / "s", "a", ["lr=1e-3"], 31.0)
    write_run(tmp_path / "s", "b", ["lr=1e-3"], 30.0, steps=6)
    write_run(tmp_path / "s", "c", ["lr=1e-2"], 29.0)
    for name, status in (("b", "interrupted"), ("c", "failed")):
        m = json.loads((tmp_path / "s" / name / "metrics.json").read_text())
        (tmp_path / "s" / name / "metrics.json").write_text(json.dumps({**m, "status": status}))
    header, rows = table_rows(find_runs([tmp_path / "s"]))
    assert header[-2:] == ["status", "path"]
    assert [(r[0], r[-2], r[-1]) for r in rows] == [("lr=1e-3 [a]", "finished", "a"), ("lr=1e-3 [b]", "interrupted", "b"),
                                                   ("lr=1e-2", "failed", "c")]


def test_a_second_compare_refuses_then_overwrite_replaces(grid: Path, capsys) -> None:
    assert _compare_cli([str(grid)]) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in grid.rglob("*") if p.is_file()}
    assert _compare_cli([str(grid)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "comparison.md" in err and "overwrite" in err, err
    assert {p: p.read_bytes() for p in grid.rglob("*") if p.is_file()} == before
    assert _compare_cli([str(grid), "--overwrite"]) == 0


def _tiny_video_runs(root: Path, lrs: list[str]) -> None:
    """A sweep of ``experiment=video_cpu`` over ``lr`` (BasicVSR on the synthetic clips), 2 steps each."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    args = ["-m", "experiment=video_cpu", f"lr={','.join(lrs)}", "trainer.max_steps=2", f"hydra.sweep.dir={root}",
            "data.patches_per_epoch=4", "data.patch_size=16", "data.val_max_frames=2", "logger=none",
            "module.spynet_pretrain_steps=0",
            "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_compare_a_video_cpu_sweep(tmp_path: Path) -> None:
    """`train.py -m experiment=video_cpu lr=...` as a user runs it (the synthetic clips: minutes on 2 cores)."""
    sweep = tmp_path / "video"
    _tiny_video_runs(sweep, ["1e-4", "5e-4"])
    runs = find_runs([sweep])
    assert len(runs) == 2 and {r.metrics["network"] for r in runs} == {"basicvsr"}
    table, written = compare([sweep])
    lines = [ln for ln in table.splitlines() if ln.startswith("| lr=")]
    assert sorted(ln.split("|")[1].strip() for ln in lines) == ["lr=0.0001", "lr=0.0005"]  # as Hydra's sweep writes them
    for r, ln in zip(by_psnr(runs), lines):  # the gain is over bicubic on the same clips
        assert float(ln.split("|")[5]) == pytest.approx(r.best_psnr - r.metrics["bicubic"]["psnr"], abs=0.006)
    assert {p.name for p in written} >= {"comparison.md", "comparison.csv", "psnr_curves.png", "psnr_vs_lr.png"}


def test_video_and_image_runs_are_not_ranked_together(tmp_path: Path) -> None:
    write_run(tmp_path / "mixed", "vsr", ["lr=1e-4"], 27.0, network="basicvsr")
    write_run(tmp_path / "mixed", "sisr", ["lr=1e-3"], 31.0, network="edsr")
    write_run(tmp_path / "mixed", "old", ["lr=1e-2"], 30.0)  # no network recorded: not judged
    with pytest.raises(ValueError, match=r"video runs \(vsr\) and image runs \(sisr\) .*different data"):
        compare([tmp_path / "mixed"])
    assert _compare_cli([str(tmp_path / "mixed")]) == 2
    assert not (tmp_path / "mixed" / "comparison.md").exists()
    (tmp_path / "mixed" / "sisr" / "metrics.json").unlink()
    table, _ = compare([tmp_path / "mixed"])  # video runs alone (and the unjudged one) compare as ever
    assert "lr=1e-4" in table and "lr=1e-2" in table


def test_compare_two_tiny_video_runs(tmp_path: Path) -> None:
    """Two experiment=video_cpu runs (BasicVSR, 2 steps) on a small Vid4-layout set: one table, each
    gain over bicubic on the same clips, bicubic dashed in the curves."""
    import numpy as np
    from conftest import compose_train
    from PIL import Image

    from sr_experiments.runs.run import train

    rng = np.random.default_rng(0)
    for clip in ("calendar", "walk"):
        (tmp_path / "Vid4" / "GT" / clip).mkdir(parents=True)
        base = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        for t in range(4):
            Image.fromarray(np.roll(base, t, axis=1)).save(tmp_path / "Vid4" / "GT" / clip / f"{t:03d}.png")
    vid4 = [f"paths.data_dir={tmp_path}", "data.train.layout=vid4", f"data.train.root={tmp_path / 'Vid4'}",
            "data.train.split=all"]  # data=vid4 validates on Vid4; here it trains on it too
    for lr in ("1e-4", "5e-4"):
        train(compose_train(["experiment=video_cpu", "data=vid4", *vid4, f"lr={lr}",
                             "data.num_frame=3", "data.patch_size=8", "data.batch_size=1", "data.patches_per_epoch=2",
                             "trainer.max_steps=2", "logger=none", "trainer.enable_progress_bar=false",
                             "module.spynet_pretrain_steps=0"],
                            tmp_path / "runs" / f"lr{lr}"))
    runs = find_runs([tmp_path / "runs"])
    assert len(runs) == 2 and {r.metrics["network"] for r in runs} == {"basicvsr"}
    table, written = compare([tmp_path / "runs"], tmp_path / "out")
    lines = {ln.split("|")[1].strip(): ln.split("|") for ln in table.splitlines()[2:]}
    assert set(lines) == {"lr1e-4", "lr5e-4"}
    for r in runs:
        assert float(lines[r.path.name][5]) == pytest.approx(r.best_psnr - r.metrics["bicubic"]["psnr"], abs=0.006)
    assert {p.name for p in written} == {"comparison.md", "comparison.csv", "psnr_curves.png"}
