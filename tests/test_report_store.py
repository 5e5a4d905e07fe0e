"""Reading stores for the report: damaged or foreign folders are skipped with one warning line each, stores merge
without double counting, failed runs are listed apart, missing data shows as missing, and bad input ends in one
line with a non-zero exit, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_store import good_store, make_store, speed_record, write_run
from typer.testing import CliRunner

from srpo_bench.cli import app
from srpo_bench.report.build import build_report
from srpo_bench.report.frame import load_runs
from srpo_bench.store import SCHEMA_VERSION

cli = CliRunner()


def report(*args: str):
    return cli.invoke(app, ["report", "--reps", "200", *args])


def damage(out: Path) -> dict[str, Path]:
    """One folder per kind of damage; each must be skipped with a warning naming its file."""
    paths = {}
    bad_json = write_run(out, "toy-two-moons", "bc", 0, [50.0])
    (bad_json / "run.json").write_text("{not json")
    paths["not valid JSON"] = bad_json / "run.json"
    listed = write_run(out, "toy-two-moons", "bc", 1, [50.0])
    (listed / "eval.json").write_text("[1, 2, 3]")
    paths["expected a JSON object"] = listed / "eval.json"
    newer = write_run(out, "toy-two-moons", "bc", 2, [50.0])
    run = json.loads((newer / "run.json").read_text())
    (newer / "run.json").write_text(json.dumps({**run, "schema_version": SCHEMA_VERSION + 1}))
    paths["newer srpo-bench"] = newer / "run.json"
    keyless = write_run(out, "toy-two-moons", "bc", 3, [50.0])
    run = json.loads((keyless / "run.json").read_text())
    del run["seed"]
    (keyless / "run.json").write_text(json.dumps(run))
    paths["missing 'seed'"] = keyless / "run.json"
    no_eval = write_run(out, "toy-two-moons", "bc", 4, [50.0])
    (no_eval / "eval.json").unlink()
    paths["missing (run.json says finished)"] = no_eval / "eval.json"
    torn_speed = write_run(out, "toy-checkerboard", "bc", 0, [50.0, 50.0], speed=speed_record([1.0], [1.0]))
    (torn_speed / "speed.json").write_text('{"batches": ')  # the run still counts, without its timing
    paths["timing left out: "] = torn_speed / "speed.json"
    nan = write_run(out, "toy-two-moons", "bc", 5, [50.0])
    (nan / "eval.json").write_text('{"mean_normalized": NaN, "normalized": [1.0]}')
    paths["non-numeric 'mean_normalized'"] = nan / "eval.json"
    return paths


def test_damaged_run_folders_are_skipped_with_one_warning_each_and_the_report_goes_on(tmp_path: Path) -> None:
    out = good_store(tmp_path / "results")
    paths = damage(out)
    result = report(str(out))
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == len(paths)
    for problem, path in paths.items():
        assert any(str(path) in line and problem in line for line in warnings), (problem, warnings)
    board = json.loads((out / "leaderboard" / "leaderboard.json").read_text())
    # Six folders skipped; the run with a torn speed.json keeps its score and loses only its timing.
    assert board["stamp"]["runs"] == {"finished": 13, "not_finished": 0, "damaged_skipped": 6}
    assert len(board["warnings"]) == len(paths)
    assert not any(t["method"] == "bc" for t in board["speed"]["timings"])


def test_a_store_passed_twice_or_a_run_copied_into_another_store_counts_once(tmp_path: Path) -> None:
    first = good_store(tmp_path / "a")
    second = make_store(tmp_path / "b")
    write_run(second, "toy-two-moons", "srpo", 0, [80.0, 82.0])  # the same run, copied
    write_run(second, "toy-two-moons", "srpo", 7, [90.0, 90.0])  # a new seed
    runs = load_runs([first, first, second])
    assert len(runs.finished) == 12 + 1
    cell = runs.finished[(runs.finished["task"] == "toy-two-moons") & (runs.finished["method"] == "srpo")]
    assert sorted(cell["seed"]) == [0, 1, 2, 7]


def test_overrides_make_a_separate_method_and_clashing_configs_keep_the_newest(tmp_path: Path) -> None:
    first, second = good_store(tmp_path / "a"), make_store(tmp_path / "b")
    write_run(second, "toy-two-moons", "srpo", 0, [10.0], overrides={"beta": "0.01"})
    write_run(second, "toy-two-moons", "srpo", 1, [20.0], config={"lr": 1.0}, finished="2027-01-01T00:00:00+00:00")
    runs = load_runs([first, second])
    methods = set(runs.finished["method"])
    assert "srpo[beta=0.01]" in methods
    seed1 = runs.finished[(runs.finished["task"] == "toy-two-moons") & (runs.finished["method"] == "srpo")
                          & (runs.finished["seed"] == 1)]
    assert seed1["score"].tolist() == [20.0]
    assert any("different configs" in w for w in runs.warnings)


def test_failed_runs_are_listed_apart_with_their_reason(tmp_path: Path) -> None:
    out = good_store(tmp_path / "results")
    write_run(out, "toy-two-moons", "sfbc", 0, [0.0], status="failed",
              failure={"stage": "behavior", "step": 120, "reason": "loss became NaN", "last_metrics": {"loss": 1e9}})
    write_run(out, "toy-two-moons", "sfbc", 1, [0.0], status="running")
    result = report(str(out), "--format", "json,csv,md")
    assert result.exit_code == 0, result.output
    board = json.loads((out / "leaderboard" / "leaderboard.json").read_text())
    failed = {row["seed"]: row for row in board["failed_runs"]}
    assert "loss became NaN" in failed[0]["reason"] and "behavior" in failed[0]["reason"]
    assert "still running, or interrupted" in failed[1]["reason"]
    assert all("sfbc" not in group["methods"] for group in board["groups"])
    csv = pd.read_csv(out / "leaderboard" / "leaderboard-failed.csv", comment="#")
    assert len(csv) == 2
    assert "runs that did not finish" in (out / "leaderboard" / "leaderboard.md").read_text()


def test_missing_cells_show_as_missing_never_zero(tmp_path: Path) -> None:
    out = good_store(tmp_path / "results")
    for seed in range(4):  # bc ran one task only
        write_run(out, "toy-two-moons", "bc", seed, [40.0, 40.0])
    group = build_report([out], reps=200).groups[0]
    assert group.aggregate_tasks == ["toy-two-moons"]  # the only task every method ran
    assert any("leave out toy-checkerboard" in note for note in group.notes)
    assert any("unequal seed counts between methods (srpo 3, bc 4, idql 3)" in note for note in group.notes)
    result = report(str(out), "--format", "md,json,csv")
    assert result.exit_code == 0, result.output
    markdown = (out / "leaderboard" / "leaderboard.md").read_text()
    checkerboard = next(line for line in markdown.splitlines() if line.startswith("| toy-checkerboard"))
    assert checkerboard.split(" | ")[3] == "missing"  # columns: task, data, srpo, bc, idql
    tasks = pd.read_csv(out / "leaderboard" / "leaderboard-tasks.csv", comment="#")
    assert not ((tasks["task"] == "toy-checkerboard") & (tasks["method"] == "bc")).any()
    board = json.loads((out / "leaderboard" / "leaderboard.json").read_text())
    assert all(row["mean"] != 0 for row in board["groups"][0]["per_task"])


def test_unequal_seed_counts_within_a_method_are_handled_and_said(tmp_path: Path) -> None:
    out = good_store(tmp_path / "results")
    write_run(out, "toy-checkerboard", "idql", 3, [65.0, 65.0])  # idql: 4 seeds on one task, 3 on the other
    group = build_report([out], reps=200).groups[0]
    assert group.runs_per_task == {"srpo": 3, "idql": 3}
    assert any("idql: 3-4 seeds per task; aggregates use the lowest 3 seeds" in note for note in group.notes)
    assert any("fewer than 5" in note for note in group.notes)
    per_task = group.per_task.set_index(["task", "method"])
    assert per_task.loc[("toy-checkerboard", "idql"), "seeds"] == 4  # the per-task table keeps every seed


def test_speed_prefers_timings_taken_alone_and_says_so(tmp_path: Path) -> None:
    out = good_store(tmp_path / "results")
    (out / "speed").mkdir()
    (out / "speed" / "toy-two-moons-cpu.json").write_text(json.dumps({
        "created": "2026-12-01T00:00:00+00:00", "task": "toy-two-moons", "device": "cpu",
        "results": {"srpo": speed_record([2000.0, 2100.0, 1900.0], [1e5] * 3, context="alone"),
                    "idql": speed_record([4.0, 4.4, 3.6], [40.0] * 3, nfe=448, context="alone")}}))
    (out / "speed" / "broken.json").write_text("[]")
    result = build_report([out], reps=500)
    timings = result.timings.set_index(["task", "method"])
    assert timings.loc[("toy-two-moons", "srpo"), "context"] == "alone"
    assert timings.loc[("toy-checkerboard", "srpo"), "context"] == "in-run"
    speedups = result.speedups.set_index(["task", "method"])
    assert speedups.loc[("toy-two-moons", "idql"), "speedup_b1"] == pytest.approx(500.0)  # 2000 / 4, alone
    assert speedups.loc[("toy-checkerboard", "idql"), "speedup_b1"] == pytest.approx(100.0)  # 1000 / 10, in-run
    low, high = speedups.loc[("toy-two-moons", "idql"), ["low_b1", "high_b1"]]
    assert low <= 500.0 <= high
    assert any("broken.json" in w for w in result.warnings)


def test_speedups_are_taken_within_one_runtime_never_across(tmp_path: Path) -> None:
    """`speed --runtime eager,onnx` writes speed/runtimes/*.json: the report shows each runtime's rows and pairs
    SRPO-onnx with IDQL-onnx, SRPO-eager with IDQL-eager; a method a runtime could not run is left out."""
    out = good_store(tmp_path / "results")
    (out / "speed" / "runtimes").mkdir(parents=True)
    (out / "speed" / "runtimes" / "toy-two-moons-cpu.json").write_text(json.dumps({
        "created": "2026-12-01T00:00:00+00:00", "task": "toy-two-moons", "device": "cpu", "table": [],
        "results": {
            "eager": {"srpo": speed_record([2000.0] * 3, [1e5] * 3, context="alone"),
                      "idql": speed_record([4.0] * 3, [40.0] * 3, nfe=448, context="alone")},
            "onnx": {"srpo": speed_record([8000.0] * 3, [2e5] * 3, context="alone"),
                     "idql": speed_record([5.0] * 3, [50.0] * 3, nfe=448, context="alone"),
                     "sfbc": {"unavailable": "not exportable"}}}}))
    result = build_report([out], reps=200)
    timings = result.timings.set_index(["runtime", "task", "method"])
    assert timings.loc[("onnx", "toy-two-moons", "srpo"), "aps_b1"] == 8000.0
    assert timings.loc[("eager", "toy-two-moons", "srpo"), "aps_b1"] == 2000.0
    assert ("onnx", "toy-two-moons", "sfbc") not in timings.index
    speedups = result.speedups.set_index(["runtime", "task", "method"])
    assert speedups.loc[("onnx", "toy-two-moons", "idql"), "speedup_b1"] == pytest.approx(1600.0)  # 8000 / 5
    assert speedups.loc[("eager", "toy-two-moons", "idql"), "speedup_b1"] == pytest.approx(500.0)  # 2000 / 4
    assert report(str(out), "--format", "md,csv", "--reps", "200").exit_code == 0
    markdown = (out / "leaderboard" / "leaderboard.md").read_text()
    assert "| onnx | toy-two-moons | idql |" in markdown and "1,600x" in markdown


def test_timings_alone_make_a_speed_report(tmp_path: Path) -> None:
    """A folder where only `srpo-bench speed` ran: the report has its speed section and no score sections."""
    out = make_store(tmp_path / "results")
    (out / "speed").mkdir()
    (out / "speed" / "toy-two-moons-cpu.json").write_text(json.dumps({
        "created": "2026-12-01T00:00:00+00:00", "task": "toy-two-moons", "device": "cpu",
        "results": {"srpo": speed_record([2000.0] * 3, [1e5] * 3, context="alone"),
                    "sfbc": speed_record([2.0] * 3, [8.0] * 3, nfe=512, context="alone")}}))
    result = report(str(out), "--format", "md", "--reps", "200")
    assert result.exit_code == 0, result.output
    markdown = (out / "leaderboard" / "leaderboard.md").read_text()
    assert "| eager | toy-two-moons | sfbc |" in markdown and "1,000x" in markdown


def test_two_reports_of_the_same_runs_print_the_same_numbers(tmp_path: Path) -> None:
    out = good_store(tmp_path / "results")
    first = report(str(out), "--format", "json", "--leaderboard", str(tmp_path / "one"))
    second = report(str(out), "--format", "json", "--leaderboard", str(tmp_path / "two"))
    assert first.exit_code == second.exit_code == 0
    one = json.loads((tmp_path / "one" / "leaderboard.json").read_text())
    two = json.loads((tmp_path / "two" / "leaderboard.json").read_text())
    assert one["groups"] == two["groups"] and one["speed"] == two["speed"]


def one_line_error(result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_bad_input_ends_in_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    out = good_store(tmp_path / "results")
    assert "unknown --format 'pdf'" in one_line_error(report(str(out), "--format", "md,pdf"), 2)
    assert f"{tmp_path / 'nowhere'}: no results folder here" in one_line_error(
        report(str(tmp_path / "nowhere")), 2)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = one_line_error(report(str(out), "--leaderboard", str(blocker / "board"), "--format", "json"), 1)
    assert str(blocker / "board") in line and "cannot write" in line
    empty = make_store(tmp_path / "empty")
    assert "no finished runs" in one_line_error(report(str(empty)), 1)
    newer = make_store(tmp_path / "newer")
    (newer / "srpo-bench.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    result = report(str(newer), str(out), "--format", "json")
    assert result.exit_code == 0 and "newer srpo-bench" in result.output  # the other store still reports


def test_a_read_only_leaderboard_folder_is_one_line(tmp_path: Path, read_only) -> None:
    out = good_store(tmp_path / "results")
    locked = tmp_path / "locked"
    locked.mkdir()
    view = read_only(locked)  # a read-only bind mount as root, so the test holds in CI too
    line = one_line_error(report(str(out), "--leaderboard", str(view), "--format", "json"), 1)
    assert str(view) in line and "cannot write" in line


def test_one_seed_gives_no_interval_rather_than_a_zero_width_one(tmp_path: Path) -> None:
    out = make_store(tmp_path / "results")
    write_run(out, "toy-two-moons", "srpo", 0, [80.0, 82.0])
    write_run(out, "toy-two-moons", "bc", 0, [50.0, 52.0])
    write_run(out, "toy-two-moons", "bc", 1, [55.0, 57.0])
    group = build_report([out], reps=100).groups[0]
    assert group.estimates["srpo"]["iqm"].point == 81.0 and group.estimates["srpo"]["iqm"].low is None
    assert group.estimates["bc"]["iqm"].low is not None
    assert group.improvement["bc"].point == 1.0 and group.improvement["bc"].low is None
    assert any("srpo: one seed per task, so no interval" in note for note in group.notes)


def test_speedups_from_medians_alone_and_none_where_a_side_has_no_speed() -> None:
    """Timings recorded before per-repeat samples existed: the ratio of the medians, no interval. A side without a
    positive speed gives no ratio, never a zero or infinite one; with samples on both sides, the reps and seed
    given are the bootstrap's."""
    from srpo_bench.report.speedup import speedups

    def timing(method: str, b1: float | None, b256: float | None, samples: list[float] | None = None) -> dict:
        return {"device": "cpu", "runtime": "eager", "task": "t", "method": method, "context": "alone",
                "aps_b1": b1, "samples_b1": samples or [], "aps_b256": b256, "samples_b256": []}

    selected = pd.DataFrame([timing("srpo", 1000.0, 0.0), timing("idql", 10.0, 5.0), timing("sfbc", None, 2.0)])
    rows = {row["method"]: row for row in speedups(selected).to_dict("records")}
    assert (rows["idql"]["speedup_b1"], rows["idql"]["low_b1"], rows["idql"]["high_b1"]) == (100.0, None, None)
    assert pd.isna(rows["idql"]["speedup_b256"]) and pd.isna(rows["sfbc"]["speedup_b1"])
    fast, slow = [900.0, 950.0, 1000.0, 1040.0, 1100.0, 1230.0], [8.0, 9.0, 9.5, 10.0, 11.0, 12.5]
    sampled = pd.DataFrame([timing("srpo", 1000.0, None, fast), timing("idql", 10.0, None, slow)])
    (row,) = speedups(sampled, reps=300, seed=3).to_dict("records")
    from srpo_bench.report.aggregate import speedup_interval
    expected = speedup_interval(fast, slow, reps=300, seed=3)
    assert (row["speedup_b1"], row["low_b1"], row["high_b1"]) == (expected.point, expected.low, expected.high)
    assert expected not in (speedup_interval(fast, slow, seed=3), speedup_interval(fast, slow, reps=300))


def test_load_labels_at_their_edges() -> None:
    """Busy only above threads + 0.5 (the load counts the timing process itself); no thread count, or one below 1,
    says nothing."""
    from srpo_bench.report.speedup import load_label

    assert [load_label(1.5, 1), load_label(1.5001, 1), load_label(0.2, 0), load_label(3.0, 0.5),
            load_label(float("nan"), 2)] == ["quiet", "busy", "unknown", "unknown", "unknown"]


def test_timings_recorded_before_runtimes_and_thread_counts_existed_read_as_eager_and_unknown_load() -> None:
    from srpo_bench.report.speedup import select_timings

    old = pd.DataFrame([{"device": "cpu", "task": "t", "method": method, "context": "alone", "taken": "2026-01-01",
                         "loadavg": 0.2, "cpu_count": 2, "nfe_per_action": 1, "aps_b1": aps, "samples_b1": [],
                         "aps_b256": None, "samples_b256": []} for method, aps in (("srpo", 100.0), ("bc", 50.0))])
    chosen = select_timings(old).set_index("method")
    assert list(chosen["runtime"]) == ["eager", "eager"] and list(chosen["load"]) == ["unknown", "unknown"]
    assert chosen["threads"].isna().all() and chosen.loc["srpo", "aps_b1"] == 100.0


def test_the_newest_alone_timing_is_taken_and_two_samples_give_quartiles() -> None:
    """Two `srpo-bench speed` files for one method: the newer one is the timing (not both, not the older); its two
    per-repeat samples give the median and both quartiles (numpy's linear percentiles of two values)."""
    from srpo_bench.report.speedup import select_timings

    def alone(taken: str, samples: list[float]) -> dict:
        return {"device": "cpu", "runtime": "eager", "task": "t", "method": "srpo", "context": "alone",
                "taken": taken, "loadavg": 0.2, "threads": 1, "cpu_count": 2, "nfe_per_action": 1,
                "aps_b1": float(np.median(samples)), "samples_b1": samples, "aps_b256": None, "samples_b256": []}

    timings = pd.DataFrame([alone("2026-12-02T00:00:00", [100.0, 200.0]), alone("2026-12-01T00:00:00", [5.0, 7.0])])
    (row,) = select_timings(timings).to_dict("records")
    assert (row["timings"], row["samples_b1"], row["aps_b1"]) == (1, [100.0, 200.0], 150.0)
    assert (row["p25_b1"], row["p75_b1"]) == (125.0, 175.0)
    assert row["aps_b256"] is None and row["p25_b256"] is None


def test_timings_made_inside_runs_keep_the_runtime_they_were_made_with(tmp_path: Path) -> None:
    """A grid run with `--runtime onnx` times its policy through ONNX Runtime and says so in speed.json; the report
    files those timings under onnx, so the speedup compares onnx with onnx (never with eager)."""
    out = make_store(tmp_path / "store")
    for method, rate in (("srpo", 1000.0), ("idql", 10.0)):
        write_run(out, "toy-two-moons", method, 0, [50.0, 52.0],
                  speed={**speed_record([rate, rate * 1.1, rate * 0.9], [rate * 100] * 3), "runtime": "onnx"})
    report = build_report([out], reps=100)
    assert set(report.timings["runtime"]) == {"onnx"}
    (row,) = report.speedups.to_dict("records")
    assert (row["runtime"], row["method"], row["speedup_b1"]) == ("onnx", "idql", pytest.approx(100.0))


def test_training_curves_mean_each_stages_main_metric_over_seeds_in_the_groups_method_order(tmp_path: Path) -> None:
    """curves.json as the runner writes it ({stage: [{step, metric..., lr}]}): per method and stage, the mean over
    seeds of the stage's main metric ('loss' when logged, else the first finite one, never the step or the
    learning rate); stages with no points are skipped; the figure thins a long curve to MAX_POINTS, ends kept."""
    from srpo_bench.report import leaderboard, plots

    out = make_store(tmp_path / "store")
    for method in ("bc", "srpo"):
        for seed in (0, 1):
            folder = write_run(out, "toy-two-moons", method, seed, [50.0, 52.0])
            (folder / "curves.json").write_text(json.dumps({
                "behavior": [{"step": s, "diffusion_loss": float(seed + s), "lr": 3e-4} for s in range(500)],
                "policy": [{"step": s, "q": -1.0, "loss": float(10 * seed + s)} for s in range(0, 100, 10)],
                "critic": []}))
    report = build_report([out], reps=50)
    (group,) = report.groups
    curves, metrics = leaderboard.training_curves(report, group, warn=pytest.fail)
    assert list(curves) == [("srpo", "behavior"), ("srpo", "policy"), ("bc", "behavior"), ("bc", "policy")]
    assert metrics == {(m, "behavior"): "diffusion_loss" for m in ("bc", "srpo")} | {
        (m, "policy"): "loss" for m in ("bc", "srpo")}
    steps, mean = curves[("bc", "behavior")]["toy-two-moons"]
    assert steps.tolist() == list(range(500)) and mean.tolist() == [s + 0.5 for s in range(500)]
    steps, mean = curves[("srpo", "policy")]["toy-two-moons"]
    assert steps.tolist() == list(range(0, 100, 10)) and mean.tolist() == [s + 5.0 for s in range(0, 100, 10)]

    figure = plots.training_curves(curves, metrics, "toy")
    (line,) = figure.axes[0].get_lines()  # srpo: behavior
    x, y = line.get_data()
    assert len(x) == plots.MAX_POINTS and (x[0], x[-1]) == (0, 499)
    assert np.array_equal(x, np.linspace(0, 499, plots.MAX_POINTS).astype(int)) and np.array_equal(y, x + 0.5)
    assert figure.axes[0].get_ylabel() == "diffusion_loss" and figure.axes[1].get_ylabel() == "loss"


def test_methods_on_disjoint_tasks_get_no_aggregates_and_the_report_says_why(tmp_path: Path) -> None:
    """SRPO ran one task, BC another: no task was run by every method, so no aggregate compares them; the per-task
    table still shows both, and the notes name what was left out. A report made here (not from records) names its
    stores by their full paths."""
    out = make_store(tmp_path / "store")
    for seed in (0, 1):
        write_run(out, "toy-two-moons", "srpo", seed, [80.0 + seed, 82.0])
        write_run(out, "toy-checkerboard", "bc", seed, [40.0 + seed, 42.0])
    report = build_report([out], reps=50)
    (group,) = report.groups
    assert group.aggregate_tasks == [] and group.estimates == {} and group.improvement == {}
    assert sorted(zip(group.per_task["task"], group.per_task["method"], strict=True)) == [("toy-checkerboard", "bc"),
                                                                                         ("toy-two-moons", "srpo")]
    assert "aggregates leave out toy-checkerboard, toy-two-moons: not every method ran them" in group.notes
    assert "no task was run by every method: no aggregates" in group.notes
    assert report.stamp["stores"] == [str(out)]
    assert build_report([out], reps=50, reproducible=True).stamp["stores"] == [out.name]


def test_the_training_csv_has_one_header_whether_or_not_stage_times_were_recorded(tmp_path: Path) -> None:
    """leaderboard-training.csv from runs with stage times and from runs without any (made before they were
    recorded): the same columns in the same order, so a reader's parser never depends on the data."""
    from srpo_bench.report import leaderboard
    from srpo_bench.report.speedup import TRAINING_COLUMNS

    timed = make_store(tmp_path / "timed")
    write_run(timed, "toy-two-moons", "srpo", 0, [50.0, 52.0])
    untimed = make_store(tmp_path / "untimed")
    folder = write_run(untimed, "toy-two-moons", "srpo", 0, [50.0, 52.0])
    run = json.loads((folder / "run.json").read_text())
    del run["stages"], run["seconds"]
    (folder / "run.json").write_text(json.dumps(run))
    with_times = leaderboard.csv_frames(build_report([timed], reps=50))["training"]
    without = leaderboard.csv_frames(build_report([untimed], reps=50))["training"]
    assert list(with_times.columns) == list(without.columns) == TRAINING_COLUMNS
    assert with_times.to_dict("records") == [
        {"device": "cpu, 1 thread", "profile": "quick", "task": "toy-two-moons", "method": "srpo", "stage": stage,
         "seeds": 1, "seconds": 2.0} for stage in ("policy", "total")] and without.empty


def test_the_stamp_names_the_libraries_behind_a_report_made_here(tmp_path: Path) -> None:
    import matplotlib
    import scipy
    import torch

    from srpo_bench.report import leaderboard

    line = leaderboard.stamp_line(build_report([good_store(tmp_path / "store")], reps=50))
    for name, module in (("torch", torch), ("numpy", np), ("pandas", pd), ("scipy", scipy),
                         ("matplotlib", matplotlib)):
        assert f"{name} {module.__version__}" in line, name
    assert "3 runs" not in line and "12 finished runs, 0 not finished, 0 damaged folders skipped" in line


def test_a_figures_folder_that_cannot_be_made_is_one_line_naming_the_file(tmp_path: Path) -> None:
    """A file where the leaderboard's figures folder goes (unwritable for root too, unlike a read-only folder): one
    line naming what could not be written, a non-zero exit."""
    from test_cli import one_line_error

    board = tmp_path / "board"
    board.mkdir()
    (board / "figures").write_text("not a folder")
    result = CliRunner().invoke(app, ["report", str(good_store(tmp_path / "store")), "--leaderboard", str(board),
                                      "--reps", "50"])
    line = one_line_error(result)
    assert result.exit_code != 0 and str(board / "figures") in line and "cannot write" in line
