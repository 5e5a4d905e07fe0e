"""From results stores to the report's content: frames and interval estimates, no rendering and no writing.

    load_runs (frame.py) -> per-task means with intervals -> per protocol group: score matrices -> rliable
    aggregates, probability of improvement, performance profiles (aggregate.py) -> timings and speedups
    (speedup.py) -> published numbers beside ours (reference.py)

Each protocol group (suite, profile, evaluation episodes, score definition, selection rule) is analysed on
its own: nothing is pooled across groups, and each table and figure names its group.
"""

from __future__ import annotations

import platform
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from srpo_bench import __version__
from srpo_bench.report import aggregate, reference, speedup, training_time, tuning
from srpo_bench.report.frame import EXPLORATORY, GROUP_KEYS, Runs, load_runs, split_sweeps
from srpo_bench.store import git_commit, library_versions
from srpo_bench.vocabulary import plural

REFERENCE_METHOD = "srpo"
FEW_SEEDS = 5  # rliable's advice: below this, intervals are wide


@dataclass
class Group:
    """One protocol group: its per-task table and, when at least one task has every method, its aggregates."""

    key: dict[str, Any]
    label: str
    tasks: list[str]
    methods: list[str]
    per_task: pd.DataFrame
    #: protocol (the one its runs comply with, or the one most of them were measured against), complies,
    #: exploratory (= not complies), reasons (why not: the commonest deviations of its runs, with counts)
    compliance: dict[str, Any] = field(default_factory=dict)
    aggregate_tasks: list[str] = field(default_factory=list)
    runs_per_task: dict[str, int] = field(default_factory=dict)  # runs per task each method's matrix keeps
    estimates: dict[str, dict[str, aggregate.Estimate]] = field(default_factory=dict)
    improvement: dict[str, aggregate.Estimate] = field(default_factory=dict)
    taus: np.ndarray | None = None
    profiles: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tuning: list[tuning.MethodTuning] = field(default_factory=list)  # its sweeps' tuning-budget view (tuning.py)
    #: score against training time, per method and clock, for runs whose evaluations carry clocks
    training_time: list[training_time.TimeCurve] = field(default_factory=list)


@dataclass
class Report:
    runs: Runs
    groups: list[Group]
    timings: pd.DataFrame  # one row per (device, task, method): the timings used
    speedups: pd.DataFrame
    training: pd.DataFrame
    comparison: pd.DataFrame  # published numbers beside ours (D4RL and OGBench tasks only)
    stamp: dict[str, Any]
    settings: dict[str, Any]

    @property
    def warnings(self) -> list[str]:
        return self.runs.warnings


def build_report(stores: list[Path], profile: str | None = None, reps: int = aggregate.DEFAULT_REPS,
                 seed: int = aggregate.DEFAULT_SEED, reproducible: bool = False) -> Report:
    """`reproducible`: stamp only what the records hold (no report commit, library versions or local paths), so
    the same records, reps and seed give byte-identical files on any machine (results/leaderboard)."""
    runs = split_sweeps(load_runs(stores, profile))  # sweep runs: the tuning view's, never ranked as methods
    per_task = per_task_table(runs.finished, reps, seed)
    every = runs.finished if runs.sweeps.empty else pd.concat([runs.finished, runs.sweeps], ignore_index=True)
    groups = [analyse_group(key, per_task, runs.finished, reps, seed, runs.sweeps) for key in group_keys(every)]
    timings = speedup.select_timings(runs.timings)
    return Report(
        runs=runs, groups=groups, timings=timings,
        speedups=speedup.speedups(timings, REFERENCE_METHOD, reps, seed),
        training=speedup.training_times(runs.finished),
        comparison=reference.compare(per_task, reference.load_reference(), {g.label: g.compliance for g in groups}),
        stamp=stamp(runs, reproducible),
        settings={"reps": reps, "bootstrap_seed": seed, "confidence": aggregate.CONFIDENCE,
                  "optimality_gap_threshold": aggregate.GAMMA, "reference_method": REFERENCE_METHOD,
                  "profile_filter": profile},
    )


def group_keys(finished: pd.DataFrame) -> list[dict[str, Any]]:
    if finished.empty:
        return []
    keys = finished[list(GROUP_KEYS)].drop_duplicates().sort_values(["suite", "profile"]).to_dict("records")
    for key in keys:  # a column holding a missing count turns the counts into floats; keep them whole
        episodes = key["eval_episodes"]
        key["eval_episodes"] = None if episodes is None or pd.isna(episodes) else int(episodes)
    return keys


def _in_group(frame: pd.DataFrame, key: dict[str, Any]) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for column, value in key.items():
        mask &= frame[column].isna().to_numpy() if value is None or pd.isna(value) else (frame[column] == value)
    return frame[mask]


def per_task_table(finished: pd.DataFrame, reps: int, seed: int) -> pd.DataFrame:
    """Per (group, task, method): seeds, mean normalized score and its 95% bootstrap interval over seeds, the
    data's own score, whether it is the best mean of its task, and the during-training summaries when the runs
    recorded them ("best" is optimistic: it picks the best evaluation after seeing the scores)."""
    columns = ["group", *GROUP_KEYS, "task", "method", "base_method", "seeds", "mean", "low", "high", "best",
               "data_score", *SUMMARIES]
    if finished.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (group, task, method), cell in finished.groupby(["group", "task", "method"], sort=True):
        estimate = aggregate.mean_interval(cell["score"].to_numpy(), reps=reps, seed=seed)
        first = cell.iloc[0]
        row = {"group": group, **{k: first[k] for k in GROUP_KEYS}, "task": task, "method": method,
               "base_method": first["base_method"], "seeds": len(cell), "mean": estimate.point,
               "low": estimate.low, "high": estimate.high, "data_score": first["dataset_score"]}
        for column, names in SUMMARIES.items():
            values = [_summary(s, names) for s in cell["summaries"]]
            row[column] = None if any(v is None for v in values) else float(np.mean(values))
        rows.append(row)
    table = pd.DataFrame(rows, columns=columns)
    table["best"] = table["mean"] == table.groupby(["group", "task"])["mean"].transform("max")
    return table


# eval.json "summaries" keys (runner.evaluation_record) per column: `final` (the final policy's score),
# `mean_last3` (the mean of the last three evaluations: FQL's OGBench rule), `best_during_training` (the maximum,
# picked after the fact: optimistic) and `evaluation_points` (how many evaluations the summaries saw).
SUMMARIES = {"final": ("final",), "mean_last3": ("mean_last3",), "best_during_training": ("best_optimistic",),
             "evaluation_points": ("points",)}


def _summary(summaries: Any, names: tuple[str, ...]) -> float | None:
    if not isinstance(summaries, dict):
        return None
    for name in names:
        value = summaries.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
            return float(value)
    return None


def analyse_group(key: dict[str, Any], per_task: pd.DataFrame, finished: pd.DataFrame, reps: int, seed: int,
                  sweeps: pd.DataFrame | None = None) -> Group:
    """`sweeps`: the report's sweep runs (frame.split_sweeps): the group's form its tuning view, looking up their
    references (the paper's setting) in all of `finished`: a sweep run complies with no protocol, its reference may."""
    swept = _in_group(sweeps, key) if sweeps is not None and not sweeps.empty else pd.DataFrame()
    runs = _in_group(finished, key)
    if runs.empty:  # a group of sweep runs alone: its tuning view is all there is
        group = Group(key=key, label=swept["group"].iloc[0], tasks=sorted(swept["task"].unique()), methods=[],
                      per_task=_in_group(per_task, key), compliance=group_compliance(swept))
        group.tuning = tuning.group_tuning(swept, finished, seed=seed)
        group.notes.append(tuning.sweep_note(swept))
        return group
    rows = _in_group(per_task, key)
    tasks, methods = sorted(runs["task"].unique()), _method_order(runs["method"].unique())
    group = Group(key=key, label=runs["group"].iloc[0], tasks=tasks, methods=methods, per_task=rows,
                  compliance=group_compliance(runs))
    # Where the numbers come from (a contributed grid keeps its own device and commit).
    commits = sorted({commit[:12] for commit in runs["git_commit"]})
    group.notes.append(f"{plural(len(runs), 'run')} trained on {', '.join(sorted(runs['device'].unique()))} at commit"
                       f"{'s' if len(commits) > 1 else ''} {', '.join(commits)}")
    if not swept.empty:
        group.tuning = tuning.group_tuning(swept, finished, seed=seed)
        group.notes.append(tuning.sweep_note(swept))
    group.training_time, untimed = training_time.time_curves(
        (training_time.RunCurve(m, t, int(s), d, c) for m, t, s, d, c in
         zip(runs["method"], runs["task"], runs["seed"], runs["device_type"], runs["during_training"], strict=True)
         if isinstance(c, list)), methods, reps=reps, seed=seed)
    if group.training_time:  # runs older than the clocks say nothing of them unless the view is shown
        group.notes.extend(untimed)
    # rliable compares methods on one task set: the tasks every method of the group ran.
    by_method = {m: set(runs.loc[runs["method"] == m, "task"]) for m in methods}
    group.aggregate_tasks = [t for t in tasks if all(t in done for done in by_method.values())]
    left_out = [t for t in tasks if t not in group.aggregate_tasks]
    if left_out:
        group.notes.append(f"aggregates leave out {', '.join(left_out)}: not every method ran "
                           f"{'it' if len(left_out) == 1 else 'them'}")
    if not group.aggregate_tasks:
        group.notes.append("no task was run by every method: no aggregates")
        return group
    score_dict = {}
    for method in methods:
        mine = runs[(runs["method"] == method) & runs["task"].isin(group.aggregate_tasks)]
        per_task_scores = {task: list(zip(cell["seed"], cell["score"], strict=True))
                           for task, cell in mine.groupby("task")}
        counts = {t: len(v) for t, v in per_task_scores.items()}
        score_dict[method], group.runs_per_task[method] = aggregate.rectangular(per_task_scores,
                                                                               group.aggregate_tasks)
        if len(set(counts.values())) > 1:
            group.notes.append(f"{method}: {min(counts.values())}-{max(counts.values())} seeds per task; aggregates "
                               f"use the lowest {plural(group.runs_per_task[method], 'seed')} of every task")
    fewest = min(group.runs_per_task.values())
    if fewest < FEW_SEEDS:
        group.notes.append(f"{fewest} seed{'s' if fewest != 1 else ''} per task for some method (fewer than "
                           f"{FEW_SEEDS}): the intervals are wide, read them before the point estimates")
    if len(set(group.runs_per_task.values())) > 1:
        counts = ", ".join(f"{m} {n}" for m, n in group.runs_per_task.items())
        group.notes.append(f"unequal seed counts between methods ({counts}): each method is bootstrapped over "
                           "its own runs, so intervals differ in width")
    group.taus = aggregate.profile_thresholds(score_dict)
    group.estimates, group.profiles = aggregate.estimates_and_profiles(score_dict, group.taus, reps=reps, seed=seed)
    if REFERENCE_METHOD in score_dict and len(score_dict) > 1:
        group.improvement = aggregate.improvement_estimates(score_dict, REFERENCE_METHOD, reps=reps, seed=seed)
    # One run per task leaves the bootstrap nothing to resample: a zero-width "interval" would read as certainty.
    single = {m for m, n in group.runs_per_task.items() if n == 1}
    if single:
        group.notes.append(f"{', '.join(sorted(single))}: one seed per task, so no interval")
        for method in single:
            group.estimates[method] = {k: aggregate.Estimate(e.point) for k, e in group.estimates[method].items()}
        group.improvement = {m: aggregate.Estimate(e.point) if {m, REFERENCE_METHOD} & single else e
                             for m, e in group.improvement.items()}
    return group


def group_compliance(runs: pd.DataFrame) -> dict[str, Any]:
    """Whether a group's runs comply with a protocol (frame.py decided it per run and per group), and if not,
    why: its runs' commonest deviations, each with how many runs have it."""
    status = runs["protocol_status"].iloc[0]
    if status != EXPLORATORY:
        return {"protocol": status, "complies": True, "exploratory": False, "reasons": []}
    measured = runs["protocol"].dropna()
    counts = Counter(reason for found in runs["deviations"] for reason in found)
    reasons = [f"{reason} ({n} of {plural(len(runs), 'run')})" if n < len(runs) else reason
               for reason, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:4]]
    if len(counts) > 4:
        reasons.append(f"{len(counts) - 4} more kinds of deviation (leaderboard.json: runs[].deviations)")
    return {"protocol": measured.mode().iloc[0] if not measured.empty else None, "complies": False,
            "exploratory": True, "reasons": reasons}


def _method_order(methods: Any) -> list[str]:
    """SRPO first (the subject), then the others alphabetically."""
    return sorted(methods, key=lambda m: (not m.startswith(REFERENCE_METHOD), m))


def stamp(runs: Runs, reproducible: bool = False) -> dict[str, Any]:
    """What every output file carries: who made it, from what, on which devices, how many runs."""
    finished = runs.finished if runs.sweeps.empty else pd.concat([runs.finished, runs.sweeps], ignore_index=True)
    versions = sorted({tuple(sorted(v.items())) for v in finished["versions"]}) if not finished.empty else []
    made: dict[str, Any] = {"reproducible": True} if reproducible else {
        "report_git_commit": git_commit(), "report_versions": library_versions(), "python": platform.python_version()}
    return {
        "generator": f"srpo-bench {__version__}",
        **made,
        "run_git_commits": sorted(finished["git_commit"].unique().tolist()) if not finished.empty else [],
        "run_versions": [dict(v) for v in versions],
        "devices": sorted(finished["device"].unique().tolist()) if not finished.empty else [],
        "profiles": sorted(finished["profile"].unique().tolist()) if not finished.empty else [],
        "stores": [s.name if reproducible else str(s) for s in runs.stores],
        "runs": {"finished": len(finished), "not_finished": len(runs.failed), "damaged_skipped": runs.damaged},
    }
