"""End to end: a real smoke run, then `srpo-bench report`; every output parses, and the HTML page, opened in
headless Chromium, shows the table rows, sorts on request, and is saved as a screenshot (a test artifact: in
$SRPO_BENCH_TEST_ARTIFACTS when set, else in pytest's temporary folder)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from report_store import make_store, protocol_run
from typer.testing import CliRunner

from srpo_bench.cli import app
from srpo_bench.report.build import SUMMARIES

cli = CliRunner()
CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(name)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian package "
                                    "`chromium`; .ci/run installs it)")


@pytest.fixture(scope="module")
def leaderboard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "results"
    run = cli.invoke(app, ["run", "--envs", "toy-two-moons", "--methods", "srpo,bc", "--seeds", "0,1", "--profile",
                           "smoke", "--out", str(out), "--device", "cpu", "--quiet"], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    report = cli.invoke(app, ["report", "--out", str(out), "--reps", "500"], catch_exceptions=False)
    assert report.exit_code == 0, report.output
    assert "toy-two-moons" in report.output and "P(srpo > bc)" in report.output
    return out / "leaderboard"


@pytest.mark.slow
def test_every_output_parses_and_agrees(leaderboard: Path) -> None:
    board = json.loads((leaderboard / "leaderboard.json").read_text())
    assert board["schema"] == "srpo-bench-leaderboard" and board["schema_version"] == 2
    assert board["stamp"]["runs"]["finished"] == 4 and board["stamp"]["devices"]
    assert board["stamp"]["report_versions"]["rliable"] and board["stamp"]["profiles"] == ["smoke"]
    (group,) = board["groups"]
    assert group["key"]["suite"] == "toy" and group["methods"] == ["srpo", "bc"]
    # A smoke run measured against the toy protocol (quick schedule, 10 seeds): exploratory, and says why.
    assert group["protocol"] == "toy" and group["exploratory"] and board["exploratory"]
    assert "smoke profile (protocol: quick)" in group["deviations"]
    assert set(group["aggregates"]["metrics"]) == {"srpo", "bc"}
    assert group["probability_of_improvement"]["reference"] == "srpo"
    runs = board["runs"]
    assert len(runs) == 4 and all(len(run["episode_scores"]) == 64 for run in runs)
    # The raw episodes recompute every per-task mean.
    for row in group["per_task"]:
        mine = [r for r in runs if r["method"] == row["method"]]
        assert row["mean"] == pytest.approx(sum(sum(r["episode_scores"]) / 64 for r in mine) / len(mine))
    for path in leaderboard.glob("leaderboard-*.csv"):
        assert path.read_text().startswith("# srpo-bench-leaderboard csv"), path
        pd.read_csv(path, comment="#")
    tasks = pd.read_csv(leaderboard / "leaderboard-tasks.csv", comment="#")
    assert set(tasks["method"]) == {"srpo", "bc"} and (tasks["seeds"] == 2).all()
    markdown = (leaderboard / "leaderboard.md").read_text()
    assert "| toy-two-moons |" in markdown
    stamp = markdown.splitlines()[2]
    assert "commit" in stamp and "4 finished runs" in stamp and "profiles: smoke" in stamp and "torch" in stamp
    for link in re.findall(r"\]\((figures/[^)]+)\)", markdown):
        assert (leaderboard / link).stat().st_size > 1000, link
    for name in ("aggregates", "profiles", "improvement", "score-vs-speed", "curves"):
        png = (leaderboard / "figures" / f"group0-{name}.png").read_bytes()
        assert png[:4] == b"\x89PNG" and b"4 finished runs" in png  # stamped in the file's metadata
        assert b"<svg" in (leaderboard / "figures" / f"group0-{name}.svg").read_bytes()[:2000]


class Rows(HTMLParser):
    """Text of every row of one table (by id) in a DOM dump."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.rows, self.cell = table_id, False, [], None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell += data


def chromium(*args: str) -> subprocess.CompletedProcess:
    # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start; a small /dev/shm in
    # containers crashes it without --disable-dev-shm-usage.
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--hide-scrollbars", *args],
                          capture_output=True, text=True, timeout=120)


def table_rows(dom: str, table_id: str) -> list[list[str]]:
    parser = Rows(table_id)
    parser.feed(dom)
    return parser.rows


@pytest.mark.slow
def test_every_summary_the_runner_writes_reaches_the_report(leaderboard: Path) -> None:
    """The contract between runner.evaluation_record (producer) and the report (consumer), on the files the real
    runner wrote: every summary key is read, and each per-task column is the mean of its seeds' values."""
    runs = sorted((leaderboard.parent / "runs").glob("*/*/*/seed*/eval.json"))
    assert len(runs) == 4
    written = {key for path in runs for key in json.loads(path.read_text())["summaries"]}
    read = {name for names in SUMMARIES.values() for name in names}
    assert written == read, f"written but never read: {written - read}; read but never written: {read - written}"
    board = json.loads((leaderboard / "leaderboard.json").read_text())
    (group,) = board["groups"]
    for row in group["per_task"]:
        mine = [json.loads(p.read_text())["summaries"] for p in runs if f"/{row['method']}/" in str(p)]
        for column, (name,) in SUMMARIES.items():
            assert row[column] == pytest.approx(sum(s[name] for s in mine) / len(mine)), (row["method"], column)
        assert row["final"] == pytest.approx(row["mean"])  # the final summary is the reported score
    tasks = pd.read_csv(leaderboard / "leaderboard-tasks.csv", comment="#")
    assert tasks[list(SUMMARIES)].notna().all().all()


# Appended to a copy of a page: what the layout and the banners look like in a 1280 px window, written into the DOM
# so that --dump-dom reads it back.
PROBE = """<script>
const banner = document.getElementById("exploratory-banner");
document.body.dataset.overflow = String(document.documentElement.scrollWidth - window.innerWidth);
document.body.dataset.width = String(window.innerWidth);
document.body.dataset.banner = banner ? String(banner.offsetHeight > 0 && getComputedStyle(banner).display !== "none")
  : "absent";
</script>"""


def probe(page: Path, folder: Path) -> dict[str, str]:
    copy = folder / "probe.html"
    copy.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium("--dump-dom", "--window-size=1280,900", copy.as_uri()).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:500]
    return dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(1)))


@pytest.mark.slow
@needs_chromium
def test_the_page_fits_1280_pixels_and_shows_the_exploratory_banner_where_it_belongs(
        leaderboard: Path, tmp_path: Path) -> None:
    seen = probe(leaderboard / "leaderboard.html", tmp_path)
    assert seen["width"] == "1280" and int(seen["overflow"]) <= 0, seen  # wide tables scroll inside their box
    assert seen["banner"] == "true", seen  # smoke runs: exploratory
    # A leaderboard of runs that comply with the toy protocol has no banner, and its rows are the JSON's.
    out = make_store(tmp_path / "runs")
    for method in ("srpo", "bc"):
        for seed in range(10):
            protocol_run(out, "toy", "toy-two-moons", method, seed, 80.0 + seed - 30 * (method == "bc"), kind="toy",
                         family="toy")
    records = tmp_path / "results"
    assert cli.invoke(app, ["results", "add", str(out), "--to", str(records)]).exit_code == 0
    assert cli.invoke(app, ["results", "build", "--records", str(records)]).exit_code == 0
    page = records / "leaderboard" / "leaderboard.html"
    seen = probe(page, tmp_path)
    assert seen["banner"] == "absent" and int(seen["overflow"]) <= 0, seen
    board = json.loads((records / "leaderboard" / "leaderboard.json").read_text())
    dom = chromium("--dump-dom", page.as_uri()).stdout
    header, *rows = table_rows(dom, "aggregates-0")
    metrics = board["groups"][0]["aggregates"]["metrics"]
    assert [r[0] for r in rows] == list(metrics)
    for row in rows:
        iqm = metrics[row[0]]["iqm"]
        assert row[header.index("IQM")] == f"{iqm['point']:,.1f} [{iqm['ci_low']:,.1f}, {iqm['ci_high']:,.1f}]"
    header, *rows = table_rows(dom, "tasks-0")
    per_task = {r["method"]: r for r in board["groups"][0]["per_task"]}
    for method in ("srpo", "bc"):
        shown = rows[0][header.index(method)]
        assert shown.startswith(f"{per_task[method]['mean']:,.1f} [") and shown.endswith("n=10"), shown


@pytest.mark.slow
@needs_chromium
def test_the_html_page_renders_in_chromium_with_its_tables_and_sorts(leaderboard: Path,
                                                                     tmp_path_factory: pytest.TempPathFactory
                                                                     ) -> None:
    page = leaderboard / "leaderboard.html"
    source = page.read_text()
    # Self-contained: every src/href is an in-page anchor or a data: URI.
    for target in re.findall(r'(?:src|href)="([^"]*)"', source):
        assert target.startswith(("#", "data:")), target
    board = json.loads((leaderboard / "leaderboard.json").read_text())

    dom = chromium("--dump-dom", page.as_uri()).stdout
    header, *rows = table_rows(dom, "tasks-0")
    assert header == ["task", "data", "srpo", "bc"]
    (row,) = rows
    assert row[0] == "toy-two-moons"
    per_task = {r["method"]: r for r in board["groups"][0]["per_task"]}
    assert row[2].startswith(f"{per_task['srpo']['mean']:,.1f} [") and row[2].endswith("n=2")
    assert row[3].startswith(f"{per_task['bc']['mean']:,.1f} [")
    header, *rows = table_rows(dom, "aggregates-0")
    assert [r[0] for r in rows] == ["srpo", "bc"] and header[2] == "IQM"

    # The inline script ran in the browser: the address asks for the aggregates sorted by method, ascending.
    sorted_dom = chromium("--dump-dom", page.as_uri() + "#sort=aggregates-0:0:asc").stdout
    assert [r[0] for r in table_rows(sorted_dom, "aggregates-0")[1:]] == ["bc", "srpo"]
    assert 'data-dir="asc"' in sorted_dom

    folder = Path(os.environ.get("SRPO_BENCH_TEST_ARTIFACTS") or tmp_path_factory.mktemp("artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "leaderboard.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri())
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")
