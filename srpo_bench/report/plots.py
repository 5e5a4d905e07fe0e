"""Figures of one protocol group, readable without the tables: matplotlib's object API on the Agg canvas (no
pyplot state, no display), each saved as PNG (also embedded in the HTML page) and SVG.

- aggregates: IQM, mean, median and optimality gap with their 95% intervals (rliable's figure layout);
- performance profiles: share of runs scoring above tau, with bands;
- probability of improvement: P(SRPO > X) with intervals, 0.5 marked;
- score vs speed: log actions/s at batch 1 against IQM, intervals on both axes (the paper's Figure 1);
- training curves: each method's stages, one line per task (mean over seeds);
- scores during training, when runs recorded periodic evaluations;
- score against training time (CPU- or device-seconds), when those evaluations carry training clocks;
- tuning budget, for sweeps: Unifloral's UCB curve over evaluation episodes and the EOP curve over k.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from srpo_bench.atomic import atomic_write
from srpo_bench.report.aggregate import METRIC_NAMES, METRICS, Estimate
from srpo_bench.report.training_time import AXIS_NAMES, TimeCurve

# Okabe-Ito, colorblind-safe; a method keeps its color in every figure.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#999999",
           "#882255", "#44AA99", "#117733"]
# Training curves draw one line per task, so they get colors of their own (Paul Tol's "muted"): a task's line in
# a method color would read as that method.
TASK_PALETTE = ["#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499",
                "#DDDDDD"]
MAX_POINTS = 200  # per curve: keeps SVGs small
MIN_BAR = 0.006  # share of an axis's span: the least width an interval is drawn with, so a tight one stays visible


@dataclass
class SavedFigure:
    name: str
    title: str
    png: Path
    svg: Path
    png_bytes: bytes


def colors(methods: Sequence[str]) -> dict[str, str]:
    return {method: PALETTE[i % len(PALETTE)] for i, method in enumerate(methods)}


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    figure = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(figure)
    return figure


def save(figure: Figure, folder: Path, name: str, title: str, stamp: tuple[str, str] = ("", "")) -> SavedFigure:
    """Write `name`.png and `name`.svg atomically; keep the PNG bytes for embedding. `stamp` = (short, full):
    the short one in small print in the corner, the full one (versions, commits, devices, runs) in the metadata."""
    short, full = stamp
    if short:
        figure.text(0.999, 0.002, short, ha="right", va="bottom", fontsize=6.5, color="#555555")
        engine = figure.get_layout_engine()
        if engine is not None and hasattr(engine, "set"):  # keep a strip under the axes for the stamp: no overlap
            strip = min(0.2, 0.16 / figure.get_figheight())
            engine.set(rect=(0, strip, 1, 1 - strip))
    # Byte-identical files from the same records (results/leaderboard is rebuilt and compared in CI): no software
    # version or date in the metadata, and SVG element ids from a fixed salt instead of a random one.
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=100, metadata={"Description": full, "Software": None})
    # The layout is solved while drawing the PNG; solving it again for the SVG costs a third of a report's time.
    figure.set_layout_engine("none")
    svg = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "srpo-bench"}):
        figure.savefig(svg, format="svg", metadata={"Description": full, "Date": None, "Creator": None})
    png_path, svg_path = folder / f"{name}.png", folder / f"{name}.svg"
    atomic_write(png_path, lambda tmp: Path(tmp).write_bytes(png.getvalue()))
    atomic_write(svg_path, lambda tmp: Path(tmp).write_text(svg.getvalue(), encoding="utf-8"))
    return SavedFigure(name, title, png_path, svg_path, png.getvalue())


def aggregates(estimates: Mapping[str, Mapping[str, Estimate]], palette: Mapping[str, str], title: str) -> Figure:
    """One panel per metric, one interval per method (higher is better, except the optimality gap)."""
    methods = list(estimates)
    figure = new_figure(3.0 * len(METRICS), 0.8 + 0.42 * len(methods))
    axes = figure.subplots(1, len(METRICS), sharey=True)
    for ax, metric in zip(np.atleast_1d(axes), METRICS, strict=False):
        edges = [edge for method in methods for edge in _bounds(estimates[method][metric])]
        # Bars pin autoscaling to their edges (sticky edges): pad by hand so no interval touches the frame.
        pad = max(1.0, 0.08 * (max(edges) - min(edges)))
        ax.set_xlim(min(edges) - pad, max(edges) + pad)
        span = max(edges) - min(edges) + 2 * pad
        for row, method in enumerate(methods):
            estimate = estimates[method][metric]
            _interval_bar(ax, row, estimate, span, palette[method])
        # At most 4 labelled ticks: neighbouring panels' labels (e.g. "97.5") never run into each other.
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.set_title(METRIC_NAMES[metric] + (" (lower is better)" if metric == "optimality_gap" else ""),
                     fontsize=10)
        ax.set_yticks(range(len(methods)), methods)
        ax.margins(x=0.12)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("normalized score")
    figure.suptitle(f"aggregates with 95% stratified-bootstrap intervals\n{title}", fontsize=10)
    return figure


def profiles(taus: np.ndarray, curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
             palette: Mapping[str, str], title: str) -> Figure:
    figure = new_figure(6.5, 4.2)
    ax = figure.add_subplot(1, 1, 1)
    for method, (profile, low, high) in curves.items():
        ax.plot(taus, profile, color=palette[method], label=method, linewidth=1.8)
        ax.fill_between(taus, low, high, color=palette[method], alpha=0.18, linewidth=0)
    ax.set(xlabel="normalized score tau", ylabel="fraction of runs with score > tau", ylim=(-0.02, 1.02))
    ax.set_title(f"performance profiles (bands: 95% intervals)\n{title}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def improvement(estimates: Mapping[str, Estimate], reference: str, palette: Mapping[str, str], title: str
                ) -> Figure:
    others = list(estimates)
    figure = new_figure(6.0, 0.9 + 0.45 * len(others))
    ax = figure.add_subplot(1, 1, 1)
    for row, other in enumerate(others):
        _interval_bar(ax, row, estimates[other], 1.04, palette.get(other, "grey"))
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(others)), [f"P({reference} > {other})" for other in others])
    ax.set(xlim=(-0.02, 1.02), xlabel="probability of improvement (0.5: no difference)")
    ax.set_title(f"probability of improvement, 95% intervals\n{title}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return figure


@dataclass
class SpeedPoint:
    method: str
    speed: Estimate  # actions/s at batch 1: median and interval
    score: Estimate  # IQM and interval


def score_vs_speed(points_by_device: Mapping[str, Sequence[SpeedPoint]], palette: Mapping[str, str], title: str
                   ) -> Figure:
    devices = list(points_by_device)
    figure = new_figure(5.5 * len(devices), 4.2)
    axes = np.atleast_1d(figure.subplots(1, len(devices), squeeze=False)[0])
    for ax, device in zip(axes, devices, strict=False):
        for point in points_by_device[device]:
            x_low, x_high = _bounds(point.speed)
            y_low, y_high = _bounds(point.score)
            ax.errorbar(point.speed.point, point.score.point,
                        xerr=[[point.speed.point - x_low], [x_high - point.speed.point]],
                        yerr=[[point.score.point - y_low], [y_high - point.score.point]],
                        fmt="o", color=palette.get(point.method, "grey"), capsize=3, label=point.method)
            ax.annotate(point.method, (point.speed.point, point.score.point), textcoords="offset points",
                        xytext=(6, 5), fontsize=8)
        ax.set_xscale("log")
        # Plain numbers: default log labels (1.2x10^4 ...) overlap on a narrow range; 1-2-5 steps within about a
        # decade, powers of ten beyond.
        speeds = [p.speed.point for p in points_by_device[device] if p.speed.point > 0]
        decades = np.log10(max(speeds) / min(speeds)) if speeds else 0.0
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades < 1.5 else (1.0,)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.margins(x=0.15, y=0.15)
        ax.set(xlabel="actions per second, batch 1 (log)", ylabel="IQM normalized score")
        ax.set_title(device, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    figure.suptitle(f"score vs acting speed (95% intervals on both axes)\n{title}", fontsize=10)
    return figure


def training_curves(curves: Mapping[tuple[str, str], Mapping[str, tuple[np.ndarray, np.ndarray]]],
                    metrics_used: Mapping[tuple[str, str], str], title: str) -> Figure:
    """`curves[(method, stage)][task] = (steps, mean over seeds)`: one panel per method and stage."""
    panels = list(curves)
    columns = min(4, len(panels))
    rows = int(np.ceil(len(panels) / columns))
    height = 2.8 * rows + 1.4
    # Fixed spacing instead of the constrained layout: solving it for a grid of panels cost seconds per figure.
    figure = new_figure(3.6 * columns, height, layout=None)
    figure.subplots_adjust(left=0.07, right=0.98, top=1 - 0.75 / height, bottom=0.75 / height, wspace=0.35,
                           hspace=0.55)
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
    tasks = sorted({task for lines in curves.values() for task in lines})
    task_colors = {task: TASK_PALETTE[i % len(TASK_PALETTE)] for i, task in enumerate(tasks)}
    for ax, panel in zip(axes, panels, strict=False):
        for task, (steps, values) in curves[panel].items():
            ax.plot(*_thin(steps, values), color=task_colors[task], linewidth=1.2, label=task)
        ax.set_title(f"{panel[0]}: {panel[1]}", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel(metrics_used[panel], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncols=min(5, max(1, len(labels))), fontsize=7)
    figure.suptitle(f"training curves per stage (mean over seeds)\n{title}", fontsize=10, y=0.995)
    return figure


def during_training(curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], palette: Mapping[str, str],
                    title: str) -> Figure:
    """`curves[method] = (steps, mean, std)`: normalized score of the periodic evaluations, mean over tasks."""
    figure = new_figure(6.5, 4.2)
    ax = figure.add_subplot(1, 1, 1)
    for method, (steps, mean, spread) in curves.items():
        ax.plot(steps, mean, color=palette.get(method, "grey"), label=method, linewidth=1.6, marker=".")
        ax.fill_between(steps, mean - spread, mean + spread, color=palette.get(method, "grey"), alpha=0.15,
                        linewidth=0)
    ax.set(xlabel="training step of the last stage", ylabel="normalized score (mean over tasks)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"scores during training (bands: ± std over seeds; the reported score is the final one)\n{title}",
                 fontsize=9)
    return figure


def score_vs_training_time(curves: Sequence[TimeCurve], palette: Mapping[str, str], title: str) -> Figure:
    """`curves`: report/training_time.py TimeCurve, one per method and clock: score (mean over seeds, 95% band)
    against the training seconds spent, one panel per clock (CPU-seconds on a CPU, elapsed on a GPU)."""
    clocks = list(dict.fromkeys(curve.clock for curve in curves))
    figure = new_figure(max(8.0, 6.0 * len(clocks)), 4.6)  # wide enough for the group's title
    axes = np.atleast_1d(figure.subplots(1, len(clocks), squeeze=False)[0])
    for ax, clock in zip(axes, clocks, strict=True):
        for curve in (c for c in curves if c.clock == clock):
            color = palette.get(curve.method, "grey")
            minutes = np.array(curve.seconds) / 60
            points = np.array([estimate.point for estimate in curve.scores])
            bounds = np.array([_bounds(estimate) for estimate in curve.scores])
            ax.plot(minutes, points, color=color, marker="o", markersize=3.5, linewidth=1.6,
                    label=f"{curve.method} ({curve.seeds} seed{'s' if curve.seeds != 1 else ''})")
            ax.fill_between(minutes, bounds[:, 0], bounds[:, 1], color=color, alpha=0.15, linewidth=0)
        ax.set(xlabel=AXIS_NAMES[clock].replace("seconds", "minutes") + " (every stage; evaluations excluded)",
               ylabel="normalized score (mean over tasks)")
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(f"score against training time (bands: 95% bootstrap over seeds; last point: final policy)\n"
                    f"{title}", fontsize=9)
    return figure


def _interval_bar(ax, row: float, estimate: Estimate, span: float, color: str) -> None:
    """An interval as a bar with the point estimate as a black tick. A bar narrower than MIN_BAR of the axis
    is widened around its centre to that width and outlined, so a tight interval still shows."""
    low, high = _bounds(estimate)
    width = max(high - low, MIN_BAR * span)
    left = (low + high - width) / 2
    ax.barh(row, width, left=left, height=0.6, color=color, alpha=0.75, edgecolor=color, linewidth=0.8)
    ax.plot([estimate.point] * 2, [row - 0.3, row + 0.3], color="black", linewidth=1.5)


def _bounds(estimate: Estimate) -> tuple[float, float]:
    """An interval to draw; a point without one is drawn as a thin bar at the point."""
    if estimate.low is None or estimate.high is None:
        return estimate.point, estimate.point
    return estimate.low, estimate.high


def _thin(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(steps) <= MAX_POINTS:
        return steps, values
    index = np.linspace(0, len(steps) - 1, MAX_POINTS).astype(int)
    return steps[index], values[index]


def tuning_budget(views: Sequence, title: str) -> Figure:
    """`views`: report/tuning.py MethodTuning, one per sweep. Left: Unifloral's curve, the score of the
    configuration a UCB bandit deploys after B evaluation episodes (mean over tasks, 95% band over draws); right: the
    EOP curve over k configurations. Dashed: the method at its paper's setting, in its color on both panels."""
    palette = colors([view.family for view in views])
    figure = new_figure(11.0, 4.4)
    bandit_ax, eop_ax = figure.subplots(1, 2, sharey=True)
    for view in views:
        color = palette[view.family]
        curve = view.bandit
        # ~50 budgets spaced evenly on the log axis: 200 points would crowd its right end and slow the SVG
        shown = np.unique(np.round(np.geomspace(1, len(curve.budgets), 50)).astype(int)) - 1
        bandit_ax.plot(curve.budgets[shown], curve.point[shown], color=color, linewidth=1.8, label=view.label)
        bandit_ax.fill_between(curve.budgets[shown], curve.low[shown], curve.high[shown], color=color, alpha=0.18,
                               linewidth=0)
        ks = np.arange(1, len(view.eop) + 1)
        eop_ax.plot(ks, view.eop, color=color, linewidth=1.8, marker="o", markersize=3.5, label=view.label)
        if view.reference is not None:
            for ax in (bandit_ax, eop_ax):
                ax.axhline(view.reference, color=color, linestyle="--", linewidth=1.1)
    bandit_ax.set_xscale("log")
    bandit_ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    bandit_ax.set(xlabel="online evaluation episodes spent choosing (budget B, log)",
                  ylabel="normalized score of the deployed configuration")
    bandit_ax.set_title("UCB bandit over K configurations (Unifloral); band: 95% over draws", fontsize=9)
    eop_ax.set(xlabel="configurations k tried")
    eop_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    eop_ax.set_title("Expected Online Performance: expected best of k", fontsize=9)
    for ax in (bandit_ax, eop_ax):
        ax.grid(alpha=0.3)
    handles, labels = eop_ax.get_legend_handles_labels()
    if any(view.reference is not None for view in views):
        handles.append(Line2D([0], [0], color="grey", linestyle="--", linewidth=1.1))
        labels.append("paper's setting (its method's color)")
    eop_ax.legend(handles, labels, fontsize=7, loc="lower right")
    figure.suptitle(f"tuning budget: mean over tasks of each sweep\n{title}", fontsize=10)
    return figure
