"""The package's import structure: no cycles, no upward imports, a lazy package root.

The import graph is read from the source (every ``import`` statement, also those inside
functions, except under ``if TYPE_CHECKING:``), so a cycle that only bites when two lazy
imports meet is caught too. Layers, lowest first (docs/architecture.md): kernels' wrappers
and wire format, the compressors and LAQ state, algorithms and problems, the round driver
(and the downlink it applies), its users (simulator, distributed engine, DDP hooks), and the
command line on top.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import laqcore

PACKAGE = Path(laqcore.__file__).parent

#: Layer of each top-level name under ``laqcore`` (every module must have one).
LAYER = {
    "_core": 0,
    "_validate": 0,
    "_registry": 0,
    "_typing": 0,
    "_reference": 0,
    "_reference_transforms": 0,
    "_help": 0,
    "_blas": 0,
    "_npy": 0,
    "serialization": 0,
    "wire": 0,
    "packing": 0,
    "runtime": 0,
    "laq_payload": 1,
    "laq_widths": 1,
    "laq": 1,
    "lazy": 1,
    "lazy_state": 1,
    "entropy": 1,
    "compressors": 1,
    "error_feedback": 1,
    "network": 1,
    "algorithms": 2,
    "problems": 2,
    "downlink": 3,
    "driver": 3,
    "simulator": 4,
    "distributed": 4,
    "torch": 4,
    "experiments": 5,
    "bench": 5,
    "cli": 5,
    "__main__": 5,
}


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("laqcore", *path.relative_to(PACKAGE).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


def _import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        hidden = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in hidden:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    here = name.split(".") if is_pkg else name.split(".")[:-1]
                    here = here[: len(here) - node.level + 1]
                    base = ".".join([*here, *([node.module] if node.module else [])])
                else:
                    base = node.module or ""
                # `from pkg import sub` imports the submodule; `from pkg import name` needs pkg.
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names
                ]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[-1] == "cli":  # a subcommand's module (distributed/cli.py: launch) is CLI
        return LAYER["cli"]
    return LAYER.get(parts[1]) if len(parts) > 1 else None


def test_no_import_cycles():
    assert _cycles(_import_graph()) == []


def test_cycle_detector_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_every_module_has_a_layer():
    """A new top-level module must be placed in LAYER, or its imports would go unchecked."""
    unplaced = sorted(m for m in _modules() if m != "laqcore" and _layer(m) is None)
    assert unplaced == []


def test_no_upward_imports():
    upward = []
    for src, targets in _import_graph().items():
        for dst in targets:
            low, high = _layer(src), _layer(dst)
            if low is not None and high is not None and high > low:
                upward.append(f"{src} -> {dst}")
    assert upward == []


def _imported_by(statement: str) -> set[str]:
    code = (
        f"import sys\n{statement}\n"
        "print('\\n'.join(m for m in sys.modules if m == 'laqcore' or m.startswith('laqcore.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return set(out.stdout.split())


@pytest.mark.parametrize("statement", ["import laqcore.wire", "import laqcore"])
def test_package_root_is_lazy(statement):
    loaded = _imported_by(statement)
    heavy = {"laqcore.simulator", "laqcore.algorithms", "laqcore.problems", "laqcore.compressors"}
    assert not loaded & heavy, sorted(loaded & heavy)


def test_every_public_name_resolves():
    assert dir(laqcore) == laqcore.__all__
    for name in laqcore.__all__:
        assert getattr(laqcore, name) is not None, name
    assert laqcore.problems.make_problem is laqcore.make_problem  # subpackages as attributes


@pytest.mark.parametrize("module", ["entropy", "downlink", "lazy_state", "network"])
def test_documented_modules_are_attributes(module):
    """docs name laqcore.entropy, laqcore.network, ...: 'import laqcore;
    laqcore.network.make_link(...)' raised AttributeError unless something had imported the
    module first (simulate() does, so it depended on what ran before)."""
    code = f"import laqcore; print(laqcore.{module}.__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == f"laqcore.{module}"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = laqcore.nope
