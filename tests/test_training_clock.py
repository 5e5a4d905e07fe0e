"""Training time as the x axis of a score curve: every evaluation point records the CPU and wall seconds spent
training so far (every stage counted, loaded ones at what they cost whoever trained them, evaluations never), and
the `ogbench-cpu` profile exists only where it was measured.

The clock test drives a fake `time` through a stage whose steps and evaluation cost known amounts, so every
recorded figure is derived by hand."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import context
from typer.testing import CliRunner

from srpo_bench import dry_run
from srpo_bench.cli import app
from srpo_bench.config import ConfigError, resolve_config
from srpo_bench.core import stages as stages_module
from srpo_bench.core.stages import EvaluationSchedule, FitContext
from srpo_bench.data import toy
from srpo_bench.profiles import harness_settings
from srpo_bench.protocols import deviations, load_protocol
from srpo_bench.publish import time_markdown
from srpo_bench.registry import get_method
from srpo_bench.report import leaderboard
from srpo_bench.report.aggregate import Estimate
from srpo_bench.report.build import build_report
from srpo_bench.report.training_time import RunCurve, TimeCurve, time_curves
from srpo_bench.runner import evaluation_record
from srpo_bench.tasks import get_task

EVALUATION_COST = (100.0, 50.0)  # (cpu, wall) seconds one periodic evaluation costs: never counted as training


class FakeTime:
    """`time` as the stages module reads it: CPU and wall clocks that move only when told."""

    def __init__(self) -> None:
        self.cpu, self.wall = 0.0, 0.0

    def process_time(self) -> float:
        return self.cpu

    def perf_counter(self) -> float:
        return self.wall

    def advance(self, cpu: float, wall: float) -> None:
        self.cpu += cpu
        self.wall += wall


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(stages_module, "time", fake)

    def evaluate(*args: object, **kwargs: object) -> SimpleNamespace:
        fake.advance(*EVALUATION_COST)
        return SimpleNamespace(mean_normalized=50.0, normalized=[50.0])

    monkeypatch.setattr(stages_module, "evaluate", evaluate)
    return fake


def fit_stage(ctx: FitContext, clock: FakeTime, name: str, steps: int, cpu_per_step: float,
              evaluated: bool = False) -> None:
    """Fit the declared stage `name` as a small module whose every step costs `cpu_per_step` CPU seconds and half
    that in wall seconds (two threads busy)."""
    agent = SimpleNamespace(seed=lambda seed: None)

    def train(module: torch.nn.Module) -> None:
        for _step, _bar in ctx.steps(name, steps, agent=(lambda: agent) if evaluated else None):
            clock.advance(cpu_per_step, cpu_per_step / 2)

    ctx.fit(name, lambda: torch.nn.Linear(2, 2), train)


def srpo_context(out: Path, run_id: str, beta: str = "0.2") -> FitContext:
    task = get_task("toy-two-moons")
    _, ctx = context("srpo", task, toy.load_toy("toy-two-moons", size=64), out, run_id=run_id,
                     overrides={"srpo": {"beta": beta}}, evaluation=EvaluationSchedule(points=1, episodes=1))
    return ctx


def final_point(ctx: FitContext) -> dict:
    final = SimpleNamespace(mean_normalized=60.0, normalized=[60.0], to_dict=lambda: {"mean_normalized": 60.0})
    return evaluation_record(final, ctx)["during_training"][-1]  # type: ignore[arg-type]


def test_each_evaluation_point_records_the_training_seconds_spent_so_far(tmp_path: Path, clock: FakeTime) -> None:
    ctx = srpo_context(tmp_path, "a")
    fit_stage(ctx, clock, "behavior", steps=10, cpu_per_step=1.0)  # 10 cpu, 5 wall
    fit_stage(ctx, clock, "critic", steps=20, cpu_per_step=0.5)  # 10 cpu, 5 wall
    fit_stage(ctx, clock, "policy", steps=8, cpu_per_step=2.0, evaluated=True)  # evaluated after step 4
    (point,) = ctx.evaluations
    assert point["step"] == 4
    assert point["train_seconds"] == {"cpu": 10 + 10 + 4 * 2.0, "wall": 5 + 5 + 4 * 1.0}
    assert final_point(ctx)["train_seconds"] == {"cpu": 36.0, "wall": 18.0}
    policy = ctx.stage_log[-1]
    assert policy["train_seconds"] == {"cpu": 16.0, "wall": 8.0}
    assert policy["seconds"] == 8.0 + EVALUATION_COST[1]  # the stage's elapsed time still includes it


def test_a_loaded_stage_counts_what_it_cost_whoever_trained_it(tmp_path: Path, clock: FakeTime) -> None:
    """A second run sharing the behavior model and critic spends no time on them, yet its curve is charged their
    cost: the x axis is what the method costs, not what this process happened to do."""
    first = srpo_context(tmp_path, "a")
    fit_stage(first, clock, "behavior", steps=10, cpu_per_step=1.0)
    fit_stage(first, clock, "critic", steps=20, cpu_per_step=0.5)
    second = srpo_context(tmp_path, "b", beta="3.0")
    fit_stage(second, clock, "behavior", steps=10, cpu_per_step=1.0)
    fit_stage(second, clock, "critic", steps=20, cpu_per_step=0.5)
    assert [entry["origin"] for entry in second.stage_log] == ["shared", "shared"]
    cpu_before_policy = clock.cpu
    fit_stage(second, clock, "policy", steps=8, cpu_per_step=2.0, evaluated=True)
    assert clock.cpu - cpu_before_policy == 16.0 + EVALUATION_COST[0]
    assert second.evaluations[0]["train_seconds"] == {"cpu": 28.0, "wall": 14.0}
    assert final_point(second)["train_seconds"] == {"cpu": 36.0, "wall": 18.0}


def test_a_stage_saved_before_clocks_existed_leaves_the_curve_without_a_time_axis(tmp_path: Path,
                                                                                   clock: FakeTime) -> None:
    first = srpo_context(tmp_path, "a")
    fit_stage(first, clock, "behavior", steps=10, cpu_per_step=1.0)
    (artifact,) = (tmp_path / "stages").glob("*.pt")
    saved = torch.load(artifact, weights_only=False)
    del saved["train_seconds"]
    torch.save(saved, artifact)
    second = srpo_context(tmp_path, "b")
    fit_stage(second, clock, "behavior", steps=10, cpu_per_step=1.0)
    fit_stage(second, clock, "critic", steps=20, cpu_per_step=0.5)
    fit_stage(second, clock, "policy", steps=8, cpu_per_step=2.0, evaluated=True)
    assert "train_seconds" not in second.evaluations[0]
    assert "train_seconds" not in final_point(second)


# --- the ogbench-cpu profile -------------------------------------------------------------------------------------
OGBENCH_TASK = "cube-single-play-singletask-task2-v0"


def test_the_ogbench_cpu_protocol_states_the_profiles_schedules() -> None:
    """The protocol's budget is what the profile runs: a run of the profile on the protocol's task differs from
    the protocol in nothing but what the run itself decides (here: the data it was given)."""
    protocol = load_protocol("ogbench-cpu")
    task = get_task(OGBENCH_TASK)
    harness = harness_settings(protocol.profile, "ogbench")
    assert (harness.eval_episodes, harness.evaluations_during_training) == (
        protocol.episodes, protocol.evaluations_during_training)
    for method in protocol.methods:
        config = dataclasses.asdict(resolve_config(get_method(method), task, protocol.profile))
        budget = protocol.budget_for("ogbench", method)
        assert budget and {key: config[key] for key in budget} == budget, method
        run = {"task": OGBENCH_TASK, "method": method, "family": "ogbench", "profile": protocol.profile,
               "config": config, "harness": {"eval_episodes": harness.eval_episodes,
                                             "evaluations_during_training": harness.evaluations_during_training},
               "dataset": {"transitions": 1_000_000}, "task_note": task.note}
        assert deviations(protocol, run) == [], method


@pytest.mark.parametrize(("method", "task", "message"), [
    ("diffusion-ql", OGBENCH_TASK, "profile 'ogbench-cpu' has no schedule for diffusion-ql on " + OGBENCH_TASK),
    ("srpo", "toy-two-moons", "profile 'ogbench-cpu' has no schedule for srpo on toy-two-moons"),
])
def test_the_ogbench_cpu_profile_is_refused_where_nothing_was_measured(method: str, task: str, message: str) -> None:
    """Anywhere without a measured schedule the profile is refused, never run at the official schedule."""
    with pytest.raises(ConfigError, match=message) as refused:
        resolve_config(get_method(method), get_task(task), "ogbench-cpu")
    assert "srpo on ogbench" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(ValueError, match="made for the ogbench family only, not toy"):
        harness_settings("ogbench-cpu", "toy")


# --- the report's score-against-training-time view ---------------------------------------------------------------
def point(step: int, cpu: float, wall: float, score: float) -> dict:
    return {"stage": "policy", "step": step, "mean_normalized": score, "train_seconds": {"cpu": cpu, "wall": wall}}


def test_time_curves_average_tasks_within_a_seed_then_seeds_with_an_interval() -> None:
    runs = [
        RunCurve("bc", "task-a", 0, "cpu", [point(5, 10.0, 5.0, 0.0), point(10, 20.0, 10.0, 40.0)]),
        RunCurve("bc", "task-b", 0, "cpu", [point(5, 30.0, 15.0, 20.0), point(10, 40.0, 20.0, 60.0)]),
        RunCurve("bc", "task-a", 1, "cpu", [point(5, 12.0, 6.0, 10.0), point(10, 22.0, 11.0, 50.0)]),
        RunCurve("bc", "task-b", 1, "cpu", [point(5, 32.0, 16.0, 30.0), point(10, 42.0, 21.0, 70.0)]),
        RunCurve("srpo", "task-a", 0, "cuda", [point(10, 99.0, 7.0, 80.0)]),
        RunCurve("srpo", "task-a", 1, "cuda", [{"step": 10, "mean_normalized": 90.0}]),  # made before clocks
    ]
    curves, notes = time_curves(runs, ["srpo", "bc"], reps=200)
    srpo, bc = curves
    # seed 0: tasks averaged -> (20 s, 10) and (30 s, 50); seed 1 -> (22 s, 20) and (32 s, 60)
    assert (bc.method, bc.clock, bc.steps, bc.seeds) == ("bc", "cpu", [5, 10], 2)
    assert bc.seconds == [21.0, 31.0]
    assert [s.point for s in bc.scores] == [15.0, 55.0]
    assert all(s.low is not None and s.low <= s.point <= s.high for s in bc.scores)
    # on a GPU the axis is elapsed time; the run without clocks is left out, and said so
    assert (srpo.clock, srpo.seconds, srpo.seeds, srpo.scores[0].low) == ("wall", [7.0], 1, None)
    assert notes == ["srpo: 1 run without training clocks (made before they were recorded), left out of the "
                     "score-against-training-time view"]


def test_a_method_whose_seeds_share_no_step_has_no_curve_and_the_next_method_keeps_its_own() -> None:
    """Seeds on different schedules keep only the steps they share; with none shared the method has no curve, and
    the methods after it in the order are still drawn. Untimed runs are counted per method."""
    runs = [
        RunCurve("idql", "task-a", 0, "cpu", [point(5, 10.0, 5.0, 10.0)]),
        RunCurve("idql", "task-a", 1, "cpu", [point(6, 11.0, 5.0, 12.0)]),  # no step in common with seed 0
        RunCurve("bc", "task-a", 0, "cpu", [point(5, 10.0, 5.0, 30.0), point(9, 20.0, 9.0, 40.0)]),
        RunCurve("bc", "task-a", 1, "cpu", [point(9, 22.0, 9.0, 50.0)]),  # shares step 9 only
        RunCurve("fql", "task-a", 0, "cpu", [{"step": 9, "mean_normalized": 1.0}]),  # made before clocks
        RunCurve("fql", "task-a", 1, "cpu", [{"step": 9, "mean_normalized": 2.0}]),
    ]
    curves, notes = time_curves(runs, ["idql", "bc", "fql"], reps=100)
    (bc,) = curves
    assert (bc.method, bc.steps, bc.seconds, [s.point for s in bc.scores]) == ("bc", [9], [21.0], [45.0])
    assert notes == ["fql: 2 runs without training clocks (made before they were recorded), left out of the "
                     "score-against-training-time view"]


def test_the_training_time_interval_is_the_reports_bootstrap_seeded_like_every_other(tmp_path: Path) -> None:
    """Six seeds (with three, the bootstrap's 2.5 and 97.5 percentiles are the extreme means whatever the draws):
    the same report seed gives the same interval, another seed another, as the aggregates' intervals do."""
    from report_store import make_store, write_run

    out = make_store(tmp_path / "store")
    for seed, score in enumerate((10.0, 35.0, 20.0, 80.0, 55.0, 70.0)):
        folder = write_run(out, "toy-two-moons", "bc", seed, [score, score])
        evaluation = json.loads((folder / "eval.json").read_text())
        evaluation["during_training"] = [{**point(10, 5.0 + seed, 6.0, score / 2), "stage": "policy"},
                                         {**point(20, 9.0 + seed, 11.0, score), "final": True}]
        (folder / "eval.json").write_text(json.dumps(evaluation))

    def final_interval(seed: int) -> tuple[float, float]:
        (curve,) = build_report([out], reps=300, seed=seed).groups[0].training_time
        return curve.scores[-1].low, curve.scores[-1].high

    assert final_interval(0) == final_interval(0) != final_interval(1)


def test_the_report_draws_score_against_training_time_from_what_the_runner_writes(
        smoke_results: dict, tmp_path: Path) -> None:
    """The real smoke grid's eval.json and run.json: each method's last point is its whole fit's CPU time (the
    run.json stage clocks summed, averaged over seeds), and the table, figure and JSON show the view."""
    out = smoke_results["out"]
    report = build_report([out], reps=200)
    (group,) = report.groups
    curves = {curve.method: curve for curve in group.training_time}
    assert {"srpo", "bc"} <= set(curves)
    for method in ("srpo", "bc"):
        runs = [json.loads(path.read_text()) for path in sorted((out / "runs" / "smoke" / "toy-two-moons" / method)
                                                                 .glob("seed*/run.json"))]
        spent = [sum(stage["train_seconds"]["cpu"] for stage in run["stages"]) for run in runs]
        curve = curves[method]
        assert curve.clock == "cpu" and curve.seeds == len(runs) == 2
        assert curve.seconds[-1] == pytest.approx(float(np.mean(spent)))
        assert curve.seconds == sorted(curve.seconds) and len(curve.steps) == 2  # one evaluation during training
    written = leaderboard.write(report, tmp_path, ["md", "json"], warn=lambda message: None)
    board = json.loads(next(path for path in written if path.suffix == ".json").read_text())
    (srpo,) = [c for c in board["groups"][0]["training_time"] if c["method"] == "srpo"]
    assert srpo["axis"] == "training CPU-seconds" and len(srpo["points"]) == 2
    markdown = next(path for path in written if path.suffix == ".md").read_text()
    assert "**score against training time" in markdown and "group0-training-time.png" in markdown


def test_the_readme_gives_each_method_one_row_of_scores_at_the_times_spent() -> None:
    curve = TimeCurve("fql", "cpu", [300, 600], [300.0, 912.0], [Estimate(0.0, 0.0, 0.0), Estimate(15.0, 5.0, 25.0)],
                      3)
    table = time_markdown([curve]).splitlines()
    assert table[-1] == "| fql | 3 | CPU-seconds | 0.0 [0.0, 0.0] at 5.0 min · 15.0 [5.0, 25.0] at 15.2 min |"


def test_the_dry_run_plans_the_protocol_at_one_workers_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    """`run --protocol ogbench-cpu --jobs 2 --threads 2 --dry-run`: each step is timed at the one thread a worker
    will have (timed at two on a 2-core machine, a grid of two workers was estimated several times too slow), the
    wall time is the compute over the jobs, and the caller's thread count is left as it was."""
    monkeypatch.setenv("OGBENCH_DATA_DIR", str(tmp_path / "no-data"))  # planned from the environment's shapes
    seen: list[int] = []
    real = dry_run.estimate_run

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(dry_run, "estimate_run", spy)
    before = torch.get_num_threads()
    result = CliRunner().invoke(app, ["run", "--protocol", "ogbench-cpu", "--jobs", "2", "--threads", "2",
                                      "--dry-run", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert seen == [1, 1, 1, 1]  # srpo, idql, fql, bc
    assert "12 runs: 12 to run. Estimated training compute left:" in result.output
    assert "with 1 thread per run; 2 jobs side by side: at least" in result.output
    assert torch.get_num_threads() == 2  # `--threads 2` for the command itself, restored after the probes
    torch.set_num_threads(before)
