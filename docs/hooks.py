"""MkDocs hook: the pages' generated sections, rendered from the repository's own files at build time.

A page marks a section with `<!-- generated: NAME -->` alone on a line; the hook replaces the marker with:

    methods     for every method registered in pyproject.toml (entry points "srpo_bench.methods"): its module's
                docstring (equations, official settings, every deviation), its config dataclass (each setting with
                its official default), the per-task tables of its module and its profiles' step counts
    protocols   every protocol file in srpo_bench/protocols/, with its title and summary
    speed-records   every timing file in results/speed/: the command that makes it, the machine, the commit

The sources are read as text and parsed with `ast` / `tomllib`, never imported, so the site builds without torch
and always shows the code as it is: a setting added to a config appears here with no edit to the docs.
"""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!-- generated: (?P<name>[a-z-]+) -->$", re.M)


class GeneratedSectionError(ValueError):
    """A page asks for a section the hook does not make, or a source it reads is not as expected."""


def registered_methods(root: Path = ROOT) -> dict[str, tuple[Path, str]]:
    """Method name -> (source file, class name), from pyproject.toml's entry points, in their order there."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    methods = {}
    for name, target in project["entry-points"]["srpo_bench.methods"].items():
        module, _, cls = target.partition(":")
        methods[name] = (root / (module.replace(".", "/") + ".py"), cls)
    return methods


def _class(tree: ast.Module, name: str, path: Path) -> ast.ClassDef:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise GeneratedSectionError(f"{path}: no class {name}")


def _leading_comments(lines: list[str], first: int) -> int:
    """The first line (1-based) of the comment block right above line `first`, or `first` when there is none."""
    while first > 1 and lines[first - 2].lstrip().startswith("#"):
        first -= 1
    return first


def _fields_source(lines: list[str], cls: ast.ClassDef) -> str:
    """The dataclass's source without its methods and docstring: decorators, the class line, every field and the
    comments between them."""
    start = min([d.lineno for d in cls.decorator_list] + [cls.lineno])
    dropped: set[int] = set()
    for node in cls.body:
        is_docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or is_docstring:
            first = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno])
            dropped.update(range(first, node.end_lineno + 1))
    kept = [lines[i - 1] for i in range(start, cls.end_lineno + 1) if i not in dropped]
    # no blank line where a dropped docstring stood, nor two in a row where a method did
    tidy = [line for n, line in enumerate(kept)
            if line.strip() or (n > 0 and kept[n - 1].strip() and not kept[n - 1].lstrip().startswith("class "))]
    return "\n".join(tidy).rstrip()


def _constants_source(lines: list[str], tree: ast.Module) -> str:
    """Module-level tables of per-task settings: UPPER_CASE names bound to a dict, with their comments."""
    blocks = []
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else \
            node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(target, ast.Name) and target.id.isupper() and isinstance(node.value, ast.Dict):
            first = _leading_comments(lines, node.lineno)
            blocks.append("\n".join(lines[first - 1:node.end_lineno]))
    return "\n".join(blocks)


def _class_attribute(cls: ast.ClassDef, name: str) -> ast.stmt | None:
    for node in cls.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            return node
    return None


def method_section(name: str, path: Path, cls_name: str, root: Path = ROOT) -> str:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text, filename=str(path))
    method = _class(tree, cls_name, path)
    config_node = _class_attribute(method, "Config")
    if not isinstance(config_node, ast.Assign) or not isinstance(config_node.value, ast.Name):
        raise GeneratedSectionError(f"{path}: {cls_name} has no `Config = ...` line")
    config = _class(tree, config_node.value.id, path)
    relative = path.relative_to(root).as_posix()
    out = [f"## {name}", "", f"`{relative}`, class `{cls_name}`; settings `{config.name}`: "
           f"`--set {name}.KEY=VALUE`.", "",
           "### Equations, official settings and deviations", "",
           "From the module's docstring:", "", "```text", (ast.get_docstring(tree) or "").rstrip(), "```", "",
           "### Settings and their defaults", "",
           "Each default is the official value unless the docstring above names it as ours.", "",
           "```python", _fields_source(lines, config), "```", ""]
    constants = _constants_source(lines, tree)
    if constants:
        out += ["### Per-task settings", "", "```python", constants, "```", ""]
    profiles = _class_attribute(method, "profiles")
    if profiles is not None:
        out += ["### Profiles", "",
                "Step counts of the `smoke` and `quick` profiles, per task family (`paper` keeps the defaults "
                "above):", "", "```python", textwrap.dedent("\n".join(lines[profiles.lineno - 1:profiles.end_lineno])),
                "```", ""]
    return "\n".join(out)


def methods_markdown(root: Path = ROOT) -> str:
    return "\n".join(method_section(name, path, cls, root) for name, (path, cls) in registered_methods(root).items())


def protocols_markdown(root: Path = ROOT) -> str:
    out = []
    for path in sorted((root / "srpo_bench" / "protocols").glob("*.toml")):
        text = path.read_text(encoding="utf-8")
        protocol: dict[str, Any] = tomllib.loads(text)
        out += [f"## {protocol['name']}", "", f"**{protocol['title']}**", "",
                " ".join(protocol.get("summary", "").split()), "",
                f"`{path.relative_to(root).as_posix()}`:", "", "```toml", text.rstrip(), "```", ""]
    return "\n".join(out)


def _speed_entries(record: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(runtime, method, timing) of a `srpo-bench speed` file: `speed/runtimes/*.json` nest runtime -> method,
    `speed/*.json` (eager only) method -> timing."""
    results = record["results"]
    if all(isinstance(v, dict) and "batches" in v for v in results.values()):
        return [("eager", method, timing) for method, timing in results.items()]
    return [(runtime, method, timing) for runtime, methods in results.items() for method, timing in methods.items()]


def speed_records_markdown(root: Path = ROOT) -> str:
    """One row per `srpo-bench speed` call recorded in results/speed (a call writes speed/<task>...json with its
    eager timings and speed/runtimes/<task>...json with every runtime; files of one call share task, commit and
    time): the command that makes such files, rebuilt from what they record (task, profile, runtimes, methods,
    torch threads), the machine, its load and the commit."""
    import json

    registered = set(registered_methods(root))
    calls: dict[tuple[str, str, str, str], list[tuple[Path, dict[str, Any]]]] = {}
    for path in sorted((root / "results" / "speed").rglob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        key = (record["task"], record["profile"], record["git_commit"], record["created"])
        calls.setdefault(key, []).append((path, record))
    rows = []
    for (task, profile, commit, created), files in calls.items():
        entries = [entry for _, record in files for entry in _speed_entries(record)]
        order = ("eager", "compiled", "onnx")
        runtimes = sorted({r for r, _, _ in entries}, key=lambda r: (order.index(r) if r in order else len(order), r))
        methods = sorted({method for _, method, _ in entries})
        threads = sorted({str(t["torch_threads"]) for _, _, t in entries})
        loads = [t["machine_load"]["loadavg_before"][0] for _, _, t in entries if t.get("machine_load")]
        machines = sorted({f"{t['device'].get('type', '?')} {t['device'].get('name', '')}".strip()
                           + f" ({t['machine_load']['cpu_count']} CPUs)"
                           for _, _, t in entries if t.get("machine_load")})
        command = (f"srpo-bench speed --methods {'all' if set(methods) == registered else ','.join(methods)} "
                   f"--task {task} --profile {profile} --runtime {','.join(runtimes)} --threads {','.join(threads)}")
        load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"
        names = "<br>".join(f"`{path.relative_to(root).as_posix()}`" for path, _ in files)
        rows.append(f"| `{command}` | {', '.join(machines)} | {load} | {commit[:10]} | {created} | {names} |")
    if not rows:
        return "_no timing files in results/speed yet_\n"
    header = ["command", "machine", "1-minute load before each timing", "commit", "taken", "files"]
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *rows, ""])


SECTIONS = {"methods": methods_markdown, "protocols": protocols_markdown, "speed-records": speed_records_markdown}


def render(markdown: str, root: Path = ROOT) -> str:
    """`markdown` with every marker replaced by its section; an unknown marker is an error (a page must never
    show a stale or empty section silently)."""
    def section(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in SECTIONS:
            raise GeneratedSectionError(f"unknown generated section {name!r} (known: {', '.join(SECTIONS)})")
        return SECTIONS[name](root)

    return MARKER.sub(section, markdown)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return render(markdown)
