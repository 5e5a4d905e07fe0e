"""Published numbers (results/reference/) beside ours, for D4RL tasks only.

The published table is a separate frame with its own columns (`reported`, `source`); it is joined onto our
per-task means only to be shown side by side and never flows back into the frames the aggregates read.
Only runs scored with D4RL's reference scores on D4RL data (`score_scale == "d4rl"`) are compared: the
`locomotion-lite` suite is our own data (a lite task never gets a reported number), and the `antmaze` suite is
Minari's port scored with Minari's reference scores (tasks.py), so the papers' AntMaze rows are not its numbers.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

REFERENCE_FILE = Path(__file__).resolve().parents[2] / "results" / "reference" / "d4rl_published.csv"
COMPARABLE_SCALES = ("d4rl",)
COLUMNS = ["group", "task", "method", "seeds", "reproduced", "low", "high", "reported", "difference",
           "reported_in_interval", "source", "note"]


def load_reference(path: Path = REFERENCE_FILE) -> pd.DataFrame:
    """The published table: suite, task, method, score, source, note (empty frame if the file is absent,
    e.g. a non-editable install without the repository)."""
    if not path.exists():
        return pd.DataFrame(columns=["suite", "task", "method", "score", "source", "note"])
    table = pd.read_csv(path, dtype={"note": str}, keep_default_na=False)
    table["score"] = pd.to_numeric(table["score"])
    return table


def comparable(task: str, score_scale: str) -> bool:
    """Whether a run of `task` can stand beside a published D4RL number."""
    return score_scale in COMPARABLE_SCALES and not task.startswith("lite-")


def compare(per_task: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """One row per (our group, D4RL task, method we ran that has a published number): our mean and interval
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
