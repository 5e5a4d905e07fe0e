"""Plots over the per-task summary: score against acting speed (the paper's Figure 1), and scores per task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def score_vs_speed(summary: pd.DataFrame, path: Path, batch: str = "b1") -> Path:
    """One point per method: mean normalized score over tasks against median actions/s (log scale)."""
    per_method = summary.groupby("method").agg(score=("score_mean", "mean"),
                                               speed=(f"actions_per_second_{batch}", "median"))
    figure = Figure(figsize=(5.5, 4.0))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for method, row in per_method.iterrows():
        axes.scatter(row["speed"], row["score"], s=40)
        axes.annotate(str(method), (row["speed"], row["score"]), textcoords="offset points", xytext=(5, 4))
    axes.set_xscale("log")
    axes.set(xlabel=f"actions per second, batch {batch[1:]} (log)", ylabel="mean normalized score",
             title="score vs acting speed")
    axes.grid(True, which="both", alpha=0.3)
    return _save(figure, path)


def scores_by_task(summary: pd.DataFrame, path: Path) -> Path:
    """Grouped bars: mean normalized score (error bar: std over seeds) per task and method."""
    tasks = sorted(summary["task"].unique())
    methods = sorted(summary["method"].unique())
    width = 0.8 / max(1, len(methods))
    figure = Figure(figsize=(max(6.0, 1.3 * len(tasks) * max(1, len(methods)) / 2), 4.0))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    positions = np.arange(len(tasks))
    for index, method in enumerate(methods):
        rows = summary[summary["method"] == method].set_index("task").reindex(tasks)
        axes.bar(positions + index * width, rows["score_mean"], width, yerr=rows["score_std"].fillna(0.0),
                 label=method, capsize=2)
    axes.set_xticks(positions + width * (len(methods) - 1) / 2, tasks, rotation=30, ha="right")
    axes.set(ylabel="normalized score", title="normalized score per task (mean over seeds)")
    axes.legend(fontsize=8)
    return _save(figure, path)
