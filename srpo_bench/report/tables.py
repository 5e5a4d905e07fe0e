"""Tables over the results store: one row per finished run, then per-task summaries."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from srpo_bench.store import iter_finished_runs


def runs_frame(out: Path) -> pd.DataFrame:
    """One row per finished run: task, method, seed, profile, normalized score, actions/s, NFE."""
    rows = []
    for record in iter_finished_runs(out):
        run, speed = record.run, record.speed or {}
        batches = speed.get("batches", {})
        rows.append({
            "profile": run["profile"], "suite": run.get("suite", ""), "task": run["task"], "method": run["method"],
            "seed": run["seed"], "selection": run.get("selection", "final"),
            "normalized": record.eval["mean_normalized"], "return": float(pd.Series(record.eval["returns"]).mean()),
            "dataset_return": run.get("dataset", {}).get("average_episode_return"),
            "dataset_score": run.get("dataset", {}).get("average_normalized"),
            "actions_per_second_b1": batches.get("1", {}).get("actions_per_second"),
            "actions_per_second_b256": batches.get("256", {}).get("actions_per_second"),
            "nfe_per_action": speed.get("nfe_per_action"),
            "fit_seconds": training_seconds(run), "device": run.get("device", {}).get("type"),
        })
    return pd.DataFrame(rows)


def training_seconds(run: dict) -> float | None:
    """What the run's stages cost to train, wherever they were trained: a stage resumed from an interrupted
    run or shared under --share-stages counts the seconds recorded when it was trained, not the load time."""
    stages = run.get("stages") or []
    if stages and all("seconds" in stage for stage in stages):
        return float(sum(stage["seconds"] for stage in stages))
    return run.get("seconds", {}).get("fit")


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
    "score_mean": "score", "score_std": "std", "dataset_score": "data score",
    "actions_per_second_b1": "actions/s b1", "actions_per_second_b256": "actions/s b256",
    "nfe_per_action": "NFE/action", "fit_minutes": "fit min",
}


def for_display(summary: pd.DataFrame) -> pd.DataFrame:
    """Short column headers for printed tables (the frame's own names stay for CSV and plots)."""
    return summary.rename(columns=DISPLAY_NAMES)
