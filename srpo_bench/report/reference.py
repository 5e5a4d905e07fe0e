"""Published numbers (srpo_bench/report/published/) beside ours, for D4RL and OGBench tasks only.

The published table is a separate frame with its own columns (`reported`, `source`); it is joined onto our
per-task means only to be shown side by side and never flows back into the frames the aggregates read.
Only runs scored with D4RL's reference scores on D4RL data (`score_scale == "d4rl"`) are compared: the
`locomotion-lite` suite is our own data (a lite task never gets a reported number), and the `antmaze` suite is
Minari's port scored with Minari's reference scores (tasks.py), so the papers' AntMaze rows are not its numbers.
OGBench runs (`score_scale == "ogbench"`: success rate in percent) stand beside the FQL paper's OGBench table
(`ogbench_published.csv`), whichever way the dataset was obtained (downloaded or made by `collect`): the run's
task note says which ogbench version and `success_timing` it was scored with.

The comparability gate: each published row names the protocol it was published under (`protocol` column; empty
when no protocol of this suite reproduces it). A row stands beside our number ("reported", with the difference)
only when our group complies with that protocol and has at least the published seed count; otherwise it is shown
"for reference" with the reason, and no difference is taken.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from srpo_bench.vocabulary import plural

REFERENCE_DIR = Path(__file__).resolve().parent / "published"  # package data: installed with srpo-bench
REFERENCE_FILE = REFERENCE_DIR / "d4rl_published.csv"
OGBENCH_REFERENCE_FILE = REFERENCE_DIR / "ogbench_published.csv"
COMPARABLE_SCALES = ("d4rl", "ogbench")
COLUMNS = ["group", "task", "method", "seeds", "reproduced", "low", "high", "reported", "difference",
           "reported_in_interval", "for_reference", "why_not_comparable", "comparable", "source", "note"]


def load_reference(path: Path | None = None) -> pd.DataFrame:
    """The published tables (D4RL, then OGBench; or the one file `path`): suite, task, method, score, source,
    note (OGBench rows add std and seeds). Empty if no file is there (a non-editable install without the
    repository)."""
    paths = [path] if path is not None else [REFERENCE_FILE, OGBENCH_REFERENCE_FILE]
    tables = [pd.read_csv(p, dtype={"note": str, "protocol": str}, keep_default_na=False) for p in paths
              if p.exists()]
    if not tables:
        return pd.DataFrame(columns=["suite", "task", "method", "score", "source", "note"])
    table = pd.concat(tables, ignore_index=True)
    table["score"] = pd.to_numeric(table["score"])
    return table


def comparable(task: str, score_scale: str) -> bool:
    """Whether a run of `task` can stand beside a published number (D4RL or OGBench scale)."""
    return score_scale in COMPARABLE_SCALES and not task.startswith("lite-")


def compare(per_task: pd.DataFrame, reference: pd.DataFrame,
            compliance: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """One row per (our group, D4RL or OGBench task, method we ran that has a published number), through the
    comparability gate: the published number stands beside ours ("reported", with the difference and whether it lies
    inside our 95% interval) only when our group complies with the protocol the number was published under
    (`compliance`: group label -> build.group_compliance) and has at least the published seed count. Otherwise the
    number moves to "for_reference" with the reason in "why_not_comparable", and no difference is computed."""
    if per_task.empty or reference.empty:
        return pd.DataFrame(columns=COLUMNS)
    ours = per_task[[comparable(t, s) for t, s in zip(per_task["task"], per_task["score_scale"], strict=False)]]
    if ours.empty:
        return pd.DataFrame(columns=COLUMNS)
    published = reference.rename(columns={"score": "published", "method": "base_method", "seeds": "published_seeds",
                                          "protocol": "published_protocol"})
    for column in ("published_seeds", "published_protocol"):
        if column not in published:
            published[column] = None
    merged = ours.merge(published[["task", "base_method", "published", "published_seeds", "published_protocol",
                                   "source", "note"]], on=["task", "base_method"], how="inner")
    merged = merged.rename(columns={"mean": "reproduced"})
    reasons = [why_not_comparable(row, (compliance or {}).get(row["group"], {}))
               for row in merged.to_dict("records")]
    merged["comparable"] = [reason == "" for reason in reasons]
    merged["why_not_comparable"] = reasons
    merged["reported"] = merged["published"].where(merged["comparable"])
    merged["for_reference"] = merged["published"].where(~merged["comparable"])
    merged["difference"] = merged["reproduced"] - merged["reported"]
    merged["reported_in_interval"] = [
        None if not ok or pd.isna(low) or pd.isna(high) else bool(low <= reported <= high)
        for ok, low, high, reported in zip(merged["comparable"], merged["low"], merged["high"], merged["reported"],
                                           strict=False)]
    return merged[COLUMNS].reset_index(drop=True)


def why_not_comparable(row: dict[str, Any], compliance: dict[str, Any]) -> str:
    """"" when a published number may stand beside our group's; else why not, in a few words."""
    protocol = row.get("published_protocol")
    if not isinstance(protocol, str) or not protocol:
        return "published under its paper's own protocol, which no protocol here reproduces"
    if not compliance.get("complies"):
        return "ours: " + ("; ".join(compliance.get("reasons") or []) or "complies with no protocol")
    if compliance.get("protocol") != protocol:
        return f"ours: protocol {compliance.get('protocol')}; the number was published under {protocol}"
    seeds = pd.to_numeric(row.get("published_seeds"), errors="coerce")
    if not pd.isna(seeds) and row["seeds"] < seeds:
        return f"ours: {plural(int(row['seeds']), 'seed')}, fewer than the published {int(seeds)}"
    return ""
