"""GPU check, ready to run whenever a GPU is lent: one script, under 8 minutes on one GPU, that
appends what it measured to BENCHMARKS.md.

    python bench/gpu_check.py [--out DIR] [--benchmarks BENCHMARKS.md] [--data DIR] [--budget 450]
    make gpu-check

Parts, in this order, each in its own process with its own time limit (all within ``--budget``
seconds); a part that fails or runs out of time is one line of the record, never the end of the
check. Every part runs the real commands (train.py, prepare.py, eval.py) with their real configs.

1. train ``edsr`` and ``swinir_light`` (x4, batch 16, LR patch 48, 200 steps, ``trainer=gpu``,
   ``precision=auto``) on 10 DIV2K-size images (the bundled photos upscaled to 2040 px wide) with
   the in-memory backend: the speed calibration's choice on CUDA (TF32/bf16/fp16, layout; the step
   time of every candidate, from metrics.json), training patches/s over the steps after the 20th,
   and the share of each step spent waiting for data (from the end of one step to the start of the
   next: batch fetch and host-to-device copy; a CUDA sync ends each step, so the GPU is idle then);
2. the same from ``data=stream`` after ``prepare.py`` (skipped, with a line, where this checkout
   has no streaming backend);
3. DDP (NCCL, ``trainer=ddp``) on every GPU there is (skipped, with a line, with one GPU);
4. a 2-job sweep with ``hydra/launcher=gpus`` (Ray; one GPU per job, queued on one GPU);
5. eval.py of the edsr checkpoint of part 1 on Set5 (``--data``, ``$SR_DATA`` or ../shared/data;
   else the two bundled validation photos) with ``eval.device=cuda`` and ``cpu``: the same PSNR
   within 0.01 dB.

Logs and the results (``results.json``, ``section.md``) go to ``--out`` (a new folder); the section
is also appended to ``--benchmarks``. Without CUDA the script exits 2 with one line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("edsr", "swinir_light")
PARTS = ("memory", "eval", "stream", "ddp", "sweep")
PSNR_TOLERANCE_DB = 0.01
WARMUP_STEPS = 20


class DataWait(L.Callback):
    """Per training step: wall time and the time spent before it started (waiting for its batch).
    Writes ``{patches_per_s, data_wait_share, step_ms, steps}`` to ``path`` at the end (rank 0).

    The clock restarts after validation and at each epoch start, as train/patches_per_s does."""

    def __init__(self, path: str, warmup: int = WARMUP_STEPS) -> None:
        self.path, self.warmup = Path(path), int(warmup)
        self.steps: list[tuple[float, float, int]] = []  # (wait s, step s, patches)
        self._end: float | None = None
        self._start = 0.0

    def _restart(self, *_: Any) -> None:
        self._end = None

    on_train_epoch_start = _restart
    on_validation_end = _restart

    def on_train_batch_start(self, *_: Any) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the step's GPU work is done: what follows is waiting for data
        now = time.perf_counter()
        if self._end is not None:
            self.steps.append((self._start - self._end, now - self._end, len(batch["lq"]) * trainer.world_size))
        self._end = now

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        kept = self.steps[self.warmup:] or self.steps
        seconds = sum(s for _, s, _ in kept)
        result = {"steps": len(kept), "patches_per_s": sum(p for *_, p in kept) / seconds if seconds else None,
                  "data_wait_share": sum(w for w, *_ in kept) / seconds if seconds else None,
                  "step_ms": 1000 * statistics.median(s for _, s, _ in kept) if kept else None}
        self.path.write_text(json.dumps(result))


class Check:
    """Runs the parts as child processes against one deadline and collects one line per part."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.out = args, args.out
        self.deadline = time.monotonic() + args.budget
        self.gpu = args.device == "cuda"
        self.rows: list[dict[str, Any]] = []
        self.data: dict[str, Any] = {}

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def record(self, part: str, status: str, detail: str, seconds: float = 0.0, **data: Any) -> None:
        self.rows.append({"part": part, "status": status, "detail": detail, "seconds": round(seconds, 1), **data})
        print(f"[gpu_check] {part}: {status}: {detail} ({seconds:.0f} s)", flush=True)

    def command(self, part: str, cmd: list[str], limit: float) -> tuple[int | None, str, float]:
        """Run ``cmd`` (in its own process group, killed whole on timeout); returns (exit status or
        None on timeout, the last line of its output, seconds). Its output goes to <out>/<part>.log."""
        limit = min(limit, self.remaining())
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
        log = self.out / f"{part}.log"
        start = time.monotonic()
        with open(log, "w") as f:
            f.write(" ".join(cmd) + "\n\n")
            f.flush()
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                rc: int | None = proc.wait(timeout=max(1.0, limit))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # DDP ranks and Ray workers too
                proc.wait()
                rc = None
        lines = [line for line in log.read_text(errors="replace").splitlines()
                 if line.strip() and not line.startswith("Set the environment variable HYDRA_FULL_ERROR")]
        return rc, (lines[-1][:300] if lines else ""), time.monotonic() - start

    def step(self, part: str, cmd: list[str], limit: float) -> tuple[bool, float]:
        """``command`` with a failure or timeout recorded as the part's line; True when it succeeded."""
        if self.remaining() < 15:
            self.record(part, "skipped", f"the check's {self.args.budget:.0f} s budget is spent")
            return False, 0.0
        rc, last, seconds = self.command(part, cmd, limit)
        if rc is None:
            self.record(part, "timeout", f"stopped after {seconds:.0f} s (log: {part}.log)", seconds)
        elif rc != 0:
            self.record(part, "failed", f"exit {rc}: {last} (log: {part}.log)", seconds)
        return rc == 0, seconds


def train_overrides(check: Check, model: str, run_dir: Path, steps: int) -> list[str]:
    """train.py overrides shared by every training part (the dry run shrinks them for a CPU)."""
    o = [f"model={model}", "scale=4", f"trainer.max_steps={steps}", "logger=none", "trainer.enable_progress_bar=false",
         "trainer.enable_model_summary=false", "~callbacks.image_panel", "data.val_dir=sample:val",
         f"hydra.run.dir={run_dir}", "+callbacks.data_wait._target_=gpu_check.DataWait",
         f"+callbacks.data_wait.path={run_dir}.speed.json"]
    if check.gpu:
        return [*o, "trainer=gpu", "data.batch_size=16", "data.patch_size=48"]
    o += ["trainer=cpu", "data.batch_size=4", "data.patch_size=16", "+callbacks.data_wait.warmup=1"]
    tiny = {"edsr": ["model.depth=2", "model.width=8"],
            "swinir_light": ["model.depths=[1]", "model.num_heads=[2]", "model.embed_dim=8", "model.window_size=4"]}
    return [*o, *tiny.get(model, [])]


def train_part(check: Check, part: str, model: str, data: list[str], limit: float, steps: int) -> dict | None:
    run_dir = check.out / part
    ok, seconds = check.step(part, [sys.executable, "train.py", *train_overrides(check, model, run_dir, steps), *data], limit)
    if not ok:
        return None
    metrics = json.loads((run_dir / "metrics.json").read_text())
    speed = json.loads(Path(f"{run_dir}.speed.json").read_text())
    choice = metrics.get("speed_choice", {})
    times = ", ".join(f"{k} {v:.2f}" for k, v in sorted(choice.get("step_ms", {}).items(), key=lambda kv: kv[1]))
    detail = (f"{speed['patches_per_s']:,.0f} patches/s, data wait {100 * speed['data_wait_share']:.1f}% of each step "
              f"(median step {speed['step_ms']:.1f} ms over {speed['steps']} steps); precision {metrics.get('precision')}, "
              f"mode {choice.get('mode')}" + (f" (calibration, ms/step: {times})" if times else ""))
    check.record(part, "ok", detail, seconds, metrics=metrics, speed=speed)
    return metrics


def make_train_images(folder: Path, count: int, width: int) -> None:
    """``count`` DIV2K-size PNGs (the bundled photos, bicubic-upscaled to ``width`` px wide)."""
    from PIL import Image

    from sr_experiments.data.sources import resolve_sources

    folder.mkdir(parents=True)
    for source in resolve_sources("sample:train", 4, "generate")[:count]:
        with Image.open(source.gt) as im:
            im = im.convert("RGB")
            im.resize((width, round(im.height * width / im.width)), Image.BICUBIC).save(folder / f"{source.name}.png",
                                                                                       compress_level=1)


def find_set5(given: str | None) -> Path | None:
    for cand in (given, os.environ.get("SR_DATA"), ROOT.parent / "shared" / "data", ROOT / "shared" / "data"):
        if cand and (Path(cand) / "Set5" / "HR").is_dir():
            return Path(cand).resolve()
    return None


def eval_part(check: Check, checkpoint: Path | None) -> None:
    if checkpoint is None or not checkpoint.is_file():
        check.record("eval", "skipped", "no edsr checkpoint from the in-memory training part")
        return
    data_dir, name = find_set5(check.args.data), "Set5"
    if data_dir is None:  # the bundled validation photos, as a set folder
        from PIL import Image

        from sr_experiments.data.sources import resolve_sources

        data_dir, name = check.out / "eval_data", "SampleVal"
        (data_dir / name / "HR").mkdir(parents=True)
        for s in resolve_sources("sample:val", 4, "generate"):
            with Image.open(s.gt) as im:
                im.convert("RGB").save(data_dir / name / "HR" / f"{s.name}.png")
    psnr: dict[str, list[float]] = {}
    seconds = 0.0
    for device in ("cuda" if check.gpu else "cpu", "cpu"):
        part = f"eval_{device}" if f"eval_{device}" not in psnr else f"eval_{device}_again"
        run_dir = check.out / part
        cmd = [sys.executable, "eval.py", f"ckpt_path={checkpoint}", f"paths.data_dir={data_dir}", f"eval.sets=[{name}]",
               f"eval.device={device}", "eval.baseline=false", f"hydra.run.dir={run_dir}"]
        ok, s = check.step(part, cmd, 90)
        seconds += s
        if not ok:
            return
        rows = json.loads((run_dir / "results.json").read_text())["results"]
        psnr[part] = [r["psnr"] for r in rows]
    (a, pa), (b, pb) = psnr.items()
    diff = max(abs(x - y) for x, y in zip(pa, pb))
    same = diff <= PSNR_TOLERANCE_DB and len(pa) == len(pb)
    check.record("eval", "ok" if same else "failed",
                 f"{name} x4: {a} {pa[0]:.4f} dB, {b} {pb[0]:.4f} dB, |difference| {diff:.4f} dB "
                 f"({'same' if same else 'NOT the same'} within {PSNR_TOLERANCE_DB} dB)", seconds, psnr=psnr)


def stream_available() -> bool:
    return (ROOT / "prepare.py").is_file() and (ROOT / "sr_experiments" / "conf" / "data" / "stream.yaml").is_file()


def stream_parts(check: Check, images: Path, steps: int) -> None:
    if not stream_available():
        check.record("stream", "skipped", "no streaming backend in this checkout (prepare.py, data=stream)")
        return
    prepared = check.out / "prepared"
    small = [] if check.gpu else ["crop_size=64", "step=32", "num_workers=1"]  # the dry run's small images
    ok, seconds = check.step("prepare", [sys.executable, "prepare.py", f"input={images}", f"output={prepared}",
                                         "scale=[4]", *small], 90)
    if not ok:
        return
    check.record("prepare", "ok", f"prepare.py of {len(list(images.iterdir()))} images", seconds)
    for model in check.args.models:
        # An epoch is one pass over the sub-images: validation off, so it does not run every few steps.
        train_part(check, f"train_{model}_stream", model, ["data=stream", f"data.train_dir={prepared}",
                                                          "+trainer.limit_val_batches=0"], 120, steps)


def ddp_part(check: Check, images: Path, steps: int) -> None:
    gpus = torch.cuda.device_count() if check.gpu else 2
    if gpus < 2:
        check.record("ddp", "skipped", f"{gpus} GPU here: DDP (NCCL) needs 2 or more")
        return
    trainer = ["trainer=ddp", f"trainer.devices={gpus}"] if check.gpu else ["trainer=ddp_cpu", "trainer.devices=2"]
    metrics = train_part(check, "ddp", "edsr", ["data=folder", f"data.train_dir={images}", *trainer], 150, steps)
    if metrics is not None and metrics.get("world_size") != gpus:
        check.record("ddp", "failed", f"world size {metrics.get('world_size')}, expected {gpus}")


def sweep_part(check: Check, images: Path, steps: int) -> None:
    from importlib.util import find_spec

    if find_spec("hydra_plugins.hydra_ray_launcher") is None:
        check.record("sweep", "skipped", "the sweeps extra is not installed (pip install 'sr-experiments[sweeps]')")
        return
    sweep_dir = check.out / "sweep"
    overrides = [o for o in train_overrides(check, "edsr", sweep_dir, steps) if not o.startswith(("hydra.run.dir", "+callbacks"))]
    launcher = "hydra/launcher=gpus" if check.gpu else "hydra/launcher=cpu"
    cmd = [sys.executable, "train.py", "-m", launcher, *overrides, "data=folder", f"data.train_dir={images}",
           "lr=1e-3,5e-4", f"hydra.sweep.dir={sweep_dir}"]
    ok, seconds = check.step("sweep", cmd, 180)
    if not ok:
        return
    runs = [json.loads(p.read_text()) for p in sorted(sweep_dir.rglob("metrics.json"))]
    finished = [r for r in runs if r.get("status") == "finished"]
    overlap = len(finished) == 2 and max(r["started_at"] for r in finished) < min(r["finished_at"] for r in finished)
    status = "ok" if len(finished) == 2 else "failed"
    check.record("sweep", status, f"{launcher}: {len(finished)} of 2 jobs finished, "
                 f"{'in parallel' if overlap else 'one after the other'}", seconds)


def guarded(check: Check, part: str, fn: Any, *args: Any) -> None:
    """``fn(check, *args)``; an error in reading a part's results is that part's line, not the end."""
    try:
        fn(check, *args)
    except Exception as e:  # noqa: BLE001 - every part must leave a line, whatever went wrong
        check.record(part, "failed", f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip() or os.environ.get("SR_COMMIT", "unknown")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("SR_COMMIT", "unknown")


def section(check: Check, device_name: str, total_s: float) -> str:
    """The BENCHMARKS.md section: the machine, then one table row per part."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    gpus = torch.cuda.device_count() if check.gpu else 0
    dry = " (dry run on the CPU: plumbing only, no GPU figures)" if not check.gpu else ""
    intro = (f"{now}, commit {commit()}; `python bench/gpu_check.py` (`make gpu-check`), {total_s:.0f} s in all. "
             f"torch {torch.__version__}, CUDA {torch.version.cuda}, {gpus} GPU(s), {os.cpu_count()} CPU cores. "
             "Training: x4, batch 16, LR patch 48, 200 steps, precision=auto, on 10 DIV2K-size images; patches/s "
             f"over the steps after the {WARMUP_STEPS}th; data wait: the share of each step between the end of one "
             "step (CUDA synced) and the start of the next (batch fetch, host-to-device copy).")
    lines = [f"## GPU check: {device_name}{dry}", "", intro, "", "| part | status | result | s |", "|---|---|---|---:|"]
    lines += [f"| {r['part']} | {r['status']} | {r['detail'].replace('|', '/')} | {r['seconds']:.0f} |" for r in check.rows]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="a new folder for logs and results")
    parser.add_argument("--benchmarks", type=Path, default=ROOT / "BENCHMARKS.md", help="where the section is appended")
    parser.add_argument("--data", default=None, help="folder holding Set5 (default: $SR_DATA, ../shared/data)")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for all parts together")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}")
    parser.add_argument("--models", default=",".join(MODELS), help=argparse.SUPPRESS)
    # The plumbing on a CPU (tiny networks, a few steps; gloo, Ray on CPUs): tests/test_gpu_check.py.
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.parts, args.models = args.parts.split(","), args.models.split(",")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cpu" and not args.dry_run:
        print("gpu_check.py: --device cpu is only for --dry-run", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check.py: no CUDA device here (torch.cuda.is_available() is False); run it where a GPU is",
              file=sys.stderr)
        return 2
    from sr_experiments.outputs import claim_unique_dir, write_text

    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    args.out = claim_unique_dir(args.out or ROOT / "outputs" / "gpu_check" / stamp)
    check, start = Check(args), time.monotonic()
    steps = 200 if check.gpu else 4
    images = args.out / "train_images"
    make_train_images(images, 10 if check.gpu else 2, 2040 if check.gpu else 96)
    memory = ["data=folder", f"data.train_dir={images}"] + ([] if check.gpu else ["data.patches_per_epoch=16"])
    if "memory" in args.parts:
        for model in args.models:
            guarded(check, f"train_{model}_memory", train_part, f"train_{model}_memory", model, memory, 120, steps)
    if "eval" in args.parts:
        guarded(check, "eval", eval_part, args.out / f"train_{args.models[0]}_memory" / "checkpoints" / "best.ckpt")
    if "stream" in args.parts:
        guarded(check, "stream", stream_parts, images, steps)
    if "ddp" in args.parts:
        guarded(check, "ddp", ddp_part, images, steps)
    if "sweep" in args.parts:
        guarded(check, "sweep", sweep_part, images, 30 if check.gpu else 2)
    device_name = torch.cuda.get_device_name(0) if check.gpu else "cpu"
    text = section(check, device_name, time.monotonic() - start)
    write_text(args.out / "section.md", text)
    (args.out / "results.json").write_text(json.dumps({"device": device_name, "parts": check.rows}, indent=2, default=str))
    old = args.benchmarks.read_text() if args.benchmarks.is_file() else ""
    write_text(args.benchmarks, old.rstrip("\n") + ("\n\n" if old else "") + text)
    print(f"\n{text}\nappended to {args.benchmarks}; logs in {args.out}", flush=True)
    return 0 if all(r["status"] in ("ok", "skipped") for r in check.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
