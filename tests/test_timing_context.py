"""The timing context is recorded truthfully and the report reads it, from files the real runner writes.

A run timed by its own process right after its evaluation (a serial grid) says "in-run"; runs trained by packed
workers and timed afterwards, one at a time, by the grid's timing phase say "timing-phase", never "in-run" (which
the report once described as "timed inside training runs"). speed.json's `exclusive` (no other run of the results
folder training on this host meanwhile), `concurrent_runs` and `timed_seed` reach the report's timings frame, and a
timing taken while other runs trained is labelled ", shared" in the speed table."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from srpo_bench import runner, store
from srpo_bench.executors import ExecutorSettings, run_specs, timing_phase
from srpo_bench.locks import HOST
from srpo_bench.progress import Reporter
from srpo_bench.report import tables
from srpo_bench.report.build import REFERENCE_METHOD, build_report
from srpo_bench.report.frame import load_runs
from srpo_bench.runner import RunOptions, execute, load_checked, plan_grid

TASK = "toy-two-moons"
pytestmark = pytest.mark.slow  # each test trains two smoke BC runs (seconds)


@pytest.fixture(autouse=True)
def fresh_speed_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "_SPEED_CACHE", {})  # this process's timings of earlier tests are not reused


def grid(out: Path) -> list[runner.RunSpec]:
    specs = plan_grid([TASK], ["bc"], [0, 1], "smoke")
    load_checked([TASK])
    store.open_store(out)
    return specs


def speed_files(out: Path) -> dict[int, dict]:
    return {seed: json.loads((out / "runs" / "smoke" / TASK / "bc" / f"seed{seed}" / "speed.json").read_text())
            for seed in (0, 1)}


def speed_table_cells(out: Path) -> list[str]:
    """The 'timing' cells of the report's speed table (the context first; the machine's load follows it)."""
    report = build_report([out], reps=200)
    (device,) = report.timings["device"].unique()
    table = tables.speed(report.timings, report.speedups, device, REFERENCE_METHOD, "speed-0")
    column = table.columns.index("timing")
    return [row[column] for row in table.plain_rows()]


def test_runs_timed_in_the_timing_phase_say_so(tmp_path: Path) -> None:
    out = tmp_path / "results"
    specs = grid(out)
    # what packed workers do (--jobs N, Ray): train and score, leave the timing
    options = RunOptions(out=out, device="cpu", quiet=True, time_inline=False)
    outcomes = [execute(spec, options) for spec in specs]
    assert [outcome.status for outcome in outcomes] == ["evaluated", "evaluated"]
    assert not any((outcome.path / "speed.json").exists() for outcome in outcomes)
    outcomes = timing_phase(outcomes, options, Reporter(quiet=True))
    assert [outcome.status for outcome in outcomes] == ["finished", "finished"]

    written = speed_files(out)
    for speed in written.values():  # one timing for both seeds (same config): seed 0's agent
        assert (speed["context"], speed["exclusive"], speed["concurrent_runs"], speed["timed_seed"]) == (
            "timing-phase", True, 0, 0)
    timings = load_runs([out]).timings
    assert len(timings) == 1  # the two seeds' identical files are one timing
    row = timings.iloc[0]
    assert (row["context"], row["exclusive"], row["concurrent_runs"], row["timed_seed"]) == ("timing-phase", True, 0, 0)
    (cell,) = speed_table_cells(out)
    assert cell.startswith("timing-phase") and "in-run" not in cell and "shared" not in cell


def test_a_serial_run_timed_while_another_runner_trains_is_in_run_and_shared(tmp_path: Path) -> None:
    out = tmp_path / "results"
    specs = grid(out)
    # another runner of the same results folder, alive on this host, holding a run it is training
    other = subprocess.Popen(["sleep", "120"])
    try:
        lock = store.lock_path(out / "runs" / "smoke" / TASK / "srpo" / "seed9")
        lock.parent.mkdir(parents=True)
        lock.write_text(json.dumps({"host": HOST, "pid": other.pid, "since": "now"}))
        outcomes = run_specs(specs, RunOptions(out=out, device="cpu", quiet=True), ExecutorSettings(),
                             Reporter(quiet=True))
    finally:
        other.kill()
        other.wait()
    assert [outcome.status for outcome in outcomes] == ["finished", "finished"]
    assert other.pid != os.getpid()

    for speed in speed_files(out).values():
        assert (speed["context"], speed["exclusive"], speed["concurrent_runs"], speed["timed_seed"]) == (
            "in-run", False, 1, 0)
    row = load_runs([out]).timings.iloc[0]
    assert (row["context"], row["exclusive"], row["concurrent_runs"]) == ("in-run, shared", False, 1)
    (cell,) = speed_table_cells(out)
    assert cell.startswith("in-run, shared")
