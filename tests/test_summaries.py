"""The summaries of eval.json, derived by hand from a run whose evaluations score known numbers.

runner.evaluation_record turns the final evaluation and the periodic ones into the curve and the summaries a report
may show (`final`, `mean_last3`, `best_optimistic`); a slip there changes a published column silently, so each
figure below is computed by hand from scripted scores, through the real step loop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import context

from srpo_bench.core import stages as stages_module
from srpo_bench.core.stages import EvaluationSchedule, FitContext
from srpo_bench.data import toy
from srpo_bench.runner import evaluation_record
from srpo_bench.tasks import get_task

# Three periodic evaluations of the policy (at steps 2, 4 and 6 of 8), then the harness's final one.
POLICY_SCORES = [10.0, 70.0, 40.0]
FINAL_SCORE = 25.0


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Periodic evaluations that score the next number of a list (each with two episodes around it)."""
    scores: list[float] = []

    def evaluate(*args: object, **kwargs: object) -> SimpleNamespace:
        score = scores.pop(0)
        return SimpleNamespace(mean_normalized=score, normalized=[score - 5.0, score + 5.0])

    monkeypatch.setattr(stages_module, "evaluate", evaluate)
    yield scores
    assert not scores, f"scripted scores left unused: {scores}"


def train(ctx: FitContext, name: str, steps: int, evaluated: bool) -> None:
    """Fit stage `name` for `steps` steps, logging every step's loss as a method does."""
    agent = SimpleNamespace(seed=lambda seed: None)

    def loop(module: torch.nn.Module) -> None:
        for step, _bar in ctx.steps(name, steps, agent=(lambda: agent) if evaluated else None):
            ctx.log(name, step, loss=float(step))

    ctx.fit(name, lambda: torch.nn.Linear(2, 2), loop)


def toy_context(method: str, tmp_path: Path, evaluation: EvaluationSchedule | None = None) -> FitContext:
    _, ctx = context(method, get_task("toy-two-moons"), toy.load_toy("toy-two-moons", size=64), tmp_path,
                     evaluation=evaluation)
    return ctx


def final_result(score: float, normalized: list[float]) -> SimpleNamespace:
    """The harness's final evaluation as evaluation_record reads it."""
    return SimpleNamespace(mean_normalized=score, normalized=normalized,
                           to_dict=lambda: {"mean_normalized": score, "episodes": len(normalized)})


def record(tmp_path: Path, scripted: list[float], critic_evaluated: bool = False) -> dict:
    ctx = toy_context("srpo", tmp_path, EvaluationSchedule(points=3, episodes=2))
    train(ctx, "behavior", 6, evaluated=False)
    if critic_evaluated:  # a stage before the last one, evaluated: its scores are not the policy's curve
        scripted.extend([99.0, 98.0, 97.0])
    train(ctx, "critic", 8, evaluated=critic_evaluated)
    scripted.extend(POLICY_SCORES)
    train(ctx, "policy", 8, evaluated=True)
    return evaluation_record(final_result(FINAL_SCORE, [20.0, 30.0]), ctx)  # type: ignore[arg-type]


def test_the_summaries_are_the_final_score_the_last_three_points_and_the_best(tmp_path: Path,
                                                                              scripted: list[float]) -> None:
    evaluation = record(tmp_path, scripted)
    assert evaluation["mean_normalized"] == FINAL_SCORE and evaluation["episodes"] == 2  # the final result, whole
    assert evaluation["summaries"] == {
        "final": 25.0,
        "mean_last3": (70.0 + 40.0 + 25.0) / 3,  # the final evaluation is the curve's last point
        "best_optimistic": 70.0,  # picked after the fact, never the reported score
        "points": 4,
    }


def test_the_curve_is_the_last_stages_evaluations_then_the_final_one_at_the_stages_end(
        tmp_path: Path, scripted: list[float]) -> None:
    curve = record(tmp_path, scripted, critic_evaluated=True)["during_training"]
    assert [(p["stage"], p["step"], p["mean_normalized"]) for p in curve] == [
        ("policy", 2, 10.0), ("policy", 4, 70.0), ("policy", 6, 40.0), ("policy", 8, 25.0)]
    assert [p["normalized"] for p in curve] == [[5.0, 15.0], [65.0, 75.0], [35.0, 45.0], [20.0, 30.0]]
    assert [p.get("final", False) for p in curve] == [False, False, False, True]
    assert all(set(p["train_seconds"]) == {"cpu", "wall"} for p in curve)
    cpu = [p["train_seconds"]["cpu"] for p in curve]
    assert cpu == sorted(cpu) and cpu[0] > 0  # seconds spent so far: they only grow


def test_a_run_without_periodic_evaluations_summarises_its_final_score_alone(tmp_path: Path) -> None:
    ctx = toy_context("bc", tmp_path)
    train(ctx, "policy", 5, evaluated=True)  # no schedule: nothing is evaluated during training
    evaluation = evaluation_record(final_result(42.0, [42.0]), ctx)  # type: ignore[arg-type]
    assert evaluation["summaries"] == {"final": 42.0, "mean_last3": 42.0, "best_optimistic": 42.0, "points": 1}
    (point,) = evaluation["during_training"]
    assert (point["stage"], point["step"], point["final"]) == ("policy", 5, True)


def test_a_last_stage_that_logged_nothing_puts_the_final_point_at_step_zero(tmp_path: Path) -> None:
    """No logged step to count from (a stage fitted without a logged point): the final point says step 0 rather
    than inventing a step count."""
    ctx = toy_context("bc", tmp_path)
    ctx.fit("policy", lambda: torch.nn.Linear(2, 2), lambda module: None)
    (point,) = evaluation_record(final_result(42.0, [42.0]), ctx)["during_training"]  # type: ignore[arg-type]
    assert (point["stage"], point["step"]) == ("policy", 0)
