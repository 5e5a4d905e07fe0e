"""Published numbers (srpo_bench/report/published/) beside ours, for D4RL and OGBench tasks only.

The published table is a separate frame with its own columns (`reported`, `source`); it is joined onto our
per-task means only to be shown side by side and never flows back into the frames the aggregates read.
Only runs scored with D4RL's reference scores on D4RL data (`score_scale == "d4rl"`) are compared: the
`locomotion-lite` suite is our own data (a lite task never gets a reported number), and the `antmaze` suite is
Minari's port scored with Minari's reference scores (tasks.py), so the papers' AntMaze rows are not its numbers.
OGBench runs (`score_scale == "ogbench"`: success rate in percent) stand beside the FQL paper's OGBench table
(`ogbench_published.csv`), whichever way the dataset was obtained (downloaded or made by `collect`): the run's
task note says which ogbench version and `success_timing` it was scored with.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

REFERENCE_DIR = Path(__file__).resolve().parent / "published"  # package data: installed with srpo-bench
REFERENCE_FILE = REFERENCE_DIR / "d4rl_published.csv"
OGBENCH_REFERENCE_FILE = REFERENCE_DIR / "ogbench_published.csv"
COMPARABLE_SCALES = ("d4rl", "ogbench")
COLUMNS = ["group", "task", "method", "seeds", "reproduced", "low", "high", "reported", "difference",
           "reported_in_interval", "source", "note"]


def load_reference(path: Path | None = None) -> pd.DataFrame:
    """The published tables (D4RL, then OGBench; or the one file `path`): suite, task, method, score, source,
    note (OGBench rows add std and seeds). Empty if no file is there (a non-editable install without the
    repository)."""
    paths = [path] if path is not None else [REFERENCE_FILE, OGBENCH_REFERENCE_FILE]
    tables = [pd.read_csv(p, dtype={"note": str}, keep_default_na=False) for p in paths if p.exists()]
    if not tables:
        return pd.DataFrame(columns=["suite", "task", "method", "score", "source", "note"])
    table = pd.concat(tables, ignore_index=True)
    table["score"] = pd.to_numeric(table["score"])
    return table


def comparable(task: str, score_scale: str) -> bool:
    """Whether a run of `task` can stand beside a published number (D4RL or OGBench scale)."""
    return score_scale in COMPARABLE_SCALES and not task.startswith("lite-")


def compare(per_task: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """One row per (our group, D4RL or OGBench task, method we ran that has a published number): our mean and interval
    ("reproduced"), the published number ("reported"), the difference (ours minus reported) and whether the
    reported number lies inside our 95% interval (missing when we have no interval)."""
    if per_task.empty or reference.empty:
        return pd.DataFrame(columns=COLUMNS)
    ours = per_task[[comparable(t, s) for t, s in zip(per_task["task"], per_task["score_scale"], strict=False)]]
    if ours.empty:
        return pd.DataFrame(columns=COLUMNS)
    published = reference.rename(columns={"score": "reported", "method": "base_method"})[
        ["task", "base_method", "reported", "source", "note"]]
    merged = ours.merge(published, on=["task", "base_method"], how="inner")
    merged = merged.rename(columns={"mean": "reproduced"})
    merged["difference"] = merged["reproduced"] - merged["reported"]
    merged["reported_in_interval"] = [
        None if pd.isna(low) or pd.isna(high) else bool(low <= reported <= high)
        for low, high, reported in zip(merged["low"], merged["high"], merged["reported"], strict=False)]
    return merged[COLUMNS].reset_index(drop=True)
