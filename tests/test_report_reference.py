"""Published numbers: transcribed correctly, shown beside D4RL tasks only, never mixed into our aggregates."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from report_store import make_store, protocol_run, write_run
from typer.testing import CliRunner

from srpo_bench.cli import app
from srpo_bench.report import reference, tables
from srpo_bench.report.build import build_report
from srpo_bench.report.tables import MISSING

# Averages the papers print in their D4RL tables: a transcription slip in one cell moves them.
PRINTED_AVERAGES = {
    ("locomotion", "srpo"): 87.1, ("locomotion", "idql"): 82.1, ("locomotion", "sfbc"): 75.6,
    ("locomotion", "diffusion-ql"): 87.8,  # the column as transcribed sums to 87.8 (88.0 with DOSER's two cells)
    ("locomotion", "bc"): 51.9, ("locomotion", "td3+bc"): 75.3, ("locomotion", "cql"): 77.6,
    ("locomotion", "iql"): 76.9, ("antmaze", "srpo"): 73.7, ("antmaze", "sfbc"): 74.2,
    ("antmaze", "diffusion-ql"): 69.6, ("antmaze", "idql"): 79.1, ("antmaze", "bc"): 16.7,
    ("antmaze", "td3+bc"): 27.3, ("antmaze", "cql"): 50.6, ("antmaze", "iql"): 63.0,
}


def test_published_table_matches_the_printed_averages_and_names_its_sources() -> None:
    table = reference.load_reference(reference.REFERENCE_FILE)
    assert len(table) == 9 * 8 + 6 * 8
    for (suite, method), printed in PRINTED_AVERAGES.items():
        rows = table[(table["suite"] == suite) & (table["method"] == method)]
        assert len(rows) == (9 if suite == "locomotion" else 6), (suite, method)
        # 0.1: papers round or truncate their averages (IQL: 76.96 printed as 76.9); a slipped cell moves it more
        assert rows["score"].mean() == pytest.approx(printed, abs=0.1), (suite, method)
    assert table["source"].str.len().min() > 10


def _store_with_d4rl_and_lite(tmp_path: Path) -> Path:
    """hopper-medium-v2 runs that comply with d4rl-srpo (6 seeds: the protocol's count) and lite runs."""
    out = make_store(tmp_path / "results")
    for seed, score in enumerate([40.0, 50.0, 60.0, 40.0, 50.0, 60.0]):
        protocol_run(out, "d4rl-srpo", "hopper-medium-v2", "srpo", seed, score, kind="d4rl", family="locomotion")
        protocol_run(out, "d4rl-srpo", "hopper-medium-v2", "bc", seed, score - 30, kind="d4rl", family="locomotion")
        write_run(out, "lite-hopper-medium-v0", "srpo", seed, [score, score], kind="lite")
    return out


def test_reported_numbers_stand_beside_d4rl_tasks_only_and_never_enter_aggregates(tmp_path: Path) -> None:
    report = build_report([_store_with_d4rl_and_lite(tmp_path)], reps=200)
    rows = report.comparison
    assert set(rows["task"]) == {"hopper-medium-v2"}  # the lite task never gets a reported number
    srpo = rows[rows["method"] == "srpo"].iloc[0]
    # SRPO's row was published under d4rl-srpo, with which these runs comply: it stands beside ours.
    assert srpo["comparable"] and srpo["why_not_comparable"] == ""
    assert srpo["reported"] == 95.5 and srpo["reproduced"] == 50.0 and srpo["difference"] == pytest.approx(-45.5)
    assert srpo["reported_in_interval"] is False or srpo["reported_in_interval"] == False  # noqa: E712
    # BC's number comes from the IQL paper's own protocol: shown for reference, no difference taken.
    bc = rows[rows["method"] == "bc"].iloc[0]
    assert not bc["comparable"] and pd.isna(bc["reported"]) and pd.isna(bc["difference"])
    assert bc["for_reference"] == 52.9 and "own protocol" in bc["why_not_comparable"]
    d4rl = next(g for g in report.groups if g.key["score_scale"] == "d4rl")
    assert d4rl.compliance == {"protocol": "d4rl-srpo", "complies": True, "exploratory": False, "reasons": []}
    # IQM of our six scores (40, 50, 60 twice) is 50: the published 95.5 is not in it.
    assert d4rl.estimates["srpo"]["iqm"].point == 50.0
    assert set(d4rl.per_task["method"]) == {"srpo", "bc"}
    lite = next(g for g in report.groups if g.key["score_scale"] == "lite")
    assert lite.tasks == ["lite-hopper-medium-v0"] and lite.compliance["exploratory"]


@pytest.mark.parametrize(("change", "reason"), [
    ({"profile": "quick"}, "quick profile (protocol: paper)"),
    ({"dataset": {"transitions": 2_000, "average_normalized": 30.0}}, "2,000-transition dataset"),
    ({"harness": {"eval_episodes": 5, "evaluations_during_training": 9}}, "5 evaluation episodes (protocol: 20)"),
    ({"config": {"steps": 1_000}}, "training budget steps 1,000 (protocol: 1,000,000)"),
    ({"overrides": {"beta": "0.1"}}, "settings changed with --set"),
])
def test_a_run_off_the_protocol_is_never_paired_and_says_why(tmp_path: Path, change: dict, reason: str) -> None:
    out = make_store(tmp_path / "results")
    for seed in range(6):
        protocol_run(out, "d4rl-srpo", "hopper-medium-v2", "srpo", seed, 50.0, kind="d4rl", family="locomotion")
        protocol_run(out, "d4rl-srpo", "hopper-medium-v2", "bc", seed, 20.0, kind="d4rl", family="locomotion",
                     **(change if seed == 0 else {}))
    report = build_report([out], reps=50)
    runs = report.runs.finished
    changed = runs[(runs["base_method"] == "bc") & (runs["seed"] == 0)].iloc[0]
    assert not changed["complies"] and any(reason in line for line in changed["deviations"]), changed["deviations"]
    group = next(g for g in report.groups if g.label == changed["group"])
    assert group.label.startswith("EXPLORATORY") and group.compliance["exploratory"]
    assert any(reason in line for line in group.compliance["reasons"]), group.compliance
    assert not report.comparison[report.comparison["group"] == group.label]["comparable"].any()


def test_fewer_seeds_than_the_protocol_makes_the_whole_group_exploratory(tmp_path: Path) -> None:
    out = make_store(tmp_path / "results")
    for seed in range(6):
        protocol_run(out, "d4rl-srpo", "hopper-medium-v2", "srpo", seed, 50.0, kind="d4rl", family="locomotion")
    for seed in range(3):  # BC has 3 of the 6 seeds: SRPO's 6 alone do not make a protocol comparison
        protocol_run(out, "d4rl-srpo", "hopper-medium-v2", "bc", seed, 20.0, kind="d4rl", family="locomotion")
    report = build_report([out], reps=50)
    (group,) = report.groups
    assert group.compliance["exploratory"] and group.compliance["protocol"] == "d4rl-srpo"
    assert group.compliance["reasons"] == ["3 seeds for hopper-medium-v2 bc (protocol: at least 6)"]
    srpo = report.comparison[report.comparison["method"] == "srpo"].iloc[0]
    assert not srpo["comparable"] and srpo["for_reference"] == 95.5
    assert srpo["why_not_comparable"] == "ours: 3 seeds for hopper-medium-v2 bc (protocol: at least 6)"


COMPLIES = {"complies": True, "protocol": "ogbench-fql", "reasons": []}
OWN_PROTOCOL = "published under its paper's own protocol, which no protocol here reproduces"


@pytest.mark.parametrize(("row", "compliance", "reason"), [
    ({"published_protocol": ""}, COMPLIES, OWN_PROTOCOL),
    ({"published_protocol": None}, COMPLIES, OWN_PROTOCOL),
    ({"published_protocol": "ogbench-fql"}, {"complies": False, "reasons": ["smoke profile", "1 evaluation episode"]},
     "ours: smoke profile; 1 evaluation episode"),
    ({"published_protocol": "ogbench-fql"}, {}, "ours: complies with no protocol"),
    ({"published_protocol": "ogbench-fql"}, {**COMPLIES, "protocol": "ogbench-cpu"},
     "ours: protocol ogbench-cpu; the number was published under ogbench-fql"),
    # the gate's last rule: a complying group still needs the published seed count (the CSV's `seeds`, 8 for FQL)
    ({"published_protocol": "ogbench-fql", "published_seeds": 8, "seeds": 3}, COMPLIES,
     "ours: 3 seeds, fewer than the published 8"),
    ({"published_protocol": "ogbench-fql", "published_seeds": "8", "seeds": 1}, COMPLIES,
     "ours: 1 seed, fewer than the published 8"),
    ({"published_protocol": "ogbench-fql", "published_seeds": 8, "seeds": 8}, COMPLIES, ""),
    ({"published_protocol": "ogbench-fql", "published_seeds": "", "seeds": 1}, COMPLIES, ""),  # blank: no count
    ({"published_protocol": "ogbench-fql", "published_seeds": None, "seeds": 1}, COMPLIES, ""),
], ids=["no-protocol", "protocol-none", "reasons", "no-reasons", "other-protocol", "fewer-seeds", "one-seed",
        "as-many-seeds", "blank-seeds", "no-seeds"])
def test_the_gate_says_why_a_published_number_stands_apart(row: dict, compliance: dict, reason: str) -> None:
    assert reference.why_not_comparable(row, compliance) == reason


def _ours(task: str, seeds: int, score_scale: str = "ogbench", low: float = 30.0, high: float = 50.0
          ) -> pd.DataFrame:
    """One per-task row as build.per_task_table writes it: FQL's mean 40 [low, high] over `seeds` seeds."""
    return pd.DataFrame([{"group": "ours", "score_scale": score_scale, "task": task, "method": "fql",
                          "base_method": "fql", "seeds": seeds, "mean": 40.0, "low": low, "high": high}])


def test_compare_reads_the_published_seed_count_and_protocol_from_the_table() -> None:
    """FQL's cube-single task 2 row: 97 % over 8 seeds, published under ogbench-fql (ogbench_published.csv)."""
    table = reference.load_reference(reference.OGBENCH_REFERENCE_FILE)
    task, complies = "cube-single-play-singletask-task2-v0", {"ours": COMPLIES}
    (row,) = reference.compare(_ours(task, 3), table, complies).to_dict("records")
    assert not row["comparable"] and row["why_not_comparable"] == "ours: 3 seeds, fewer than the published 8"
    assert row["for_reference"] == 97.0 and pd.isna(row["reported"]) and pd.isna(row["difference"])
    assert row["reported_in_interval"] is None  # no number stands beside ours, so it is in no interval
    compared = reference.compare(_ours(task, 8), table, complies)
    assert list(compared.columns) == reference.COLUMNS
    (row,) = compared.to_dict("records")
    assert row["comparable"] and row["reported"] == 97.0 and row["difference"] == -57.0
    assert row["reported_in_interval"] is False and row["source"].startswith("FQL paper")
    # the interval is closed: 97 at either end is inside; an interval that cannot be had (one seed) says nothing
    for low, high, inside in ((30.0, 97.0, True), (97.0, 100.0, True), (97.5, 100.0, False),
                              (float("nan"), float("nan"), None)):
        (row,) = reference.compare(_ours(task, 8, low=low, high=high), table, complies).to_dict("records")
        assert row["reported_in_interval"] is inside, (low, high)
    # a group the compliance map does not know (or no map at all) complies with nothing
    for compliance in ({}, None):
        (row,) = reference.compare(_ours(task, 8), table, compliance).to_dict("records")
        assert row["why_not_comparable"] == "ours: complies with no protocol" and pd.isna(row["reported"])
    # a table without `seeds` and `protocol` columns (a user's own file): every number is its paper's own protocol
    bare = table[["suite", "task", "method", "score", "source", "note"]]
    (row,) = reference.compare(_ours(task, 8), bare, complies).to_dict("records")
    assert row["why_not_comparable"] == OWN_PROTOCOL and row["for_reference"] == 97.0


def test_the_comparison_table_says_whether_the_published_number_is_inside_our_interval() -> None:
    """tables.comparison on compare()'s rows: inside, outside, no interval (one seed's), and not comparable."""
    table = reference.load_reference(reference.OGBENCH_REFERENCE_FILE)
    task, complies = "cube-single-play-singletask-task2-v0", {"ours": COMPLIES}
    rows = pd.concat([reference.compare(_ours(task, seeds, low=low, high=high), table, complies)
                      for seeds, low, high in ((8, 30.0, 97.0), (8, 30.0, 50.0), (8, float("nan"), float("nan")),
                                               (3, 30.0, 50.0))], ignore_index=True)
    shown = tables.comparison(rows, "comparison")
    column = shown.columns.index("published inside our interval")
    assert [row[column].text for row in shown.rows] == ["yes", "no", MISSING, MISSING]
    ours, published, difference = (shown.columns.index(name) for name in ("ours", "published (comparable)",
                                                                          "ours - published"))
    assert [row[ours].text for row in shown.rows] == ["40.0 [30.0, 97.0] n=8", "40.0 [30.0, 50.0] n=8", "40.0 n=8",
                                                      "40.0 [30.0, 50.0] n=3"]
    assert [row[published].sort for row in shown.rows[:3]] == [97.0] * 3 and shown.rows[3][published].text == MISSING
    assert shown.rows[0][difference].sort == -57.0


def test_blank_cells_of_the_published_tables_read_as_empty_text() -> None:
    """A blank note or protocol is "" (the leaderboard prints it empty, never "nan"), and protocol "" means the
    paper's own protocol."""
    table = reference.load_reference()
    for column in ("note", "protocol", "source"):
        assert table[column].map(type).eq(str).all(), column
    assert (table["protocol"] == "").any() and (table["protocol"] == "ogbench-fql").any()


def test_lite_tasks_and_missing_tables_never_pair() -> None:
    assert not reference.comparable("lite-hopper-medium-v0", "d4rl")  # our own data, whatever its scale says
    assert reference.comparable("hopper-medium-v2", "d4rl") and not reference.comparable("hopper-medium-v2", "lite")
    missing = reference.load_reference(Path("/nonexistent/published.csv"))
    compared = reference.compare(_ours("hopper-medium-v2", 6, "d4rl"), missing)
    assert compared.empty and list(compared.columns) == reference.COLUMNS


def test_a_smoke_run_on_small_ogbench_data_is_exploratory_everywhere(tmp_path: Path) -> None:
    """The issue's case: a smoke run on a `--size small` dataset stored under the full file name once stood as
    "reproduced 0.0" beside FQL's 97.0."""
    out = make_store(tmp_path / "results")
    task = "cube-single-play-singletask-task2-v0"
    write_run(out, task, "fql", 0, [0.0], profile="smoke", kind="ogbench", family="ogbench",
              harness={"eval_episodes": 1, "evaluations_during_training": 0},
              dataset={"transitions": 2_000, "average_normalized": None}, task_note="success_timing=post")
    result = CliRunner().invoke(app, ["report", "--out", str(out), "--reps", "50", "--format", "json,md,html,csv"])
    assert result.exit_code == 0, result.output
    board = json.loads((out / "leaderboard" / "leaderboard.json").read_text())
    assert board["exploratory"] is True
    (group,) = board["groups"]
    assert group["exploratory"] and not group["complies"] and group["protocol"] == "ogbench-fql"
    assert any("smoke profile" in reason for reason in group["deviations"])
    assert any("2,000-transition dataset" in reason for reason in group["deviations"])
    (row,) = board["reference_comparison"]
    assert row["reported"] is None and row["difference"] is None and row["for_reference"] == 97.0
    assert row["why_not_comparable"].startswith("ours: ") and "smoke profile" in row["why_not_comparable"]
    markdown = (out / "leaderboard" / "leaderboard.md").read_text()
    assert "**EXPLORATORY** (complies with no protocol)" in markdown
    page = (out / "leaderboard" / "leaderboard.html").read_text()
    assert 'id="exploratory-banner"' in page and "(EXPLORATORY)</h3>" in page
    assert "EXPLORATORY" in result.output


def test_leaderboard_keeps_reported_and_reproduced_apart(tmp_path: Path) -> None:
    out = _store_with_d4rl_and_lite(tmp_path)
    result = CliRunner().invoke(app, ["report", "--out", str(out), "--reps", "200", "--format", "json,md"])
    assert result.exit_code == 0, result.output
    board = json.loads((out / "leaderboard" / "leaderboard.json").read_text())
    for group in board["groups"]:
        assert all(row["method"] in {"srpo", "bc"} for row in group["per_task"])
        assert "reported" not in json.dumps(group["per_task"])
    compared = board["reference_comparison"]
    assert {row["task"] for row in compared} == {"hopper-medium-v2"}
    assert {row["method"] for row in compared} == {"srpo", "bc"}
    assert all(row["reproduced"] is not None for row in compared)
    assert all((row["reported"] is not None) == row["comparable"] for row in compared)
    markdown = (out / "leaderboard" / "leaderboard.md").read_text()
    lite_section = markdown.split("· locomotion-lite ·")[1].split("## ")[0]
    assert "95.5" not in lite_section and "not D4RL" in lite_section
