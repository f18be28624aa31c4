"""The layering, read from the imports (docs/architecture.md): every stage imports only the stages
below it in ``STAGES``, lazy imports inside functions included; no two modules import each other in
a circle; ``sr_experiments.imaging`` is the ground every stage stands on; no function of the
package is longer than ~80 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sr_experiments"
# The stages, bottom first (docs/architecture.md). "ground": the package's top-level modules that
# every stage shares (the output and error policies, console, extras, hardware, provenance,
# config values); ``speed.py`` stands on models (it times networks).
STAGES = ("ground", "imaging", "models", "speed", "data", "zssr", "methods", "evaluation", "training", "runs",
          "inference", "tools")
# What imaging may import besides itself: the output policy, which imports nothing of the package.
GROUND = {"sr_experiments.outputs"}
# Functions allowed past the length limit: ports of official code, kept line for line with it.
LONG_PORTS = {"sr_experiments.models.swinir:__init__"}
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _owner(name: str) -> str | None:
    """The package module that defines ``name`` (a module, or a name inside one)."""
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports_of(name: str) -> frozenset[str]:
    """The ``sr_experiments`` modules that module ``name`` imports anywhere in its file (lazy
    imports inside functions included: they are imports all the same)."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1 packages
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules() else base for alias in node.names}
    owners = {_owner(n) for n in found if n.split(".")[0] == "sr_experiments"}
    return frozenset(o for o in owners if o and o != name)


def stage(name: str) -> str:
    """The stage of module ``name``: its subpackage, ``speed``, or ``ground`` (other top-level modules)."""
    parts = name.split(".")
    if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()):
        return parts[1]
    return "speed" if parts[-1] == "speed" else "ground"


def test_the_import_reader_sees_imports():
    # The reader itself: a lazy import inside a function counts, a name from a module maps to it.
    assert "sr_experiments.outputs" in imports_of("sr_experiments.imaging.io")
    assert "sr_experiments.imaging.png16" in imports_of("sr_experiments.imaging.io")
    assert "sr_experiments.imaging.annotate" in imports_of("sr_experiments.data.degradations.files")
    assert {"sr_experiments.imaging.io", "sr_experiments.imaging.imresize"} <= set(modules())


def test_imaging_imports_no_stage():
    imaging = [m for m in modules() if stage(m) == "imaging"]
    assert len(imaging) >= 5  # __init__, imresize, io, png16, annotate
    upward = {m: sorted(t for t in imports_of(m) if stage(t) != "imaging" and t not in GROUND) for m in imaging}
    assert not {m: t for m, t in upward.items() if t}, "imaging must stand on nothing but itself and GROUND"
    for ground in GROUND:
        assert imports_of(ground) <= GROUND, f"{ground} is imaging's ground: it may import nothing above it"


def test_importing_imaging_loads_no_stage():
    # What Python really loads, lazy package faces and all: a fresh interpreter imports every
    # imaging module and lists the sr_experiments modules it then holds.
    names = [m for m in modules() if stage(m) == "imaging"]
    code = f"import sys\nfor n in {names!r}: __import__(n)\nprint(' '.join(sorted(m for m in sys.modules if m.startswith('sr_experiments'))))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, check=True)
    extra = {m for m in loaded.stdout.split() if stage(m) != "imaging" and m not in GROUND | {"sr_experiments"}}
    assert not extra, f"importing sr_experiments.imaging loaded {sorted(extra)}"


def _cycles(graph: dict[str, frozenset[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, targets = work[-1]
            w = next(targets, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.add(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_cycle_finder_finds_a_cycle():
    graph = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset({"a"})}
    assert _cycles(graph) == [{"a", "b", "c"}]


def test_no_import_cycle():
    cycles = _cycles({m: imports_of(m) for m in modules()})
    assert not cycles, [sorted(c) for c in cycles]


def test_every_module_belongs_to_a_stage():
    assert {stage(m) for m in modules()} <= set(STAGES)


def test_every_import_points_down_the_stages():
    rank = {name: i for i, name in enumerate(STAGES)}
    upward = sorted(f"{m} -> {t}" for m in modules() for t in imports_of(m) if rank[stage(t)] > rank[stage(m)])
    assert not upward, "a stage imports a later one (docs/architecture.md): " + "; ".join(upward)


def test_the_stage_check_can_fail():
    # The rule itself, on names: a training module importing runs/ is upward, the reverse is not.
    rank = {name: i for i, name in enumerate(STAGES)}
    assert rank[stage("sr_experiments.runs.run")] > rank[stage("sr_experiments.training.module")]
    assert stage("sr_experiments.speed") == "speed" and stage("sr_experiments.outputs") == "ground"
    assert stage("sr_experiments.data.degradations.bsrgan") == "data"


def long_functions() -> list[str]:
    found = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and f"{name}:{node.name}" not in LONG_PORTS:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_longer_than_80_lines():
    assert not long_functions(), long_functions()
