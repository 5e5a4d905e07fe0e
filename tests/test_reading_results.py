"""Reading other people's results: a folder of failed runs, a read-only folder, and Ctrl-C at start-up. Each case
checks the exit code, the lines printed and that nothing was written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from report_store import good_store, make_store, write_run
from typer.testing import CliRunner

from srpo_bench.cli import INTERRUPTED, app

cli = CliRunner()
SRPO_BENCH = str(Path(sys.executable).parent / "srpo-bench")  # the console script, as a user runs it


def listing(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in sorted(folder.rglob("*"))}


def test_a_folder_of_only_failed_runs_lists_them_and_fails(tmp_path: Path) -> None:
    out = make_store(tmp_path / "runs")
    write_run(out, "toy-two-moons", "srpo", 0, [0.0], status="failed",
              failure={"stage": "critic", "step": 412, "reason": "non-finite loss (nan)"})
    write_run(out, "toy-two-moons", "idql", 1, [0.0], status="failed",
              failure={"stage": "behavior", "step": 3, "reason": "RuntimeError: out of memory"})
    before = listing(out)
    result = cli.invoke(app, ["report", str(out)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any("runs that did not finish" in line for line in lines)
    srpo = next(line for line in lines if "| srpo" in line)
    assert "toy-two-moons" in srpo and "non-finite loss (nan) (critic step 412)" in srpo
    assert any("RuntimeError: out of memory (behavior step 3)" in line for line in lines)
    assert lines[-1] == f"error: no finished runs in {out}: 2 runs did not finish (above)"
    assert listing(out) == before  # no leaderboard folder, nothing else


def test_a_read_only_results_folder_is_reported_and_nothing_is_written(tmp_path: Path, read_only) -> None:
    source = good_store(tmp_path / "runs")
    before = listing(source)
    view = read_only(source)
    result = subprocess.run([SRPO_BENCH, "report", str(view), "--reps", "50"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr  # no leaderboard folder was asked for
    assert "per-task scores" in result.stdout and "aggregates" in result.stdout  # the terminal report, whole
    (line,) = [line for line in result.stderr.splitlines() if "leaderboard" in line]
    assert line.startswith(f"warning: {view / 'leaderboard'}: cannot write (") and "--leaderboard DIR" in line
    assert ".png" not in line
    asked = subprocess.run([SRPO_BENCH, "report", str(view), "--reps", "50", "--leaderboard",
                            str(view / "board")], capture_output=True, text=True, timeout=300)
    cause = "read-only file system" if os.geteuid() == 0 else "permission denied"
    assert asked.returncode == 1 and asked.stderr.strip().splitlines() == [f"error: {view / 'board'}: cannot write "
                                                                           f"({cause})"]
    elsewhere = tmp_path / "board"
    fine = subprocess.run([SRPO_BENCH, "report", str(view), "--reps", "50", "--leaderboard", str(elsewhere),
                           "--format", "json"], capture_output=True, text=True, timeout=300)
    assert fine.returncode == 0 and (elsewhere / "leaderboard.json").exists(), fine.stderr
    assert listing(source) == before


@pytest.mark.slow
def test_dry_run_and_export_elsewhere_only_read_a_read_only_folder(tmp_path: Path, read_only) -> None:
    source = tmp_path / "runs"
    trained = cli.invoke(app, ["run", "--envs", "toy-two-moons", "--methods", "bc", "--seeds", "0", "--profile",
                               "smoke", "--out", str(source), "--device", "cpu", "--quiet"])
    assert trained.exit_code == 0, trained.output
    before = listing(source)
    view = read_only(source)
    dry = subprocess.run([SRPO_BENCH, "run", "--envs", "toy-two-moons", "--methods", "bc", "--seeds", "0",
                          "--profile", "smoke", "--out", str(view), "--dry-run"], capture_output=True, text=True,
                         timeout=300)
    assert dry.returncode == 0 and "1 finished" in dry.stdout and "Nothing was written" in dry.stdout, dry.stderr
    policy = tmp_path / "export" / "policy.pt"
    exported = subprocess.run([SRPO_BENCH, "export", str(view / "runs/smoke/toy-two-moons/bc/seed0"), "--format",
                               "torchscript", "--output", str(policy)], capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0 and policy.exists(), exported.stderr
    assert listing(source) == before


@pytest.mark.parametrize("delay", [0.5, 1.5])
def test_ctrl_c_at_start_up_says_so_in_one_line(tmp_path: Path, delay: float) -> None:
    """Interrupted while the command still imports and checks (torch alone takes over a second to import): the
    same line as a later interrupt, exit 130, nothing written."""
    out = tmp_path / "runs"
    process = subprocess.Popen([SRPO_BENCH, "run", "--envs", "toy-two-moons", "--methods", "bc", "--seeds", "0",
                                "--profile", "smoke", "--out", str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert lines[-1] == INTERRUPTED and "Traceback" not in stderr and stdout == "", stderr
    if not lines[0].startswith("srpo-bench "):  # still starting up (imports, checks): that line alone, no folder
        assert lines == [INTERRUPTED] and not out.exists()
    # else start-up took less than `delay` here (a warm, idle machine): the grid had begun, and the interrupt
    # still ends it with the same last line
