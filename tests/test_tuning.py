"""The tuning-budget analysis (report/tuning.py) on hand-made score tables: Expected Online Performance against a
brute-force enumeration, and Unifloral's UCB bandit against what it must find."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from srpo_bench.report import tuning

SCORES = np.array([12.0, 55.0, 30.0, 55.0, 80.0, 3.5])  # a tie on purpose


def brute_force_eop(scores: np.ndarray, k: int) -> float:
    subsets = list(itertools.combinations(scores.tolist(), k))
    return sum(max(subset) for subset in subsets) / len(subsets)


def test_eop_is_the_mean_at_one_the_maximum_at_p_and_every_subset_between() -> None:
    curve = tuning.expected_online_performance(SCORES)
    assert curve.shape == (len(SCORES),)
    assert curve[0] == pytest.approx(SCORES.mean())
    assert curve[-1] == pytest.approx(SCORES.max())
    for k in range(1, len(SCORES) + 1):
        assert curve[k - 1] == pytest.approx(brute_force_eop(SCORES, k), rel=1e-12)
    assert np.all(np.diff(curve) >= -1e-12)  # one more configuration never lowers the expected best


def test_eop_up_to_k_and_for_large_sweeps() -> None:
    assert tuning.expected_online_performance(SCORES, k=3) == pytest.approx(
        tuning.expected_online_performance(SCORES)[:3])
    many = np.linspace(0.0, 100.0, 2000)  # C(2000, 1000) overflows floats: the weights must not
    curve = tuning.expected_online_performance(many)
    assert np.all(np.isfinite(curve))
    assert curve[0] == pytest.approx(50.0) and curve[-1] == pytest.approx(100.0)
    # evenly spaced scores: E[max of k of P uniform ranks] = k (P + 1) / (k + 1), on the 0..100 scale
    for k in (2, 10, 500):
        assert curve[k - 1] == pytest.approx((k * 2001 / (k + 1) - 1) / 1999 * 100, rel=1e-9)


@pytest.mark.parametrize(("scores", "k", "message"), [
    ([], None, "non-empty"), ([[1.0, 2.0]], None, "1-D"), ([1.0, math.nan], None, "finite"),
    ([1.0, 2.0], 3, "between 1 and the number of configurations"), ([1.0, 2.0], 0, "between 1")])
def test_eop_refuses_bad_input_in_one_line(scores, k, message) -> None:
    with pytest.raises(ValueError, match=message):
        tuning.expected_online_performance(scores, k)


def noisy_table(means: list[float], spread: float, episodes: int = 40, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [mean + spread * rng.standard_normal(episodes) for mean in means]


def test_the_bandit_finds_a_dominant_configuration_with_probability_towards_one() -> None:
    """Noisy episodes (sd 30 on the 0-100 scale) and the exploration constant of UCB1 on rewards rescaled to [0, 1]
    (alpha = 2 x 100^2): one pull each often hides the dominant configuration, a few hundred find it."""
    table = noisy_table([70.0, 50.0, 48.0, 45.0, 40.0], spread=30.0)
    best = float(np.mean(table[0]))
    results = tuning.bandit_trials(table, budget=300, subsample=8, trials=2000, alpha=2 * 100.0**2, seed=0)
    found = (results == best).mean(axis=0)  # share of trials recommending the dominant configuration
    assert found[4] < 0.7
    assert found[49] > found[4] and found[299] > found[49]
    assert found[299] > 0.97
    # with K < P the dominant configuration is in a draw with probability K / P, and then found
    drawn = tuning.bandit_trials(table, budget=300, subsample=2, trials=4000, alpha=2 * 100.0**2, seed=0)
    assert (drawn[:, -1] == best).mean() == pytest.approx(2 / 5, abs=0.03)


def test_with_unifloral_constant_the_bandit_is_nearly_greedy_and_still_finds_a_clear_winner() -> None:
    """alpha = 2 on the 0-100 scale (Unifloral's, on the same scale): the bonus is a few points, so after one pull
    each the bandit exploits. A winner whose episodes overlap the others' a little is still found; under sd-30 noise
    an unlucky first episode of the winner is never revisited (where alpha = 2 x 100^2 finds it, above)."""
    rng = np.random.default_rng(2)
    table = [rng.uniform(50, 90, 40), *(rng.uniform(low, low + 40, 40) for low in (20.0, 15.0, 10.0))]
    best = float(np.mean(table[0]))
    found = (tuning.bandit_trials(table, budget=100, trials=2000, seed=0) == best).mean(axis=0)
    assert found[0] == pytest.approx(1 / 4, abs=0.03)  # one pull: a random configuration
    assert found[99] > 0.995
    noisy = noisy_table([70.0, 50.0, 48.0, 45.0, 40.0], spread=30.0)
    stuck = (tuning.bandit_trials(noisy, budget=300, trials=2000, seed=0) == float(np.mean(noisy[0]))).mean(axis=0)
    assert 0.6 < stuck[299] < 0.9


def test_one_pull_picks_a_random_configuration_and_noiseless_pulls_the_best_of_the_draw() -> None:
    """At budget 1 the recommendation is a uniformly random configuration: EOP(1). Without noise, once each of the
    K drawn configurations was pulled the best of them is known: EOP(K) (EOP and the bandit agree)."""
    constant = [np.full(5, score) for score in SCORES]
    results = tuning.bandit_trials(constant, budget=12, subsample=3, trials=20000, seed=3)
    eop = tuning.expected_online_performance(SCORES)
    standard_error = SCORES.std() / math.sqrt(20000)
    assert results[:, 0].mean() == pytest.approx(eop[0], abs=4 * standard_error)
    assert results[:, 2].mean() == pytest.approx(eop[2], abs=4 * standard_error)
    assert np.all(results[:, 2:] == results[:, [2]])  # nothing changes once every arm was pulled


def test_curve_intervals_contain_the_points_and_a_fixed_seed_repeats_exactly() -> None:
    table = noisy_table([60.0, 55.0, 20.0, 58.0], spread=25.0, episodes=10)
    curve = tuning.unifloral_curve(table, budget=50, trials=300, reps=400, seed=7)
    assert curve.budgets.tolist() == list(range(1, 51))
    assert np.all(curve.low <= curve.point) and np.all(curve.point <= curve.high)
    assert np.any(curve.high - curve.low > 0)  # real intervals, not points
    again = tuning.unifloral_curve(table, budget=50, trials=300, reps=400, seed=7)
    for name in ("point", "low", "high"):
        assert np.array_equal(getattr(curve, name), getattr(again, name))
    other = tuning.unifloral_curve(table, budget=50, trials=300, reps=400, seed=8)
    assert not np.array_equal(curve.point, other.point)
    point, low, high = curve.at(10)
    assert (point, low, high) == (curve.point[9], curve.low[9], curve.high[9])
    with pytest.raises(ValueError, match="budget 51 is not on the curve"):
        curve.at(51)


def test_an_unpulled_configuration_is_never_recommended() -> None:
    """Scores below 0 (possible on D4RL's normalized scale): an arm never pulled has empirical mean 0 in Unifloral's
    code and would win; here only evidence counts. After two pulls of three arms, the better of the two pulled ones
    is recommended: the expected best of 2 random configurations, EOP(2) (the unpulled one would give EOP(1))."""
    scores = np.array([-20.0, -50.0, -35.0])
    table = [np.full(3, score) for score in scores]
    results = tuning.bandit_trials(table, budget=2, subsample=3, trials=6000, seed=0)
    assert set(np.unique(results[:, 0])) == set(scores)
    eop = tuning.expected_online_performance(scores)
    assert results[:, 1].mean() == pytest.approx(eop[1], abs=1.0)  # -25; recommending the unpulled arm: -35


def test_ragged_episode_counts_and_pooling_over_tasks() -> None:
    table = [np.array([10.0]), np.array([90.0, 70.0, 80.0])]  # one configuration recorded a single episode
    results = tuning.bandit_trials(table, budget=20, trials=100, seed=0)
    assert set(np.unique(results)) <= {10.0, 80.0}
    assert (results[:, -1] == 80.0).all()
    pooled = tuning.pooled_curve([results, np.full_like(results, 40.0)], reps=200, seed=0)
    assert pooled.point[-1] == pytest.approx(60.0)
    with pytest.raises(ValueError, match="same"):
        tuning.pooled_curve([results, results[:, :5]])


@pytest.mark.parametrize(("episodes", "message"), [([], "no configurations"), ([[1.0], []], "at least one"),
                                                   ([[1.0, math.inf]], "finite")])
def test_the_bandit_refuses_bad_tables_in_one_line(episodes, message) -> None:
    with pytest.raises(ValueError, match=message):
        tuning.bandit_trials(episodes, budget=3)


def exact_ucb_recommendations(episodes: list[list[float]], budget: int, alpha: float) -> np.ndarray:
    """(budget, arms): the exact probability that each configuration is recommended after 1..budget pulls, with
    every configuration in the draw. A direct transcription of UCB (value = mean + sqrt(alpha ln t / (n + 1e-9)),
    an unpulled arm's mean 0, ties uniform) and of the recommendation (the best empirical mean among pulled arms,
    ties uniform), walked over every tie and every recorded episode a pull can draw."""
    arms = len(episodes)
    probability = np.zeros((budget, arms))

    def walk(step: int, pulls: list[int], sums: list[float], weight: float) -> None:
        if step == budget:
            return
        t = step + 1
        values = [(sums[a] / pulls[a] if pulls[a] else 0.0) + math.sqrt(alpha * math.log(t) / (pulls[a] + 1e-9))
                  for a in range(arms)]
        tied = [a for a in range(arms) if values[a] == max(values)]
        for arm in tied:
            for reward in episodes[arm]:
                branch = weight / len(tied) / len(episodes[arm])
                now_pulls = [n + (a == arm) for a, n in enumerate(pulls)]
                now_sums = [s + reward * (a == arm) for a, s in enumerate(sums)]
                means = [now_sums[a] / now_pulls[a] if now_pulls[a] else -math.inf for a in range(arms)]
                best = [a for a in range(arms) if means[a] == max(means)]
                probability[step, best] += branch / len(best)
                walk(step + 1, now_pulls, now_sums, branch)

    walk(0, [0] * arms, [0.0] * arms, 1.0)
    return probability


@pytest.mark.parametrize(("episodes", "alpha"), [
    ([[0.0, 10.0], [4.0]], 8.0),  # a wide exploration constant: which arm is pulled again changes the answer
    ([[0.0, 40.0], [18.0], [14.0, 24.0]], tuning.UCB_ALPHA),  # Unifloral's constant, three arms
])
def test_the_bandit_recommends_each_configuration_as_often_as_exact_ucb_does(episodes, alpha) -> None:
    """The shares of 40,000 trials recommending each configuration, per budget, against the exact probabilities:
    the pull counts, the reward sums, the empirical means and the bonus each move them (a count off by one moves a
    share by 0.03-0.28; the tolerance is 5 standard errors, at most 0.0125)."""
    budget, trials = 7, 40_000
    exact = exact_ucb_recommendations(episodes, budget, alpha)
    results = tuning.bandit_trials(episodes, budget=budget, trials=trials, alpha=alpha, seed=11)
    true_scores = [float(np.mean(e)) for e in episodes]
    assert len(set(true_scores)) == len(true_scores)  # a recommendation is known by its true score
    shares = np.stack([(results == score).mean(axis=0) for score in true_scores], axis=1)
    assert np.abs(shares - exact).max() < 5 * 0.5 / math.sqrt(trials)
    assert np.allclose(shares.sum(axis=1), 1.0)


def test_one_trial_and_one_draw_are_allowed_and_an_empty_matrix_is_refused() -> None:
    one = tuning.bandit_trials([[1.0], [2.0]], budget=3, trials=1, seed=0)
    assert one.shape == (1, 3) and one[0, -1] == 2.0
    point, low, high = tuning.mean_over_trials(np.array([[3.0, 4.0]]))
    assert point.tolist() == low.tolist() == high.tolist() == [3.0, 4.0]  # one draw: no spread to bootstrap
    with pytest.raises(ValueError, match=r"values must be a \(trials, budgets\) matrix, got shape \(0, 2\)"):
        tuning.mean_over_trials(np.zeros((0, 2)))
