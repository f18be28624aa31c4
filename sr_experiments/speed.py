"""Precision and memory layout chosen by measuring, not by CPU flags.

``precision=auto`` / ``channels_last=auto`` time a few steps of the actual network at the actual
shape in every candidate mode (fp32, fp32 channels_last, bf16 autocast with and without
channels_last; on CUDA also TF32 and fp16 autocast) and keep the fastest. A flag such as
AVX512-BF16 says an instruction exists, not that it pays: on some Xeons bf16 autocast is 1.5x
slower than fp32. Its absence, though, says enough: a precision the device has no instructions
for (bf16 on a CPU without AVX512-BF16 or AMX, 5-10x slower than fp32 there; bf16 or fp16 on a
GPU without them) is not timed at all. The whole measurement is bounded (``CALIBRATION_BUDGET_S``,
or a share of a short run), announced before it starts, and a mode whose first step is already
far slower than the best is dropped at once. Results are cached per machine, device, torch
version, threads, network spec and shape, so only the first run of a configuration pays the seconds.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sr_experiments.console import announce
from sr_experiments.hardware import (
    PrecisionChoice,
    cpu_bf16_flags,
    cpu_model,
    device_type,
    normalise_precision,
    synchronize,
)
from sr_experiments.models.registry import RUNTIME_KEYS

log = logging.getLogger(__name__)

# A lower precision must beat exact fp32 by more than this to be chosen: closer is noise.
TIE_MARGIN = 0.03
# Precision tiers, most exact first; a mode of a later tier wins only outside TIE_MARGIN.
TIERS = {"fp32": 0, "tf32": 1, "bf16": 2, "fp16": 3}
_LIGHTNING = {"fp32": "32", "tf32": "32", "bf16": "bf16-mixed", "fp16": "16-mixed"}
# Calibration time per configuration (first steps included): a mode is started, and a round of
# timed steps is run, only where it fits; at most one step of the best mode's length beyond it.
# Also the least time a mode runs in each round (several steps of a small network).
CALIBRATION_BUDGET_S = 8.0
SAMPLE_S = 0.03
# A mode whose first step takes this many times the best first step so far is dropped at once (a
# first step includes one-time kernel set-up, so only a wide margin is safe to judge by).
FIRST_STEP_MARGIN = 3.0
# A training run is calibrated only where that costs at most this share of its steps (a calibration
# runs at least two steps per candidate mode: a warm-up and a timed one). A 5-step smoke run of a
# large network would otherwise spend longer measuring than training: ESRGAN's RRDBNet at x4 took
# 13 minutes of calibration for 5 steps on 2 CPU cores.
CALIBRATION_SHARE = 0.1


@dataclass(frozen=True)
class Mode:
    """One way to run a network: its numeric format and memory layout."""

    kind: str  # "fp32" | "tf32" | "bf16" | "fp16", or another explicit Lightning precision ("bf16-true")
    channels_last: bool
    # CUDA's TF32 switches while measuring and training: set only where precision is measured on
    # CUDA (off for "fp32": exact), else None (torch's defaults, e.g. under an explicit precision).
    tf32: bool | None = None

    @property
    def name(self) -> str:
        return self.kind + ("-cl" if self.channels_last else "")

    @property
    def precision(self) -> str:
        """The Lightning ``precision`` value."""
        return _LIGHTNING.get(self.kind, self.kind)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.kind)


@dataclass
class SpeedChoice:
    """The mode a run uses, why, and what was measured (``step_ms`` per mode name)."""

    mode: Mode
    reason: str
    precision_reason: str
    channels_last_reason: str
    step_ms: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    cached: bool = False
    calibration_s: float = 0.0

    @property
    def precision(self) -> PrecisionChoice:
        return PrecisionChoice(self.mode.precision, self.precision_reason)

    def metrics(self) -> dict[str, Any]:
        """The ``speed_choice`` entry of ``metrics.json``."""
        return {"mode": self.mode.name, "reason": self.reason, "step_ms": self.step_ms,
                "skipped": self.skipped, "cached": self.cached, "calibration_s": round(self.calibration_s, 2)}

    def apply_tf32(self) -> None:
        """Set CUDA's TF32 switches as measured (no-op unless precision was measured on CUDA)."""
        _tf32(self.mode)


def not_native(device: str) -> dict[str, str]:
    """The lower precisions ``device`` has no instructions for, and why: ``precision=auto`` does not
    time them (emulated, they are always slower, and timing them costs the most)."""
    if device == "cpu":
        if cpu_bf16_flags():
            return {}
        return {"bf16": f"not timed: {cpu_model()} has no native bf16 (no AVX512-BF16 or AMX; emulated, it is slower)"}
    if device != "cuda":
        return {}
    major, minor = torch.cuda.get_device_capability()
    missing = {}
    if not torch.cuda.is_bf16_supported(including_emulation=False):
        missing["bf16"] = "bf16 (needs 8.0+)"
    # Full-rate fp16 arithmetic: sm_60, sm_62 and every GPU with tensor cores (7.0+); sm_61 runs it at 1/64.
    if major < 7 and (major, minor) not in ((6, 0), (6, 2)):
        missing["fp16"] = "fast fp16 (needs 7.0+)"
    return {k: f"not timed: the GPU (compute capability {major}.{minor}) has no native {what}" for k, what in missing.items()}


def candidate_modes(device: str, precision: Any = "auto", channels_last: Any = "auto") -> list[Mode]:
    """Modes to measure; an explicit ``precision`` or ``channels_last`` fixes that axis. ``auto``
    leaves out the precisions the device does not run natively (``not_native``)."""
    req = normalise_precision(precision)
    if req == "auto":
        kinds = ["fp32"]
        if device == "cuda":
            if torch.cuda.get_device_capability()[0] >= 8:
                kinds.append("tf32")
            kinds += ["bf16", "fp16"]
        elif device == "cpu":
            kinds.append("bf16")
        kinds = [k for k in kinds if k not in not_native(device)]
    else:
        # Precisions the calibration does not reproduce ("bf16-true", "64") pass through to
        # Lightning; a layout to choose for them is timed in fp32, as a proxy.
        kinds = [{v: k for k, v in _LIGHTNING.items() if k != "tf32"}.get(req, req)]
    layouts = [False, True] if _is_auto(channels_last) else [_layout(channels_last)]
    tf32 = device == "cuda" and req == "auto"
    return [Mode(k, cl, (k == "tf32") if tf32 and k in ("fp32", "tf32") else None) for k in kinds for cl in layouts]


def _is_auto(channels_last: Any) -> bool:
    return channels_last is None or str(channels_last) == "auto"


def _layout(channels_last: Any) -> bool:
    if isinstance(channels_last, str):
        raise ValueError(f"model.channels_last must be true, false or auto, got {channels_last!r}")
    return bool(channels_last)


def pick(modes: Iterable[Mode], step_ms: Mapping[str, float], margin: float = TIE_MARGIN) -> tuple[Mode, str]:
    """The fastest measured mode, except that a more exact one within ``margin`` of it wins."""
    measured = [m for m in modes if m.name in step_ms]
    if not measured:
        raise ValueError("no mode was measured")
    fastest = chosen = min(measured, key=lambda m: step_ms[m.name])
    best = step_ms[fastest.name]
    for tier in sorted({TIERS.get(m.kind, 0) for m in measured}):
        close = [m for m in measured if TIERS.get(m.kind, 0) == tier and step_ms[m.name] <= best * (1 + margin)]
        if close:
            chosen = min(close, key=lambda m: step_ms[m.name])
            break
    if chosen == fastest:
        return chosen, "fastest"
    return chosen, f"within {margin:.0%} of the fastest ({fastest.name}), and more exact"


@dataclass
class Timings:
    """What a calibration measured: ms per step of each mode, the modes that could not run or were
    dropped (and why), and whether the timings were too noisy to keep for later runs."""

    step_ms: dict[str, float]
    skipped: dict[str, str] = field(default_factory=dict)
    noisy: str = ""  # why they are not to be trusted; empty when they are


@dataclass(frozen=True)
class Budget:
    """How long a calibration may take: ``seconds``, and no more than ``CALIBRATION_SHARE`` of a run
    of ``run_steps`` (None: unknown) at the best step time measured so far."""

    seconds: float = CALIBRATION_BUDGET_S
    run_steps: int | None = None

    def limit(self, step_s: float | None) -> float:
        if self.run_steps is None or step_s is None:
            return self.seconds
        return min(self.seconds, CALIBRATION_SHARE * self.run_steps * step_s)


def measure_modes(
    modes: list[Mode],
    make_step: Callable[[Mode], Callable[[], None]],
    *,
    clock: Callable[[], float] = time.perf_counter,
    budget: Budget | None = None,
    max_rounds: int = 8,
) -> Timings:
    """Milliseconds per step of each mode (its fastest step), and the modes not timed (and why).

    First one step of each mode in turn (oneDNN/cuDNN pick and build their kernels then): a mode
    is started only while the budget still holds a step as long as the best first step so far
    (both layouts of the first, most exact, precision always are), and dropped at once when its first step takes ``FIRST_STEP_MARGIN`` times the best one or
    longer than the whole budget. Then rounds that run every remaining mode in turn, so that load
    from other processes hits all alike; within a round a mode runs steps for at least ``SAMPLE_S``
    (up to 20). A mode clearly slower than the best (2x after one round, 1.25x after two) is
    dropped. A round runs only where it fits in the budget (``max_rounds`` at most); where none
    does (a large network), the first steps are the estimate. The fastest step is the estimate:
    noise only ever adds time. Where a mode's two fastest steps differ by more than 25%, the
    timings are marked noisy.
    """
    budget = budget or Budget()
    start = clock()
    steps, first, skipped = _first_steps(modes, make_step, clock, budget, start)
    samples: dict[str, list[float]] = {n: [] for n in steps}
    alive = list(steps)
    for r in range(1, max_rounds + 1):
        est = {n: min(samples[n] or [first[n]]) for n in alive}
        cost = sum(max(t, min(SAMPLE_S, 20 * t)) for t in est.values())
        if not alive or clock() - start + cost > budget.limit(min(est.values())):
            break
        for name in alive:
            spent = 0.0
            while spent < SAMPLE_S and len(samples[name]) < 20 * r:
                t = clock()
                steps[name]()
                samples[name].append(clock() - t)
                spent += samples[name][-1]
        best = min(min(samples[n]) for n in alive)
        alive = [n for n in alive if min(samples[n]) <= best * (1.25 if r >= 2 else 2.0)]
        if len(alive) <= 1:
            break
    spread = {n: sorted(s)[1] / max(min(s), 1e-9) for n, s in samples.items() if len(s) >= 2}
    noisy = {n: x for n, x in spread.items() if x > 1.25}
    return Timings({n: round(1000 * min(samples[n] or [first[n]]), 3) for n in steps}, skipped,
                   f"the two fastest steps of {', '.join(noisy)} differ by {max(noisy.values()) - 1:.0%}" if noisy else "")


def _first_steps(
    modes: list[Mode], make_step: Callable[[Mode], Callable[[], None]], clock: Callable[[], float], budget: Budget,
    start: float,
) -> tuple[dict[str, Callable[[], None]], dict[str, float], dict[str, str]]:
    """The first step of each mode that fits (``measure_modes``): its step, the first step's
    seconds, and why the others were not timed or dropped."""
    steps: dict[str, Callable[[], None]] = {}
    first: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for mode in modes:
        best = min(first, key=first.__getitem__, default=None)
        limit = budget.limit(first[best] if best else None)
        # Both layouts of the most exact precision are always compared (channels_last alone is often
        # 1.5x on a CPU, for any network); other modes only while the budget holds one more step.
        if best is not None and mode.kind != modes[0].kind and clock() - start + first[best] > limit:
            skipped[mode.name] = f"not timed: the calibration's {limit:.1f} s were spent"
            continue
        try:
            step = make_step(mode)
            t = clock()
            step()
            took = clock() - t
        except (RuntimeError, NotImplementedError, TypeError, ValueError) as e:
            skipped[mode.name] = (str(e).splitlines() or [type(e).__name__])[0][:200]
            continue
        if best is not None and (took > FIRST_STEP_MARGIN * first[best] or (took > limit and mode.kind != modes[0].kind)):
            skipped[mode.name] = f"dropped after its first step ({took:.2f} s; {best}: {first[best]:.2f} s)"
            continue
        steps[mode.name], first[mode.name] = step, took
    return steps, first, skipped


# Cache ------------------------------------------------------------------------------------------


def cache_path() -> Path:
    """``$SR_CACHE_DIR/speed.json``, else ``$XDG_CACHE_HOME/sr-experiments/``, else ``~/.cache/sr-experiments/``."""
    if os.environ.get("SR_CACHE_DIR"):
        return Path(os.environ["SR_CACHE_DIR"]) / "speed.json"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sr-experiments" / "speed.json"


def machine_name(device: str) -> str:
    """What decides the speed ranking: the GPU's name, or the CPU model with its bf16 flags."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{cpu_model()} ({', '.join(cpu_bf16_flags()) or 'no bf16 flags'})"


def cache_fields(kind: str, device: str, spec: Mapping[str, Any], shape: Mapping[str, int], modes: list[Mode]) -> dict[str, Any]:
    """What a cached choice is valid for: machine, torch, threads, network spec, shape, candidates."""
    runtime = (*RUNTIME_KEYS, "pretrained", "pretrained_key")  # how it runs or starts, not what it computes
    return {
        "kind": kind,
        "machine": machine_name(device),
        "device": device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads() if device == "cpu" else None,
        "network": {k: spec[k] for k in sorted(spec) if k not in runtime},
        "shape": dict(shape),
        "modes": [m.name for m in modes],
    }


def cache_key(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:20]


def read_cache(key: str) -> dict[str, Any] | None:
    try:
        return json.loads(cache_path().read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def write_cache(key: str, entry: dict[str, Any]) -> None:
    """Add ``entry`` under ``key``; written atomically (concurrent runs may share the file)."""
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        data[key] = entry
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError as e:
        log.warning("speed cache %s not written: %s", path, e)


# Choosing ---------------------------------------------------------------------------------------

# A calibration of these modes within this budget (a test's fake timer takes the same arguments).
Measure = Callable[[list[Mode], Budget], Timings]
# Modes within this factor of the best are the contenders a re-measure times again.
CONTENDER = 1.25


def choose(
    kind: str,
    device: str,
    spec: Mapping[str, Any],
    shape: Mapping[str, int],
    precision: Any,
    channels_last: Any,
    measure: Measure,
    rank: int = 0,
    wait_s: float = 300.0,
    run_steps: int | None = None,
) -> SpeedChoice:
    """Resolve ``auto`` axes by ``measure`` (or the cache); explicit axes are kept as set.

    In a multi-process run only rank 0 measures; other ranks (``rank > 0``) wait for its cache
    entry, so that all ranks run the same mode. A run of ``run_steps`` too few to pay for a
    calibration (``CALIBRATION_SHARE``) runs the most exact candidate, unmeasured, on every rank
    (the cache is not read either: each rank decides alike without it). Timings taken under load
    are measured again on a quieter later run, the contenders only, within the first one's time.
    """
    modes = candidate_modes(device, precision, channels_last)
    prec_auto, layout_auto = normalise_precision(precision) == "auto", _is_auto(channels_last)
    native = not_native(device) if prec_auto else {}
    explicit_p = f"precision={precision} was set explicitly"
    explicit_l = f"model.channels_last={modes[0].channels_last} was set explicitly"
    if len(modes) == 1:
        only = f"{modes[0].kind}, the only precision this {device.upper()} runs natively" if prec_auto else explicit_p
        return SpeedChoice(modes[0], "set explicitly" if not prec_auto else only, only, explicit_l, skipped=dict(native))
    if run_steps is not None and 0 < run_steps and 2 * len(modes) > CALIBRATION_SHARE * run_steps:
        why = (f"{modes[0].name}, not measured: a calibration ({2 * len(modes)}+ steps) would cost more than "
               f"{CALIBRATION_SHARE:.0%} of this run's {run_steps} steps")
        return SpeedChoice(modes[0], why, f"auto, {why}" if prec_auto else explicit_p,
                           f"auto, {why}" if layout_auto else explicit_l)
    fields = cache_fields(kind, device, spec, shape, modes)
    key = cache_key(fields)
    entry = read_cache(key) if rank == 0 else _wait_for(key, wait_s)
    busy = machine_busy(device)
    timed, budget = _to_measure(modes, entry, busy, rank, run_steps)
    cached = not timed
    if cached:
        step_ms, skipped, seconds = entry["step_ms"], entry.get("skipped", {}), float(entry.get("calibration_s", 0))
        noisy = entry.get("noisy", "") if busy or rank > 0 else ""  # (quieter, one clear winner: nothing to redo)
    else:
        again = entry is not None
        _announce(device, timed, again, budget, native)
        start = time.perf_counter()
        timings = measure(timed, budget)
        seconds = time.perf_counter() - start
        step_ms = {**(entry["step_ms"] if again else {}), **timings.step_ms}
        skipped = {**native, **timings.skipped}
        noisy = "; ".join(x for x in (busy, timings.noisy) if x)
    judged = step_ms if cached else timings.step_ms  # (a re-measure picks among what it timed)
    if not judged:
        mode, why = modes[0], f"no mode could run in calibration ({skipped}); {modes[0].name} unmeasured"
    else:
        mode, why = pick(timed or modes, judged)
        # A cache entry names its mode: every rank runs what rank 0 chose, whatever the rule now says.
        mode = next((m for m in modes if cached and m.name == entry.get("mode")), mode)
        why = f"{mode.name}, {why} ({_times(step_ms)} ms/step)"
    if not cached and judged:
        write_cache(key, {"mode": mode.name, "step_ms": step_ms, "skipped": skipped, "calibration_s": round(seconds, 2),
                          "noisy": noisy, "fields": fields, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    reason = f"measured: {why}" + (", cached" if cached else f", calibration {seconds:.1f} s")
    if noisy:
        reason += f"; noisy ({noisy}): measured again once the machine is quieter"
    return SpeedChoice(mode, reason, f"auto, {reason}" if prec_auto else explicit_p,
                       f"auto, {reason}" if layout_auto else explicit_l, dict(step_ms), dict(skipped), cached, seconds)


def _announce(device: str, timed: list[Mode], again: bool, budget: Budget, native: Mapping[str, str]) -> None:
    """The line before a calibration: what it times, where, for how long at most, what it leaves out."""
    where = torch.cuda.get_device_name() if device == "cuda" else cpu_model() if device == "cpu" else device
    announce(log, f"speed: measuring {', '.join(m.name for m in timed)} {'again ' * again}on {where} "
                  f"(at most ~{budget.seconds:.0f} s; cached for later runs)"
                  + "".join(f"; {k} {why}" for k, why in native.items()))


def _to_measure(modes: list[Mode], entry: Mapping[str, Any] | None, busy: str, rank: int,
                run_steps: int | None) -> tuple[list[Mode], Budget]:
    """The modes to time now (none: the cache entry stands) and the budget. Noisy timings are kept
    for later runs while the machine stays as busy; once it is quieter, the contenders (within
    ``CONTENDER`` of the best) are timed again, in no more time than the first calibration took."""
    if entry is None:
        return modes, Budget(CALIBRATION_BUDGET_S, run_steps)
    if rank > 0 or not entry.get("noisy") or busy:
        return [], Budget()
    old = entry.get("step_ms") or {}
    best = min(old.values(), default=0.0)
    contenders = [m for m in modes if m.name in old and old[m.name] <= CONTENDER * best]
    if len(contenders) < 2:
        return [], Budget()  # one clear winner: more precise timings would not change the choice
    seconds = float(entry.get("calibration_s") or CALIBRATION_BUDGET_S)
    return contenders, Budget(min(CALIBRATION_BUDGET_S, seconds), run_steps)


def machine_busy(device: str) -> str:
    """Why the CPU is too busy for trustworthy timings ('' if it is not): a 1-minute load above
    1.5x the cores, i.e. more than a run of ours (one thread per core) and its tail."""
    if device != "cpu" or not hasattr(os, "getloadavg"):
        return ""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    return f"load {load:.1f} on {cores} CPUs" if load > 1.5 * cores else ""


def _times(step_ms: Mapping[str, float]) -> str:
    return ", ".join(f"{n} {ms:.0f}" if ms >= 10 else f"{n} {ms:.2f}" for n, ms in sorted(step_ms.items(), key=lambda x: x[1]))


def _wait_for(key: str, wait_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    while (entry := read_cache(key)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"rank 0's speed calibration did not appear in {cache_path()} within {wait_s:.0f} s (is the cache "
                "folder shared between the ranks? SR_CACHE_DIR sets it); or set trainer.precision and "
                "model.channels_last explicitly"
            )
        time.sleep(0.5)
    return entry


# What is timed ----------------------------------------------------------------------------------


def _layout_copy(net: nn.Module, mode: Mode, device: torch.device) -> nn.Module:
    fmt = torch.channels_last if mode.channels_last else torch.contiguous_format
    return copy.deepcopy(net).to(device).to(memory_format=fmt)


def _tf32(mode: Mode) -> None:
    if mode.tf32 is not None:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode.tf32


@dataclass(frozen=True)
class TrainingStep:
    """One training step as a run takes it: ``batch`` LR patches of ``patch`` pixels at ``scale``
    (``frames`` > 0: a video network, on clips of that many frames), its loss and its optimizer."""

    batch: int
    patch: int
    scale: int
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
    frames: int = 0

    def shape(self) -> dict[str, int]:
        """What the cached choice is keyed on besides the network and the machine."""
        return {"batch": self.batch, "patch": self.patch, "scale": self.scale, **({"frames": self.frames} if self.frames else {})}


def training_step_maker(net: nn.Module, device: torch.device, shape: TrainingStep) -> Callable[[Mode], Callable[[], None]]:
    """A training step of a copy of ``net`` per mode, as ``SRLitModule`` runs it under Lightning:
    autocast forward, fp32 loss, backward, optimizer step (fp16: with a gradient scaler).
    A video network (``shape.frames`` > 0) steps on (batch, frames, 3, patch, patch) clips."""
    batch, patch, scale, frames = shape.batch, shape.patch, shape.scale, shape.frames
    g = torch.Generator().manual_seed(0)
    lq = torch.rand(batch, *([frames] if frames else []), 3, patch, patch, generator=g).to(device)
    gt = None if frames else torch.rand(batch, 3, patch * scale, patch * scale, generator=g).to(device)

    def make(mode: Mode) -> Callable[[], None]:
        copy_ = _layout_copy(net, mode, device).train()
        opt = shape.optimizer(p for p in copy_.parameters() if p.requires_grad)
        scaler = torch.amp.GradScaler(device.type) if mode.kind == "fp16" else None
        dtype = mode.autocast_dtype

        def step() -> None:
            _tf32(mode)
            x = lq.contiguous(memory_format=torch.channels_last) if mode.channels_last and lq.dim() == 4 else lq
            with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                sr = copy_(x)
            loss = shape.loss_fn(sr.float(), gt if gt is not None else sr.detach().float() * 0.5)
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            synchronize(device)

        return step

    return make


def inference_step_maker(net: nn.Module, device: torch.device, tile: int) -> Callable[[Mode], Callable[[], None]]:
    """A forward pass of a copy of ``net`` per mode on one ``tile`` x ``tile`` input."""
    x0 = torch.rand(1, 3, tile, tile, generator=torch.Generator().manual_seed(0)).to(device)

    def make(mode: Mode) -> Callable[[], None]:
        copy_ = _layout_copy(net, mode, device).eval()
        dtype = mode.autocast_dtype

        def step() -> None:
            _tf32(mode)
            x = x0.contiguous(memory_format=torch.channels_last) if mode.channels_last else x0
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                copy_(x)
            synchronize(device)

        return step

    return make


def _measuring(make_step: Callable[[Mode], Callable[[], None]], device: torch.device, **kwargs: Any) -> Measure:
    """``measure_modes`` with the global RNG (dropout, drop-path) and the TF32 switches left as found,
    so that a run is the same whether its choice came from the cache or from measuring."""

    def measure(modes: list[Mode], budget: Budget) -> Timings:
        tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                return measure_modes(modes, make_step, budget=budget, **kwargs)
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
            if device.type == "cuda":
                torch.cuda.empty_cache()

    return measure


def choose_training(
    net: nn.Module,
    spec: Mapping[str, Any],
    step: TrainingStep,
    *,
    precision: Any,
    channels_last: Any,
    device: str | torch.device | None,
    rank: int = 0,
    measure: Measure | None = None,
    run_steps: int | None = None,
) -> SpeedChoice:
    """Training mode for ``trainer.precision`` / ``model.channels_last``: measured where ``auto``
    and the run's ``run_steps`` (None: unknown) can pay for it.

    ``measure`` replaces the timing (tests); by default it times real training steps of copies of
    ``net`` (its weights are not touched).
    """
    kind = device_type(device)
    dev = torch.device(kind)
    if measure is None:
        measure = _measuring(training_step_maker(net, dev, step), dev)
    return choose("train", kind, spec, step.shape(), precision, channels_last,
                  measure, rank=rank, run_steps=run_steps)


def choose_inference(
    net: nn.Module,
    spec: Mapping[str, Any],
    device: torch.device,
    precision: Any = "auto",
    channels_last: Any = "auto",
    tile: int = 128,
    measure: Measure | None = None,
) -> SpeedChoice:
    """Inference mode for ``precision`` / layout: forward passes on a ``tile`` x ``tile`` input.

    A network without parameters (bicubic) runs in fp32, contiguous: there is nothing to speed up.
    """
    if not any(True for _ in net.parameters()):
        why = f"{spec.get('name', 'the network')} has no parameters: nothing to gain"
        auto = normalise_precision(precision) == "auto"
        mode = candidate_modes(device.type, "32" if auto else precision, False)[0]
        return SpeedChoice(mode, why, why if auto else f"precision={precision} was set explicitly", why)
    if measure is None:
        measure = _measuring(inference_step_maker(net, device, tile), device)
    return choose("infer", device.type, spec, {"tile": tile}, precision, channels_last, measure)
