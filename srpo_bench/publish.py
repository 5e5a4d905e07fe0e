"""The published leaderboard: results/leaderboard and README.md's result tables, rebuilt from results/ records.

    srpo-bench results build            rebuild results/leaderboard (and README.md's generated sections)
    srpo-bench results build --check    rebuild into a temporary folder and fail on any difference (CI)

The build is reproducible: the report is made with `reproducible=True` (no report commit, library versions,
local paths or clock times other than those inside the records), a fixed bootstrap seed and `PUBLISH_REPS`
replications, and the figures carry no software version or date, so the same records give the same bytes.

README.md's generated sections sit between `<!-- generated: NAME -->` and `<!-- end: NAME -->`; nothing between
them is typed by hand.
"""

from __future__ import annotations

import filecmp
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from srpo_bench.protocols import load_protocol
from srpo_bench.report import tables
from srpo_bench.report.build import REFERENCE_METHOD, Report, build_report
from srpo_bench.report.leaderboard import FORMATS, table_markdown, training_time_figure, write
from srpo_bench.report.training_time import TimeCurve, clock_name
from srpo_bench.store import StoreError
from srpo_bench.vocabulary import NFE_COLUMN, RUNTIMES, display_name, plural

PUBLISH_REPS = 10_000  # bootstrap replications of the published intervals (rliable's advice: many; the build
#                        stays well under a minute on 2 cores)
PUBLISH_SEED = 0
MARKERS = re.compile(r"(<!-- generated: (?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)", re.S)


class PublishError(StoreError):
    """The published leaderboard cannot be built or differs from its records; the message says where."""


def build(records: Path, folder: Path, warn: Callable[[str], None], reps: int = PUBLISH_REPS) -> Report:
    """Rebuild the leaderboard of `records` into `folder` (every format, figures included)."""
    report = build_report([records], reps=reps, seed=PUBLISH_SEED, reproducible=True)
    if not report.runs.stores:
        raise PublishError(f"{records}: {'; '.join(report.warnings) or 'not a records folder'}")
    if report.warnings:
        raise PublishError(f"{records}: {report.warnings[0]} (published records must all be readable)")
    write(report, folder, list(FORMATS), warn)
    return report


def readme_sections(report: Report, figures: str = "results/leaderboard/figures") -> dict[str, str]:
    """The README's generated sections: the protocol groups' aggregate tables, their score-against-training-time
    rows and figure where runs carry clocks (`figures`: the leaderboard's figures folder, relative to the README),
    and the speed table."""
    sections = {}
    lines = []
    for index, group in enumerate(report.groups):  # the index names the group's figures (leaderboard.make_figures)
        if not (group.estimates and group.compliance.get("complies")):
            continue
        protocol = load_protocol(group.compliance["protocol"])
        table = tables.aggregates(group.estimates, group.runs_per_task, group.aggregate_tasks,
                                  f"protocol {protocol.name}: aggregates over "
                                  f"{plural(len(group.aggregate_tasks), 'task')}", "readme")
        lines += [f"_{protocol.title}_", "", table_markdown(table), ""]
        if group.training_time:
            lines += [time_markdown(group.training_time), "",
                      f"![score against training time]({figures}/{training_time_figure(index)}.png)", ""]
        lines += [f"_{_provenance(report, group.label)}_", ""]
    sections["leaderboard"] = "\n".join(lines).rstrip() + "\n" if lines else "_no protocol group published yet_\n"
    sections["speed"] = speed_markdown(report)
    return sections


def time_markdown(curves: list[TimeCurve]) -> str:
    """Score against training time, one row per method: each evaluation as 'score [95% interval] at N min'."""
    lines = ["**score against training time** (mean over seeds [95% bootstrap interval] at the training time spent "
             "by then; the last point is the final policy)", "", "| method | seeds | clock | evaluations |",
             "|---|---|---|---|"]
    for curve in curves:
        points = " · ".join(f"{tables.interval(score)} at {tables.seconds(spent)}"
                            for spent, score in zip(curve.seconds, curve.scores, strict=True))
        lines.append(f"| {curve.method} | {curve.seeds} | {clock_name(curve.clock)} | "
                     f"{points} |")
    return "\n".join(lines)


def _provenance(report: Report, label: str) -> str:
    runs = report.runs.finished
    mine = runs[runs["group"] == label]
    return (f"{plural(len(mine), 'run')}; devices: {', '.join(sorted(mine['device'].unique()))}; commits: "
            f"{', '.join(sorted(c[:10] for c in mine['git_commit'].unique()))}")


def speed_markdown(report: Report) -> str:
    """The README's speed tables: per device, one table per task whose shapes were timed, one row per method, and per
    runtime its actions/s at batch 1 / 256 and SRPO's speedup in that runtime (same device; never SRPO's best
    runtime over another method's). Timings from `srpo-bench speed` are preferred, as in the report."""
    timings = report.timings
    if timings.empty:
        return "_no timings published yet_\n"
    alone = timings[timings["context"].str.startswith("alone")]
    timings = alone if not alone.empty else timings
    ratios = report.speedups.set_index(["device", "runtime", "task", "method"]) if not report.speedups.empty else None
    order = list(RUNTIMES)  # the runtimes in the order every help text and table names them
    out = []
    for device, rows in timings.groupby("device", sort=True):
        loads = rows["loadavg"].dropna()
        load = f"; 1-minute load {loads.min():.1f}-{loads.max():.1f} while timed" if not loads.empty else ""
        out += [f"**{device}**{load}", ""]
        runtimes = sorted(rows["runtime"].unique(), key=lambda r: (order.index(r) if r in order else len(order), r))
        header = ["method", NFE_COLUMN]
        for runtime in runtimes:
            header += [f"{runtime}: {display_name('actions_per_second_b1')} / b256",
                       f"{runtime}: {REFERENCE_METHOD} {display_name('speedup_b1')} / b256"]
        for task, shaped in rows.groupby("task", sort=True):
            out += [f"shapes of `{task}`:", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            by_key = {(r.runtime, r.method): r for r in shaped.itertuples()}
            methods = shaped.sort_values(["nfe_per_action", "method"])["method"].unique()
            for method in methods:
                nfe = shaped.loc[shaped["method"] == method, "nfe_per_action"].iloc[0]
                cells = [method, tables.count(nfe)]
                for runtime in runtimes:
                    record = by_key.get((runtime, method))
                    if record is None:
                        cells += ["-", "-"]
                        continue
                    key = (device, runtime, task, method)
                    speedups = [1.0 if method == REFERENCE_METHOD else
                                ratios.loc[key, f"speedup_b{b}"] if ratios is not None and key in ratios.index
                                else None for b in ("1", "256")]
                    cells += [f"{tables.rate(record.aps_b1)} / {tables.rate(record.aps_b256)}",
                              " / ".join(tables.ratio(s) for s in speedups)]
                out.append("| " + " | ".join(cells) + " |")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_readme(text: str, sections: dict[str, str], path: Path) -> str:
    """`text` with each generated section replaced by its fresh render; a marker without a section, or a section
    without its marker, is an error (a table must never go stale silently)."""
    found = {match["name"] for match in MARKERS.finditer(text)}
    unknown, missing = found - set(sections), set(sections) - found
    if unknown or missing:
        raise PublishError(f"{path}: generated sections {sorted(found)}, expected {sorted(sections)} (markers "
                           "'<!-- generated: NAME -->' ... '<!-- end: NAME -->')")
    return MARKERS.sub(lambda m: m.group(1) + sections[m["name"]] + m.group(4), text)


def publish(records: Path, folder: Path, readme: Path | None, warn: Callable[[str], None]) -> list[Path]:
    """Rebuild `folder` from `records` and README.md's generated sections; the paths written."""
    report = build(records, folder, warn)
    written = sorted(p for p in folder.rglob("*") if p.is_file())
    if readme is not None:
        text = readme.read_text(encoding="utf-8")
        fresh = render_readme(text, readme_sections(report, _figures_from(readme, folder)), readme)
        if fresh != text:
            readme.write_text(fresh, encoding="utf-8")
            written.append(readme)
    return written


def _figures_from(readme: Path, folder: Path) -> str:
    """The leaderboard's figures folder as the README links it (a relative path, / separated)."""
    return Path(os.path.relpath(folder.resolve() / "figures", readme.resolve().parent)).as_posix()


def check(records: Path, folder: Path, readme: Path | None, warn: Callable[[str], None]) -> int:
    """Rebuild into a temporary folder and compare with `folder` (and README.md's sections) byte for byte; the
    number of files compared. PublishError names the first file that differs, is missing or is extra."""
    with tempfile.TemporaryDirectory(prefix="srpo-bench-leaderboard-") as scratch:
        fresh = Path(scratch)
        report = build(records, fresh, warn)
        theirs = {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()
        ours = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
        for name in sorted(ours | theirs):
            if name not in theirs:
                raise PublishError(f"{folder / name}: missing; rebuild with `srpo-bench results build`")
            if name not in ours:
                raise PublishError(f"{folder / name}: not made by the build (stale); rebuild with "
                                   "`srpo-bench results build`")
            if not filecmp.cmp(folder / name, fresh / name, shallow=False):
                raise PublishError(f"{folder / name}: differs from a rebuild from {records}; rebuild with "
                                   "`srpo-bench results build` and commit the result")
        if readme is not None:
            text = readme.read_text(encoding="utf-8")
            if render_readme(text, readme_sections(report, _figures_from(readme, folder)), readme) != text:
                raise PublishError(f"{readme}: generated sections differ from {records}; rebuild with "
                                   "`srpo-bench results build`")
        return len(ours) + (readme is not None)
