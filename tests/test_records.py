"""results/: `srpo-bench results add` takes only what may be published, in full or not at all; `results build`
rebuilds the leaderboard byte for byte and `--check` finds any difference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_store import make_store, protocol_run, speed_record, write_run
from typer.testing import CliRunner

from srpo_bench.cli import app
from srpo_bench.store import MARKER

TASK = "toy-two-moons"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def one_line_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[0]


def toy_store(folder: Path, seeds: range = range(10), methods: tuple[str, ...] = ("srpo", "bc")) -> Path:
    """Runs that comply with the toy protocol, with a timing each and during-training evaluations."""
    out = make_store(folder)
    for method in methods:
        for seed in seeds:
            run = protocol_run(out, "toy", TASK, method, seed, 90.0 - seed - 40 * (method == "bc"), kind="toy",
                               family="toy", speed=speed_record([1000.0, 1100.0, 900.0], [1e5] * 3))
            evaluation = json.loads((run / "eval.json").read_text())
            evaluation["during_training"] = [{"stage": "policy", "step": 10, "mean_normalized": 1.0,
                                              "normalized": [1.0] * 256}]
            (run / "eval.json").write_text(json.dumps(evaluation))
    return out


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_add_copies_compact_records_of_finished_runs_and_never_weights(tmp_path: Path) -> None:
    source = toy_store(tmp_path / "runs", seeds=range(2))
    write_run(source, TASK, "idql", 0, [1.0], status="failed", failure={"stage": "critic", "step": 3,
                                                                         "reason": "diverged"})
    (source / "stages").mkdir()
    (source / "stages" / "VPSDEBehaviorStage-abc.pt").write_bytes(b"weights")
    records = tmp_path / "results"
    result = invoke("results", "add", str(source), "--to", str(records))
    assert result.exit_code == 0, result.output
    assert "added 4 run records" in result.output and "1 run that did not finish left out" in result.output
    written = sorted(str(p.relative_to(records)) for p in records.rglob("*") if p.is_file())
    assert written == sorted([MARKER, *(f"runs/quick/{TASK}/{m}/seed{s}.json" for m in ("bc", "srpo") for s in (0, 1))])
    record = json.loads((records / f"runs/quick/{TASK}/srpo/seed1.json").read_text())
    assert record["record_schema"] == 1 and record["run"]["git_commit"] == "abc123"
    assert len(record["evaluation"]["normalized"]) == 256  # every final episode stays
    assert record["evaluation"]["during_training"] == [{"stage": "policy", "step": 10, "mean_normalized": 1.0}]
    assert record["speed"]["batches"]["1"]["samples"] == [1000.0, 1100.0, 900.0]
    assert json.loads((records / MARKER).read_text())["kind"] == "records"


@pytest.mark.parametrize("damage", ["foreign", "newer", "damaged", "dirty", "exploratory"])
def test_add_refuses_a_bad_folder_in_one_line_and_writes_nothing(tmp_path: Path, damage: str) -> None:
    source = toy_store(tmp_path / "runs", seeds=range(2))
    run = source / "runs" / "quick" / TASK / "srpo" / "seed1" / "run.json"
    expected = {"foreign": "not an srpo-bench results folder", "newer": "newer srpo-bench",
                "damaged": "not valid JSON", "dirty": "uncommitted code",
                "exploratory": "does not comply with protocol toy (smoke profile (protocol: quick))"}[damage]
    if damage == "foreign":
        (source / MARKER).unlink()
    elif damage == "newer":
        (source / MARKER).write_text(json.dumps({"schema_version": 99}))
    elif damage == "damaged":
        run.write_text("{not json")
    elif damage == "dirty":
        run.write_text(run.read_text().replace('"abc123"', '"abc123-dirty"'))
    else:
        run.write_text(run.read_text().replace('"profile": "quick"', '"profile": "smoke"'))
    records = tmp_path / "results"
    line = one_line_error(invoke("results", "add", str(source), "--to", str(records)))
    assert expected in line and ("nothing was added" in line or damage in ("foreign", "newer")), line
    assert not records.exists()


def test_add_publishes_off_protocol_runs_only_when_asked_and_labelled(tmp_path: Path) -> None:
    source = make_store(tmp_path / "runs")
    write_run(source, TASK, "srpo", 0, [50.0], profile="smoke")
    records = tmp_path / "results"
    assert "--exploratory" in one_line_error(invoke("results", "add", str(source), "--to", str(records)))
    result = invoke("results", "add", str(source), "--to", str(records), "--exploratory")
    assert result.exit_code == 0 and "(1 exploratory)" in result.output, result.output


def test_add_refuses_a_duplicate_and_leaves_the_records_as_they_were(tmp_path: Path) -> None:
    records = tmp_path / "results"
    assert invoke("results", "add", str(toy_store(tmp_path / "a", seeds=range(2))), "--to", str(records)).exit_code == 0
    before = files(records)
    line = one_line_error(invoke("results", "add", str(toy_store(tmp_path / "b", seeds=range(1, 3))), "--to",
                                 str(records)))
    assert "duplicate of" in line and f"{TASK}/bc/seed1.json" in line and "nothing was added" in line
    assert files(records) == before


def test_add_refuses_a_newer_record_schema_from_another_records_folder(tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert invoke("results", "add", str(toy_store(tmp_path / "a", seeds=range(1))), "--to", str(other)).exit_code == 0
    record = other / "runs" / "quick" / TASK / "srpo" / "seed0.json"
    record.write_text(record.read_text().replace('"record_schema": 1', '"record_schema": 7'))
    line = one_line_error(invoke("results", "add", str(other), "--to", str(tmp_path / "results")))
    assert "record schema 7" in line and str(record) in line
    assert not (tmp_path / "results").exists()


def test_build_is_byte_identical_and_check_names_the_file_that_differs(tmp_path: Path) -> None:
    records = tmp_path / "results"
    assert invoke("results", "add", str(toy_store(tmp_path / "runs")), "--to", str(records)).exit_code == 0
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- generated: leaderboard -->\nstale\n<!-- end: leaderboard -->\n"
                      "<!-- generated: speed -->\n<!-- end: speed -->\n")
    built = invoke("results", "build", "--records", str(records), "--readme", str(readme))
    assert built.exit_code == 0, built.output
    first = files(records / "leaderboard")
    assert "protocol toy: aggregates over 1 task**" in readme.read_text() and "stale" not in readme.read_text()
    board = json.loads((records / "leaderboard" / "leaderboard.json").read_text())
    assert board["stamp"]["reproducible"] and "report_git_commit" not in board["stamp"]
    assert not board["exploratory"] and board["groups"][0]["protocol"] == "toy"
    assert all(not run["path"].startswith("/") for run in board["runs"])  # no machine's paths
    assert invoke("results", "build", "--records", str(records), "--readme", str(readme)).exit_code == 0
    assert files(records / "leaderboard") == first  # the same records give the same bytes
    checked = invoke("results", "build", "--records", str(records), "--readme", str(readme), "--check")
    assert checked.exit_code == 0 and "the same as a rebuild" in checked.output, checked.output
    csv = records / "leaderboard" / "leaderboard-tasks.csv"
    csv.write_text(csv.read_text() + "toy-two-moons,tampered\n")
    line = one_line_error(invoke("results", "build", "--records", str(records), "--check"))
    assert str(csv) in line and "differs from a rebuild" in line
    readme.write_text(readme.read_text().replace("IQM", "IQM*"))
    csv.write_bytes(first["leaderboard-tasks.csv"])
    line = one_line_error(invoke("results", "build", "--records", str(records), "--readme", str(readme), "--check"))
    assert str(readme) in line and "generated sections differ" in line


def test_the_published_leaderboard_equals_a_rebuild_from_its_records() -> None:
    """results/leaderboard and README.md's generated tables are what `srpo-bench results build` makes of
    results/ (.ci/run runs the same check through the CLI)."""
    from srpo_bench.publish import check

    root = Path(__file__).resolve().parents[1]
    compared = check(root / "results", root / "results" / "leaderboard", root / "README.md", warn=pytest.fail)
    assert compared > 10
