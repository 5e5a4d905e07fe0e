"""Score against training time: the compute-normalized view (pure functions over the runs' evaluation curves).

Every evaluation point of a run (eval.json `during_training`, the final policy's evaluation last) records the
seconds spent training so far (`train_seconds`: every stage of the method, a shared stage at what it cost whoever
trained it, evaluations never; core/stages.py `TrainingClock`). On a CPU the x axis is the process's CPU time
(the compute a run cost, whatever the machine's load); on a GPU it is elapsed time, device-seconds.

Runs of one group share their evaluation schedule, so the k-th point of every seed is the same step: per method
and point, the x value is the mean over seeds of the training seconds, and the score is the mean over seeds (of
the mean over the group's tasks) with a percentile-bootstrap 95% interval over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from srpo_bench.report.aggregate import DEFAULT_REPS, DEFAULT_SEED, Estimate, mean_interval

#: which clock is the x axis, per device type
CLOCKS = {"cpu": "cpu"}
AXIS_NAMES = {"cpu": "training CPU-seconds", "wall": "training device-seconds (elapsed)"}


@dataclass(frozen=True)
class TimeCurve:
    """One method's score against training time on one kind of device."""

    method: str
    clock: str  # "cpu" | "wall"
    steps: list[int]  # the last stage's step at each point (the same for every seed)
    seconds: list[float]  # mean over seeds of the training seconds at each point
    scores: list[Estimate]  # mean over seeds, 95% bootstrap interval over seeds
    seeds: int


@dataclass(frozen=True)
class RunCurve:
    """One run's evaluation curve as the report reads it."""

    method: str
    task: str
    seed: int
    device_type: str
    points: Sequence[Any]  # eval.json during_training entries


def clock_name(clock: str) -> str:
    """A clock as a table cell says it: "CPU-seconds", "device-seconds (elapsed)"."""
    return AXIS_NAMES[clock].removeprefix("training ")


def clock_of(device_type: str) -> str:
    return CLOCKS.get(device_type, "wall")


def timed_points(points: Sequence[Any], clock: str) -> list[tuple[int, float, float]] | None:
    """(step, seconds, score) of each point, or None when any point lacks a finite clock (a run made before
    clocks were recorded, or over a stage cached without one): such a run has no place on a time axis."""
    out = []
    for point in points:
        if not isinstance(point, dict):
            return None
        seconds = point.get("train_seconds")
        value = seconds.get(clock) if isinstance(seconds, dict) else None
        step, score = point.get("step"), point.get("mean_normalized")
        if not all(_finite(v) for v in (value, step, score)):
            return None
        out.append((int(step), float(value), float(score)))
    return out or None


def time_curves(runs: Iterable[RunCurve], methods: Sequence[str], reps: int = DEFAULT_REPS,
                seed: int = DEFAULT_SEED) -> tuple[list[TimeCurve], list[str]]:
    """Per (method, clock): the curve over seeds, and notes on what was left out. A seed's value at a point is
    its mean over the group's tasks; points are matched by their step (a method whose seeds followed different
    schedules keeps the steps every seed has)."""
    per_seed: dict[tuple[str, str], dict[int, dict[int, list[tuple[float, float]]]]] = {}
    untimed: dict[str, int] = {}
    for run in runs:
        clock = clock_of(run.device_type)
        timed = timed_points(run.points, clock)
        if timed is None:
            untimed[run.method] = untimed.get(run.method, 0) + 1
            continue
        seeds = per_seed.setdefault((run.method, clock), {})
        for step, seconds, score in timed:
            seeds.setdefault(run.seed, {}).setdefault(step, []).append((seconds, score))
    curves = []
    order = {method: index for index, method in enumerate(methods)}
    for (method, clock), seeds in sorted(per_seed.items(), key=lambda item: (order.get(item[0][0], 99), item[0])):
        steps = sorted(set.intersection(*(set(by_step) for by_step in seeds.values())))
        if not steps:
            continue
        seconds, scores = [], []
        for step in steps:
            values = [np.mean(np.array(by_step[step]), axis=0) for by_step in seeds.values()]  # over tasks
            seconds.append(float(np.mean([v[0] for v in values])))
            scores.append(mean_interval([float(v[1]) for v in values], reps=reps, seed=seed))
        curves.append(TimeCurve(method, clock, steps, seconds, scores, len(seeds)))
    notes = [f"{method}: {count} run{'s' if count != 1 else ''} without training clocks (made before they were "
             "recorded), left out of the score-against-training-time view" for method, count in sorted(untimed.items())]
    return curves, notes


def to_json(curves: Sequence[TimeCurve]) -> list[dict[str, Any]]:
    return [{"method": c.method, "clock": c.clock, "axis": AXIS_NAMES[c.clock], "seeds": c.seeds,
             "points": [{"step": step, "train_seconds": seconds, "score": score.point, "ci_low": score.low,
                         "ci_high": score.high} for step, seconds, score in zip(c.steps, c.seconds, c.scores,
                                                                                 strict=True)]}
            for c in curves]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
