"""The report fed the repository's own records (results/runs: what the runner wrote, kept by `results add`): the
score against training time (its curves, table, JSON and figure), the scores during training and the per-task
summary `srpo-bench run` prints, each recomputed here from the records' raw evaluation points. One task's twelve
records (cube-single, 3 seeds of 4 methods), so it runs in seconds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from srpo_bench.report import leaderboard, plots, tables, training_time
from srpo_bench.report.build import Report, build_report

RECORDS = Path(__file__).parents[1] / "results"
PROFILE, TASK = "ogbench-cpu", "cube-single-play-singletask-task2-v0"


@pytest.fixture(scope="module")
def cube(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Report, dict[str, list[dict[str, Any]]]]:
    root = tmp_path_factory.mktemp("records")
    shutil.copy(RECORDS / "srpo-bench.json", root)
    shutil.copytree(RECORDS / "runs" / PROFILE / TASK, root / "runs" / PROFILE / TASK)
    records: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(root.glob("runs/*/*/*/seed*.json")):
        records.setdefault(path.parent.name, []).append(json.loads(path.read_text()))
    return root, build_report([root], reps=200), records


def test_the_records_hold_what_the_view_needs(cube) -> None:
    """The premise of the tests below: every seed of a method evaluated at the same steps, with CPU clocks."""
    _, _, records = cube
    assert sorted(records) == ["bc", "fql", "idql", "srpo"] and all(len(seeds) == 3 for seeds in records.values())
    for seeds in records.values():
        steps = {tuple(point["step"] for point in r["evaluation"]["during_training"]) for r in seeds}
        assert len(steps) == 1 and all(r["run"]["device"]["type"] == "cpu" for r in seeds)


def expected_curve(seeds: list[dict[str, Any]]) -> tuple[list[int], list[float], list[float]]:
    """Per evaluation point: its step, the mean over seeds of the CPU-seconds trained by then, the mean score."""
    points = [r["evaluation"]["during_training"] for r in seeds]
    steps = [point["step"] for point in points[0]]
    seconds = [float(np.mean([p[k]["train_seconds"]["cpu"] for p in points])) for k in range(len(steps))]
    scores = [float(np.mean([p[k]["mean_normalized"] for p in points])) for k in range(len(steps))]
    return steps, seconds, scores


def test_score_against_training_time_is_the_mean_over_seeds_at_each_evaluation_point(cube) -> None:
    _, report, records = cube
    (group,) = report.groups
    curves = {curve.method: curve for curve in group.training_time}
    assert sorted(curves) == sorted(records)
    for method, curve in curves.items():
        steps, seconds, scores = expected_curve(records[method])
        assert (curve.clock, curve.seeds, curve.steps) == ("cpu", 3, steps)
        assert curve.seconds == pytest.approx(seconds, rel=1e-12)
        assert [estimate.point for estimate in curve.scores] == pytest.approx(scores, abs=1e-12)
        assert all(e.low <= e.point <= e.high for e in curve.scores)
        # the last point is the final policy: the run's reported score
        assert curve.scores[-1].point == pytest.approx(np.mean([r["evaluation"]["mean_normalized"]
                                                                for r in records[method]]))
    idql = curves["idql"].scores[1]  # seeds at 60, 60 and 50: a real interval over seeds
    assert idql.low < idql.point < idql.high


def test_the_training_time_table_json_and_figure_carry_the_curves(cube) -> None:
    _, report, records = cube
    (group,) = report.groups
    curves = group.training_time
    table = tables.training_time(curves, "score against training time", "training-time-0")
    assert table.columns == ["method", "seeds", "last-stage step", "training time", "clock", "score"]
    assert len(table.rows) == sum(len(curve.steps) for curve in curves)
    first = next(curve for curve in curves if curve.method == "idql")
    rows = [row for row in table.rows if row[0].text == "idql"]
    assert [row[2].text for row in rows] == [f"{step:,}" for step in first.steps]
    assert {row[1].text for row in rows} == {"3"} and {row[4].text for row in rows} == {"CPU-seconds"}
    assert [row[3].sort for row in rows] == pytest.approx(first.seconds)
    assert [row[5].sort for row in rows] == pytest.approx([e.point for e in first.scores])

    written = training_time.to_json(curves)
    assert [entry["method"] for entry in written] == [curve.method for curve in curves]
    entry = written[[c.method for c in curves].index("idql")]
    assert {key: entry[key] for key in ("clock", "axis", "seeds")} == {"clock": "cpu", "axis": "training CPU-seconds",
                                                                      "seeds": 3}
    assert entry["points"] == [{"step": step, "train_seconds": spent, "score": e.point, "ci_low": e.low,
                                "ci_high": e.high} for step, spent, e in zip(first.steps, first.seconds, first.scores,
                                                                              strict=True)]

    figure = plots.score_vs_training_time(curves, {}, "cube-single")
    (ax,) = figure.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert sorted(lines) == sorted(f"{method} (3 seeds)" for method in records)
    x, y = lines["idql (3 seeds)"].get_data()
    assert np.allclose(x, np.array(first.seconds) / 60) and np.allclose(y, [e.point for e in first.scores])
    assert ax.get_xlabel() == "training CPU-minutes (every stage; evaluations excluded)"


def test_scores_during_training_are_mean_and_std_over_seeds(cube) -> None:
    _, report, records = cube
    (group,) = report.groups
    curves = leaderboard.during_training(report, group)
    assert list(curves) == [m for m in group.methods if m in records]
    for method, (steps, mean, spread) in curves.items():
        points = np.array([[p["mean_normalized"] for p in r["evaluation"]["during_training"]]
                           for r in records[method]])
        assert steps.tolist() == [p["step"] for p in records[method][0]["evaluation"]["during_training"]]
        assert mean == pytest.approx(points.mean(axis=0)) and spread == pytest.approx(points.std(axis=0, ddof=1))
    figure = plots.during_training(curves, {}, "cube-single")
    (ax,) = figure.axes
    lines = {line.get_label(): line.get_data() for line in ax.get_lines()}
    assert np.allclose(lines["bc"][0], curves["bc"][0]) and np.allclose(lines["bc"][1], curves["bc"][1])


def test_the_run_summary_reads_the_records_as_the_runner_wrote_them(cube) -> None:
    """`srpo-bench run`'s closing table (tables.runs_frame and task_summary) on the same records."""
    root, _, records = cube
    summary = tables.task_summary(tables.runs_frame(root)).set_index("method")
    assert sorted(summary.index) == sorted(records)
    for method, seeds in records.items():
        row = summary.loc[method]
        scores = [r["evaluation"]["mean_normalized"] for r in seeds]
        b1 = [r["speed"]["batches"]["1"]["actions_per_second"] for r in seeds]
        assert (row["profile"], row["task"], row["seeds"]) == (PROFILE, TASK, 3)
        assert row["score_mean"] == pytest.approx(np.mean(scores))
        assert row["score_std"] == pytest.approx(np.std(scores, ddof=1))
        assert row["dataset_score"] == pytest.approx(seeds[0]["run"]["dataset"]["average_normalized"])
        assert row["actions_per_second_b1"] == pytest.approx(np.median(b1))
        assert row["nfe_per_action"] == seeds[0]["speed"]["nfe_per_action"]
        # what the stages cost where the record lists them (a reused stage at its training cost), else the fit time
        fit = [sum(stage["seconds"] for stage in r["run"]["stages"]) if "stages" in r["run"]
               else r["run"]["seconds"]["fit"] for r in seeds]
        assert row["fit_minutes"] == pytest.approx(np.mean(fit) / 60)
    assert tables.task_summary(tables.runs_frame(root / "nothing-here")).empty
