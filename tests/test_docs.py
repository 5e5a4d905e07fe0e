"""The user documents: README.md stays short and types no measured figure, its commands are the ones CI runs, every
relative link resolves, and the documentation site builds with `mkdocs build --strict`.

README.md's generated sections (`<!-- generated: NAME -->` ... `<!-- end: NAME -->`) are compared with a fresh
render from results/ by tests/test_records.py (`srpo-bench results build --check`); here they are only cut out
before the prose is searched for numbers.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 300

GENERATED = re.compile(r"<!-- generated: (?P<name>[a-z0-9-]+) -->\n.*?<!-- end: (?P=name) -->", re.S)
COMMENT = re.compile(r"<!--.*?-->", re.S)
LINK_TARGET = re.compile(r"\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
LIST_MARKER = re.compile(r"^(\s*)\d+\.(?=\s)", re.M)
# A number: digits (with , or . between groups) not glued to a letter, digit or underscore on either side, so
# names such as hopper-medium-v2, walker2d, puzzle-3x3 or b256 are not numbers; a trailing x (a ratio: 25x) is.
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?:x\b)?(?!\w)")

# Numbers README.md may hold outside its generated sections, none of them a measurement of this repository.
# Each entry is a regular expression; an entry that matches nothing fails too, so the list stays small and true.
ALLOWED = {
    "the Python version": r"Python >= 3\.10",
    "the pinned torch wheel (the set-up commands)": r"torch==2\.13\.0",
    "the main command's seeds": r"--seeds 0,1,2",
    "SRPO's claim, from its paper's abstract": r"more than\s+25x",
    "the intervals' level": r"95% (?:bootstrap )?intervals",
    "papers' venues and years": r"\b(?:ICLR|ICML|arXiv) 20\d\d\b",
    # the two set-up times, measured and typed in this one marked line (update them after re-measuring)
    "the set-up times": r"<!-- set-up times[^>]*-->[^\n]*",
}


def prose(text: str) -> str:
    """README text that a person types: generated sections, comments and link targets removed."""
    text = GENERATED.sub("", text)
    text = re.sub(ALLOWED["the set-up times"], "", text)
    text = COMMENT.sub("", text)
    text = LINK_TARGET.sub("]()", text)
    return LIST_MARKER.sub(r"\1", text)


def stray_numbers(text: str) -> list[str]:
    """Every number in `text`'s prose that no allow-list entry covers, with its line for the message."""
    readme_prose = prose(text)
    for pattern in ALLOWED.values():
        readme_prose = re.sub(pattern, "", readme_prose)
    found = []
    for line in readme_prose.splitlines():
        found += [f"{match.group()!r} in: {line.strip()}" for match in NUMBER.finditer(line)]
    return found


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines (at most {MAX_README_LINES}): move detail to docs/"


def test_readme_types_no_measured_number() -> None:
    stray = stray_numbers(README.read_text(encoding="utf-8"))
    assert not stray, ("numbers typed into README.md outside its generated sections (generate them from results/, "
                       "or add a non-measurement to ALLOWED): " + "; ".join(stray))


def test_every_allowed_number_is_used() -> None:
    text = GENERATED.sub("", README.read_text(encoding="utf-8"))
    unused = [why for why, pattern in ALLOWED.items() if not re.search(pattern, text)]
    assert not unused, f"ALLOWED entries that README.md no longer needs: {unused}"


@pytest.mark.parametrize(("text", "numbers"), [
    ("SRPO acts 92x faster than IDQL", ["92x"]),
    ("a run takes 57.5 s, 1,294x SRPO's", ["57.5", "1,294x"]),
    ("scores -1.3 on hopper-medium-v2", ["1.3"]),
    ("hopper-medium-v2, walker2d, puzzle-3x3, b256, seed<k>, D4RL, more than 25x", []),
    ("1. a numbered step\n2. another", []),
    ("<!-- generated: speed -->\n| 30,023 |\n<!-- end: speed -->\nnone here", []),
    ("[a link](docs/page2.md) and <!-- a comment 42 -->", []),
    ("<!-- set-up times --> main command 3 min\nanother line: 7 min\n", ["7"]),
])
def test_the_number_check_finds_typed_numbers(text: str, numbers: list[str]) -> None:
    assert [item.split(" in: ")[0].strip("'") for item in stray_numbers(text)] == numbers


def ci_test_command() -> str:
    lines = [line for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
             if "pytest" in line and not line.lstrip().startswith("#")]
    assert len(lines) == 1, f".ci/run: expected one pytest line, found {lines}"
    return lines[0].strip()


def fenced_commands(text: str) -> list[str]:
    return [line.strip() for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S) for line in block.splitlines()
            if line.strip()]


def test_readme_test_command_is_what_ci_runs() -> None:
    assert ci_test_command() in fenced_commands(README.read_text(encoding="utf-8")), \
        "README.md's test command differs from the pytest line of .ci/run"


def test_docs_show_the_readme_main_command() -> None:
    main = [c for c in fenced_commands(README.read_text(encoding="utf-8")) if "srpo-bench run" in c]
    assert len(main) == 1, f"README.md: expected one main command, found {main}"
    assert main[0] in fenced_commands((DOCS / "index.md").read_text(encoding="utf-8")), \
        "docs/index.md's first run command differs from README.md's main command"


def markdown_files() -> list[Path]:
    return [README, ROOT / "results" / "README.md", *sorted(DOCS.rglob("*.md"))]


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)  # code blocks hold no links
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = [m["target"] for m in LINK_TARGET.finditer(text)]
    targets += re.findall(r"""(?:src|href)=["']([^"']+)["']""", text)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#|/", t)]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path: Path) -> None:
    broken = [target for target in relative_links(path)
              if not (path.parent / target.split("#")[0]).exists()]
    assert not broken, f"{path.relative_to(ROOT)}: links to missing files: {broken}"


def test_the_link_check_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) [gone](missing.md#part) [web](https://example.org) `[code](x.md)`\n")
    assert relative_links(page) == ["page.md", "missing.md#part"]


def load_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_methods_page_renders_every_registered_method_and_setting() -> None:
    """The generated methods section holds every method of the entry points, its docstring and every field of its
    config (read from the live classes, so a field the renderer drops fails here)."""
    from dataclasses import fields

    from srpo_bench.registry import available_methods, get_method

    hooks = load_hooks()
    page = hooks.render("<!-- generated: methods -->\n")
    for name in available_methods():
        method = get_method(name)
        assert f"## {name}\n" in page
        doc_first_line = sys.modules[method.__module__].__doc__.strip().splitlines()[0]
        assert doc_first_line in page, f"{name}: docstring missing"
        section = page.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        for field in fields(method.Config):
            assert re.search(rf"^\s+{field.name}: ", section, re.M), f"{name}: setting {field.name} not shown"


def test_protocols_page_renders_every_protocol_file() -> None:
    hooks = load_hooks()
    page = hooks.render("<!-- generated: protocols -->\n")
    for path in (ROOT / "srpo_bench" / "protocols").glob("*.toml"):
        assert path.read_text(encoding="utf-8").rstrip() in page, f"{path.name} not rendered whole"


def test_performance_page_names_every_speed_call() -> None:
    """Every timing file in results/speed appears under the command that made it, with its task and commit."""
    import json

    hooks = load_hooks()
    page = hooks.render("<!-- generated: speed-records -->\n")
    rows = page.splitlines()
    for path in sorted((ROOT / "results" / "speed").rglob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        row = [line for line in rows if f"`{path.relative_to(ROOT).as_posix()}`" in line]
        assert len(row) == 1, f"{path.name}: not listed once"
        assert f"--task {record['task']} --profile {record['profile']} " in row[0]
        assert record["git_commit"][:10] in row[0]


def test_readme_speed_section_has_every_timed_task_and_method() -> None:
    """The compact speed section (publish.speed_markdown): one table per task timed by `srpo-bench speed`, one row
    per method timed there, and SRPO's own speedup 1.00x in every runtime's column."""
    import json

    section = re.search(r"<!-- generated: speed -->\n(.*?)<!-- end: speed -->", README.read_text(encoding="utf-8"),
                        re.S).group(1)
    timed: dict[str, set[str]] = {}
    for path in (ROOT / "results" / "speed").rglob("*.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        timed.setdefault(record["task"], set()).update(m for _, m, _ in load_hooks()._speed_entries(record))
    tables = {part.split("`", 1)[0]: part.splitlines() for part in section.split("shapes of `")[1:]}
    assert sorted(tables) == sorted(timed)
    for task, lines in tables.items():
        header = next(line for line in lines if line.startswith("| method |"))
        rows = [line for line in lines if line.startswith("| ") and line != header]
        assert sorted(row.split(" | ")[0][2:] for row in rows) == sorted(timed[task]), task
        srpo = next(row for row in rows if row.startswith("| srpo |"))
        assert srpo.count("1.00x / 1.00x") == header.count("speedup") > 0, task


def test_an_unknown_generated_section_fails_the_build() -> None:
    hooks = load_hooks()
    with pytest.raises(hooks.GeneratedSectionError, match="unknown generated section 'tables'"):
        hooks.render("<!-- generated: tables -->\n")


@pytest.mark.skipif(shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None,
                    reason="mkdocs is not installed (pip install -e '.[docs]')")
def test_the_site_builds_strict(tmp_path: Path) -> None:
    """`mkdocs build --strict`: any warning (a broken link, a page missing from the nav, a missing snippet) fails."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    started = time.perf_counter()
    result = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "performance" / "index.html").is_file()
    print(f"mkdocs build --strict: {time.perf_counter() - started:.1f} s")
