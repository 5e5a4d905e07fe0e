"""Every bad input is one line, a non-zero exit, no traceback and nothing written (the table in docs/faults.md).

Each case here was a traceback or a silent acceptance before: seeds out of range or empty, a setting that failed
only after two stages trained, --out on a file or on a folder holding other things, a full disk, bad `speed`
options found after training, `report --format bogus`, damaged store JSON, data of another task.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_cli import invoke, one_line_error, write_hopper_file

TOY = ("--envs", "toy-two-moons", "--methods", "bc", "--profile", "smoke", "--device", "cpu", "--quiet")


def finished_store(tmp_path: Path) -> Path:
    out = tmp_path / "results"
    result = invoke("run", *TOY, "--seeds", "0", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("args", "expected"), [
    (("--seeds=-1,0",), "--seeds: -1 is out of range"),
    (("--seeds", "3-1"), "--seeds range '3-1' is empty (1 < 3)"),
    (("--seeds", ","), "--seeds expects '0,1,2' or '0-4'"),
    (("--seeds", "1,x"), "--seeds expects '0,1,2' or '0-4'"),
    (("--seeds", "0", "--set", "bc.lr=-1"), "bc: must be in (0, inf): lr=-1"),
    (("--seeds", "0", "--set", "srpo.policy_lr=0"), "'srpo' is not a method of this run"),
    (("--seeds", "0", "--jobs", "0"), "--jobs must be at least 1, got 0"),
    (("--seeds", "0", "--threads", "-1"), "--threads must be at least 0, got -1"),
    (("--seeds", "0", "--executor", "slurm"), "unknown --executor 'slurm' (choose local, ray)"),
    (("--seeds", "0", "--gpus-per-run", "-0.5"), "--gpus-per-run must be at least 0, got -0.5"),
    (("--seeds", "0", "--max-retries", "-1"), "--max-retries must be at least 0, got -1"),
    (("--seeds", "0", "--runtime", "tensorrt"), "unknown --runtime 'tensorrt' (choose eager, compiled, onnx)"),
])
def test_bad_run_options_are_one_line_and_write_nothing(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    out = tmp_path / "r"
    line = one_line_error(invoke("run", *TOY, "--out", str(out), *args))
    assert expected in line
    assert not out.exists()


def test_a_setting_that_used_to_fail_after_two_stages_is_refused_up_front(tmp_path: Path) -> None:
    """srpo.policy_lr=-1 reached torch.optim.Adam only in SRPO's third stage; now every range is checked first."""
    out = tmp_path / "r"
    line = one_line_error(invoke("run", "--envs", "toy-two-moons", "--methods", "srpo", "--seeds", "0",
                                 "--profile", "smoke", "--set", "srpo.policy_lr=-1", "--out", str(out)))
    assert "srpo: must be in (0, inf): policy_lr=-1" in line and not out.exists()
    for setting, expected in [("srpo.expectile=1.5", "expectile=1.5"), ("srpo.gamma=2", "gamma=2"),
                              ("idql.actor_dropout=1", "actor_dropout=1"), ("srpo.beta=nan", "expected float"),
                              ("fql.lr=-1", "lr=-1"), ("fql.tau=0", "tau=0")]:
        method = setting.split(".")[0]
        line = one_line_error(invoke("run", "--envs", "toy-two-moons", "--methods", method, "--seeds", "0",
                                     "--profile", "smoke", "--set", setting, "--out", str(out)))
        assert expected in line and not out.exists()


def test_out_pointing_at_a_file_or_at_a_folder_of_other_things(tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    line = one_line_error(invoke("run", *TOY, "--seeds", "0", "--out", str(a_file)))
    assert f"{a_file}: is a file, not a folder" in line and a_file.read_text() == "mine"

    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("x")
    line = one_line_error(invoke("run", *TOY, "--seeds", "0", "--out", str(folder)))
    assert "not empty (chapter1.tex) and not an srpo-bench results folder" in line
    assert sorted(p.name for p in folder.iterdir()) == ["chapter1.tex"]  # not turned into a store


def test_data_of_another_task_is_refused_before_anything_is_written(tmp_path: Path, monkeypatch) -> None:
    write_hopper_file(tmp_path / "d4rl", np.ones(50), obs_dim=17)  # walker2d-shaped data under hopper's name
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))
    out = tmp_path / "r"
    line = one_line_error(invoke("run", "--envs", "hopper-medium-v2", "--seeds", "0", "--out", str(out)))
    assert "hopper_medium-v2.hdf5" in line and "'observations' have 17 columns" in line and "has 11" in line
    assert not out.exists()  # not even the store marker


def test_a_full_disk_is_one_line_not_torch_unexpected_pos(tmp_path: Path, monkeypatch) -> None:
    """torch.save on a full disk raises `RuntimeError: ... unexpected pos`; the store names file and cause."""
    import shutil

    import torch

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 128 vs 64")

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    out = tmp_path / "r"
    line = one_line_error(invoke("run", *TOY, "--seeds", "0", "--out", str(out)))
    assert "cannot write (no space left on device)" in line and ".pt" in line
    assert not list(out.rglob("*.tmp"))


def test_a_read_only_destination_is_one_line(tmp_path: Path, monkeypatch) -> None:
    import os

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    line = one_line_error(invoke("run", *TOY, "--seeds", "0", "--out", str(tmp_path / "r")))
    assert "cannot write here (permission denied)" in line
    assert not (tmp_path / "r").exists()


def test_speed_options_are_checked_before_anything_trains(tmp_path: Path) -> None:
    out = tmp_path / "r"
    for args, expected in [(("--batch-sizes", "1,x"), "--batch-sizes expects positive integers like '1,256'"),
                           (("--batch-sizes", "0"), "--batch-sizes expects positive integers"),
                           (("--repeats", "0"), "--repeats must be at least 3, got 0"),
                           (("--max-seconds", "0"), "--max-seconds must be more than 0")]:
        line = one_line_error(invoke("speed", "--methods", "bc", "--out", str(out), "--device", "cpu", *args))
        assert expected in line
        assert not out.exists()


def test_report_format_bogus_is_refused(tmp_path: Path) -> None:
    out = finished_store(tmp_path)
    line = one_line_error(invoke("report", "--out", str(out), "--format", "md,bogus"))
    assert "bogus" in line and not (out / "leaderboard").exists()


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda run: [run], "expected a JSON object, found list"),
    (lambda run: {k: v for k, v in run.items() if k != "config"}, "missing key 'config'"),
    (lambda run: {**run, "status": 3}, "'status' has the wrong type (int)"),
])
def test_damaged_store_json_is_one_line(tmp_path: Path, damage, expected: str) -> None:
    out = finished_store(tmp_path)
    record = out / "runs" / "smoke" / "toy-two-moons" / "bc" / "seed0" / "run.json"
    record.write_text(json.dumps(damage(json.loads(record.read_text()))))
    before = snapshot(out)
    line = one_line_error(invoke("run", *TOY, "--seeds", "0", "--out", str(out)))
    assert str(record) in line and expected in line and "damaged" in line
    assert snapshot(out) == before


def test_a_damaged_store_marker_is_one_line(tmp_path: Path) -> None:
    out = finished_store(tmp_path)
    (out / "srpo-bench.json").write_text("[1, 2]")
    line = one_line_error(invoke("run", *TOY, "--seeds", "0", "--out", str(out)))
    assert "srpo-bench.json: expected a JSON object, found list" in line


def test_a_finished_run_is_not_replaced_by_other_settings_without_force(tmp_path: Path) -> None:
    out = finished_store(tmp_path)
    before = snapshot(out)
    line = one_line_error(invoke("run", *TOY, "--seeds", "0", "--out", str(out), "--set", "bc.lr=0.001"))
    assert "seed0: finished with other settings (lr 0.0003 -> 0.001)" in line and "--force" in line
    assert snapshot(out) == before
    forced = invoke("run", *TOY, "--seeds", "0", "--out", str(out), "--set", "bc.lr=0.001", "--force")
    assert forced.exit_code == 0 and "1 finished, 0 failed, 0 already finished" in forced.output, forced.output
    run = json.loads((out / "runs" / "smoke" / "toy-two-moons" / "bc" / "seed0" / "run.json").read_text())
    assert run["config"]["lr"] == 0.001


def test_ray_missing_is_a_one_line_install_hint(tmp_path: Path, monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    line = one_line_error(invoke("run", *TOY, "--seeds", "0", "--out", str(tmp_path / "r"), "--executor", "ray"))
    assert "pip install 'srpo-bench[ray]'" in line and not (tmp_path / "r").exists()
