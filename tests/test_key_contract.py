"""The key contract between the code that writes the project's files and the code that reads them.

Writers (run by the session fixture `smoke_results`, tests/conftest.py): the runner (run.json, eval.json, speed.json,
curves.json), `srpo-bench speed` (speed/*.json, speed/runtimes/*.json), `results add` (records) and `export` (the
ONNX file's `srpo_bench` metadata). Readers: report/frame.py and the report modules, the leaderboard, `results add`
(records.py), the published tables (publish.py) and the deployment example's reader of an export.

Every string key a reader looks up (`x["key"]`, `x.get("key")`, `"key" in x`, `_dict(x, "key")`, `_number(x, "key",
...)`, and the summary names of report/build.py's SUMMARIES) must be a key some writer wrote, or a column of the
report's own frames (computed here from the real report), or one of the few keys named below with the reason nobody
writes them in a smoke run. A reader that looks up a key nobody writes (the report once read a 'last' summary the
runner never wrote) fails this test, naming the file and line."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
import pandas as pd
import pytest

from srpo_bench import deploy_example, publish, records, store
from srpo_bench.report import aggregate, build, frame, leaderboard, reference, speedup, tables
from srpo_bench.report.build import build_report

READERS = [frame, build, leaderboard, speedup, tables, reference, records, publish, store, deploy_example]
KEY_FUNCTIONS = {"_dict": 1, "_number": 1, "_numbers": 1, "get": 0}  # function -> position of the key argument
# Keys read that no smoke run writes, each with its reason.
NOT_IN_A_SMOKE_RUN = {
    "failure": "run.json of a failed run (tests/test_failures_recorded.py writes them)",
    "stage": "failure record and during-training points",
    "step": "failure record and during-training points",
    "reason": "failure record",
    "last_metrics": "failure record",
    "error_file": "failure record",
    "unavailable": "a --runtime speed file's method that a runtime could not run",
    "kind": "records folder marker",
}


def read_keys(module: Any) -> Iterator[tuple[str, int]]:
    """(key, line) for every string key `module` looks up."""
    tree = ast.parse(Path(module.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                yield node.slice.value, node.lineno
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            position = KEY_FUNCTIONS.get(name)
            if position is not None and len(node.args) > position:
                argument = node.args[position]
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    yield argument.value, node.lineno
        elif (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn))
              and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)):
            yield node.left.value, node.lineno
    if module is build:  # the summary names the report reads, by column
        yield from ((name, 0) for names in build.SUMMARIES.values() for name in names)


def keys_of(value: Any) -> set[str]:
    """Every key of every object nested in `value`."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            found.add(str(key))
            found |= keys_of(item)
    elif isinstance(value, list):
        for item in value:
            found |= keys_of(item)
    return found


def written_keys(results: dict[str, Path]) -> set[str]:
    keys: set[str] = set()
    for folder in (results["out"], results["records"]):
        for path in folder.rglob("*.json"):
            if "leaderboard" not in path.parts:  # the report's own output is not an input of these readers
                keys |= keys_of(json.loads(path.read_text()))
    for exported in results["exports"]:
        metadata = {entry.key: entry.value for entry in onnx.load(str(exported)).metadata_props}
        keys |= set(metadata) | keys_of(json.loads(metadata["srpo_bench"]))
    return keys


def report_names(results: dict[str, Path]) -> set[str]:
    """Names the report makes itself and its modules look up: columns of every frame it builds from the real files,
    the keys of its own JSON document, stamp (a records rebuild's too) and group compliance, which leaderboard.py
    renders, the published tables' columns
    (reference.compare renames `score`, `seeds` and `protocol` to published_*), metric and format names."""
    names: set[str] = set()
    for store_path, reproducible in ((results["out"], False), (results["records"], True)):
        report = build_report([store_path], reps=100, reproducible=reproducible)
        names |= keys_of(report.stamp) | keys_of([group.compliance for group in report.groups])
        frames = [report.runs.finished, report.runs.failed, report.runs.timings, report.timings, report.speedups,
                  report.training, report.comparison, reference.load_reference(),
                  *(group.per_task for group in report.groups)]
        for table in frames:
            if isinstance(table, pd.DataFrame):
                names |= {str(column) for column in table.columns}
        names |= keys_of(leaderboard.clean(leaderboard.to_json(report)))
    names |= {f"published_{name}" for name in ("seeds", "protocol")} | {"published"}
    names |= set(aggregate.METRICS) | {"mean", "std"}  # metric names; pandas aggregations
    return names | set(getattr(leaderboard, "FORMATS", ("md", "html", "csv", "json")))


@pytest.mark.slow
def test_every_key_read_is_a_key_written(smoke_results: dict[str, Path]) -> None:
    known = written_keys(smoke_results) | report_names(smoke_results) | set(NOT_IN_A_SMOKE_RUN)
    unread = []
    for module in READERS:
        for key, line in read_keys(module):
            if key not in known:
                unread.append(f"{Path(module.__file__).name}:{line} reads '{key}'")
    assert not unread, "keys read that no writer writes:\n" + "\n".join(sorted(set(unread)))


@pytest.mark.slow
def test_the_files_hold_what_the_readers_need(smoke_results: dict[str, Path]) -> None:
    """The other direction, for the files a report is made of: every summary the runner writes is one the report
    reads, and the timing keys of a runner's speed.json reach the report's timings frame."""
    run = smoke_results["out"] / "runs" / "smoke" / "toy-two-moons" / "srpo" / "seed0"
    summaries = set(json.loads((run / "eval.json").read_text())["summaries"])
    assert summaries == {name for names in build.SUMMARIES.values() for name in names}
    speed = json.loads((run / "speed.json").read_text())
    timings = build_report([smoke_results["out"]], reps=100).runs.timings
    in_runs = timings[timings["context"] != "alone"]
    assert {"exclusive", "concurrent_runs", "timed_seed"} <= set(in_runs.columns)
    assert set(in_runs["exclusive"]) == {speed["exclusive"]} and set(in_runs["timed_seed"]) == {0}
    assert store.read_object(run / "run.json")["status"] == "finished"
