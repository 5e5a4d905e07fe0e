"""Tables for people: numbers formatted to read (no `1.271e+04`), missing shown as missing, never as zero.

A `Table` holds text cells plus a sort key and a "best" flag per cell, so Markdown, HTML (sortable) and the
terminal render the same content. The frames behind them (build.py) stay numeric for CSV and JSON.

`runs_frame`, `task_summary` and `for_display` are the short per-task summary `srpo-bench run` prints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from srpo_bench.report.aggregate import METRIC_NAMES, METRICS, Estimate
from srpo_bench.report.frame import load_runs, training_seconds  # noqa: F401  (training_seconds: re-exported)
from srpo_bench.report.training_time import TimeCurve, clock_name
from srpo_bench.vocabulary import NFE_COLUMN, NFE_FIELD, display_name

MISSING = "—"


# --- numbers -------------------------------------------------------------------------------------------
def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def score(value: Any) -> str:
    """A normalized score: one decimal, thousands separated."""
    return MISSING if is_missing(value) else f"{float(value):,.1f}"


def rate(value: Any) -> str:
    """Actions/s and similar magnitudes: three significant figures, never scientific notation."""
    if is_missing(value):
        return MISSING
    value = float(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def ratio(value: Any) -> str:
    """A speedup: '1,397x', '102x', '9.7x', '1.04x'."""
    if is_missing(value):
        return MISSING
    value = float(value)
    if value >= 100:
        return f"{value:,.0f}x"
    return f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


def count(value: Any) -> str:
    """Counts (network evaluations, seeds): whole numbers without decimals."""
    if is_missing(value):
        return MISSING
    value = float(value)
    return f"{value:,.0f}" if value.is_integer() else rate(value)


def seconds(value: Any) -> str:
    if is_missing(value):
        return MISSING
    value = float(value)
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s" if value >= 1 else f"{value:.2f} s"


def interval(estimate: Estimate | None, fmt=score) -> str:
    if estimate is None or is_missing(estimate.point):
        return MISSING
    if estimate.low is None or estimate.high is None:
        return fmt(estimate.point)
    return f"{fmt(estimate.point)} [{fmt(estimate.low)}, {fmt(estimate.high)}]"


def probability(value: Any) -> str:
    return MISSING if is_missing(value) else f"{float(value):.2f}"


# --- tables --------------------------------------------------------------------------------------------
@dataclass
class Cell:
    text: str
    sort: float | str | None = None  # numeric key for sorting; None: sorts last
    best: bool = False


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)
    key: str = ""  # stable id (file names, HTML anchors)

    def plain_rows(self) -> list[list[str]]:
        return [[cell.text for cell in row] for row in self.rows]


def text(value: Any) -> Cell:
    return Cell(MISSING if is_missing(value) else str(value), None if is_missing(value) else str(value))


def number(value: Any, fmt=score, best: bool = False) -> Cell:
    return Cell(fmt(value), None if is_missing(value) else float(value), best)


def estimate_cell(estimate: Estimate | None, fmt=score, best: bool = False) -> Cell:
    point = None if estimate is None else estimate.point
    return Cell(interval(estimate, fmt), None if is_missing(point) else float(point), best)


def per_task(rows: pd.DataFrame, methods: Sequence[str], title: str, key: str) -> Table:
    """Tasks down, methods across: 'mean [low, high] n=seeds', the best mean of each task marked."""
    table = Table(title, ["task", "data", *methods], [], key=key)
    for task, cells in rows.groupby("task", sort=True):
        by_method = cells.set_index("method")
        row = [text(task), number(cells["data_score"].iloc[0])]
        for method in methods:
            if method not in by_method.index:
                row.append(Cell("missing", None))
                continue
            cell = by_method.loc[method]
            row.append(Cell(f"{interval(Estimate(cell['mean'], _none(cell['low']), _none(cell['high'])))} "
                            f"n={int(cell['seeds'])}", float(cell["mean"]), bool(cell["best"])))
        table.rows.append(row)
    table.notes.append("mean normalized score over seeds [95% bootstrap interval] n=seeds; best mean of each task "
                       "marked; data: the behavior data's own score")
    return table


def aggregates(estimates: dict[str, dict[str, Estimate]], runs_per_task: dict[str, int], tasks: Sequence[str],
               title: str, key: str) -> Table:
    table = Table(title, ["method", *(METRIC_NAMES[m] for m in METRICS), "runs/task"], [], key=key)
    best = {m: (min if m == "optimality_gap" else max)(e[m].point for e in estimates.values()) for m in METRICS}
    for method, metrics in estimates.items():
        table.rows.append([text(method), *(estimate_cell(metrics[m], best=metrics[m].point == best[m])
                                           for m in METRICS), number(runs_per_task.get(method), fmt=count)])
    table.notes.append(f"over {len(tasks)} task{'s' if len(tasks) != 1 else ''} ({', '.join(tasks)}); "
                       "95% stratified-bootstrap intervals (rliable); optimality gap: shortfall below 100, lower is "
                       "better")
    return table


def improvement(estimates: dict[str, Estimate], reference: str, title: str, key: str) -> Table:
    table = Table(title, ["comparison", "probability", "95% interval"], [], key=key)
    for other, estimate in estimates.items():
        table.rows.append([text(f"P({reference} > {other})"), number(estimate.point, fmt=probability),
                           Cell(f"[{probability(estimate.low)}, {probability(estimate.high)}]", estimate.low)])
    table.notes.append("probability that a run of the first method beats a run of the second on a random task "
                       "(0.5: no difference); an interval above 0.5 is a statistically meaningful improvement")
    return table


def speed(timings: pd.DataFrame, speedups: pd.DataFrame, device: str, reference: str, key: str) -> Table:
    table = Table(f"speed on {device}", ["runtime", "task", "method", "timing", "load", NFE_COLUMN,
                                         *(display_name(f"actions_per_second_b{b}") for b in ("1", "256")),
                                         *(f"{reference} {display_name(f'speedup_b{b}')}" for b in ("1", "256"))],
                  [], key=key)
    mine = timings[timings["device"] == device]
    ratios = (speedups[speedups["device"] == device].set_index(["runtime", "task", "method"])
              if not speedups.empty else None)
    for record in mine.itertuples():
        load = (f"{record.loadavg:.1f}/{int(record.cpu_count)}" if not is_missing(record.loadavg)
                and not is_missing(record.cpu_count) else MISSING)
        row = [text(record.runtime), text(record.task), text(record.method),
               text(f"{record.context}, {record.load} ({record.timings})"),
               Cell(load, record.loadavg), number(record.nfe_per_action, fmt=count),
               _speed_cell(record.aps_b1, record.p25_b1, record.p75_b1),
               _speed_cell(record.aps_b256, record.p25_b256, record.p75_b256)]
        if record.method == reference:
            row += [Cell("1x", 1.0), Cell("1x", 1.0)]
        elif ratios is not None and (record.runtime, record.task, record.method) in ratios.index:
            found = ratios.loc[(record.runtime, record.task, record.method)]
            row += [estimate_cell(Estimate(found[f"speedup_b{b}"], _none(found[f"low_b{b}"]),
                                           _none(found[f"high_b{b}"])) if not is_missing(found[f"speedup_b{b}"])
                                  else None, fmt=ratio) for b in ("1", "256")]
        else:
            row += [Cell(MISSING), Cell(MISSING)]
        table.rows.append(row)
    left_out = sorted({f"{record.method} ({record.runtime})" for record in mine.itertuples()
                       if record.busy_left_out})
    table.notes.append("quiet: the 1-minute load average when timed was at most the timing's torch threads plus "
                       "half a core (the timing process counts itself); busy: above (other processes shared its "
                       "cores); a method with quiet timings is shown with those only"
                       + (f", its busy ones left out: {', '.join(left_out)}" if left_out else ""))
    table.notes.append("actions/s: median [25th, 75th percentile] over repeated timings; timing: 'alone' = "
                       "`srpo-bench speed` (preferred), 'in-run' = timed by a run's process right after its "
                       "evaluation, 'timing-phase' = timed after training, one run at a time, ', shared' = other "
                       "runs of the results folder were training on the host meanwhile, (k) timings pooled; "
                       "load: 1-minute load average / CPUs when timed; speedup: ratio of medians [95% bootstrap "
                       "interval over repeats], same device and same runtime only (eager: PyTorch; compiled: "
                       "torch.compile; onnx: ONNX Runtime; `srpo-bench speed --runtime`)")
    return table


def _speed_cell(median: Any, p25: Any, p75: Any) -> Cell:
    if is_missing(median):
        return Cell(MISSING)
    spread = "" if is_missing(p25) or is_missing(p75) else f" [{rate(p25)}, {rate(p75)}]"
    return Cell(rate(median) + spread, float(median))


def training(times: pd.DataFrame, device: str, key: str) -> Table:
    mine = times[times["device"] == device]
    stages = sorted(s for s in mine["stage"].unique() if s != "total")
    table = Table(f"training time per stage on {device}", ["profile", "task", "method", "seeds", *stages, "total"],
                  [], key=key)
    for (profile, task, method), rows in mine.groupby(["profile", "task", "method"], sort=True):
        by_stage = rows.set_index("stage")["seconds"]
        table.rows.append([text(profile), text(task), text(method), number(rows["seeds"].max(), fmt=count),
                           *(number(by_stage.get(s), fmt=seconds) for s in [*stages, "total"])])
    table.notes.append("mean over seeds of the seconds each stage took when trained (reused or resumed stages "
                       "count their original time); runs may have shared the machine")
    return table


def comparison(rows: pd.DataFrame, key: str) -> Table:
    """Published numbers beside ours, through the comparability gate (reference.compare): a number published under
    a protocol our group complies with sits in "published" with the difference; any other sits in "for reference,
    not comparable" with the reason, and no difference is shown."""
    table = Table("published numbers beside ours (D4RL and OGBench tasks)",
                  ["group", "task", "method", "ours", "published (comparable)", "ours - published",
                   "published inside our interval", "for reference, not comparable", "why not comparable", "source"],
                  [], key=key)
    for record in rows.itertuples():
        inside = record.reported_in_interval
        table.rows.append([
            text(record.group), text(record.task), text(record.method),
            Cell(f"{interval(Estimate(record.reproduced, _none(record.low), _none(record.high)))} "
                 f"n={int(record.seeds)}", record.reproduced),
            number(record.reported), number(record.difference),
            text(MISSING if inside is None or is_missing(inside) else ("yes" if inside else "no")),
            number(record.for_reference), text(record.why_not_comparable or MISSING),
            text(record.source + (f" ({record.note})" if record.note else ""))])
    table.notes.append("published numbers are the papers' (srpo_bench/report/published/), never part of our "
                       "aggregates; one stands beside ours only when our runs comply with the protocol it was "
                       "published under (srpo_bench/protocols/): same data definition, full data, the published "
                       "schedule, at least the published seeds, the same checkpoint rule. D4RL -v2 data is evaluated "
                       "on gymnasium v4 environments: close to, not identical with, the papers' setting")
    return table


CHECKPOINT_NAMES = {"final": "final policy", "mean_last3": "mean of last 3 evaluations"}


def selection(rows: pd.DataFrame, methods: Sequence[str], checkpoint: str, title: str, key: str) -> Table | None:
    """Per method, mean over tasks: the final policy's score, the mean of the last three evaluations and the best
    evaluation during training, side by side, when runs recorded them (per task in the CSV and JSON). The column
    the leaderboard ranks by is the group's checkpoint rule (its protocol's) and is marked."""
    rows = rows[rows["best_during_training"].notna() | rows["mean_last3"].notna()]
    if rows.empty:
        return None
    columns = [(column, name) for column, name in (("final", CHECKPOINT_NAMES["final"]),
                                                    ("mean_last3", CHECKPOINT_NAMES["mean_last3"]),
                                                    ("best_during_training", "best during training (optimistic)"))
               if rows[column].notna().any()]
    table = Table(title, ["method", "tasks", *(f"{name} (ranked)" if column == checkpoint else name
                                               for column, name in columns)], [], key=key)
    for method in methods:
        mine = rows[rows["method"] == method]
        if mine.empty:
            continue
        table.rows.append([text(method), number(mine["task"].nunique(), fmt=count),
                           *(number(mine[column].mean()) for column, _ in columns)])
    table.notes.append(f"means over tasks of the per-task means over seeds; the leaderboard ranks by the "
                       f"{CHECKPOINT_NAMES.get(checkpoint, checkpoint)} (the protocol's checkpoint rule); 'best' "
                       "picks the best evaluation after seeing the scores, so it is biased upward and never ranked")
    return table


def training_time(curves: Sequence[TimeCurve], title: str, key: str) -> Table:
    """Score against training time (report/training_time.py): one row per method and evaluation point, the
    training seconds spent by then (mean over seeds) and the score with its 95% interval over seeds."""
    table = Table(title, ["method", "seeds", "last-stage step", "training time", "clock", "score"], [], key=key)
    for curve in curves:
        for step, spent, estimate in zip(curve.steps, curve.seconds, curve.scores, strict=True):
            table.rows.append([text(curve.method), number(curve.seeds, count), number(step, count),
                               number(spent, seconds), text(clock_name(curve.clock)),
                               estimate_cell(estimate)])
    table.notes.append("every stage of a method counts (a shared stage at what it cost whoever trained it); "
                       "evaluations never do. The last row of a method is its final policy, the reported score.")
    return table


def protocols(used: Sequence[Any], key: str) -> Table:
    """The protocols behind the groups above (srpo_bench/protocols/<name>.toml): what a reader needs to judge a
    number without opening the file."""
    table = Table("protocols", ["protocol", "tasks", "methods", "seeds", "profile", "episodes", "checkpoint", "±",
                                "data", "tuning"], [], key=key)
    for protocol in used:
        table.rows.append([text(protocol.name), number(len(protocol.tasks), fmt=count),
                           text(", ".join(protocol.methods)), number(protocol.seeds, fmt=count), text(protocol.profile),
                           number(protocol.episodes, fmt=count),
                           text(CHECKPOINT_NAMES.get(protocol.checkpoint, protocol.checkpoint)),
                           text(protocol.plus_minus.replace("\n", " ")), text(protocol.data.definition.replace(
                               "\n", " ")), text(protocol.tuning.replace("\n", " "))])
    table.notes.append("each protocol's file (srpo_bench/protocols/<name>.toml) also lists every step count per "
                       "method; a group complies when every run does and every (task, method) has the seeds")
    return table


def failed(rows: pd.DataFrame, key: str) -> Table:
    table = Table("runs that did not finish (not in any table above)",
                  ["profile", "task", "method", "seed", "status", "reason", "folder"], [], key=key)
    for record in rows.itertuples():
        table.rows.append([text(record.profile), text(record.task), text(record.method), number(record.seed, fmt=count),
                           text(record.status), text(record.reason), text(record.path)])
    return table


def _none(value: Any) -> float | None:
    return None if is_missing(value) else float(value)


# --- the summary `srpo-bench run` prints -----------------------------------------------------------------
def runs_frame(out: Path) -> pd.DataFrame:
    """One row per finished run: task, method (labelled with its --set overrides; `base_method` without them),
    seed, profile, normalized score, actions/s, NFE."""
    finished = load_runs([out]).finished
    columns = ["profile", "suite", "task", "method", "base_method", "seed", "selection", "normalized", "dataset_score",
               "actions_per_second_b1", "actions_per_second_b256", "nfe_per_action", "fit_seconds", "device"]
    if finished.empty:
        return pd.DataFrame(columns=columns)
    frame = finished.rename(columns={"score": "normalized"})
    speed = [s if isinstance(s, dict) else {} for s in frame["speed"]]
    for size in ("1", "256"):
        frame[f"actions_per_second_b{size}"] = [
            (s.get("batches") or {}).get(size, {}).get("actions_per_second") for s in speed]
    frame["nfe_per_action"] = [s.get("nfe_per_action") for s in speed]
    frame["device"] = frame["device_type"]
    return frame[columns]


def task_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of the normalized score over seeds, the behavior data's own score, median actions/s,
    per (profile, task, method)."""
    if frame.empty:
        return frame
    grouped = frame.groupby(["profile", "task", "method"], sort=True)
    summary = grouped.agg(
        seeds=("seed", "count"),
        score_mean=("normalized", "mean"),
        score_std=("normalized", "std"),
        dataset_score=("dataset_score", "first"),
        actions_per_second_b1=("actions_per_second_b1", "median"),
        actions_per_second_b256=("actions_per_second_b256", "median"),
        nfe_per_action=("nfe_per_action", "first"),
        fit_minutes=("fit_seconds", lambda s: s.mean() / 60.0),
    )
    return summary.reset_index()


DISPLAY_NAMES = {
    "score_mean": "score", "score_std": "std", "dataset_score": "data score", "fit_minutes": "fit min",
    **{name: display_name(name) for name in ("actions_per_second_b1", "actions_per_second_b256", NFE_FIELD)},
}


DISPLAY_FORMATS = {
    "seeds": count, "score_mean": score, "score_std": score, "dataset_score": score,
    "actions_per_second_b1": rate, "actions_per_second_b256": rate, "nfe_per_action": count,
    "fit_minutes": lambda minutes: MISSING if is_missing(minutes) else f"{float(minutes):.1f}",
}


def for_display(summary: pd.DataFrame) -> pd.DataFrame:
    """Numbers formatted for people (no scientific notation; missing as a dash) under short headers."""
    shown = summary.copy()
    for column, fmt in DISPLAY_FORMATS.items():
        if column in shown:
            shown[column] = shown[column].map(fmt).astype(object)
    return shown.rename(columns=DISPLAY_NAMES)
