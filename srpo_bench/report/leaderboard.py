"""The leaderboard: one report rendered as Markdown, a self-contained HTML page, CSV files and versioned JSON.

Files written into the leaderboard folder (each stamped with the generator, git commits, library versions,
devices, profiles and run counts):

    leaderboard.md           README-ready; figures linked from figures/
    leaderboard.html         one static page: tables with sortable columns (inline script), figures embedded as
                             data: URIs, no request to any other host. `#sort=<table id>:<column>:<asc|desc>`
                             in the address sorts a table on load.
    leaderboard-*.csv        tasks, aggregates, improvement, speed, training, reference, runs, failed; stamp in
                             leading '#' lines (pandas: read_csv(path, comment="#")); missing cells are empty
    leaderboard.json         schema below
    figures/*.png, *.svg     per protocol group: aggregates, profiles, improvement, score-vs-speed, curves

JSON schema "srpo-bench-leaderboard", version 2 (`schema`, `schema_version`; a change of meaning bumps the
version). Missing values are null, never 0. Top-level keys:

    stamp             generator, run_git_commits, run_versions, devices, profiles, stores, runs {finished,
                      not_finished, damaged_skipped}; a report of run folders adds report_git_commit,
                      report_versions {library: version} and python; a reproducible build from records says
                      reproducible: true instead (nothing that changes with the machine or the day)
    settings          reps, bootstrap_seed, confidence, optimality_gap_threshold, reference_method, profile_filter
    exploratory       true when any group complies with no protocol
    protocols[]       the protocols the groups were measured against: name, digest, profile, seeds, episodes,
                      checkpoint, data, title, plus_minus
    groups[]          key {protocol_status, suite, profile, eval_episodes, score_scale, selection, checkpoint},
                      protocol (name or null), complies, exploratory, deviations[] (why not, with run counts), label,
                      tasks, methods, notes[], per_task[] {task, method, seeds, mean (by the checkpoint rule),
                      ci_low, ci_high, best, data_score, final, mean_last3, best_during_training (optimistic),
                      evaluation_points}, aggregates {tasks, runs_per_task {method: n},
                      metrics {method: {median|iqm|mean|optimality_gap: {point, ci_low, ci_high}}}} or null,
                      probability_of_improvement {reference, vs {method: {point, ci_low, ci_high}}} or null,
                      performance_profiles {taus[], methods {method: {profile[], ci_low[], ci_high[]}}} or null,
                      and in a group with sweeps only, tuning[] {method, base_method, swept[], tasks[],
                      configurations {task: P}, subsample {task: K}, ucb_alpha, draws, paper_setting (or null),
                      paper_setting_tasks[], bandit {budgets[], point[], ci_low[], ci_high[]}, eop[] (k = 1..P),
                      per_task {task: {configurations, eop[], paper_setting}}} (report/tuning.py)
    speed             timings[] {device, runtime ("eager"|"compiled"|"onnx"; absent in older files = eager), task,
                      method, context ("alone"|"in-run"|"timing-phase", ", shared" when other runs trained
                      meanwhile), timings, load ("quiet"|"busy"|"unknown"), busy_left_out, loadavg, threads,
                      cpu_count,
                      nfe_per_action, aps_b1, p25_b1, p75_b1, samples_b1[], same for b256},
                      speedups[] {device, runtime, task, method, timings, speedup_b1, low_b1, high_b1, same for
                      b256}: both sides of a ratio from one device and one runtime,
                      training[] {device, profile, task, method, stage, seeds, seconds}
    reference_comparison[]  {group, task, method, seeds, reproduced, low, high, reported, difference,
                      reported_in_interval, for_reference, why_not_comparable, comparable, source, note}: published
                      numbers, never in the aggregates; `reported` only where the gate lets them stand beside ours
    failed_runs[]     {profile, task, method, seed, status, reason, path}
    runs[]            every finished run: run_id, store, path, profile, suite, score_scale, task, method,
                      base_method, seed, selection, eval_episodes, config_hash, device, git_commit, finished_at,
                      protocol, complies, deviations[], checkpoint, score (by the checkpoint rule), final_score
                      (the final policy's mean), episode_scores[] (normalized x100, per evaluation episode of the
                      final policy), episode_returns[], summaries, during_training: enough to recompute every
                      statistic
    warnings[]        one line per store, run folder or file that was skipped, and why
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from srpo_bench.atomic import WriteError, atomic_write
from srpo_bench.protocols import Protocol, load_protocol
from srpo_bench.report import plots, tables, training_time, tuning
from srpo_bench.report.aggregate import METRICS, Estimate, median_interval
from srpo_bench.report.build import REFERENCE_METHOD, Group, Report
from srpo_bench.report.frame import Damaged, read_object
from srpo_bench.vocabulary import LEADERBOARD_FORMATS

SCHEMA = "srpo-bench-leaderboard"
# 2: groups carry their protocol and compliance; per-task `last` became `final` (summaries as the runner writes
# them) with `evaluation_points`; reference_comparison gained the comparability gate's columns.
SCHEMA_VERSION = 2
WRAP_AT = 48  # characters: a longer cell (a citation, a reason) wraps inside its column instead of widening it
EXPLORATORY_BANNER = ("Some results below are EXPLORATORY: they comply with no protocol (srpo_bench/protocols/), so "
                      "they are not paired with published numbers and are not a benchmark result.")
FORMATS = LEADERBOARD_FORMATS  # md, html, csv, json (vocabulary: the names `report --help` lists)


class OutputError(RuntimeError):
    """The leaderboard cannot be written; the message names the path and the problem."""


def parse_formats(spec: str) -> list[str]:
    formats = [part.strip().lower() for part in spec.split(",") if part.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown --format '{', '.join(unknown) or spec}' (choose from {', '.join(FORMATS)}, "
                         "comma separated)")
    return list(dict.fromkeys(formats))


@dataclass
class Section:
    title: str
    anchor: str
    notes: list[str] = field(default_factory=list)
    tables: list[tables.Table] = field(default_factory=list)
    figures: list[plots.SavedFigure] = field(default_factory=list)
    exploratory: bool = False  # a group that complies with no protocol: a banner on the page


def protocols_used(report: Report) -> list[Protocol]:
    """The protocols the report's groups were measured against, by name."""
    names = sorted({g.compliance["protocol"] for g in report.groups if g.compliance.get("protocol")})
    return [load_protocol(name) for name in names]


# --- content --------------------------------------------------------------------------------------------
def compliance_note(group: Group) -> str:
    """The first line of a group's section: the protocol it complies with, or EXPLORATORY and why."""
    found = group.compliance
    if found.get("complies"):
        protocol = load_protocol(found["protocol"])
        return (f"complies with protocol {protocol.name} (srpo_bench/protocols/{protocol.name}.toml, digest "
                f"{protocol.digest}): {protocol.title}")
    measured = f" with protocol {found['protocol']}" if found.get("protocol") else " with any protocol"
    return (f"EXPLORATORY: these runs do not comply{measured} ({'; '.join(found.get('reasons') or [])}); no "
            "published number is paired with them")


def sections(report: Report, figures: dict[str, list[plots.SavedFigure]]) -> list[Section]:
    out = []
    for index, group in enumerate(report.groups):
        section = Section(group.label, f"group-{index}", notes=[compliance_note(group), *group.notes],
                          figures=figures.get(group.label, []), exploratory=not group.compliance.get("complies"))
        if group.methods:  # a group of sweep runs alone has its tuning view only
            section.tables.append(tables.per_task(group.per_task, group.methods, "per-task scores",
                                                  f"tasks-{index}"))
        if group.estimates:
            section.tables.append(tables.aggregates(group.estimates, group.runs_per_task, group.aggregate_tasks,
                                                    "aggregates", f"aggregates-{index}"))
        if group.improvement:
            section.tables.append(tables.improvement(group.improvement, REFERENCE_METHOD, "probability of improvement",
                                                     f"improvement-{index}"))
        chosen = tables.selection(group.per_task, group.methods, group.key["checkpoint"],
                                  "final policy vs during-training evaluations", f"selection-{index}")
        if chosen is not None:
            section.tables.append(chosen)
        if group.training_time:
            section.tables.append(tables.training_time(group.training_time, "score against training time",
                                                       f"training-time-{index}"))
        if group.tuning:
            section.tables.append(tuning.tuning_table(group.tuning, f"tuning-{index}"))
        if group.key["score_scale"] == "lite":
            section.notes.append("locomotion-lite is our own data (SAC behavior policies), not D4RL: published D4RL "
                                 "numbers do not apply and are not shown")
        if section.exploratory:  # every table of the group says so, also when copied out alone
            for table in section.tables:
                table.title = f"{table.title} (EXPLORATORY)"
        out.append(section)
    used = protocols_used(report)
    if used:
        out.append(Section("protocols", "protocols", tables=[tables.protocols(used, "protocols")]))
    published = Section("published numbers beside ours", "published")
    if not report.comparison.empty:
        published.tables.append(tables.comparison(report.comparison, "published"))
    else:
        published.notes.append("no D4RL or OGBench runs in this report: the papers' numbers "
                               "(srpo_bench/report/published/) are only shown beside D4RL and OGBench tasks")
    out.append(published)
    speed = Section("speed and training time", "speed")
    for index, device in enumerate(sorted(report.timings["device"].unique()) if not report.timings.empty else []):
        speed.tables.append(tables.speed(report.timings, report.speedups, device, REFERENCE_METHOD, f"speed-{index}"))
    for index, device in enumerate(sorted(report.training["device"].unique()) if not report.training.empty else []):
        speed.tables.append(tables.training(report.training, device, f"training-{index}"))
    if not speed.tables:
        speed.notes.append("no timings recorded")
    out.append(speed)
    if not report.runs.failed.empty:
        out.append(Section("runs that did not finish", "failed",
                           tables=[tables.failed(report.runs.failed, "failed")]))
    if report.warnings:
        out.append(Section("skipped while reading", "skipped", notes=list(report.warnings)))
    return out


def stamp_line(report: Report) -> str:
    stamp, settings = report.stamp, report.settings
    commits = ", ".join(stamp["run_git_commits"]) or "none"
    runs = stamp["runs"]
    if stamp.get("reproducible"):  # rebuilt from records: nothing that changes with the machine or the day
        made = f"{stamp['generator']} (reproducible build from records)"
    else:
        versions = stamp["report_versions"]
        libraries = ", ".join(f"{name} {versions[name]}" for name in ("torch", "numpy", "pandas", "rliable", "scipy",
                                                                       "matplotlib") if name in versions)
        made = f"{stamp['generator']} (commit {stamp['report_git_commit']}; python {stamp['python']}; {libraries})"
    return (f"{made} · "
            f"runs from commit {commits} · devices: {', '.join(stamp['devices']) or 'none'} · profiles: "
            f"{', '.join(stamp['profiles']) or 'none'} · {runs['finished']} finished runs, {runs['not_finished']} "
            f"not finished, {runs['damaged_skipped']} damaged folders skipped · bootstrap {settings['reps']} reps, "
            f"seed {settings['bootstrap_seed']}")


# --- figures --------------------------------------------------------------------------------------------
def make_figures(report: Report, folder: Path, warn: Callable[[str], None]) -> dict[str, list[plots.SavedFigure]]:
    saved: dict[str, list[plots.SavedFigure]] = {}
    runs = report.stamp["runs"]
    made = "records" if report.stamp.get("reproducible") else f"commit {report.stamp['report_git_commit'][:12]}"
    stamp = (f"{report.stamp['generator']} · {made} · {', '.join(report.stamp['devices'])} · {runs['finished']} "
             "finished runs", stamp_line(report))
    for index, group in enumerate(report.groups):
        palette = plots.colors(group.methods)
        title = group.label
        figures = []
        if group.estimates:
            figures.append(plots.save(plots.aggregates(group.estimates, palette, title), folder,
                                      f"group{index}-aggregates", "aggregates", stamp))
            figures.append(plots.save(plots.profiles(group.taus, group.profiles, palette, title), folder,
                                      f"group{index}-profiles", "performance profiles", stamp))
        if group.improvement:
            figures.append(plots.save(plots.improvement(group.improvement, REFERENCE_METHOD, palette, title), folder,
                                      f"group{index}-improvement", "probability of improvement", stamp))
        points = speed_points(report, group)
        if points:
            figures.append(plots.save(plots.score_vs_speed(points, palette, title), folder,
                                      f"group{index}-score-vs-speed", "score vs speed", stamp))
        curves, metrics_used = training_curves(report, group, warn)
        if curves:
            figures.append(plots.save(plots.training_curves(curves, metrics_used, title), folder,
                                      f"group{index}-curves", "training curves", stamp))
        evaluations = during_training(report, group)
        if evaluations:
            figures.append(plots.save(plots.during_training(evaluations, palette, title), folder,
                                      f"group{index}-during-training", "scores during training", stamp))
        if group.training_time:
            figures.append(plots.save(plots.score_vs_training_time(group.training_time, palette, title), folder,
                                      training_time_figure(index), "score against training time", stamp))
        if group.tuning:
            figures.append(plots.save(plots.tuning_budget(group.tuning, title), folder, f"group{index}-tuning",
                                      "tuning budget", stamp))
        saved[group.label] = figures
    return saved


def training_time_figure(index: int) -> str:
    """The file name (no suffix) of group `index`'s score-against-training-time figure; the README links it."""
    return f"group{index}-training-time"


def speed_points(report: Report, group: Group) -> dict[str, list[plots.SpeedPoint]]:
    """Per device: each method's batch-1 actions/s over the group's tasks (median of the pooled timings, bootstrap
    interval) against its IQM."""
    if not group.estimates or report.timings.empty:
        return {}
    timings = report.timings[report.timings["task"].isin(group.aggregate_tasks)]
    points: dict[str, list[plots.SpeedPoint]] = {}
    for (device, runtime), rows in timings.groupby(["device", "runtime"], sort=True):
        device = device if runtime == "eager" else f"{device}, {runtime}"
        for method in group.methods:
            mine = rows[rows["method"] == method]
            samples = [s for pooled in mine["samples_b1"] for s in pooled] or mine["aps_b1"].dropna().tolist()
            if samples and method in group.estimates:
                speed = median_interval(samples, reps=report.settings["reps"], seed=report.settings["bootstrap_seed"])
                points.setdefault(device, []).append(plots.SpeedPoint(method, speed, group.estimates[method]["iqm"]))
    return points


def training_curves(report: Report, group: Group, warn: Callable[[str], None]
                    ) -> tuple[dict[tuple[str, str], dict[str, tuple[np.ndarray, np.ndarray]]], dict]:
    """Mean over seeds of each stage's main metric ('loss' when logged), per method, stage and task."""
    runs = report.runs.finished
    runs = runs[runs["group"] == group.label]
    # (method, stage, task) -> step -> values over seeds; plain dicts: 2,000 runs of pandas Series were slow.
    sums: dict[tuple[str, str, str], dict[float, list[float]]] = {}
    metrics_used: dict[tuple[str, str], str] = {}
    for path, method, task in zip(runs["path"], runs["method"], runs["task"], strict=True):
        file = Path(path) / "curves.json"
        if not file.exists():
            continue
        try:
            curves = read_object(file)
        except Damaged as error:
            warn(f"training curves left out: {error}")
            continue
        for stage, points in curves.items():
            if not isinstance(points, list) or not points or not isinstance(points[0], dict):
                continue
            metric = metrics_used.get((method, stage)) or _main_metric(points)
            if metric is None:
                continue
            metrics_used[(method, stage)] = metric
            by_step = sums.setdefault((method, stage, task), {})
            for point in points:
                if isinstance(point, dict) and _finite(point.get("step")) and _finite(point.get(metric)):
                    by_step.setdefault(float(point["step"]), []).append(float(point[metric]))
    curves_out: dict[tuple[str, str], dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    # Panels in the group's method order (SRPO first), stages in training order, tasks sorted.
    order = {method: i for i, method in enumerate(group.methods)}
    for (method, stage, task), by_step in sorted(sums.items(), key=lambda item: (order.get(item[0][0], 99),
                                                                                  item[0][0], item[0][2])):
        if by_step:
            steps = np.array(sorted(by_step))
            curves_out.setdefault((method, stage), {})[task] = (steps, np.array([np.mean(by_step[s]) for s in steps]))
    return curves_out, metrics_used


def _main_metric(points: list[dict[str, Any]]) -> str | None:
    keys = [k for k in points[0] if k not in ("step", "lr") and _finite(points[0].get(k))]
    return "loss" if "loss" in keys else (keys[0] if keys else None)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def during_training(report: Report, group: Group) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{method: (steps, mean, std)}: the normalized score of the periodic evaluations, averaged over the group's
    tasks (normalized scores are on one scale) for each seed, then mean and std over seeds."""
    runs = report.runs.finished
    runs = runs[(runs["group"] == group.label) & runs["during_training"].notna()]
    points = []
    for method, task, seed, curve in zip(runs["method"], runs["task"], runs["seed"], runs["during_training"],
                                         strict=True):
        for entry in curve:
            if isinstance(entry, dict) and _finite(entry.get("step")) and _finite(entry.get("mean_normalized")):
                points.append((method, task, seed, float(entry["step"]), float(entry["mean_normalized"])))
    if not points:
        return {}
    frame = pd.DataFrame(points, columns=["method", "task", "seed", "step", "score"])
    per_seed = frame.groupby(["method", "seed", "step"])["score"].mean().reset_index()
    out = {}
    for method, rows in per_seed.groupby("method", sort=False):
        stats = rows.groupby("step")["score"].agg(["mean", "std"]).fillna(0.0)
        out[method] = (stats.index.to_numpy(float), stats["mean"].to_numpy(float), stats["std"].to_numpy(float))
    return {method: out[method] for method in group.methods if method in out}


# --- Markdown -------------------------------------------------------------------------------------------
def _md_escape(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def table_markdown(table: tables.Table) -> str:
    lines = [f"**{table.title}**", "", "| " + " | ".join(_md_escape(c) for c in table.columns) + " |",
             "|" + "---|" * len(table.columns)]
    for row in table.rows:
        lines.append("| " + " | ".join(f"**{_md_escape(c.text)}**" if c.best else _md_escape(c.text) for c in row)
                     + " |")
    lines += [""] + [f"_{note}_" for note in table.notes]
    return "\n".join(lines)


def to_markdown(report: Report, content: list[Section], figures_dir: str) -> str:
    parts = ["# srpo-bench leaderboard", "", f"> {stamp_line(report)}", ""]
    if any(section.exploratory for section in content):
        parts += [f"> **{EXPLORATORY_BANNER}**", ""]
    for section in content:
        parts += [f"## {section.title}", ""]
        if section.exploratory:
            parts += ["> **EXPLORATORY** (complies with no protocol)", ""]
        parts += [f"- {note}" for note in section.notes] + ([""] if section.notes else [])
        for table in section.tables:
            parts += [table_markdown(table), ""]
        for figure in section.figures:
            parts += [f"![{figure.title}]({figures_dir}/{figure.png.name}) "
                      f"([SVG]({figures_dir}/{figure.svg.name}))", ""]
    return "\n".join(parts).rstrip() + "\n"


# --- HTML -----------------------------------------------------------------------------------------------
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; }
.stamp { font-size: 0.8rem; color: #555; border-left: 3px solid #ccc; padding-left: 0.6rem; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.5rem 0 0.3rem; font-size: 0.85rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; white-space: nowrap; }
td.wrap { white-space: normal; min-width: 14rem; max-width: 30rem; overflow-wrap: anywhere; }
.banner { background: #fff3cd; border: 1px solid #e0b100; border-left: 6px solid #e0b100; padding: 0.5rem 0.8rem;
          margin: 0.8rem 0; font-weight: 600; }
li, p { overflow-wrap: anywhere; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
th[data-dir="asc"]::after { content: " \\25B2"; } th[data-dir="desc"]::after { content: " \\25BC"; }
td.best { font-weight: bold; background: #e8f4ea; }
.note { font-size: 0.8rem; color: #555; margin: 0 0 1rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; }
"""

# Sorting: click a header (again to reverse); cells sort by data-sort (numbers numerically), blanks last.
SCRIPT = """
function sortTable(table, column, dir) {
  const body = table.tBodies[0];
  const key = (row) => { const v = row.cells[column].dataset.sort;
    return v === undefined || v === "" ? null : (isNaN(Number(v)) ? v : Number(v)); };
  const rows = Array.from(body.rows).sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === null) return y === null ? 0 : 1; if (y === null) return -1;
    const c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
    return dir === "asc" ? c : -c; });
  rows.forEach((row) => body.appendChild(row));
  table.querySelectorAll("th").forEach((th, i) => {
    if (i === column) th.dataset.dir = dir; else delete th.dataset.dir; });
}
document.querySelectorAll("table.sortable").forEach((table) => {
  table.querySelectorAll("th").forEach((th, i) => th.addEventListener("click", () =>
    sortTable(table, i, th.dataset.dir === "asc" ? "desc" : "asc")));
});
const wanted = /^#sort=([^:]+):(\\d+):(asc|desc)$/.exec(decodeURIComponent(location.hash));
if (wanted) {
  const table = document.getElementById(wanted[1]);
  if (table) sortTable(table, Number(wanted[2]), wanted[3]);
}
"""


def table_html(table: tables.Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for cell in row:
            sort = "" if cell.sort is None or (isinstance(cell.sort, float) and math.isnan(cell.sort)) else cell.sort
            classes = " ".join(name for name, on in (("best", cell.best), ("wrap", len(cell.text) > WRAP_AT)) if on)
            css = f' class="{classes}"' if classes else ""
            cells.append(f'<td{css} data-sort="{html.escape(str(sort))}">{html.escape(cell.text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in table.notes)
    return (f'<h3>{html.escape(table.title)}</h3>\n<div class="scroll"><table class="sortable" '
            f'id="{html.escape(table.key)}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
            f"\n{notes}")


def to_html(report: Report, content: list[Section]) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>srpo-bench leaderboard</title>", f"<style>{STYLE}</style></head><body>",
             "<h1>srpo-bench leaderboard</h1>", f'<p class="stamp">{html.escape(stamp_line(report))}</p>',
             *([f'<div class="banner" id="exploratory-banner">{html.escape(EXPLORATORY_BANNER)}</div>']
               if any(section.exploratory for section in content) else []),
             "<nav><ul>" + "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in content)
             + "</ul></nav>"]
    for section in content:
        parts.append(f'<section id="{section.anchor}"><h2>{html.escape(section.title)}</h2>')
        if section.exploratory:
            parts.append('<div class="banner exploratory">EXPLORATORY: these runs comply with no protocol; no '
                         "published number is paired with them</div>")
        if section.notes:
            parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in section.notes) + "</ul>")
        parts += [table_html(table) for table in section.tables]
        for figure in section.figures:
            data = base64.b64encode(figure.png_bytes).decode("ascii")
            parts.append(f'<figure><img alt="{html.escape(figure.title)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{html.escape(figure.title)}</figcaption></figure>")
        parts.append("</section>")
    parts += [f"<script>{SCRIPT}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"


# --- JSON and CSV ---------------------------------------------------------------------------------------
def clean(value: Any) -> Any:
    """JSON-safe: numpy scalars and arrays to Python, NaN and infinities to null (missing, never zero)."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [clean(v) for v in value.tolist()]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _estimate(estimate: Estimate) -> dict[str, Any]:
    return {"point": estimate.point, "ci_low": estimate.low, "ci_high": estimate.high}


def _records(frame: pd.DataFrame, columns: list[str] | None = None) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    frame = frame[columns] if columns else frame
    return [dict(zip(frame.columns, row, strict=False)) for row in frame.itertuples(index=False, name=None)]


RUN_FIELDS = ["run_id", "store", "path", "profile", "suite", "score_scale", "task", "method", "base_method", "seed",
              "selection", "eval_episodes", "config_hash", "device", "git_commit", "finished_at", "protocol",
              "complies", "deviations", "checkpoint", "score", "final_score", "episode_scores", "episode_returns",
              "summaries", "during_training"]
TASK_FIELDS = ["task", "method", "seeds", "mean", "low", "high", "best", "data_score", "final", "mean_last3",
               "best_during_training", "evaluation_points"]


def to_json(report: Report) -> dict[str, Any]:
    groups = []
    for group in report.groups:
        per_task = [{("ci_low" if k == "low" else "ci_high" if k == "high" else k): v for k, v in row.items()}
                    for row in _records(group.per_task, TASK_FIELDS)]
        groups.append({
            "key": group.key, "protocol": group.compliance.get("protocol"),
            "complies": bool(group.compliance.get("complies")), "exploratory": not group.compliance.get("complies"),
            "deviations": group.compliance.get("reasons", []), "label": group.label, "tasks": group.tasks,
            "methods": group.methods,
            "notes": group.notes, "per_task": per_task,
            "aggregates": {"tasks": group.aggregate_tasks, "runs_per_task": group.runs_per_task,
                           "metrics": {m: {k: _estimate(e[k]) for k in METRICS} for m, e in group.estimates.items()}}
            if group.estimates else None,
            "probability_of_improvement": {"reference": REFERENCE_METHOD,
                                           "vs": {m: _estimate(e) for m, e in group.improvement.items()}}
            if group.improvement else None,
            "performance_profiles": {"taus": group.taus, "methods": {
                m: {"profile": p, "ci_low": lo, "ci_high": hi} for m, (p, lo, hi) in group.profiles.items()}}
            if group.profiles else None,
            **({"tuning": tuning.to_json(group.tuning)} if group.tuning else {}),  # only where sweeps were run
            **({"training_time": training_time.to_json(group.training_time)} if group.training_time else {}),
        })
    runs = with_sweeps(report).copy()
    if not runs.empty:
        runs["run_id"] = [f"{p}/{t}/{m}/seed{s}" for p, t, m, s in
                          zip(runs["profile"], runs["task"], runs["method"], runs["seed"], strict=False)]
    failed_fields = ["profile", "task", "method", "seed", "status", "reason", "path"]
    return clean({
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "stamp": report.stamp, "settings": report.settings,
        "exploratory": any(group["exploratory"] for group in groups),
        "protocols": [{**protocol.describe(), "title": protocol.title, "plus_minus": protocol.plus_minus}
                      for protocol in protocols_used(report)],
        "groups": groups,
        "speed": {"timings": _records(report.timings), "speedups": _records(report.speedups),
                  "training": _records(report.training)},
        "reference_comparison": _records(report.comparison),
        "failed_runs": _records(report.runs.failed, failed_fields) if not report.runs.failed.empty else [],
        "runs": _records(runs, RUN_FIELDS),
        "warnings": report.warnings,
    })


def with_sweeps(report: Report) -> pd.DataFrame:
    """Every finished run, the sweep runs of the tuning view included (runs[] lets a reader recompute it)."""
    sweeps = report.runs.sweeps
    return report.runs.finished if sweeps.empty else pd.concat([report.runs.finished, sweeps], ignore_index=True)


def csv_frames(report: Report) -> dict[str, pd.DataFrame]:
    per_task = pd.concat([g.per_task for g in report.groups], ignore_index=True) if report.groups else pd.DataFrame()
    aggregates = pd.DataFrame([
        {"group": g.label, "method": m, "metric": k, "point": e[k].point, "ci_low": e[k].low, "ci_high": e[k].high,
         "runs_per_task": g.runs_per_task[m], "tasks": ";".join(g.aggregate_tasks)}
        for g in report.groups for m, e in g.estimates.items() for k in METRICS])
    improvement = pd.DataFrame([
        {"group": g.label, "reference": REFERENCE_METHOD, "method": m, "point": e.point, "ci_low": e.low,
         "ci_high": e.high} for g in report.groups for m, e in g.improvement.items()])
    timings = report.timings.drop(columns=[c for c in report.timings.columns if c.startswith("samples_")])
    speed = timings.merge(report.speedups.drop(columns=["timings"]), on=["device", "runtime", "task", "method"],
                          how="left") \
        if not report.speedups.empty else timings
    runs = with_sweeps(report)
    run_columns = ["profile", "suite", "score_scale", "task", "method", "base_method", "seed", "selection",
                   "eval_episodes", "config_hash", "device", "git_commit", "score", "dataset_score", "fit_seconds",
                   "path"]
    tuned = pd.DataFrame([row for g in report.groups for row in tuning.csv_rows(g.label, g.tuning)])
    return {
        **({"tuning": tuned} if not tuned.empty else {}),  # only where sweeps were run
        "tasks": per_task, "aggregates": aggregates, "improvement": improvement, "speed": speed,
        "training": report.training, "reference": report.comparison,
        "runs": runs[run_columns] if not runs.empty else pd.DataFrame(columns=run_columns),
        "failed": report.runs.failed[["profile", "task", "method", "seed", "status", "reason", "path"]]
        if not report.runs.failed.empty else pd.DataFrame(columns=["profile", "task", "method", "seed", "reason"]),
    }


# --- writing --------------------------------------------------------------------------------------------
def _write_text(path: Path, content: str) -> Path:
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_text(content, encoding="utf-8"))
    except WriteError as error:  # names the file and the cause already
        raise OutputError(str(error)) from None
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror or error})") from None
    return path


def writable(folder: Path) -> None:
    """OutputError naming `folder` (not a file inside it) when the leaderboard cannot be written there: a read-only
    results folder, a colleague's store mounted read-only, no permission."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise OutputError(f"{folder}: cannot write ({(error.strerror or str(error)).lower()})") from None


def write(report: Report, folder: Path, formats: list[str], warn: Callable[[str], None]) -> list[Path]:
    """Write the chosen formats into `folder` (figures too, for md and html); return the paths written."""
    writable(folder)
    written: list[Path] = []
    figures: dict[str, list[plots.SavedFigure]] = {}
    if "md" in formats or "html" in formats:
        try:
            figures = make_figures(report, folder / "figures", warn)
        except OSError as error:
            raise OutputError(f"{folder / 'figures'}: cannot write ({error.strerror or error})") from None
        written += [path for saved in figures.values() for f in saved for path in (f.png, f.svg)]
    content = sections(report, figures)
    if "md" in formats:
        written.append(_write_text(folder / "leaderboard.md", to_markdown(report, content, "figures")))
    if "html" in formats:
        written.append(_write_text(folder / "leaderboard.html", to_html(report, content)))
    if "json" in formats:
        written.append(_write_text(folder / "leaderboard.json",
                                   json.dumps(to_json(report), indent=1, allow_nan=False) + "\n"))
    if "csv" in formats:
        header = "".join(f"# {line}\n" for line in (
            f"{SCHEMA} csv, schema version {SCHEMA_VERSION}", stamp_line(report)))
        for name, frame in csv_frames(report).items():
            frame = frame.map(lambda v: json.dumps(clean(v)) if isinstance(v, (dict, list)) else v) \
                if not frame.empty else frame
            written.append(_write_text(folder / f"leaderboard-{name}.csv", header + frame.to_csv(index=False)))
    return written
