"""The import graph of `srpo_bench` and `baselines`, read from the source with `ast` (nothing is imported).

Layering rules the architecture depends on: no import cycle at module level (a cycle makes import order
matter and has broken the CLI before: `data/collect.py -> methods.py -> tasks.py -> data/collect.py`), the data
layer never reaches the method layer, and no baseline imports SRPO (shared parts live in shared modules).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("srpo_bench", "baselines")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _sources() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the two packages."""
    return {_module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(body: list[ast.stmt], module_level_only: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements of `body` that can run. Never those under `if TYPE_CHECKING:` (they never run).
    With `module_level_only`, only those that run when the module is imported: not inside functions (they
    run later, if ever); class bodies and `if`/`try`/`with` blocks run at import time, so they count."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if not module_level_only:
                yield from _import_nodes(node.body, module_level_only)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_nodes(node.orelse, module_level_only)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    yield from _import_nodes([c for c in children if isinstance(c, ast.AST)], module_level_only)


def _resolve(name: str) -> str | None:
    """The most specific of our modules that importing `name` loads (`a.b.func` -> `a.b`), or None."""
    if name.split(".")[0] not in PACKAGES:
        return None
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in _sources():
            return candidate
        parts.pop()
    return None


def _imports(module: str, module_level_only: bool) -> set[str]:
    """Our modules that `module` imports."""
    path = _sources()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path)).body, module_level_only):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: `from . import x`, `from ..data import y`
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule `pkg.sub` when there is one, else a name of `pkg`
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                targets.add(target)
    return targets


def _graph(module_level_only: bool = True) -> dict[str, set[str]]:
    return {module: _imports(module, module_level_only) for module in _sources()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected component (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first back to it)."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in sorted(graph[node] & component):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if succ not in parents:
                    parents[succ] = node
                    following.append(succ)
        frontier = following
    raise AssertionError(f"no cycle in component {component}")  # Tarjan only reports cyclic components


def _path(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """A shortest import chain from `start` to `goal`, or None."""
    parents: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            if node == goal:
                chain = [node]
                while (parent := parents[chain[-1]]) is not None:
                    chain.append(parent)
                return chain[::-1]
            for succ in sorted(graph[node]):
                if succ not in parents:
                    parents[succ] = node
                    following.append(succ)
        frontier = following
    return None


# --- the graph reader itself ---------------------------------------------------------------------------
def test_the_reader_sees_the_known_edges() -> None:
    """Guards the guard: an empty graph would pass every test below."""
    graph = _graph()
    assert "srpo_bench.data.lite" in graph["srpo_bench.tasks"]  # `from srpo_bench.data.lite import (...)`
    assert "srpo_bench.collect.sac" in graph["srpo_bench.collect.lite"]
    assert "srpo_bench.data.d4rl" in graph["srpo_bench.collect.lite"]  # `from srpo_bench.data import d4rl`
    assert "srpo_bench.data.d4rl" not in graph["srpo_bench.data.lite"]  # imported inside `load_lite` only
    assert "srpo_bench.data.d4rl" in _graph(module_level_only=False)["srpo_bench.data.lite"]


def test_cycles_are_found_and_printed() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


# --- the rules -----------------------------------------------------------------------------------------
def test_no_import_cycle_at_module_level() -> None:
    """A module-level cycle makes the result of an import depend on which module was imported first."""
    cycles = _cycles(_graph())
    assert not cycles, "import cycle(s):\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_no_import_cycle_through_function_level_imports() -> None:
    """An import moved into a function hides a cycle from Python, not from the design: the issue-10 cycle
    `data/collect.py -> methods.py -> tasks.py -> data/collect.py` went through `tasks._lite_task`."""
    cycles = _cycles(_graph(module_level_only=False))
    assert not cycles, "import cycle(s):\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


@pytest.mark.parametrize("layer", ["srpo_bench.data", "srpo_bench.collect"])
def test_the_data_layer_never_reaches_the_method_layer(layer: str) -> None:
    """Loading or making a dataset must not import training code: not directly, not through another module,
    not even inside a function."""
    graph = _graph(module_level_only=False)
    forbidden = [m for m in graph if m in ("srpo_bench.methods", "srpo_bench.runner")
                 or m.startswith(("srpo_bench.methods.", "baselines"))]
    members = [m for m in graph if m == layer or m.startswith(layer + ".")]
    assert members, f"no module under {layer}"
    chains = [chain for m in members for goal in forbidden if (chain := _path(graph, m, goal)) is not None]
    assert not chains, "\n".join(" -> ".join(chain) for chain in chains)


def test_no_baseline_imports_srpo() -> None:
    """Shared parts (policy agent, VP-SDE behavior stage, IQL critic ...) live in shared modules: SRPO is one
    method under test, not a library the others depend on. Any import counts, inside functions too."""
    graph = _graph(module_level_only=False)
    offenders = sorted(m for m in graph if m.startswith("baselines") and "srpo_bench.srpo" in graph[m])
    assert not offenders, f"import srpo_bench.srpo: {', '.join(offenders)}"
