"""Interval estimates over `{method: scores[runs, tasks]}`: pure functions, no I/O (style of rliable's library.py).

Aggregates follow Agarwal et al. (2021) through rliable: IQM, mean, median and optimality gap of normalized
scores with stratified-bootstrap percentile intervals (runs resampled within each task), the probability of
improvement with an independent bootstrap of both methods, and performance profiles (score distributions).

Reproducibility: rliable draws its bootstrap indices from numpy's *global* generator and ignores
`random_state` (rliable 1.2), so every rliable call here is preceded by `np.random.seed(seed)`, and each method
(or pair) is bootstrapped in its own call: a method's interval depends only on its own scores, the seed and
`reps`, not on which other methods or groups happen to be in the report.

Scores are on the 0-100 normalized scale; the optimality gap counts the shortfall below 100 (gamma=100).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rliable import library as rly
from rliable import metrics

METRICS = ("median", "iqm", "mean", "optimality_gap")
METRIC_NAMES = {"median": "Median", "iqm": "IQM", "mean": "Mean", "optimality_gap": "Optimality gap"}
DEFAULT_REPS = 2000  # rliable's default for profiles; 50,000 (its interval default) for numbers to publish
DEFAULT_SEED = 0
CONFIDENCE = 0.95
GAMMA = 100.0  # optimality-gap threshold on the 0-100 normalized scale


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its 95% interval (None where it cannot be had, e.g. one seed)."""

    point: float
    low: float | None = None
    high: float | None = None


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean over all runs x tasks: the mean of the middle 50%, cutting int(n/4) scores at each end.

    Equal to rliable's `aggregate_iqm` (scipy's `trim_mean(x, 0.25, axis=None)`, a test checks it) but a
    sort instead of scipy's argument checks: it runs once per bootstrap replication, and this halves a report."""
    flat = np.sort(np.asarray(scores, dtype=float), axis=None)
    cut = int(0.25 * flat.size)
    return float(flat[cut:flat.size - cut].mean())


def aggregate_metrics(scores: np.ndarray) -> np.ndarray:
    """[median, IQM, mean, optimality gap] of one (runs, tasks) matrix, in `METRICS` order."""
    return np.array([
        metrics.aggregate_median(scores), iqm(scores), metrics.aggregate_mean(scores),
        metrics.aggregate_optimality_gap(scores, gamma=GAMMA),
    ])


def interval_estimates(score_dict: Mapping[str, np.ndarray], reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED
                       ) -> dict[str, dict[str, Estimate]]:
    """{method: {metric: Estimate}} with stratified-bootstrap intervals over runs."""
    result = {}
    for method, scores in score_dict.items():
        np.random.seed(seed)  # rliable ignores random_state
        points, intervals = rly.get_interval_estimates({method: _matrix(scores)}, aggregate_metrics, reps=reps,
                                                       confidence_interval_size=CONFIDENCE)
        result[method] = {name: Estimate(float(points[method][i]), float(intervals[method][0, i]),
                                         float(intervals[method][1, i])) for i, name in enumerate(METRICS)}
    return result


def estimates_and_profiles(score_dict: Mapping[str, np.ndarray], taus: np.ndarray, reps: int = DEFAULT_REPS,
                           seed: int = DEFAULT_SEED) -> tuple[dict[str, dict[str, Estimate]],
                                                              dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """`interval_estimates` and `performance_profiles` from one bootstrap per method: after the same seed the
    bootstrap draws the same resamples whatever it computes on them, so this gives exactly what the two calls
    give apart, in half the bootstrap time (a test checks it)."""
    estimates, profiles = {}, {}
    count = len(METRICS)
    for method, scores in score_dict.items():
        np.random.seed(seed)
        points, intervals = rly.get_interval_estimates(
            {method: _matrix(scores)},
            lambda x: np.concatenate([aggregate_metrics(x), _score_distribution(x, taus)]),
            reps=reps, confidence_interval_size=CONFIDENCE)
        point, low, high = points[method], intervals[method][0], intervals[method][1]
        estimates[method] = {name: Estimate(float(point[i]), float(low[i]), float(high[i]))
                             for i, name in enumerate(METRICS)}
        profiles[method] = (np.asarray(point[count:]), np.asarray(low[count:]), np.asarray(high[count:]))
    return estimates, profiles


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """P(X > Y) averaged over tasks, ties counting one half: rliable's metric (Mann-Whitney U / (n_x n_y) per
    task), computed with array comparisons instead of one scipy call per task so a bootstrap of thousands of
    replications takes a fraction of a second."""
    x, y = _matrix(scores_x), _matrix(scores_y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"both methods need the same tasks, got {x.shape[1]} and {y.shape[1]}")
    greater = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1))
    ties = (x[:, None, :] == y[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(greater + 0.5 * ties))


def improvement_estimates(score_dict: Mapping[str, np.ndarray], reference: str, reps: int = DEFAULT_REPS,
                          seed: int = DEFAULT_SEED) -> dict[str, Estimate]:
    """{other method: P(reference > other)} with intervals; run counts may differ between the two."""
    if reference not in score_dict:
        raise ValueError(f"reference method '{reference}' has no scores")
    result = {}
    for other, scores in score_dict.items():
        if other == reference:
            continue
        pair = f"{reference},{other}"
        np.random.seed(seed)
        points, intervals = rly.get_interval_estimates(
            {pair: (_matrix(score_dict[reference]), _matrix(scores))},
            lambda x, y: np.array([probability_of_improvement(x, y)]), reps=reps, confidence_interval_size=CONFIDENCE)
        result[other] = Estimate(float(points[pair][0]), float(intervals[pair][0, 0]), float(intervals[pair][1, 0]))
    return result


def profile_thresholds(score_dict: Mapping[str, np.ndarray], points: int = 41) -> np.ndarray:
    """Thresholds tau spanning every score in the group (a little past both ends)."""
    values = np.concatenate([_matrix(s).ravel() for s in score_dict.values()])
    low, high = float(np.min(values)), float(np.max(values))
    pad = max(1.0, 0.02 * (high - low))
    return np.linspace(low - pad, high + pad, points)


def performance_profiles(score_dict: Mapping[str, np.ndarray], taus: np.ndarray, reps: int = DEFAULT_REPS,
                         seed: int = DEFAULT_SEED) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{method: (fraction of runs scoring above tau, lower, upper)} for each tau (rliable score distributions)."""
    result = {}
    for method, scores in score_dict.items():
        np.random.seed(seed)
        profiles, cis = rly.create_performance_profile(
            {method: _matrix(scores)}, taus, custom_profile_func=_score_distribution, reps=reps,
            confidence_interval_size=CONFIDENCE)
        result[method] = (np.asarray(profiles[method]), np.asarray(cis[method][0]), np.asarray(cis[method][1]))
    return result


def _score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """rliable's `score_distributions` (share of runs x tasks above each tau), vectorized over tau."""
    return (scores.reshape(-1)[:, None] > np.asarray(taus)[None, :]).mean(axis=0)


def _percentile_bounds(samples: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(samples, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    return float(low), float(high)


def _bootstrap_interval(values: Sequence[float], statistic: Callable[..., Any], reps: int, seed: int) -> Estimate:
    """`statistic` of `values` with a percentile-bootstrap 95% interval; one value: no interval."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("no values")
    if data.size == 1:
        return Estimate(float(data[0]))
    rng = np.random.default_rng(seed)
    resampled = statistic(data[rng.integers(0, data.size, size=(reps, data.size))], axis=1)
    return Estimate(float(statistic(data)), *_percentile_bounds(resampled))


def mean_interval(values: Sequence[float], reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED) -> Estimate:
    """Mean over seeds with a percentile-bootstrap 95% interval (one task, one method); one seed: no interval."""
    return _bootstrap_interval(values, np.mean, reps, seed)


def speedup_interval(reference: Sequence[float], other: Sequence[float], reps: int = DEFAULT_REPS,
                     seed: int = DEFAULT_SEED) -> Estimate:
    """How many times faster `reference` acts than `other`: the ratio of their median actions/s, with a
    percentile-bootstrap 95% interval from resampling each method's repeated timings independently.
    Fewer than 2 timings on either side: the ratio alone."""
    ref, oth = np.asarray(reference, dtype=float), np.asarray(other, dtype=float)
    if ref.size == 0 or oth.size == 0 or np.any(ref <= 0) or np.any(oth <= 0):
        raise ValueError("speedups need positive timings on both sides")
    point = float(np.median(ref) / np.median(oth))
    if ref.size < 2 or oth.size < 2:
        return Estimate(point)
    rng = np.random.default_rng(seed)
    ratios = (np.median(ref[rng.integers(0, ref.size, size=(reps, ref.size))], axis=1)
              / np.median(oth[rng.integers(0, oth.size, size=(reps, oth.size))], axis=1))
    return Estimate(point, *_percentile_bounds(ratios))


def median_interval(values: Sequence[float], reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED) -> Estimate:
    """Median with a percentile-bootstrap 95% interval (e.g. actions/s over repeated timings)."""
    return _bootstrap_interval(values, np.median, reps, seed)


def rectangular(per_task: Mapping[str, Sequence[tuple[int, float]]], tasks: Sequence[str]) -> tuple[np.ndarray, int]:
    """(runs, tasks) matrix from {task: [(seed, score), ...]}: rliable's stratified bootstrap needs the same
    number of runs per task, so every task keeps its lowest `n` seeds, `n` the smallest count (as CORL does
    with unequal runs). Returns the matrix and n."""
    n = min(len(per_task[task]) for task in tasks)
    columns = [[score for _, score in sorted(per_task[task])[:n]] for task in tasks]
    return np.asarray(columns, dtype=float).T.reshape(n, len(tasks)), n


def _matrix(scores: np.ndarray) -> np.ndarray:
    array = np.asarray(scores, dtype=float)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"scores must be a non-empty (runs, tasks) matrix, got shape {array.shape}")
    return array
