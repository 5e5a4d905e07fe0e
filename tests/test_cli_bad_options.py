"""Every CLI verb with a bad value of each of its options (issue 27): one line on the output, exit 2, no traceback.

`BAD` names at least one bad value per option (flags have none); `test_every_option_has_a_bad_value` fails when an
option is added without one here. Values are ones the option's type parses; values click itself refuses (a
non-integer for an integer option) are `TYPE_ERRORS`, one line too (cli.OneLineErrors)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from srpo_bench.cli import app


def bad_values(tmp: Path) -> dict[str, dict[str, list[list[str]]]]:
    """verb -> option -> argument lists, each with one bad value (the rest valid). `tmp` is an empty folder."""
    a_file = tmp / "a-file.txt"
    a_file.write_text("not a folder")
    out = ["--out", str(tmp / "results")]
    results = [str(tmp / "results")]  # `report RESULTS...`
    run_out = ["--out", str(tmp / "run-results")]  # never the default ./results
    return {
        "run": {option: [[*values, *run_out] if option != "--out" else values for values in lists]
                for option, lists in {
            "--envs": [["--envs", "bogus"]],
            "--methods": [["--methods", "bogus"]],
            "--seeds": [["--seeds", "x"], ["--seeds", "-3"], ["--seeds", "5-1"]],
            "--profile": [["--profile", "bogus"]],
            "--protocol": [["--protocol", "bogus"]],
            "--device": [["--device", "bogus"]],
            "--out": [["--out", str(a_file)]],
            "--set": [["--set", "bogus"], ["--set", "srpo.bogus=1"]],
            "--sweep": [["--sweep", str(tmp / "missing.toml")], ["--sweep", str(a_file)]],
            "--threads": [["--threads", "-1"]],
            "--jobs": [["--jobs", "0"]],
            "--executor": [["--executor", "bogus"]],
            "--ray-address": [["--executor", "ray", "--ray-address", "bogus:port"]],
            "--cpus-per-run": [["--cpus-per-run", "0"]],
            "--gpus-per-run": [["--gpus-per-run", "-1"]],
            "--max-retries": [["--max-retries", "-1"]],
            "--runtime": [["--runtime", "bogus"]],
        }.items()},
        "collect": {
            "--suite": [["--suite", "bogus"], ["--suite", "antmaze"]],
            "--envs": [["--envs", "bogus"], ["--envs", ","], ["--suite", "ogbench", "--envs", "bogus"],
                       ["--suite", "ogbench", "--envs", "hopper"]],
            "--size": [["--size", "bogus"], ["--suite", "ogbench", "--size", "huge"]],
            "--seed": [["--seed", "abc"], ["--seed", "-1"], ["--seed", str(2**31)],
                       ["--suite", "ogbench", "--seed", "-1"]],
            "--workers": [["--workers", "0"], ["--workers", "two"]],
            "--data-dir": [["--envs", "hopper", "--size", "small", "--data-dir", str(a_file)]],
        },
        "report": {
            "results": [[str(tmp / "missing")]],
            "--out": [["--out", str(tmp / "missing")]],  # deprecated; a failing command still prints one line
            "--profile": [[*results, "--profile", "bogus"]],
            "--format": [[*results, "--format", "bogus"]],
            "--leaderboard": [[*results, "--leaderboard", str(a_file)]],
            "--reps": [[*results, "--reps", "0"]],
            "--seed": [[*results, "--seed", "-1"]],
        },
        "speed": {
            "--methods": [["--methods", "bogus", *out]],
            "--task": [["--task", "bogus", *out]],
            "--profile": [["--profile", "bogus", *out]],
            "--device": [["--device", "bogus", *out]],
            "--out": [["--out", str(a_file)]],
            "--batch-sizes": [["--batch-sizes", "x", *out], ["--batch-sizes", "0", *out]],
            "--repeats": [["--repeats", "0", *out]],
            "--max-seconds": [["--max-seconds", "0", *out]],
            "--threads": [["--threads", "-1", *out]],
            "--runtime": [["--runtime", "bogus", *out]],
        },
        "export": {
            "run_dir": [[str(tmp / "missing-run")]],
            "--format": [[str(tmp / "missing-run"), "--format", "bogus"]],
            "--output": [[str(tmp / "missing-run"), "--output", str(a_file / "x.onnx")]],
        },
    }


def cases() -> list[tuple[str, str, int]]:
    """(verb, option, index) of every bad value (the folder is only needed to build the arguments)."""
    table = bad_values(_scratch())
    return [(verb, option, index) for verb, options in table.items() for option, values in options.items()
            for index in range(len(values))]


def _scratch() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="srpo-bench-bad-options-"))


def test_every_option_has_a_bad_value(tmp_path: Path) -> None:
    table = bad_values(tmp_path)
    command = typer.main.get_command(app)
    for verb, sub in command.commands.items():  # type: ignore[attr-defined]
        options = {param.opts[0] for param in sub.params if not getattr(param, "is_flag", False)}
        assert options == set(table.get(verb, {})), f"{verb}: options without a bad value here"


def one_line_exit_2(result: object) -> None:
    output = result.output  # type: ignore[attr-defined]
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert result.exit_code == 2, output  # type: ignore[attr-defined]
    assert "Traceback" not in output, output
    assert len(lines) == 1 and lines[0].startswith("error: "), output


@pytest.mark.parametrize(("verb", "option", "index"), cases())
def test_a_bad_value_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verb: str,
                                            option: str, index: int) -> None:
    for variable in ("SRPO_BENCH_DATA_DIR", "OGBENCH_DATA_DIR", "D4RL_DATASET_DIR", "MINARI_DATASETS_PATH"):
        monkeypatch.setenv(variable, str(tmp_path / "data"))  # nothing a test does can reach a real data folder
    arguments = bad_values(tmp_path)[verb][option][index]
    before = sorted(p for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(app, [verb, *arguments])
    one_line_exit_2(result)
    assert sorted(p for p in tmp_path.rglob("*")) == before, "a refused command wrote something"


#: click parses these before our code runs: cli.OneLineErrors turns its usage box into our one line
TYPE_ERRORS = [["run", "--threads", "x"], ["report", "--reps", "x"], ["speed", "--repeats", "x"]]


@pytest.mark.parametrize("arguments", TYPE_ERRORS)
def test_a_value_click_cannot_parse_is_one_line(arguments: list[str]) -> None:
    one_line_exit_2(CliRunner().invoke(app, arguments))


def test_a_failed_collection_job_is_one_line_with_the_traceback_in_a_file(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    from srpo_bench.collect import lite
    from srpo_bench.collect.workers import CollectionError

    def failing(*args: object, **kwargs: object) -> list[Path]:
        raise CollectionError("collecting hopper failed: RuntimeError: boom", "Traceback (most recent call last):\n x")

    monkeypatch.setattr(lite, "collect_suite", failing)
    result = CliRunner().invoke(app, ["collect", "--envs", "hopper", "--size", "small"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("error: collecting hopper failed: RuntimeError: boom (worker traceback in ")
    log = Path(lines[0].rsplit("in ", 1)[1].rstrip(")"))
    assert log.read_text().startswith("Traceback")
    log.unlink()


def test_an_unwritable_data_folder_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data folder should be")
    monkeypatch.setenv("SRPO_BENCH_DATA_DIR", str(blocker))
    one_line_exit_2(CliRunner().invoke(app, ["collect", "--envs", "hopper", "--size", "small"]))
