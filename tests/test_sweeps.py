"""Sweeps (sweeps.py): `--set KEY=a,b,c` and `--sweep FILE` expand into labelled runs in one results folder, every
value checked before anything trains, stages shared by key (a beta sweep trains SRPO's behavior model and critic
once), and the report's tuning view over the runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from report_store import make_store, speed_record, write_run
from test_cli import invoke, one_line_error

from srpo_bench.config import ConfigError
from srpo_bench.dry_run import stage_seconds_left
from srpo_bench.estimate import Estimate
from srpo_bench.progress import Reporter
from srpo_bench.report import plots, tuning
from srpo_bench.report.build import build_report
from srpo_bench.report.frame import method_label
from srpo_bench.report.leaderboard import write
from srpo_bench.runner import fit_context, load_checked
from srpo_bench.sweeps import Grid, folder_name, parse_grid, plan_sweep, variant_label
from srpo_bench.tasks import get_task

TOY = ("--envs", "toy-two-moons", "--profile", "smoke", "--device", "cpu", "--quiet")


# --- expansion ---------------------------------------------------------------------------------------------------
def test_a_comma_list_sweeps_and_a_single_value_stays_a_plain_override() -> None:
    grid = parse_grid(["srpo.beta=0.01, 0.05,0.2", "srpo.behavior_steps=20", "fql.alpha=3"], ["srpo", "fql"])
    assert grid.swept == {"srpo": {"beta": ["0.01", "0.05", "0.2"]}}
    assert grid.fixed == {"srpo": {"behavior_steps": "20"}, "fql": {"alpha": "3"}}
    assert grid.configurations("srpo") == [{"beta": "0.01"}, {"beta": "0.05"}, {"beta": "0.2"}]
    assert grid.configurations("fql") == []
    # the last --set of a key wins, as before sweeps: a later single value replaces an earlier list
    assert parse_grid(["srpo.beta=0.1,0.2", "srpo.beta=0.3"], ["srpo"]).swept == {}


def test_a_tuple_setting_reads_its_commas_as_one_value() -> None:
    grid = parse_grid(["sfbc.critic_hidden=64,64"], ["sfbc"])
    assert grid.fixed["sfbc"] == {"critic_hidden": "64,64"} and not grid.sweeps


def test_a_key_without_method_sweeps_every_method_that_has_it() -> None:
    grid = parse_grid(["critic_lr=0.001,0.0003"], ["srpo", "idql", "bc"])
    assert set(grid.swept) == {"srpo", "idql"}


def test_the_product_of_two_swept_settings() -> None:
    grid = parse_grid(["srpo.beta=0.1,1", "srpo.weighting=constant,score"], ["srpo"])
    assert grid.configurations("srpo") == [
        {"beta": "0.1", "weighting": "constant"}, {"beta": "0.1", "weighting": "score"},
        {"beta": "1", "weighting": "constant"}, {"beta": "1", "weighting": "score"}]


@pytest.mark.parametrize(("items", "message"), [
    (["srpo.beta=0.05,5e-2"], "srpo.beta: '0.05' and '5e-2' are the same value"),
    (["srpo.beta=0.05,,0.1"], "srpo.beta: an empty value in the list '0.05,,0.1'"),
    (["srpo.beta=0.1,abc"], "srpo.beta: expected float, got 'abc'"),
    (["srpo.weighting=constant,sigma"], "srpo.weighting: expected one of"),
    (["srpx.beta=0.1,0.2"], "'srpx' is not a method of this run"),
])
def test_bad_sweep_values_are_one_line_naming_method_key_and_value(items: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_grid(items, ["srpo"])


def test_a_sweep_file_one_table_per_method(tmp_path: Path) -> None:
    path = tmp_path / "sweep.toml"
    path.write_text('[srpo]\nbeta = [0.01, 0.1]\nweighting = "constant"\n\n[sfbc]\ncritic_hidden = [[64, 64], [128]]\n'
                    "[fql]\nalpha = [1, 10.5]\nnormalize_q_loss = [true, false]\n")
    grid = parse_grid([], ["srpo", "sfbc", "fql"], path)
    assert grid.swept == {"srpo": {"beta": ["0.01", "0.1"]}, "sfbc": {"critic_hidden": ["64,64", "128"]},
                          "fql": {"alpha": ["1", "10.5"], "normalize_q_loss": ["true", "false"]}}
    assert grid.fixed["srpo"] == {"weighting": "constant"}
    with pytest.raises(ConfigError, match=r"srpo.beta is also in .*sweep.toml; give it once"):
        parse_grid(["srpo.beta=1"], ["srpo", "sfbc", "fql"], path)


@pytest.mark.parametrize(("content", "message"), [
    ("[srpo]\nbeta = [0.1,\n", "not valid TOML"),
    ("", "no settings"),
    ("beta = [0.1, 1]\n", "'beta' must be a table of settings"),
    ("[idql]\nnum_candidates = [4, 8]\n", r"\[idql\] is not a method of this run \(methods: srpo\)"),
    ("[srpo]\nbeta = []\n", "srpo.beta has an empty list of values"),
    ("[srpo]\nbeta = [0.1, -1]\n", "srpo: must be in (0, inf): beta=-1"),
])
def test_a_bad_sweep_file_is_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "sweep.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message.replace("(0, inf)", r"\(0, inf\)")):
        plan_sweep(["toy-two-moons"], ["srpo"], [0], "smoke", parse_grid([], ["srpo"], path))
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="absent.toml: cannot read"):
        parse_grid([], ["srpo"], missing)


def test_plan_runs_the_paper_setting_and_each_configuration_in_folders_of_their_own(tmp_path: Path) -> None:
    grid = parse_grid(["srpo.beta=0.1,1", "srpo.behavior_steps=20"], ["srpo", "bc"])
    specs = plan_sweep(["toy-two-moons", "toy-checkerboard"], ["srpo", "bc"], [0, 1], "smoke", grid)
    assert len(specs) == 2 * (3 + 1) * 2  # per task: srpo reference + 2 configurations, bc; 2 seeds each
    srpo = [s for s in specs if s.method == "srpo" and s.task == "toy-two-moons" and s.seed == 0]
    assert [s.sweep for s in srpo] == [(), ("beta",), ("beta",)]
    assert [s.overrides["srpo"] for s in srpo] == [{"behavior_steps": "20"}, {"behavior_steps": "20", "beta": "0.1"},
                                                  {"behavior_steps": "20", "beta": "1"}]
    paths = [s.path(tmp_path).relative_to(tmp_path).as_posix() for s in srpo]
    assert paths == ["runs/smoke/toy-two-moons/srpo/seed0",
                     "runs/smoke/toy-two-moons/srpo[behavior_steps=20,beta=0.1]/seed0",
                     "runs/smoke/toy-two-moons/srpo[behavior_steps=20,beta=1]/seed0"]
    assert srpo[1].label() == "toy-two-moons srpo[behavior_steps=20,beta=0.1] seed 0"
    assert all(s.overrides["srpo"] == {"behavior_steps": "20"} and not s.sweep for s in specs if s.method == "bc")
    # no sweep: the grid as before
    plain = plan_sweep(["toy-two-moons"], ["srpo"], [0], "smoke", parse_grid(["srpo.beta=0.1"], ["srpo"]))
    assert [(s.sweep, s.path(tmp_path).parent.name) for s in plain] == [((), "srpo")]


def test_labels_match_the_reports_and_folder_names_are_safe() -> None:
    overrides = {"beta": "0.1", "weighting": "score"}
    assert variant_label("srpo", overrides) == method_label("srpo", overrides) == "srpo[beta=0.1,weighting=score]"
    assert folder_name("tiny", {"path": "a/b c"}) == "tiny[path=a_b_c]"


def test_a_shared_stage_changed_by_another_methods_sweep_is_refused() -> None:
    """IDQL's critic_source=shared takes SRPO's critic: a sweep of SRPO's critic would leave it unclear which; a
    sweep of SRPO's beta (policy stage only) is fine."""
    shared = ["idql.critic_source=shared"]
    with pytest.raises(ConfigError, match=r"idql shares a stage of srpo, and the sweep of srpo.critic_lr changes it"):
        plan_sweep(["toy-two-moons"], ["srpo", "idql"], [0], "smoke",
                   parse_grid([*shared, "srpo.critic_lr=0.001,0.0003"], ["srpo", "idql"]))
    specs = plan_sweep(["toy-two-moons"], ["srpo", "idql"], [0], "smoke",
                       parse_grid([*shared, "srpo.beta=0.1,1"], ["srpo", "idql"]))
    assert len(specs) == 4


def test_a_beta_sweep_shares_the_behavior_and_critic_keys_and_only_the_policy_key_differs(tmp_path: Path) -> None:
    task = get_task("toy-two-moons")
    dataset = load_checked(["toy-two-moons"])["toy-two-moons"]
    specs = plan_sweep(["toy-two-moons"], ["srpo"], [0], "smoke", parse_grid(["srpo.beta=0.02,2"], ["srpo"]))
    keys = [dict(fit_context(task, "srpo", dataset, 0, "smoke", tmp_path, torch.device("cpu"), Reporter(quiet=True),
                             spec.overrides)[1].keys) for spec in specs]
    assert len(keys) == 3
    for name in ("behavior", "critic"):
        assert len({k[name] for k in keys}) == 1, name
    assert len({k["policy"] for k in keys}) == 3


def test_the_compute_left_counts_a_shared_stage_once() -> None:
    grid = parse_grid(["srpo.beta=0.1,1"], ["srpo"])
    specs = plan_sweep(["toy-two-moons"], ["srpo"], [0, 1], "smoke", grid)
    per_step = Estimate({"behavior": 10, "critic": 20, "policy": 5}, {"behavior": 1.0, "critic": 1.0, "policy": 1.0})
    estimates = {("toy-two-moons", spec.variant()): per_step for spec in specs}
    left = stage_seconds_left(specs, ["to run"] * len(specs), estimates, {"toy-two-moons": None}, Path("/nonexistent"),
                              torch.device("cpu"))
    by_run = {(spec.variant(), spec.seed): seconds for spec, seconds in zip(specs, left, strict=True)}
    assert by_run == {("srpo", 0): 35.0, ("srpo", 1): 35.0, ("srpo[beta=0.1]", 0): 5.0, ("srpo[beta=0.1]", 1): 5.0,
                      ("srpo[beta=1]", 0): 5.0, ("srpo[beta=1]", 1): 5.0}
    finished = stage_seconds_left(specs, ["finished"] * len(specs), estimates, {"toy-two-moons": None},
                                  Path("/nonexistent"), torch.device("cpu"))
    assert finished == [0.0] * len(specs)


# --- the command line --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("setting", "message"), [
    ("srpo.beta=0.1,-1", "srpo: must be in (0, inf): beta=-1"),
    ("srpo.beta=0.1,x", "srpo.beta: expected float, got 'x'"),
])
def test_every_expanded_value_is_checked_before_anything_is_written(tmp_path: Path, setting: str,
                                                                    message: str) -> None:
    out = tmp_path / "results"
    line = one_line_error(invoke("run", *TOY, "--methods", "srpo", "--seeds", "0", "--out", str(out),
                                 "--set", setting))
    assert message in line
    assert not out.exists()


def test_dry_run_shows_the_expansion_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = invoke("run", *TOY, "--methods", "srpo", "--seeds", "0-1", "--out", str(out), "--dry-run",
                    "--set", "srpo.beta=0.1,1")
    assert result.exit_code == 0, result.output
    assert "sweep srpo: beta = 0.1, 1: 2 configurations + the paper's setting (the reference) = 3 runs" in result.output
    for label in ("srpo[beta=0.1]", "srpo[beta=1]"):
        assert label in result.output
    assert "6 runs: 6 to run" in result.output and "counts a stage shared by several runs once" in result.output
    assert not out.exists()


@pytest.mark.slow
def test_a_tiny_sweep_reuses_the_stages_and_the_report_shows_its_tuning_budget(tmp_path: Path) -> None:
    """Smoke profile, one toy task, SRPO with 2 values of beta, one seed: the reference run trains the behavior model
    and the critic, both configurations load them and train only their policy; the report finds the sweep."""
    out = tmp_path / "results"
    result = invoke("run", *TOY, "--methods", "srpo", "--seeds", "0", "--out", str(out), "--set", "srpo.beta=0.02,2")
    assert result.exit_code == 0, result.output
    folder = out / "runs" / "smoke" / "toy-two-moons"
    assert sorted(p.name for p in folder.iterdir()) == ["srpo", "srpo[beta=0.02]", "srpo[beta=2]"]
    origins = {}
    for name in ("srpo", "srpo[beta=0.02]", "srpo[beta=2]"):
        run = json.loads((folder / name / "seed0" / "run.json").read_text())
        assert run["status"] == "finished"
        origins[name] = {s["stage"]: s["origin"] for s in run["stages"]}
        assert run.get("sweep", []) == ([] if name == "srpo" else ["beta"])
        assert run["overrides"] == ({} if name == "srpo" else {"beta": name[len("srpo[beta="):-1]})
    assert origins["srpo"] == {"behavior": "trained", "critic": "trained", "policy": "trained"}
    for name in ("srpo[beta=0.02]", "srpo[beta=2]"):
        assert origins[name] == {"behavior": "shared", "critic": "shared", "policy": "trained"}
    configs = {json.loads((folder / n / "seed0" / "run.json").read_text())["config"]["beta"] for n in origins}
    assert configs == {0.02, 2.0, json.loads((folder / "srpo" / "seed0" / "run.json").read_text())["config"]["beta"]}

    again = invoke("run", *TOY, "--methods", "srpo", "--seeds", "0", "--out", str(out), "--set", "srpo.beta=0.02,2")
    assert again.exit_code == 0 and "3 already finished" in again.output, again.output

    report = build_report([out], reps=200)
    (group,) = report.groups
    assert group.methods == ["srpo"]  # configurations are never ranked, nor pooled as seeds of one method
    assert sorted(report.runs.sweeps["method"]) == ["srpo[beta=0.02]", "srpo[beta=2]"]
    (view,) = group.tuning
    assert view.family == "srpo" and view.swept == ("beta",) and view.configurations == {"toy-two-moons": 2}
    scores = pd.concat([report.runs.finished, report.runs.sweeps]).set_index("method")["final_score"]
    assert view.reference == pytest.approx(scores["srpo"])
    assert view.eop[-1] == pytest.approx(max(scores["srpo[beta=0.02]"], scores["srpo[beta=2]"]))
    reported = invoke("report", str(out), "--reps", "200")
    assert reported.exit_code == 0, reported.output
    assert "tuning budget" in reported.output and "score at budget 10 episodes (UCB)" in reported.output
    assert (out / "leaderboard" / "figures" / "group0-tuning.png").exists()
    written = json.loads((out / "leaderboard" / "leaderboard.json").read_text())
    tuning_json = written["groups"][0]["tuning"]
    assert tuning_json[0]["swept"] == ["beta"] and len(tuning_json[0]["bandit"]["point"]) == 200
    assert len(written["runs"]) == 3  # the sweep runs are there to recompute the view


# --- the report on hand-made sweeps ------------------------------------------------------------------------------
def relabel(folder: Path, **fields: object) -> None:
    """Set fields of a run folder's run.json: a sweep's folder is labelled with its settings, its method is not."""
    run = json.loads((folder / "run.json").read_text())
    run.update(fields)
    (folder / "run.json").write_text(json.dumps(run))


def write_sweep(out: Path, task: str, scores: dict[str, float], seeds: int = 2, reference: float | None = 50.0,
                episodes: int = 6) -> None:
    """A beta sweep of srpo on `task`: per configuration (beta value) episodes around `scores[beta]`."""
    rng = np.random.default_rng(len(task))
    for seed in range(seeds):
        for beta, score in scores.items():
            folder = write_run(out, task, f"srpo[beta={beta}]", seed, list(score + rng.normal(0, 2, episodes)),
                               overrides={"beta": beta}, config={"beta": float(beta)})
            relabel(folder, method="srpo", sweep=["beta"])  # the folder is labelled; the method is srpo
        if reference is not None:
            write_run(out, task, "srpo", seed, list(reference + rng.normal(0, 2, episodes)), config={"beta": 0.05})


def test_the_report_groups_configurations_and_finds_the_reference(tmp_path: Path) -> None:
    out = make_store(tmp_path / "store")
    write_sweep(out, "toy-two-moons", {"0.01": 30.0, "0.1": 60.0, "1": 80.0})
    write_sweep(out, "toy-checkerboard", {"0.01": 20.0, "0.1": 70.0, "1": 40.0})
    report = build_report([out], reps=200)
    (group,) = report.groups
    assert group.methods == ["srpo"]
    (view,) = group.tuning
    finished = pd.concat([report.runs.finished, report.runs.sweeps])
    assert view.tasks == ["toy-checkerboard", "toy-two-moons"]
    assert view.configurations == {"toy-checkerboard": 3, "toy-two-moons": 3}
    best = {task: finished[(finished["task"] == task) & (finished["method"] != "srpo")].groupby("method")
            ["final_score"].mean().max() for task in view.tasks}
    assert view.eop[-1] == pytest.approx(np.mean(list(best.values())))
    assert view.reference == pytest.approx(finished[finished["method"] == "srpo"]["final_score"].mean())
    assert view.bandit.point[-1] == pytest.approx(view.eop[-1], abs=0.5)  # 200 episodes find each task's best
    assert np.all(view.bandit.low <= view.bandit.point) and np.all(view.bandit.point <= view.bandit.high)
    # the same table twice gives the same numbers
    assert np.array_equal(build_report([out], reps=200).groups[0].tuning[0].bandit.point, view.bandit.point)


def test_a_group_without_sweeps_has_no_tuning_view_and_a_missing_reference_is_none(tmp_path: Path) -> None:
    out = make_store(tmp_path / "plain")
    write_run(out, "toy-two-moons", "srpo", 0, [50.0, 52.0])
    assert build_report([out], reps=50).groups[0].tuning == []
    swept = make_store(tmp_path / "swept")
    write_sweep(swept, "toy-two-moons", {"0.01": 30.0, "0.1": 60.0}, reference=None)
    report = build_report([swept], reps=50)
    (group,) = report.groups  # a group of sweep runs alone: no method ranked, its tuning view
    assert group.methods == [] and group.estimates == {}
    (view,) = group.tuning
    assert view.reference is None and view.reference_tasks == []
    assert any("sweep runs (2 configurations of srpo)" in note for note in group.notes)
    written = write(report, tmp_path / "board", ["md", "json", "csv"], warn=lambda line: None)
    assert {p.name for p in written} >= {"leaderboard.md", "leaderboard-tuning.csv", "group0-tuning.png"}
    assert "score at budget 100 episodes (UCB)" in (tmp_path / "board" / "leaderboard.md").read_text()


def test_the_grid_type_reports_no_sweep_for_plain_overrides() -> None:
    assert not Grid({"srpo": {"beta": "0.1"}}).sweeps


def test_a_sweep_with_a_fixed_setting_is_its_own_family_and_writes_what_the_leaderboard_documents(
        tmp_path: Path) -> None:
    """`--set srpo.beta=0.01,1 --set srpo.behavior_steps=20`: beta is swept, behavior_steps fixed, so the family is
    `srpo[behavior_steps=20]` and its paper's setting is the plain run with that fixed setting alone. The table, the
    JSON entry and the CSV rows the leaderboard publishes carry the view's numbers under their documented names."""
    out = make_store(tmp_path / "store")
    rng = np.random.default_rng(0)
    for seed in range(2):
        for beta, score in (("0.01", 30.0), ("1", 70.0)):
            folder = write_run(out, "toy-two-moons", f"srpo[behavior_steps=20,beta={beta}]", seed,
                               list(score + rng.normal(0, 2, 6)), overrides={"behavior_steps": "20", "beta": beta},
                               config={"beta": float(beta), "behavior_steps": 20})
            relabel(folder, method="srpo", sweep=["beta"])
        folder = write_run(out, "toy-two-moons", "srpo[behavior_steps=20]", seed, [44.0, 46.0] * 3,
                           overrides={"behavior_steps": "20"}, config={"beta": 0.05, "behavior_steps": 20})
        relabel(folder, method="srpo")
    report = build_report([out], reps=100)
    (group,) = report.groups
    (view,) = group.tuning
    assert (view.family, view.base_method, view.swept) == ("srpo[behavior_steps=20]", "srpo", ("beta",))
    assert view.reference == pytest.approx(45.0) and view.reference_tasks == ["toy-two-moons"]
    assert any(note.startswith("4 sweep runs (2 configurations of srpo[behavior_steps=20]) are in the tuning-budget")
               for note in group.notes)

    table = tuning.tuning_table(group.tuning, "tuning-0")
    assert table.columns == ["method", "swept", "tasks", "configurations (P)", "paper's setting",
                             "score at budget 10 episodes (UCB)", "score at budget 100 episodes (UCB)",
                             "EOP k = 1 (a random configuration)", "EOP k = P (the best, optimistic)"]
    (row,) = table.rows
    assert [cell.text for cell in row[:4]] == ["srpo[behavior_steps=20]", "beta", "1", "2"]
    assert row[3].sort == 2.0  # the column sorts by P
    assert "K = min(8, P)" in table.notes[0] and "alpha 2" in table.notes[0] and "1,000 draws" in table.notes[0]

    (entry,) = tuning.to_json(group.tuning)
    assert set(entry) == {"method", "base_method", "swept", "tasks", "configurations", "subsample", "ucb_alpha",
                          "draws", "paper_setting", "paper_setting_tasks", "bandit", "eop", "per_task"}
    assert set(entry["bandit"]) == {"budgets", "point", "ci_low", "ci_high"}
    assert entry["bandit"]["point"] is view.bandit.point and entry["subsample"] == {"toy-two-moons": 2}
    assert entry["per_task"] == {"toy-two-moons": {"configurations": 2, "eop": view.per_task["toy-two-moons"]["eop"],
                                                   "paper_setting": pytest.approx(45.0)}}

    rows = tuning.csv_rows("group A", group.tuning)
    assert all(set(r) == {"group", "method", "swept", "tasks", "paper_setting", "kind", "x", "point", "ci_low",
                          "ci_high"} for r in rows)
    ucb = {r["x"]: r for r in rows if r["kind"] == "ucb"}
    eop = {r["x"]: r for r in rows if r["kind"] == "eop"}
    assert sorted(ucb) == list(range(1, 201)) and sorted(eop) == [1, 2]
    assert (ucb[10]["point"], ucb[10]["ci_low"], ucb[10]["ci_high"]) == view.bandit.at(10)
    assert [eop[k]["point"] for k in (1, 2)] == view.eop.tolist() and eop[2]["ci_high"] is None
    assert {(r["group"], r["method"], r["swept"], r["tasks"]) for r in rows} == {
        ("group A", "srpo[behavior_steps=20]", "beta", "toy-two-moons")}

    figure = plots.tuning_budget(group.tuning, "toy")
    bandit_ax, eop_ax = figure.axes[:2]
    curve, reference = bandit_ax.get_lines()
    x, y = curve.get_data()
    assert (x[0], x[-1]) == (1, 200) and np.all(np.diff(x) > 0) and 30 <= len(x) <= 50  # ~50 budgets, log-spaced
    assert np.array_equal(y, view.bandit.point[x - 1])
    eop_line, eop_reference = eop_ax.get_lines()
    assert eop_line.get_data()[0].tolist() == [1, 2] and eop_line.get_data()[1].tolist() == view.eop.tolist()
    for line in (reference, eop_reference):  # the paper's setting, dashed, on both panels
        assert list(line.get_ydata()) == [pytest.approx(45.0)] * 2 and line.get_linestyle() == "--"
    assert bandit_ax.xaxis.get_major_formatter()(1000.0, 0) == "1,000"


def test_a_sweeps_timings_stay_out_of_the_speed_table(tmp_path: Path) -> None:
    """Each configuration of a sweep timed itself inside its run; those timings are a configuration's, not the
    method's, so only the paper's setting's timings reach the speed table."""
    out = make_store(tmp_path / "store")
    for beta, rate in (("0.01", 50.0), ("1", 70.0)):
        folder = write_run(out, "toy-two-moons", f"srpo[beta={beta}]", 0, [40.0, 42.0], overrides={"beta": beta},
                           config={"beta": float(beta)}, speed=speed_record([rate, rate + 1.0, rate + 2.0], [rate] * 3))
        relabel(folder, method="srpo", sweep=["beta"])
    plain = write_run(out, "toy-two-moons", "srpo", 0, [44.0, 46.0], config={"beta": 0.05},
                      speed=speed_record([1000.0, 1001.0, 1002.0], [9e4] * 3))
    report = build_report([out], reps=50)
    assert len(report.runs.sweeps) == 2
    assert [Path(source) for source in report.runs.timings["source"]] == [plain / "speed.json"]
    (row,) = report.timings.to_dict("records")
    assert (row["method"], row["aps_b1"]) == ("srpo", 1001.0)
