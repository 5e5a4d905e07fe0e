"""The tuning budget: what a method scores when its hyperparameters are chosen with a stated amount of online
evaluation, from the configurations of a sweep. Pure functions over numpy arrays (rliable style), no I/O.

Each method here runs at its papers' per-task settings, which their authors chose by looking at online returns;
a comparison at "the paper's setting" gives every method the tuning budget its authors spent. Two answers:

Expected Online Performance (Kurenkov & Kolesnikov, ICML 2022): the expected best score among k configurations
drawn uniformly *without replacement* from the P trained ones. With the scores sorted, s_(1) <= ... <= s_(P),
the maximum of a k-subset is s_(i) exactly when s_(i) is in it and the other k - 1 come from the i - 1 below, so

    EOP(k) = sum_{i=k..P} s_(i) * C(i - 1, k - 1) / C(P, k),     EOP(1) = mean,  EOP(P) = max.

(Dodge et al.'s 2019 "expected validation performance" draws with replacement, (i/P)^k - ((i-1)/P)^k; it never
reaches the maximum. We follow the without-replacement form, so the curve ends at the best configuration.)

Unifloral's procedure (Jackson et al., NeurIPS 2025, "A Clean Slate for Offline RL"; `evaluation.py` of
github.com/EmptyJackson/unifloral, its README's defaults): draw K of the P configurations, then let a UCB bandit
spend a budget of online evaluation episodes on them, one episode per pull (a pull draws one of the arm's
recorded evaluation episodes, uniformly, with replacement). After each pull the configuration with the best
empirical mean is the one a practitioner would deploy; its *true* score is the mean of all its recorded episodes.
Repeated over many draws with a fixed seed, the mean over draws is the point estimate per budget and a percentile
bootstrap of that mean over draws gives the 95% interval. As Unifloral's code:

- UCB value of an arm: mean + sqrt(alpha * ln(t) / (n + 1e-9)), alpha = 2 (its `ucb_alpha`), t the pull count
  starting at 1, n the arm's pulls; an arm never pulled has mean 0 and a bonus of order 10^4.6 from t = 2 on, so
  every arm is pulled once before any twice (at t = 1 every value is 0: the first arm is a random one);
- ties of the UCB value: uniformly at random among the tied arms (its `argmax_with_random_tiebreaking`);
- K = 8 configurations per draw (`num_subsample`; all of them when P < 8), 1,000 draws (`num_repeats`), budgets
  1..200 (`max_pulls`), 1,000 bootstrap resamples (`n_bootstraps`) at 95% (`confidence`).

Unifloral's scores are D4RL-normalized x 100, the scale of ours, so alpha = 2 means the same here: a bonus of a
few points, so that once every arm was pulled the bandit is nearly greedy (an unlucky first episode of the best
configuration may never be revisited). Kept as theirs so that the curves compare; `alpha` can be passed.

One deviation: Unifloral recommends `argmax` of the empirical means over all K arms, an arm never pulled counting
as mean 0; here only arms pulled at least once can be recommended (an unpulled configuration has no evidence).
The two differ only before every arm was pulled once and when every pulled arm's mean is below 0. Ties of the
empirical means go to the first tied arm in the draw's random order (Unifloral's `jnp.argmax` over a randomly
ordered subset: the same rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import gammaln

from srpo_bench.report.aggregate import Estimate
from srpo_bench.report.tables import Cell, Table, count, estimate_cell, number, text
from srpo_bench.vocabulary import plural

UCB_ALPHA = 2.0  # Unifloral's `ucb_alpha`
SUBSAMPLE = 8  # Unifloral's README: `num_subsample=8`
TRIALS = 1000  # `num_repeats`
MAX_BUDGET = 200  # `max_pulls`
BOOTSTRAPS = 1000  # `n_bootstraps`
CONFIDENCE = 0.95
_UNPULLED = 1e-9  # Unifloral's `counts + 1e-9`


def _scores(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    values = np.asarray(scores, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"scores must be a non-empty 1-D array (one score per configuration), got shape "
                         f"{values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("scores must be finite")
    return values


def expected_online_performance(scores: Sequence[float] | np.ndarray, k: int | None = None) -> np.ndarray:
    """EOP(1..k) of P configuration scores (k defaults to P): the expected maximum score of j configurations drawn
    uniformly without replacement, for j = 1..k. Weights in log space (C(P, k) overflows floats near P = 1,030)."""
    values = np.sort(_scores(scores))
    count = values.size
    k = count if k is None else k
    if not 1 <= k <= count:
        raise ValueError(f"k must be between 1 and the number of configurations ({count}), got {k}")
    j = np.arange(1, k + 1)[:, None]  # subset sizes
    i = np.arange(1, count + 1)[None, :]  # ranks of the sorted scores
    log_weight = (gammaln(np.maximum(i, 1)) - gammaln(j) - gammaln(np.maximum(i - j + 1, 1))
                  - (gammaln(count + 1) - gammaln(j + 1) - gammaln(count - j + 1)))
    weights = np.where(i >= j, np.exp(log_weight), 0.0)  # C(i-1, j-1) = 0 below rank j
    return weights @ values


@dataclass(frozen=True)
class Curve:
    """A score per budget (1..len) with its 95% interval."""

    budgets: np.ndarray
    point: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def at(self, budget: int) -> tuple[float, float, float]:
        """(point, low, high) at `budget` episodes."""
        index = int(np.searchsorted(self.budgets, budget))
        if index >= self.budgets.size or self.budgets[index] != budget:
            raise ValueError(f"budget {budget} is not on the curve (1..{int(self.budgets[-1])})")
        return float(self.point[index]), float(self.low[index]), float(self.high[index])


def _episode_table(episodes: Sequence[Sequence[float] | np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged per-configuration episode scores as a zero-padded (P, max n) matrix and the counts n."""
    rows = [np.asarray(e, dtype=float).ravel() for e in episodes]
    if not rows:
        raise ValueError("no configurations")
    if any(row.size == 0 for row in rows):
        raise ValueError("every configuration needs at least one recorded evaluation episode")
    if not all(np.all(np.isfinite(row)) for row in rows):
        raise ValueError("episode scores must be finite")
    table = np.zeros((len(rows), max(row.size for row in rows)))
    for index, row in enumerate(rows):
        table[index, :row.size] = row
    return table, np.array([row.size for row in rows])


def bandit_trials(episodes: Sequence[Sequence[float] | np.ndarray], budget: int = MAX_BUDGET,
                  subsample: int = SUBSAMPLE, trials: int = TRIALS, alpha: float = UCB_ALPHA,
                  seed: int | Sequence[int] = 0) -> np.ndarray:
    """(trials, budget): in each trial (a draw of min(subsample, P) configurations), the true score of the
    configuration a UCB bandit recommends after 1..budget pulls. `episodes[c]`: configuration c's recorded
    evaluation episode scores; its true score is their mean. All trials run at once, one pull per step."""
    if budget < 1 or trials < 1 or subsample < 1:
        raise ValueError(f"budget, trials and subsample must be at least 1, got {budget}, {trials}, {subsample}")
    table, counts = _episode_table(episodes)
    true_scores = table.sum(axis=1) / counts
    rng = np.random.default_rng(seed)
    arms = min(subsample, len(counts))
    # Each trial's K configurations in random order: a random permutation's first K.
    chosen = np.argsort(rng.random((trials, len(counts))), axis=1)[:, :arms]
    # Per arm, flat (trial * arms + arm) and updated only where a pull happened (one arm per trial and step), so a
    # step costs a few passes over (trials, arms): pulls, reward sums, the UCB mean (Unifloral: an unpulled arm's is
    # 0), 1 / sqrt(n + 1e-9) of the bonus, and the empirical mean a recommendation reads (-inf until pulled).
    base = np.arange(trials) * arms
    flat_chosen = chosen.ravel()
    pulls = np.zeros(trials * arms)
    sums = np.zeros(trials * arms)
    ucb_means = np.zeros((trials, arms))
    inverse_root = np.full((trials, arms), 1.0 / np.sqrt(_UNPULLED))
    evidence = np.full((trials, arms), -np.inf)
    out = np.empty((trials, budget))
    for step in range(budget):
        t = step + 1  # Unifloral's total_pulls starts at 1
        values = ucb_means + np.sqrt(alpha * np.log(t)) * inverse_root
        tied = values == values.max(axis=1, keepdims=True)
        arm = np.argmax(tied, axis=1)
        several = np.flatnonzero(np.count_nonzero(tied, axis=1) > 1)
        if several.size:  # uniform among the tied arms (the unpulled ones, early on)
            arm[several] = np.argmax(np.where(tied[several], rng.random((several.size, arms)), -1.0), axis=1)
        flat = base + arm
        config = flat_chosen[flat]
        episode = np.minimum((rng.random(trials) * counts[config]).astype(int), counts[config] - 1)
        pulled = pulls[flat] + 1
        pulls[flat] = pulled
        total = sums[flat] + table[config, episode]
        sums[flat] = total
        mean = total / pulled
        ucb_means.ravel()[flat] = mean
        evidence.ravel()[flat] = mean
        inverse_root.ravel()[flat] = 1.0 / np.sqrt(pulled + _UNPULLED)
        out[:, step] = true_scores[flat_chosen[base + np.argmax(evidence, axis=1)]]  # only pulled arms recommended
    return out


def mean_over_trials(values: np.ndarray, reps: int = BOOTSTRAPS, seed: int = 0,
                     confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(point, low, high) per column of a (trials, budgets) matrix: the mean over trials and its percentile
    bootstrap interval (trials resampled with replacement; one resample serves every column, as a count matrix
    times the values, which is one matrix product instead of a gather per budget)."""
    data = np.asarray(values, dtype=float)
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"values must be a (trials, budgets) matrix, got shape {data.shape}")
    trials = data.shape[0]
    point = data.mean(axis=0)
    if trials == 1:
        return point, point.copy(), point.copy()
    rng = np.random.default_rng(seed)
    # (reps, trials): how often each trial is drawn in each resample, from `trials` uniform indices per resample
    index = rng.integers(0, trials, size=(reps, trials)) + trials * np.arange(reps)[:, None]
    draws = np.bincount(index.ravel(), minlength=reps * trials).reshape(reps, trials).astype(float)
    means = draws @ data / trials
    tail = 50 * (1 - confidence)
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    # Percentile bounds of a bootstrap can miss the point by rounding when every resample is equal.
    return point, np.minimum(low, point), np.maximum(high, point)


def unifloral_curve(episodes: Sequence[Sequence[float] | np.ndarray], budget: int = MAX_BUDGET,
                    subsample: int = SUBSAMPLE, trials: int = TRIALS, alpha: float = UCB_ALPHA,
                    reps: int = BOOTSTRAPS, seed: int = 0) -> Curve:
    """Unifloral's curve for one score table: the recommended configuration's true score per budget, with the
    bootstrap interval over trials."""
    results = bandit_trials(episodes, budget, subsample, trials, alpha, seed)
    return Curve(np.arange(1, budget + 1), *mean_over_trials(results, reps, seed))


def pooled_curve(trial_tables: Sequence[np.ndarray], reps: int = BOOTSTRAPS, seed: int = 0) -> Curve:
    """The mean over tasks of per-task bandit results (each (trials, budget), the same shape): trial r of every
    task forms one joint trial (tasks are tuned independently), so the bootstrap over joint trials gives the
    interval of the task mean."""
    if not trial_tables:
        raise ValueError("no tasks")
    shapes = {table.shape for table in trial_tables}
    if len(shapes) != 1:
        raise ValueError(f"every task needs the same (trials, budget) shape, got {sorted(shapes)}")
    joint = np.mean(np.stack(trial_tables), axis=0)
    return Curve(np.arange(1, joint.shape[1] + 1), *mean_over_trials(joint, reps, seed))


# --- the report's view: sweeps found in the finished runs -----------------------------------------------------------
BUDGETS_SHOWN = (10, 100)  # the leaderboard's "score at budget B" columns (the question: 10 and 100 episodes)
# A reference (runs at the paper's setting) must match the sweep's group in everything but the protocol status: a
# sweep run changes settings, so it complies with no protocol, while the paper's setting may.
REFERENCE_KEYS = ("suite", "profile", "eval_episodes", "score_scale", "selection", "checkpoint")


@dataclass
class MethodTuning:
    """One sweep of one method in one protocol group, over the tasks it covers (task means throughout: normalized
    scores share one scale, and each task is tuned on its own, as per-task settings are)."""

    family: str  # the method with the sweep's fixed overrides (`srpo`, `srpo[behavior_steps=20]`)
    base_method: str
    swept: tuple[str, ...]
    tasks: list[str]
    configurations: dict[str, int]  # per task: P, the configurations swept
    subsample: dict[str, int]  # per task: K = min(SUBSAMPLE, P)
    bandit: Curve  # Unifloral's curve, mean over tasks, budgets 1..MAX_BUDGET
    eop: np.ndarray  # EOP(k), mean over tasks, k = 1..min P
    reference: float | None  # the paper's setting: task mean of its mean over seeds; None unless every task has it
    reference_tasks: list[str]  # the tasks with runs at the paper's setting
    per_task: dict[str, dict[str, object]]  # task -> {configurations, subsample, eop, reference}

    @property
    def label(self) -> str:
        return f"{self.family} ({', '.join(self.swept)})"


def _key_mask(frame: pd.DataFrame, key: dict, columns: Sequence[str]) -> np.ndarray:
    mask = np.ones(len(frame), dtype=bool)
    for column in columns:
        value = key[column]
        mask &= frame[column].isna().to_numpy() if value is None or pd.isna(value) else (frame[column] == value
                                                                                       ).to_numpy()
    return mask


def _family(base: str, overrides: dict[str, str], swept: tuple[str, ...]) -> str:
    fixed = {key: value for key, value in overrides.items() if key not in swept}
    return base if not fixed else f"{base}[{','.join(f'{key}={fixed[key]}' for key in sorted(fixed))}]"


def group_tuning(runs: pd.DataFrame, finished: pd.DataFrame, budget: int = MAX_BUDGET, trials: int = TRIALS,
                 reps: int = BOOTSTRAPS, seed: int = 0) -> list[MethodTuning]:
    """The sweeps among a protocol group's finished runs (`runs`, frame.py rows with "sweep" keys), each with its
    reference looked up in all `finished` runs. A configuration is a distinct resolved config (two labels of one
    config are one configuration); its episodes are its seeds' final-policy episodes pooled, its true score their
    mean. Tasks with fewer than 2 configurations are left out (nothing to tune)."""
    if runs.empty or "sweep" not in runs.columns:
        return []
    swept_runs = runs[runs["sweep"].map(len) > 0]
    if swept_runs.empty:
        return []
    families: dict[tuple[str, str, tuple[str, ...]], list[int]] = {}
    for index, base, overrides, swept in zip(swept_runs.index, swept_runs["base_method"], swept_runs["overrides"],
                                             swept_runs["sweep"], strict=True):
        families.setdefault((base, _family(base, overrides, swept), swept), []).append(index)
    key = runs.iloc[0][list(REFERENCE_KEYS)].to_dict()
    plain = finished[_key_mask(finished, key, REFERENCE_KEYS) & (finished["sweep"].map(len) == 0)]
    out = []
    for (base, family, swept), indices in sorted(families.items()):
        rows = swept_runs.loc[indices]
        per_task: dict[str, dict[str, object]] = {}
        tables, eops = [], []
        for task_index, (task, cell) in enumerate(sorted(rows.groupby("task"), key=lambda item: item[0])):
            episodes = [np.concatenate([np.asarray(e, dtype=float) for e in config.sort_values("seed")
                                        ["episode_scores"]]) for _, config in cell.groupby("config_hash", sort=True)]
            if len(episodes) < 2:
                continue
            scores = np.array([e.mean() for e in episodes])
            trials_table = bandit_trials(episodes, budget, SUBSAMPLE, trials, UCB_ALPHA, seed=[seed, task_index])
            mine = plain[(plain["task"] == task) & (plain["base_method"] == base)
                         & (plain["method"] == family)]
            per_task[task] = {"configurations": len(episodes), "subsample": min(SUBSAMPLE, len(episodes)),
                              "eop": expected_online_performance(scores),
                              "reference": float(mine["final_score"].mean()) if not mine.empty else None}
            tables.append(trials_table)
            eops.append(per_task[task]["eop"])
        if not per_task:
            continue
        shortest = min(len(e) for e in eops)
        references = [v["reference"] for v in per_task.values() if v["reference"] is not None]
        out.append(MethodTuning(
            family=family, base_method=base, swept=swept, tasks=list(per_task),
            configurations={t: int(v["configurations"]) for t, v in per_task.items()},
            subsample={t: int(v["subsample"]) for t, v in per_task.items()},
            bandit=pooled_curve(tables, reps, seed),
            eop=np.mean([e[:shortest] for e in eops], axis=0),
            reference=float(np.mean(references)) if len(references) == len(per_task) else None,
            reference_tasks=[t for t, v in per_task.items() if v["reference"] is not None], per_task=per_task))
    return out


def tuning_table(views: Sequence[MethodTuning], key: str) -> Table:
    """Per sweep: the paper's setting beside the score at budgets of 10 and 100 evaluation episodes (Unifloral) and
    the EOP ends (one random configuration; the best one, optimistic)."""
    budgets = [b for b in BUDGETS_SHOWN if views and b <= len(views[0].bandit.budgets)]
    table = Table("tuning budget: the score when a method's setting is chosen by online evaluation",
                  ["method", "swept", "tasks", "configurations (P)", "paper's setting",
                   *(f"score at budget {plural(b, 'episode')} (UCB)" for b in budgets),
                   "EOP k = 1 (a random configuration)", "EOP k = P (the best, optimistic)"], [], key=key)
    for view in views:
        sizes = sorted(set(view.configurations.values()))
        table.rows.append([
            text(view.family), text(", ".join(view.swept)), number(len(view.tasks), fmt=count),
            Cell(str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}", float(sizes[0])),
            number(view.reference),
            *(estimate_cell(Estimate(*view.bandit.at(b))) for b in budgets),
            number(view.eop[0]), number(view.eop[-1])])
    table.notes += [
        f"score at budget B: Unifloral's procedure (Jackson et al., 2025): K = min({SUBSAMPLE}, P) of the P "
        f"configurations drawn, a UCB bandit (alpha {UCB_ALPHA:g}) spends B evaluation episodes on them, one per "
        "pull, and the configuration with the best empirical mean is deployed; its true score (the mean of all its "
        f"recorded final-policy episodes over seeds), averaged over {TRIALS:,} draws with a 95% bootstrap interval, "
        "then over tasks",
        "EOP: Expected Online Performance (Kurenkov & Kolesnikov, 2022), the expected best true score among k "
        "configurations drawn without replacement; at k = P it is the best configuration chosen after seeing every "
        "score, an optimistic number no budget below P configurations' full evaluation buys",
        "paper's setting: the same method at its per-task settings (the sweep's other settings unchanged), mean over "
        "tasks of the mean over seeds; a dash where some task has no such runs",
    ]
    return table


def to_json(views: Sequence[MethodTuning]) -> list[dict[str, object]]:
    """The leaderboard JSON's `tuning` entries of a group (only written when the group has sweeps)."""
    return [{"method": v.family, "base_method": v.base_method, "swept": list(v.swept), "tasks": v.tasks,
             "configurations": v.configurations, "subsample": v.subsample, "ucb_alpha": UCB_ALPHA,
             "draws": TRIALS, "paper_setting": v.reference, "paper_setting_tasks": v.reference_tasks,
             "bandit": {"budgets": v.bandit.budgets, "point": v.bandit.point, "ci_low": v.bandit.low,
                        "ci_high": v.bandit.high},
             "eop": v.eop, "per_task": {task: {"configurations": info["configurations"], "eop": info["eop"],
                                              "paper_setting": info["reference"]}
                                       for task, info in v.per_task.items()}} for v in views]


def csv_rows(group: str, views: Sequence[MethodTuning]) -> list[dict[str, object]]:
    """Long rows for leaderboard-tuning.csv: kind "ucb" (x = budget in episodes, with the interval) or "eop"
    (x = k configurations), each with the paper's setting beside it."""
    rows: list[dict[str, object]] = []
    for view in views:
        common = {"group": group, "method": view.family, "swept": ";".join(view.swept), "tasks": ";".join(view.tasks),
                  "paper_setting": view.reference}
        rows += [{**common, "kind": "ucb", "x": int(b), "point": p, "ci_low": lo, "ci_high": hi}
                 for b, p, lo, hi in zip(view.bandit.budgets, view.bandit.point, view.bandit.low, view.bandit.high,
                                         strict=True)]
        rows += [{**common, "kind": "eop", "x": k, "point": float(value), "ci_low": None, "ci_high": None}
                 for k, value in enumerate(view.eop, start=1)]
    return rows


def sweep_note(runs: pd.DataFrame) -> str:
    """A group's note on its sweep runs: where they are, and why they are not ranked."""
    families = sorted({_family(base, overrides, swept) for base, overrides, swept in
                       zip(runs["base_method"], runs["overrides"], runs["sweep"], strict=True)})
    return (f"{len(runs):,} sweep runs ({runs['method'].nunique():,} configurations of {', '.join(families)}) are "
            "in the tuning-budget table and figure, not ranked as methods: a configuration picked after seeing its "
            "score is the optimistic number the tuning view corrects")
