"""Aggregates against values worked out by hand on small fixed score matrices."""

from __future__ import annotations

import numpy as np
import pytest
from rliable import metrics

from srpo_bench.report import aggregate

# 2 runs x 2 tasks. Task means: 60, 120. All four scores sorted: 50, 70, 90, 150.
MATRIX = np.array([[50.0, 150.0], [70.0, 90.0]])


def test_iqm_of_a_known_array_is_the_mean_of_its_middle_half() -> None:
    assert aggregate.iqm(np.arange(1.0, 9.0).reshape(4, 2)) == 4.5  # mean of 3, 4, 5, 6
    assert aggregate.iqm(MATRIX) == 80.0  # mean of 70, 90


def test_iqm_equals_rliables_on_every_shape() -> None:
    rng = np.random.default_rng(3)
    for shape in [(1, 1), (3, 2), (5, 9), (7, 3), (10, 1), (4, 4)]:
        scores = rng.normal(50, 20, size=shape)
        assert aggregate.iqm(scores) == pytest.approx(metrics.aggregate_iqm(scores), abs=1e-12)


def test_aggregate_metrics_by_hand() -> None:
    median, iqm, mean, gap = aggregate.aggregate_metrics(MATRIX)
    assert median == 90.0  # median of the task means 60 and 120
    assert iqm == 80.0
    assert mean == 90.0
    assert gap == pytest.approx(22.5)  # 100 - mean(50, 100, 70, 90): scores above 100 count as 100


def test_every_interval_contains_its_point_estimate_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    scores = {"srpo": rng.normal(70, 10, (5, 3)), "idql": rng.normal(60, 10, (4, 3))}
    first = aggregate.interval_estimates(scores, reps=300, seed=7)
    for method, estimates in first.items():
        for metric in aggregate.METRICS:
            estimate = estimates[metric]
            assert estimate.low <= estimate.point <= estimate.high, (method, metric, estimate)
            assert estimate.low < estimate.high
    assert aggregate.interval_estimates(scores, reps=300, seed=7) == first
    # A method's interval depends on its own scores, not on which other methods are in the report.
    assert aggregate.interval_estimates({"srpo": scores["srpo"]}, reps=300, seed=7)["srpo"] == first["srpo"]


def test_probability_of_improvement_one_for_a_method_that_always_wins_and_half_for_identical() -> None:
    worse = np.array([[10.0, 20.0], [11.0, 21.0], [12.0, 22.0]])
    better = worse + 100.0
    wins = aggregate.improvement_estimates({"srpo": better, "bc": worse}, "srpo", reps=200)["bc"]
    assert (wins.point, wins.low, wins.high) == (1.0, 1.0, 1.0)
    same = aggregate.improvement_estimates({"srpo": worse, "twin": worse.copy()}, "srpo", reps=200)["twin"]
    assert same.point == 0.5 and same.low <= 0.5 <= same.high
    assert aggregate.probability_of_improvement(worse, better) == 0.0


def test_probability_of_improvement_equals_rliables_mann_whitney_with_unequal_runs() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 5, size=(5, 3)).astype(float), rng.integers(0, 5, size=(7, 3)).astype(float)  # ties
    assert aggregate.probability_of_improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))


def test_performance_profile_by_hand() -> None:
    taus = np.array([0.0, 60.0, 100.0, 200.0])
    profiles = aggregate.performance_profiles({"m": MATRIX}, taus, reps=100)
    profile, low, high = profiles["m"]
    assert profile.tolist() == [1.0, 0.75, 0.25, 0.0]  # share of the four scores above each tau
    assert np.all(low <= profile) and np.all(profile <= high)


def test_speedup_interval_of_two_synthetic_timing_sets() -> None:
    fast = [1000.0, 1100.0, 900.0, 1050.0, 950.0]
    slow = [10.0, 11.0, 9.0, 10.5, 9.5]
    estimate = aggregate.speedup_interval(fast, slow, reps=2000, seed=0)
    assert estimate.point == 100.0  # ratio of medians: 1000 / 10
    assert estimate.low <= 100.0 <= estimate.high
    assert estimate.low >= 900.0 / 11.0 and estimate.high <= 1100.0 / 9.0  # bounded by the extreme ratios
    same = aggregate.speedup_interval(fast, fast, reps=500)
    assert same.point == 1.0 and same.low <= 1.0 <= same.high
    lone = aggregate.speedup_interval([500.0], [5.0])
    assert lone.point == 100.0 and lone.low is None and lone.high is None
    with pytest.raises(ValueError):
        aggregate.speedup_interval([], slow)


def test_mean_interval_over_seeds() -> None:
    one = aggregate.mean_interval([42.0])
    assert one.point == 42.0 and one.low is None
    three = aggregate.mean_interval([1.0, 2.0, 3.0], reps=500)
    assert three.point == 2.0 and 1.0 <= three.low <= 2.0 <= three.high <= 3.0


def test_unequal_seed_counts_keep_the_lowest_seeds_of_every_task() -> None:
    per_task = {"a": [(2, 5.0), (0, 1.0), (1, 3.0)], "b": [(1, 4.0), (0, 2.0)]}
    matrix, runs = aggregate.rectangular(per_task, ["a", "b"])
    assert runs == 2
    assert matrix.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_one_bootstrap_for_estimates_and_profiles_equals_the_two_calls_apart() -> None:
    rng = np.random.default_rng(5)
    scores = {"srpo": rng.normal(70, 10, (5, 3)), "bc": rng.normal(50, 10, (5, 3))}
    taus = aggregate.profile_thresholds(scores)
    estimates, profiles = aggregate.estimates_and_profiles(scores, taus, reps=300, seed=3)
    assert estimates == aggregate.interval_estimates(scores, reps=300, seed=3)
    apart = aggregate.performance_profiles(scores, taus, reps=300, seed=3)
    for method in scores:
        for mine, theirs in zip(profiles[method], apart[method], strict=True):
            np.testing.assert_allclose(mine, theirs)


def test_profile_thresholds_span_every_score_a_little_past_both_ends() -> None:
    """The performance profile's x axis: from the lowest score of any method to the highest, padded by 2 % of the
    span or at least 1 point, so that both ends of every profile are drawn."""
    wide = aggregate.profile_thresholds({"a": np.array([[0.0, 50.0]]), "b": np.array([[100.0]])})
    assert len(wide) == 41 and wide[0] == pytest.approx(-2.0) and wide[-1] == pytest.approx(102.0)
    narrow = aggregate.profile_thresholds({"a": np.array([[10.0, 20.0]])}, points=5)
    np.testing.assert_allclose(narrow, [9.0, 12.0, 15.0, 18.0, 21.0])  # pad max(1, 0.2) = 1
    shifted = aggregate.profile_thresholds({"a": np.array([[100.0, 300.0]])}, points=3)
    np.testing.assert_allclose(shifted, [96.0, 200.0, 304.0])  # pad 2 % of the span (200), not of anything else


def test_speedup_interval_of_two_timings_a_side_spans_the_extreme_ratios_exactly() -> None:
    """Two timings a side: a resample's median is the low one, the mean of both or the high one (chances 1/4, 1/2,
    1/4), so the extreme ratios, low/high and high/low, each come up in 1/16 of resamples (> 2.5%): the 95%
    interval is exactly [min ratio, max ratio], and the point the ratio of the medians."""
    estimate = aggregate.speedup_interval([800.0, 1200.0], [8.0, 12.0], reps=10_000, seed=1)
    assert estimate.point == pytest.approx(100.0)
    assert (estimate.low, estimate.high) == pytest.approx((800.0 / 12.0, 1200.0 / 8.0))
    lopsided = aggregate.speedup_interval([500.0], [4.0, 5.0, 6.0])  # one timing on a side: the ratio alone
    assert (lopsided.point, lopsided.low, lopsided.high) == (100.0, None, None)
    with pytest.raises(ValueError, match="speedups need positive timings on both sides"):
        aggregate.speedup_interval([1.0, 2.0], [0.0, 1.0])


def test_improvement_over_different_task_sets_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"^both methods need the same tasks, got 3 and 2$"):
        aggregate.probability_of_improvement(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"^no values$"):
        aggregate.mean_interval([])
