"""Speed: which timings the report uses, SRPO's speedup over each method with an interval, training time.

A ratio of speeds means something only when both were measured on the same device (same kind, model and
CPU thread count) and runtime (eager, compiled, onnx: SRPO's speedup is never its best runtime over a baseline's
eager), ideally with the device to themselves. So timings are grouped by device and runtime, and per
(device, runtime, task, method) the report takes `srpo-bench speed` timings ("alone") when it has them, else the
timings made inside training runs ("in-run", where other runs could share the machine), and marks which.
"Alone" says who timed, not how busy the machine was: each timing is also labelled by the load when it was taken
(`load_label`: "busy" when the 1-minute load average exceeded its torch threads by more than half a core), and quiet
timings are preferred to busy ones before anything else (a grid's other runs, or another user, slow a timing down
by their share).
The speedup is the ratio of median actions/s, its 95% interval bootstrapped over the repeated timings
(aggregate.speedup_interval); timings recorded before per-repeat samples existed give the ratio alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from srpo_bench.report.aggregate import DEFAULT_REPS, DEFAULT_SEED, speedup_interval

BATCHES = ("1", "256")
TIMING_COLUMNS = ["device", "runtime", "task", "method", "context", "timings", "load", "busy_left_out", "loadavg",
                  "threads", "cpu_count", "nfe_per_action",
                  *(f"{kind}_b{b}" for b in BATCHES for kind in ("aps", "p25", "p75", "samples"))]
#: a timing's machine load, best first: the report takes the best kind a (device, runtime, task, method) has
LOADS = ("quiet", "unknown", "busy")


#: load beyond the timing's own threads that still counts as quiet. The load average counts the timing process
#: itself: it was running just before (training the weights it times, or timing other methods), so a lone process
#: at one thread reads ~1.0; half a core more means another process was runnable for much of the last minute.
OWN_LOAD_MARGIN = 0.5


def load_label(loadavg: Any, threads: Any) -> str:
    """"busy" when the 1-minute load average recorded as the timing began exceeded its torch thread count by more
    than `OWN_LOAD_MARGIN` (other processes were competing for the cores it timed on), "quiet" when it did not,
    "unknown" when either is missing (a record from before loads were kept, or an OS without load averages)."""
    if _missing(loadavg) or _missing(threads) or float(threads) < 1:
        return "unknown"
    return "busy" if float(loadavg) > float(threads) + OWN_LOAD_MARGIN else "quiet"


def select_timings(timings: pd.DataFrame) -> pd.DataFrame:
    """One row per (device, runtime, task, method), from the timings of its quietest kind of load (`LOADS`: quiet
    timings whenever there are any, busy ones only when nothing else was timed): among those, "alone" timings if
    any (the newest such file), else every distinct in-run timing pooled. Columns: device, runtime, task, method,
    context, timings (how many were pooled), load and how many busy timings were left out, the 1-minute load
    average when taken, the torch threads, and per batch size the median actions/s, its quartiles and samples."""
    if timings.empty:
        return pd.DataFrame(columns=TIMING_COLUMNS)
    if "runtime" not in timings:  # rows made before runtimes existed
        timings = timings.assign(runtime="eager")
    threads = timings["threads"] if "threads" in timings else pd.Series([None] * len(timings), index=timings.index)
    timings = timings.assign(load=[load_label(avg, n) for avg, n in zip(timings["loadavg"], threads, strict=True)],
                             threads=threads)
    rows = []
    for (device, runtime, task, method), group in timings.groupby(["device", "runtime", "task", "method"], sort=True):
        load = min(group["load"], key=LOADS.index)
        calmest = group[group["load"] == load]
        alone = calmest[calmest["context"] == "alone"]
        chosen = alone.sort_values("taken").tail(1) if not alone.empty else calmest
        row: dict[str, Any] = {
            "device": device, "runtime": runtime, "task": task, "method": method, "load": load,
            "busy_left_out": int((group["load"] == "busy").sum()) if load != "busy" else 0,
            "threads": chosen["threads"].dropna().max() if chosen["threads"].notna().any() else None,
            # the contexts of the timings pooled, as their speed files name them (frame.runner_context)
            "context": "/".join(sorted(set(chosen["context"].astype(str)))), "timings": len(chosen),
            "loadavg": _mean_or_none(chosen["loadavg"]), "cpu_count": chosen["cpu_count"].dropna().max()
            if chosen["cpu_count"].notna().any() else None,
            "nfe_per_action": chosen["nfe_per_action"].dropna().iloc[0] if chosen["nfe_per_action"].notna().any()
            else None,
        }
        for size in BATCHES:
            samples = [s for pooled in chosen[f"samples_b{size}"] for s in pooled]
            medians = chosen[f"aps_b{size}"].dropna()
            values = np.asarray(samples if samples else medians, dtype=float)
            row[f"samples_b{size}"] = samples
            row[f"aps_b{size}"] = float(np.median(values)) if values.size else None
            row[f"p25_b{size}"] = float(np.percentile(values, 25)) if len(samples) > 1 else None
            row[f"p75_b{size}"] = float(np.percentile(values, 75)) if len(samples) > 1 else None
        rows.append(row)
    return pd.DataFrame(rows, columns=TIMING_COLUMNS)


def speedups(selected: pd.DataFrame, reference: str = "srpo", reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED
             ) -> pd.DataFrame:
    """SRPO's speedup over each other method, per (device, runtime, task) and batch size: point, low, high, and
    which kinds of timing the ratio compares ("alone", "in-run", or "alone/in-run" when they differ). Both sides
    of a ratio always come from the same runtime."""
    rows = []
    for (device, runtime, task), group in selected.groupby(["device", "runtime", "task"], sort=True):
        base = group[group["method"] == reference]
        if base.empty:
            continue
        base = base.iloc[0]
        for other in group[group["method"] != reference].itertuples():
            row: dict[str, Any] = {"device": device, "runtime": runtime, "task": task, "method": other.method,
                                   "timings": base["context"] if base["context"] == other.context
                                   else f"{base['context']}/{other.context}"}
            for size in BATCHES:
                estimate = _ratio(base, other._asdict(), size, reps, seed)
                row[f"speedup_b{size}"] = None if estimate is None else estimate.point
                row[f"low_b{size}"] = None if estimate is None else estimate.low
                row[f"high_b{size}"] = None if estimate is None else estimate.high
            rows.append(row)
    columns = ["device", "runtime", "task", "method", "timings",
               *(f"{kind}_b{b}" for b in BATCHES for kind in ("speedup", "low", "high"))]
    return pd.DataFrame(rows, columns=columns)


def _ratio(base: Any, other: dict[str, Any], size: str, reps: int, seed: int):
    ref_samples, other_samples = base[f"samples_b{size}"], other[f"samples_b{size}"]
    if ref_samples and other_samples:
        return speedup_interval(ref_samples, other_samples, reps=reps, seed=seed)
    ref, oth = base[f"aps_b{size}"], other[f"aps_b{size}"]
    if ref is None or oth is None or pd.isna(ref) or pd.isna(oth) or ref <= 0 or oth <= 0:
        return None
    return speedup_interval([ref], [oth])


#: leaderboard-training.csv's columns, whether or not any run recorded its stage times
TRAINING_COLUMNS = ["device", "profile", "task", "method", "stage", "seeds", "seconds"]


def training_times(finished: pd.DataFrame) -> pd.DataFrame:
    """Mean seconds per training stage over seeds, per (training device, profile, task, method), plus the total.
    Resumed or reused stages count the seconds they took when trained (frame.training_seconds)."""
    if finished.empty:
        return pd.DataFrame(columns=TRAINING_COLUMNS)
    rows = []
    for record in finished.itertuples():
        stages = record.stage_seconds or {}
        for stage, seconds in stages.items():
            rows.append({"device": record.device, "profile": record.profile, "task": record.task,
                         "method": record.method, "seed": record.seed, "stage": stage, "seconds": seconds})
        if record.fit_seconds is not None and not pd.isna(record.fit_seconds):
            rows.append({"device": record.device, "profile": record.profile, "task": record.task,
                         "method": record.method, "seed": record.seed, "stage": "total",
                         "seconds": float(record.fit_seconds)})
    if not rows:
        return pd.DataFrame(columns=TRAINING_COLUMNS)
    long = pd.DataFrame(rows)
    return (long.groupby(["device", "profile", "task", "method", "stage"], sort=True)
            .agg(seeds=("seed", "nunique"), seconds=("seconds", "mean")).reset_index())[TRAINING_COLUMNS]


def _missing(value: Any) -> bool:
    return value is None or isinstance(value, float) and np.isnan(value) or value is pd.NA


def _mean_or_none(values: pd.Series) -> float | None:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(values.mean()) if not values.empty else None
