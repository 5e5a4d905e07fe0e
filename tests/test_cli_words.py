"""One vocabulary across the CLI (issue 26): help texts drawn from the registries, the same column names in every
table and file, `report RESULTS...` and `collect --data-dir`, progress people can read, counts pluralised, named
ONNX axes, and "did you mean" for every kind of name."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from report_store import good_store
from rich.console import Console
from typer.testing import CliRunner

import srpo_bench
from srpo_bench import progress, vocabulary
from srpo_bench.profiles import PROFILE_NAMES
from srpo_bench.protocols import protocol_names
from srpo_bench.registry import available_methods

ROOT = Path(__file__).resolve().parents[1]
WIDE = {"COLUMNS": "400", "TERMINAL_WIDTH": "400"}  # a help line never wraps inside a name


def words(text: str) -> str:
    """Help text without rich's box drawing, its lines joined: what a reader sees, as one string."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def cli_app():  # noqa: ANN201 - the typer app, as imported now
    from srpo_bench.cli import app

    return app


def help_of(*command: str) -> str:
    result = CliRunner(env=WIDE).invoke(cli_app(), [*command, "--help"])
    assert result.exit_code == 0, result.output
    return words(result.output)


# --- help from the registries -----------------------------------------------------------------------------------
def test_the_suites_of_the_vocabulary_are_the_task_registrys() -> None:
    from srpo_bench.executors import EXECUTORS
    from srpo_bench.export import FORMATS as EXPORT_FORMATS
    from srpo_bench.report.leaderboard import FORMATS
    from srpo_bench.runtimes import RUNTIMES
    from srpo_bench.tasks import SUITES

    assert list(SUITES) == list(vocabulary.SUITES)
    assert list(RUNTIMES) == list(vocabulary.RUNTIMES) and list(EXECUTORS) == list(vocabulary.EXECUTORS)
    assert list(FORMATS) == list(vocabulary.LEADERBOARD_FORMATS)
    assert list(EXPORT_FORMATS) == list(vocabulary.EXPORT_FORMATS)
    assert set(vocabulary.COLLECTABLE_SUITES) <= set(SUITES)


def option_help(command: str, option: str) -> str:
    """The help text of one option, as click holds it (no other option's text can stand in for it)."""
    import typer.main

    (param,) = [p for p in typer.main.get_command(cli_app()).commands[command].params  # type: ignore[attr-defined]
                if option in p.opts]
    return str(param.help)


def test_every_registered_method_and_suite_is_in_the_help() -> None:
    from srpo_bench.tasks import SUITES

    for method in available_methods():
        assert re.search(rf"\b{re.escape(method)}\b", str(cli_app().info.help)), f"--help omits {method}"
        assert re.search(rf"\b{re.escape(method)}\b", option_help("run", "--methods")), method
        assert re.search(rf"\b{re.escape(method)}\b", option_help("speed", "--methods")), method
    for suite in SUITES:
        assert re.search(rf"\b{re.escape(suite)}\b", str(cli_app().info.help)), f"--help omits {suite}"
        assert re.search(rf"\b{re.escape(suite)}\b", option_help("run", "--envs")), suite
    # and as a reader sees them
    main, run, speed = (help_of(*command).replace("srpo-bench", "") for command in ([], ["run"], ["speed"]))
    for method in available_methods():
        assert re.search(rf"\b{re.escape(method)}\b", main), f"srpo-bench --help omits {method}"
        assert re.search(rf"\b{re.escape(method)}\b", run), f"run --help omits {method}"
        assert re.search(rf"\b{re.escape(method)}\b", speed), f"speed --help omits {method}"
    for suite in SUITES:
        assert re.search(rf"\b{re.escape(suite)}\b", main), f"srpo-bench --help omits {suite}"
        assert re.search(rf"\b{re.escape(suite)}\b", run), f"run --help omits {suite}"


def test_protocols_profiles_runtimes_executors_and_formats_are_in_their_help() -> None:
    run = help_of("run")
    for name in [*protocol_names(), *PROFILE_NAMES, *vocabulary.RUNTIMES, *vocabulary.EXECUTORS]:
        assert name in run, f"run --help omits {name}"
    assert "srpo-bench[ray]" in run  # rich markup did not eat the extra's brackets
    assert "[default: toy, or the protocol's]" in run
    speed = help_of("speed")
    assert all(name in speed for name in vocabulary.RUNTIMES)
    report = help_of("report")
    assert all(name in report for name in vocabulary.LEADERBOARD_FORMATS)
    assert all(name in help_of("export") for name in vocabulary.EXPORT_FORMATS)
    assert all(name in help_of("collect") for name in vocabulary.COLLECTABLE_SUITES)


def test_a_newly_registered_method_appears_in_the_help_without_editing_it() -> None:
    """In a fresh interpreter (the help is built when the CLI module is imported) whose registry has one more
    entry point."""
    script = ("import srpo_bench.registry as r; t = r._targets(); "
              "r._targets = lambda: {**t, 'my-method': 'my_package:MyMethod'}; "
              "from srpo_bench.cli import app; import sys; sys.argv = ['srpo-bench', *sys.argv[1:]]; app()")
    for command in ([], ["run"]):
        shown = subprocess.run([sys.executable, "-c", script, *command, "--help"], capture_output=True, text=True,
                               env={**os.environ, **WIDE}, timeout=120)
        assert shown.returncode == 0, shown.stderr
        assert "my-method" in words(shown.stdout), command


# --- one column name per quantity and kind of output ----------------------------------------------------------
def test_display_and_file_names_map_one_to_one() -> None:
    from srpo_bench.report import tables

    assert vocabulary.display_name(vocabulary.NFE_FIELD) == vocabulary.NFE_COLUMN == "NFE/action"
    assert vocabulary.display_name("actions_per_second_b256") == "actions/s b256"
    assert vocabulary.display_name("srpo_speedup_b1") == "srpo speedup b1"
    assert vocabulary.display_name("method") == "method"
    # the summary `run` prints and the report's speed table use the same display names
    assert tables.DISPLAY_NAMES[vocabulary.NFE_FIELD] == vocabulary.NFE_COLUMN
    assert tables.DISPLAY_NAMES["actions_per_second_b1"] == vocabulary.display_name("actions_per_second_b1")


def test_speed_tables_show_display_names_and_files_keep_field_names(tmp_path: Path) -> None:
    """`srpo-bench speed`: both of its tables head the column NFE/action (never nfe_per_action), the speedups
    '<reference> speedup b1' as the report does; its file names every column by its field name."""
    out = tmp_path / "results"
    result = CliRunner().invoke(cli_app(), ["speed", "--methods", "srpo,bc", "--task", "toy-two-moons", "--out",
                                            str(out), "--device", "cpu", "--repeats", "3", "--max-seconds", "0.2"])
    assert result.exit_code == 0, result.output
    headers = [line for line in result.stdout.splitlines() if line.startswith("method")]
    assert len(headers) == 2, result.stdout  # the timings and the speedups
    for header in headers:
        assert vocabulary.NFE_COLUMN in header and vocabulary.NFE_FIELD not in header, header
    assert "srpo speedup b1" in headers[1] and "actions/s b1" in headers[0]
    saved = json.loads((out / "speed" / "toy-two-moons-cpu.json").read_text())
    (row,) = saved["speedups"]
    assert set(row) == {"method", vocabulary.NFE_FIELD, "speedup_b1", "speedup_b256"}
    assert saved["results"]["bc"][vocabulary.NFE_FIELD] == 1


def test_the_report_speed_table_and_its_csv_name_nfe_the_same_way(tmp_path: Path) -> None:
    out = good_store(tmp_path / "results")
    result = CliRunner().invoke(cli_app(), ["report", str(out), "--reps", "50", "--format", "csv,md"])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if line.startswith("| runtime"))
    assert vocabulary.NFE_COLUMN in [cell.strip() for cell in header.split("|")]
    assert vocabulary.NFE_FIELD not in result.stdout
    lines = (out / "leaderboard" / "leaderboard-speed.csv").read_text().splitlines()
    csv_header = next(line for line in lines if not line.startswith("#")).split(",")  # after the stamp
    assert vocabulary.NFE_FIELD in csv_header and vocabulary.NFE_COLUMN not in csv_header


# --- report RESULTS... and collect --data-dir ------------------------------------------------------------------
def test_report_reads_results_folders_given_as_arguments(tmp_path: Path) -> None:
    out = good_store(tmp_path / "results")
    positional = CliRunner().invoke(cli_app(), ["report", str(out), "--reps", "50", "--format", "json"])
    assert positional.exit_code == 0, positional.output
    assert "deprecated" not in positional.output and "per-task scores" in positional.stdout


def test_report_out_still_works_with_one_deprecation_line_on_stderr(tmp_path: Path) -> None:
    out = good_store(tmp_path / "results")
    new = CliRunner().invoke(cli_app(), ["report", str(out), "--reps", "50", "--format", "json"])
    old = CliRunner().invoke(cli_app(), ["report", "--out", str(out), "--reps", "50", "--format", "json"])
    assert old.exit_code == 0, old.output
    assert old.stdout == new.stdout  # the tables are the same, untouched
    deprecations = [line for line in old.stderr.splitlines() if "deprecated" in line]
    assert len(deprecations) == 1 and old.stderr.strip().splitlines()[-1] == deprecations[0]
    assert deprecations[0].startswith("warning: `report --out DIR` is deprecated")


def test_collect_writes_into_data_dir_and_leaves_the_environment_as_it_was(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from srpo_bench.collect import lite, ogbench
    from srpo_bench.data.lite import lite_dir
    from srpo_bench.data.ogbench import ogbench_dir

    seen: dict[str, Path] = {}

    def collect_lite(*args: object, **kwargs: object) -> list[Path]:
        seen["lite"] = lite_dir()  # where the collection would write, read as the collectors read it
        return []

    def collect_ogbench(*args: object, **kwargs: object) -> list[object]:
        seen["ogbench"] = ogbench_dir()
        return []

    monkeypatch.setattr(lite, "collect_suite", collect_lite)
    monkeypatch.setattr(ogbench, "collect_suite", collect_ogbench)
    monkeypatch.setenv("SRPO_BENCH_DATA_DIR", str(tmp_path / "from-variable"))
    monkeypatch.delenv("OGBENCH_DATA_DIR", raising=False)
    chosen = tmp_path / "chosen"
    done = CliRunner().invoke(cli_app(), ["collect", "--envs", "hopper", "--size", "small", "--data-dir", str(chosen)])
    assert done.exit_code == 0, done.output
    done = CliRunner().invoke(cli_app(), ["collect", "--suite", "ogbench", "--envs", "cube-single", "--size", "small",
                                          "--data-dir", str(chosen / "og")])
    assert done.exit_code == 0, done.output
    assert seen == {"lite": chosen / "lite", "ogbench": chosen / "og"}
    assert lite_dir() == tmp_path / "from-variable" / "lite"  # the variable is the default again
    seen.clear()
    assert CliRunner().invoke(cli_app(), ["collect", "--envs", "hopper", "--size", "small"]).exit_code == 0
    assert seen == {"lite": tmp_path / "from-variable" / "lite"}


# --- progress ---------------------------------------------------------------------------------------------------
def recording_reporter(width: int = 200) -> tuple[progress.Reporter, Console]:
    console = Console(file=io.StringIO(), width=width, force_terminal=False, record=True)
    return progress.Reporter(console=console), console


def test_the_stage_bar_names_task_method_seed_and_stage(tmp_path: Path) -> None:
    from srpo_bench.registry import get_method
    from srpo_bench.runner import fit_context
    from srpo_bench.tasks import get_task

    task = get_task("toy-two-moons")
    reporter, console = recording_reporter()
    config, ctx = fit_context(task, "bc", task.load(), 3, "smoke", tmp_path, torch.device("cpu"), reporter)
    get_method("bc")().fit(ctx, config)
    (stage,) = [entry["stage"] for entry in ctx.stage_log]
    assert f"toy-two-moons bc seed 3 {stage}: " in console.export_text()


def test_the_grid_bar_counts_runs_and_never_steps() -> None:
    reporter, console = recording_reporter()
    with reporter.track_runs("grid", ["srpo", "bc", "bc"]) as bar:
        task = reporter._progress.tasks[0]
        assert progress.CountColumn().render(task).plain == "0/3 runs"
        bar.done("srpo", 10.0)
        assert progress.CountColumn().render(reporter._progress.tasks[0]).plain == "1/3 runs"
        assert progress.RateColumn().render(reporter._progress.tasks[0]).plain == ""
        bar.done("bc", 1.0)
        bar.done("bc", None)
    text = console.export_text()
    assert "grid: 3/3 runs in " in text and "steps/s" not in text
    with reporter.track_runs("grid", ["srpo"]):
        assert progress.CountColumn().render(reporter._progress.tasks[-1]).plain == "0/1 run"


def test_the_grid_eta_is_pending_runs_times_their_methods_mean_duration() -> None:
    assert progress.runs_eta(["srpo", "bc"], {}) is None  # nothing finished: unknown, not a guess
    durations = {"srpo": [10.0, 20.0], "bc": [1.0]}
    assert progress.runs_eta(["srpo", "bc", "bc"], durations) == pytest.approx(15.0 + 1.0 + 1.0)
    overall = (10.0 + 20.0 + 1.0) / 3
    assert progress.runs_eta(["sfbc"], durations) == pytest.approx(overall)  # no sfbc finished yet: the overall mean
    assert progress.runs_eta(["srpo", "srpo"], durations, parallel=2) == pytest.approx(15.0)
    assert progress.runs_eta([], durations) == 0.0


def test_the_grid_eta_does_not_swing_when_a_fast_method_finishes() -> None:
    """A grid of slow SfBC runs and fast BC runs, run method after method: finishing BC runs must not shrink the
    estimate for the SfBC runs still to come (a rate over all runs would)."""
    reporter, _ = recording_reporter()
    with reporter.track_runs("grid", ["sfbc"] * 4 + ["bc"] * 4) as bar:
        bar.done("sfbc", 100.0)
        after_slow = bar.eta()
        for _ in range(3):
            bar.done("bc", 1.0)
            # the three SfBC runs left keep their own method's mean; one BC run costs 1 s
            assert bar.eta() == pytest.approx(3 * 100.0 + bar.pending["bc"] * 1.0)
        assert after_slow == pytest.approx(3 * 100.0 + 4 * 100.0)  # before any BC finished: the overall mean


def test_losses_are_shown_at_a_fixed_width_and_never_cut() -> None:
    shown = progress.format_metrics({"loss": 0.5, "q_loss": -123456.789, "bc": float("nan")})
    values = re.findall(rf"=(.{{{progress.METRIC_WIDTH}}})", shown + " " * progress.METRIC_WIDTH)
    assert [value.strip() for value in values] == ["0.5", "-1.235e+05", "nan"]
    assert len(progress.format_metrics({"loss": 1.0})) == len(progress.format_metrics({"loss": -1.234e-05}))
    for width in (100, 60, 30):  # a usual terminal, and ones narrower than the bar's line
        reporter, console = recording_reporter(width=width)
        with reporter.track("toy-two-moons srpo seed 0 policy", 100) as bar:
            bar.advance(1, loss=0.123456, q_loss=-98765.4321)
            console.print(reporter._progress.make_tasks_table(reporter._progress.tasks))
        text = console.export_text()
        assert "…" not in text and "..." not in text, text
        if width >= 60:  # wide enough for the longest 'key=value': each stays whole on one line
            assert "loss=0.1235" in text and "q_loss=-9.877e+04" in text, text


# --- counts -----------------------------------------------------------------------------------------------------
def test_plural() -> None:
    assert [vocabulary.plural(n, "run") for n in (0, 1, 2, 1200)] == ["0 runs", "1 run", "2 runs", "1,200 runs"]
    assert vocabulary.plural(1, "thread") == "1 thread" and vocabulary.plural(1, "episode") == "1 episode"
    assert vocabulary.plural(2, "batch") == "2 batches" and vocabulary.plural(3, "policy") == "3 policies"
    assert vocabulary.plural(2, "day") == "2 days" and vocabulary.plural(2.5, "minute") == "2.5 minutes"
    assert vocabulary.plural(2, "child", "children") == "2 children"


COUNTED = ("runs|threads|episodes|seeds|tasks|methods|files|steps|jobs|workers|datasets|timings|stages|repeats|"
           "records|points|transitions|evaluations|calls|candidates|rows|batches|seconds|minutes|columns|processes")


def unpluralised_counts(source: str) -> list[str]:
    """f-string pieces like f"{n} runs" (a count followed by a plural noun: "1 runs" when n is 1). Not flagged: a
    unit ("{x} steps/s"), a range ("{low}-{high} seeds"), a count pluralised by hand ("{n} run{'s' ...}")."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.JoinedStr):
            continue
        parts = node.values
        for index, (value, text) in enumerate(zip(parts, parts[1:], strict=False)):
            if not (isinstance(value, ast.FormattedValue) and isinstance(text, ast.Constant)):
                continue
            before = parts[index - 1] if index > 0 else None
            if isinstance(before, ast.Constant) and str(before.value).endswith("-"):
                continue
            if re.match(rf"\s(?:{COUNTED})\b(?!/)", str(text.value)):
                found.append(f"line {node.lineno}: {{{ast.unparse(value.value)}}}{str(text.value)[:20]}")
    return found


def test_the_checker_finds_an_unpluralised_count() -> None:
    assert unpluralised_counts('f"{n} runs"') == ["line 1: {n} runs"]
    assert unpluralised_counts('f"{len(x)} threads, {k} episodes"') == ["line 1: {len(x)} threads, ",
                                                                          "line 1: {k} episodes"]
    assert not unpluralised_counts('f"{plural(n, \'run\')} left; {rate} steps/s; {a}-{b} seeds; run {n}"')


def test_no_count_in_the_package_is_written_without_its_plural() -> None:
    found = [f"{path.relative_to(ROOT)} {hit}" for package in ("srpo_bench", "baselines")
             for path in sorted((ROOT / package).rglob("*.py")) for hit in unpluralised_counts(path.read_text())]
    assert not found, "use vocabulary.plural(n, word):\n" + "\n".join(found)


# --- named ONNX axes -------------------------------------------------------------------------------------------
def test_the_exported_onnx_model_names_its_axes(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from test_export import finished_run

    from srpo_bench.export import export_run

    path, _ = finished_run(tmp_path / "store", "idql")  # an act with noise inputs (candidates per state)
    model_path = export_run(path, "onnx")[0]
    graph = onnx.load(str(model_path)).graph

    def dims(value) -> list[str | int]:  # noqa: ANN001 - an onnx ValueInfoProto
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    shapes = {value.name: dims(value) for value in [*graph.input, *graph.output]}
    meta = json.loads(next(p.value for p in onnx.load(str(model_path)).metadata_props if p.key == "srpo_bench"))
    assert shapes["observations"] == ["batch", meta["observation"]["dim"]]
    assert shapes["actions"] == ["batch", meta["action"]["dim"]]
    assert meta["noise"], "idql's act draws noise"
    for item in meta["noise"]:
        rows = item["rows_per_state"]
        assert shapes[item["name"]] == ["batch" if rows == 1 else f"batch_x{rows}", *item["shape"][1:]]
    assert not [name for shape in shapes.values() for name in shape if isinstance(name, str) and "dim" in name]
    # the named batch axis is still dynamic
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    feed = {"observations": torch.zeros(5, meta["observation"]["dim"]).numpy()}
    for item in meta["noise"]:
        feed[item["name"]] = torch.zeros(5 * item["rows_per_state"], *item["shape"][1:]).numpy()
    (actions,) = session.run(["actions"], feed)
    assert actions.shape == (5, meta["action"]["dim"])


# --- did you mean ------------------------------------------------------------------------------------------------
def test_did_you_mean() -> None:
    assert vocabulary.did_you_mean("srpoo", ["srpo", "idql"]) == "; did you mean 'srpo'?"
    assert vocabulary.did_you_mean("SRPO", ["srpo"]) == "; did you mean 'srpo'?"
    assert vocabulary.did_you_mean("zzzz", ["srpo", "idql"]) == ""
    assert vocabulary.did_you_mean("toy-two-moon", ["toy-two-moons", "toy-checkerboard", "toy-eight-gaussians"]) \
        == "; did you mean 'toy-two-moons'?"


def one_error(*arguments: str) -> str:
    result = CliRunner().invoke(cli_app(), list(arguments))
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize(("arguments", "best"), [
    (["run", "--methods", "srpoo", "--out", "OUT"], "srpo"),
    (["run", "--envs", "toy-two-moon", "--out", "OUT"], "toy-two-moons"),
    (["run", "--envs", "locomotion-lit", "--out", "OUT"], "locomotion-lite"),
    (["run", "--profile", "quik", "--out", "OUT"], "quick"),
    (["run", "--protocol", "ogbench-fq", "--out", "OUT"], "ogbench-fql"),
    (["run", "--envs", "toy", "--set", "srpo.betta=1", "--out", "OUT"], "beta"),
    (["run", "--envs", "toy", "--methods", "srpo,idql", "--set", "betta=1", "--out", "OUT"], "beta"),
    (["run", "--envs", "toy", "--methods", "srpo,idql", "--set", "srop.beta=1", "--out", "OUT"], "srpo"),
    (["run", "--envs", "toy", "--set", "srpo.q_head=mena", "--out", "OUT"], "mean"),
    (["run", "--executor", "rey", "--out", "OUT"], "ray"),
    (["run", "--runtime", "onxx", "--out", "OUT"], "onnx"),
    (["speed", "--runtime", "eager,compild", "--out", "OUT"], "compiled"),
    (["speed", "--task", "toy-checkerbord", "--out", "OUT"], "toy-checkerboard"),
    (["collect", "--suite", "ogbnch"], "ogbench"),
    (["export", "OUT", "--format", "onxx"], "onnx"),
])
def test_an_unknown_name_suggests_the_closest(tmp_path: Path, arguments: list[str], best: str) -> None:
    out = tmp_path / "r"
    line = one_error(*(str(out) if argument == "OUT" else argument for argument in arguments))
    assert f"did you mean '{best}'" in line, line
    assert not out.exists()


def test_a_name_close_to_nothing_suggests_nothing(tmp_path: Path) -> None:
    line = one_error("run", "--methods", "td3", "--out", str(tmp_path / "r"))
    assert "unknown method 'td3'" in line and "did you mean" not in line


def test_srpo_bench_package_has_no_vocabulary_of_its_own() -> None:
    """vocabulary.py imports nothing of srpo_bench: the registries import it, so it cannot import them back."""
    tree = ast.parse((Path(srpo_bench.__file__).parent / "vocabulary.py").read_text())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)] + [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name and name.startswith("srpo_bench")]


# --- speed taken inside a busy grid -------------------------------------------------------------------------------
class NappingAgent:
    """A one-layer stand-in whose act sleeps a fixed time: which timing the report used shows in its speed."""

    network_evaluations = {"policy": 1}
    nfe_per_action = 1

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def act(self, observations: torch.Tensor) -> torch.Tensor:
        import time

        time.sleep(self.seconds)
        return torch.zeros(len(observations), 2)


def timed(monkeypatch: pytest.MonkeyPatch, seconds: float, load: float, context: str = "in-run") -> dict:
    """A speed record made by the real timing code (`measure_speed`), on a machine whose 1-minute load the OS
    reports as `load`, with one torch thread."""
    from srpo_bench import speed

    monkeypatch.setattr(speed, "_load_average", lambda: [load, load, load])
    result = speed.measure_speed(NappingAgent(seconds), obs_dim=2, batch_sizes=(1, 256), warmup=1, repeats=3,
                                 min_seconds=0.0, max_seconds=1.0, context=context)
    assert result.torch_threads == 1  # tests run at one thread (conftest)
    return result.to_dict()


def test_quiet_timings_are_preferred_to_busy_ones_and_the_note_says_so(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from report_store import make_store, write_run

    from srpo_bench.report import tables
    from srpo_bench.report.build import build_report
    from srpo_bench.report.speedup import load_label

    # the timing process itself shows in the load: one thread alone reads ~1.0 (quiet), a second process ~2 (busy)
    assert [load_label(0.5, 1), load_label(1.1, 1), load_label(1.6, 1), load_label(2.4, 2), load_label(2.6, 2),
            load_label(None, 1)] == ["quiet", "quiet", "busy", "quiet", "busy", "unknown"]
    out = make_store(tmp_path / "results")
    fast, slow = 0.0, 0.01  # the quiet timings are fast, the busy ones slow: the speed tells which were used
    write_run(out, "toy-two-moons", "srpo", 0, [80.0], speed=timed(monkeypatch, fast, load=0.4))
    write_run(out, "toy-two-moons", "bc", 0, [50.0], speed=timed(monkeypatch, fast, load=0.9))  # quiet
    write_run(out, "toy-two-moons", "bc", 1, [50.0], speed=timed(monkeypatch, slow, load=2.6))  # busy: 2 jobs + us
    write_run(out, "toy-two-moons", "idql", 0, [40.0], speed=timed(monkeypatch, slow, load=3.0))  # busy only
    # a busy `srpo-bench speed` timing does not beat a quiet in-run one
    (out / "speed").mkdir()
    (out / "speed" / "toy-two-moons-cpu.json").write_text(json.dumps({
        "created": "2026-12-01T00:00:00+00:00", "task": "toy-two-moons", "device": "cpu",
        "results": {"bc": timed(monkeypatch, slow, load=2.2, context="alone")}}))
    report = build_report([out], reps=50)
    chosen = report.timings.set_index("method")
    assert chosen.loc["bc", "load"] == "quiet" and chosen.loc["bc", "context"] == "in-run"
    assert chosen.loc["bc", "timings"] == 1 and chosen.loc["bc", "busy_left_out"] == 2
    assert chosen.loc["bc", "aps_b1"] > 10 * chosen.loc["idql", "aps_b1"]  # the fast (quiet) timing, not a pool
    assert chosen.loc["idql", "load"] == "busy" and chosen.loc["idql", "busy_left_out"] == 0
    assert chosen.loc["srpo", "load"] == "quiet"
    table = tables.speed(report.timings, report.speedups, report.timings["device"].iloc[0], "srpo", "speed")
    rows = {row[2].text: row for row in table.rows}
    assert rows["bc"][3].text == "in-run, quiet (1)" and rows["idql"][3].text == "in-run, busy (1)"
    (note,) = [note for note in table.notes if note.startswith("quiet:")]
    assert note.endswith("its busy ones left out: bc (eager)")
