"""End-to-end CLI: a smoke run writes a complete run folder, reruns skip, interrupted runs resume, and bad
input ends in one clear line, a non-zero exit and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from srpo_bench import executors
from srpo_bench import srpo as srpo_module
from srpo_bench.cli import app
from srpo_bench.progress import Reporter
from srpo_bench.registry import expand_methods
from srpo_bench.store import SCHEMA_VERSION

cli = CliRunner()


def invoke(*args: str):
    return cli.invoke(app, list(args), catch_exceptions=False)


def one_line_error(result) -> str:
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and result.output.rstrip().endswith(errors[0]), result.output
    assert "Traceback" not in result.output
    return errors[0]


def test_smoke_run_writes_a_complete_run_folder_and_a_rerun_skips(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = invoke("run", "--envs", "toy-two-moons", "--methods", "srpo,bc", "--seeds", "0", "--profile", "smoke",
                    "--out", str(out), "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    run_dir = out / "runs" / "smoke" / "toy-two-moons" / "srpo" / "seed0"
    for name in ("run.json", "curves.json", "eval.json", "speed.json"):
        assert (run_dir / name).exists(), name
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "finished" and run["schema_version"] == SCHEMA_VERSION
    assert run["config"]["beta"] > 0 and run["config"]["policy_steps"] == 100
    assert {s["stage"] for s in run["stages"]} == {"behavior", "critic", "policy"}
    for stage in run["stages"]:  # content-addressed artifacts, one per stage key
        assert (out / "stages" / f"{stage['definition']}-{stage['key']}.pt").exists()
        assert run["stage_keys"][stage["stage"]] == stage["key"]
    assert run["versions"]["torch"] and run["device"]["type"] == "cpu"
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert len(evaluation["returns"]) == 64 and np.isfinite(evaluation["mean_normalized"])
    # smoke: one evaluation during the policy stage, then the final policy's (the reported score)
    curve = evaluation["during_training"]
    assert [point["step"] for point in curve] == [50, 100] and curve[-1]["final"]
    assert curve[-1]["mean_normalized"] == evaluation["mean_normalized"] == evaluation["summaries"]["final"]
    assert evaluation["summaries"]["best_optimistic"] == max(p["mean_normalized"] for p in curve)
    speed = json.loads((run_dir / "speed.json").read_text())
    assert speed["nfe_per_action"] == 1 and speed["batches"]["256"]["actions_per_second"] > 0
    curves = json.loads((run_dir / "curves.json").read_text())
    assert curves["policy"] and "loss" in curves["policy"][0]

    again = invoke("run", "--envs", "toy-two-moons", "--methods", "srpo,bc", "--seeds", "0", "--profile", "smoke",
                   "--out", str(out), "--device", "cpu", "--quiet")
    assert again.exit_code == 0 and "0 finished, 0 failed, 2 already finished" in again.output

    report = invoke("report", str(out))
    assert report.exit_code == 0 and "toy-two-moons" in report.output and "srpo" in report.output

    speed = invoke("speed", "--methods", "srpo,bc", "--task", "toy-two-moons", "--out", str(out), "--device", "cpu",
                   "--repeats", "3", "--max-seconds", "1")
    assert speed.exit_code == 0, speed.output
    assert "speedup of srpo" in speed.output and "bc" in speed.output
    saved = json.loads((out / "speed" / "toy-two-moons-cpu.json").read_text())
    assert set(saved["results"]) == {"srpo", "bc"} and saved["results"]["srpo"]["nfe_per_action"] == 1


def test_an_interrupted_run_resumes_from_its_last_finished_stage(tmp_path: Path, monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(srpo_module, "score_regularized_loss", interrupted)
    common = dict(tasks=["toy-checkerboard"], methods=["srpo"], seeds=[1], profile="smoke", out=tmp_path,
                  device="cpu", reporter=Reporter(quiet=True))
    with pytest.raises(KeyboardInterrupt):
        executors.run_grid(**common)
    run_dir = tmp_path / "runs" / "smoke" / "toy-checkerboard" / "srpo" / "seed1"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    stages = tmp_path / "stages"
    assert list(stages.glob("IQLCriticStage.r1-*.pt")) and not list(stages.glob("SRPOPolicyStage.r1-*.pt"))
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no torn files

    monkeypatch.undo()
    executors.run_grid(**common)
    run = json.loads((run_dir / "run.json").read_text())
    origins = {s["stage"]: s["origin"] for s in run["stages"]}
    assert run["status"] == "finished"
    assert origins == {"behavior": "resumed", "critic": "resumed", "policy": "trained"}


def test_unknown_task_method_and_profile_are_one_line_errors(tmp_path: Path) -> None:
    line = one_line_error(invoke("run", "--envs", "hopper-medium-v9", "--out", str(tmp_path / "r")))
    assert "unknown task 'hopper-medium-v9'" in line
    line = one_line_error(invoke("run", "--envs", "toy", "--methods", "srpo,cql", "--out", str(tmp_path / "r")))
    assert "unknown method 'cql'" in line and "srpo" in line
    line = one_line_error(invoke("run", "--envs", "toy-two-moons", "--profile", "huge", "--seeds", "0",
                                 "--out", str(tmp_path / "r")))
    assert "unknown profile 'huge'" in line
    line = one_line_error(invoke("run", "--envs", "toy-two-moons", "--set", "srpo.betta=1", "--seeds", "0",
                                 "--out", str(tmp_path / "r")))
    assert "no setting 'betta'" in line
    assert not (tmp_path / "r" / "runs").exists()


@pytest.mark.parametrize(("setting", "expected"), [
    ("srpo.weighting=bogus", "srpo.weighting: expected one of sigma2, constant, score, got 'bogus'"),
    ("srpo.q_head=mena", "srpo.q_head: expected one of mean, min, got 'mena'"),
    ("srop.beta=0.1", "'srop' is not a method of this run (methods: srpo, idql)"),
    ("betta=0.1", "no method of this run (srpo, idql) has a setting 'betta'"),
    ("idql.num_candidates=many", "idql.num_candidates: expected int, got 'many'"),
    ("srpo.behavior_batch_size=0", "srpo: must be at least 1: behavior_batch_size=0"),
    ("idql.critic_source=srpo", "idql.critic_source: expected one of own, shared, got 'srpo'"),
])
def test_bad_settings_are_refused_before_anything_trains(tmp_path: Path, setting: str, expected: str) -> None:
    """Each bad --set is one line naming method, key and what is allowed; nothing is written (the validation
    resolves every (task, method) config and stage plan before the results folder is touched)."""
    out = tmp_path / "r"
    result = invoke("run", "--envs", "toy", "--methods", "srpo,idql", "--set", setting, "--seeds", "0",
                    "--profile", "smoke", "--out", str(out))
    assert expected in one_line_error(result)
    assert not out.exists()


def test_a_global_setting_applies_to_the_methods_that_have_it() -> None:
    from srpo_bench.config import parse_overrides

    overrides = parse_overrides(["beta=0.3", "critic_steps=7"], ["srpo", "idql", "bc"])
    assert overrides == {"srpo": {"beta": "0.3", "critic_steps": "7"}, "idql": {"critic_steps": "7"}, "bc": {}}


def write_hopper_file(folder: Path, rewards: np.ndarray, obs_dim: int = 11) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hopper_medium-v2.hdf5"
    n = len(rewards)
    with h5py.File(path, "w") as handle:
        handle["observations"] = np.zeros((n, obs_dim), dtype=np.float32)
        handle["actions"] = np.zeros((n, 3), dtype=np.float32)
        handle["rewards"] = rewards.astype(np.float32)
        handle["terminals"] = np.zeros(n, dtype=bool)
        handle["timeouts"] = np.zeros(n, dtype=bool)
    return path


def test_nan_dataset_names_the_file_and_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    rewards = np.ones(50)
    rewards[7] = np.nan
    path = write_hopper_file(tmp_path / "d4rl", rewards)
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))
    line = one_line_error(invoke("run", "--envs", "hopper-medium-v2", "--seeds", "0", "--out", str(tmp_path / "r")))
    assert str(path) in line and "NaN" in line
    assert not (tmp_path / "r" / "runs").exists()


def test_missing_d4rl_file_offline_names_the_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr("srpo_bench.data.d4rl.D4RL_URLS", {
        **__import__("srpo_bench.data.d4rl", fromlist=["D4RL_URLS"]).D4RL_URLS,
        "hopper-medium-v2": "http://127.0.0.1:9/hopper_medium-v2.hdf5"})
    line = one_line_error(invoke("run", "--envs", "hopper-medium-v2", "--seeds", "0", "--out", str(tmp_path / "r")))
    assert str(tmp_path / "empty") in line


def test_results_written_by_a_newer_version_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    (out / "srpo-bench.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    line = one_line_error(invoke("run", "--envs", "toy-two-moons", "--seeds", "0", "--profile", "smoke",
                                 "--out", str(out)))
    assert "newer srpo-bench" in line and str(out) in line
    line = one_line_error(invoke("report", str(out)))
    assert "newer srpo-bench" in line


def test_results_written_by_an_older_schema_are_refused_for_training(tmp_path: Path) -> None:
    """Schema 1 keyed stages by hand-picked fields: its checkpoints cannot be trusted to match schema 2's keys."""
    out = tmp_path / "results"
    out.mkdir()
    (out / "srpo-bench.json").write_text(json.dumps({"schema_version": 1}))
    line = one_line_error(invoke("run", "--envs", "toy-two-moons", "--seeds", "0", "--profile", "smoke",
                                 "--out", str(out)))
    assert "older srpo-bench (schema 1" in line and "another --out folder" in line
    assert sorted(p.name for p in out.iterdir()) == ["srpo-bench.json"]


def test_list_shows_suites_and_methods() -> None:
    result = invoke("list")
    assert result.exit_code == 0
    for word in ("toy", "locomotion-lite", "hopper-medium-v2", "srpo", "bc"):
        assert word in result.output


def test_lite_task_runs_end_to_end_on_small_collected_data(tmp_path: Path, monkeypatch) -> None:
    from srpo_bench.collect.lite import collect_suite

    monkeypatch.setenv("SRPO_BENCH_DATA_DIR", str(tmp_path / "data"))
    missing = invoke("run", "--envs", "lite-hopper-medium-replay-v0", "--seeds", "0", "--profile", "smoke",
                     "--out", str(tmp_path / "r"))
    assert "not collected yet" in one_line_error(missing)

    collect_suite(["hopper"], size="small", seed=0, workers=1, reporter=Reporter(quiet=True))
    out = tmp_path / "r"
    result = invoke("run", "--envs", "lite-hopper-medium-replay-v0", "--methods", "srpo", "--seeds", "0",
                    "--profile", "smoke", "--out", str(out), "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    run_dir = out / "runs" / "smoke" / "lite-hopper-medium-replay-v0" / "srpo" / "seed0"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["score_scale"] == "lite" and run["config"]["beta"] == 0.2  # hopper-medium-replay-v2's temperature
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert all(1 <= length <= 1000 for length in evaluation["lengths"]) and len(evaluation["returns"]) == 2


def test_a_rerun_skips_every_finished_method(tmp_path: Path) -> None:
    """Configs with tuple settings (SfBC's critic_hidden ...) must read back as equal, or reruns redo work."""
    out = tmp_path / "results"
    args = ("run", "--envs", "toy-two-moons", "--methods", "all", "--seeds", "0", "--profile", "smoke",
            "--out", str(out), "--device", "cpu", "--quiet")
    assert invoke(*args).exit_code == 0
    again = invoke(*args)
    finished = len(expand_methods("all"))  # every registered method (six with FQL)
    assert again.exit_code == 0 and f"0 finished, 0 failed, {finished} already finished" in again.output, \
        again.output
