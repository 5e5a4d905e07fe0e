"""Every column a loader reads is type-checked (issue 27): D4RL hdf5, OGBench npz and Minari episodes.

One test per column and fault kind: a non-numeric dtype (byte strings), a wrong shape, a wrong length, a NaN, and
for flag columns (terminals, timeouts, terminations, truncations) a value other than 0/1. Each is refused with one
line that names the file and the column; a broken file given to `srpo-bench run` writes nothing."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from srpo_bench.cli import app
from srpo_bench.data import d4rl
from srpo_bench.data import minari as minari_source
from srpo_bench.data import ogbench as ogbench_source
from srpo_bench.data.dataset import DatasetError

N = 6
FAULTS = ("dtype", "shape", "length", "nonfinite")
FLAG_FAULTS = (*FAULTS, "values")


def broken(column: np.ndarray, fault: str) -> np.ndarray:
    """`column` with one fault of the given kind."""
    if fault == "dtype":  # what a converter writing text leaves: b"0"/b"1" (astype(bool) reads every one as True)
        return np.array([str(int(x)).encode() if np.ndim(x) == 0 else b"1" for x in column])
    if fault == "shape":
        return np.stack([column, column], axis=1) if column.ndim == 1 else column[:, :, None]
    if fault == "length":
        return column[:-1]
    if fault == "nonfinite":
        out = column.astype(np.float32).copy()
        out[2] = np.nan
        return out
    if fault == "values":
        out = column.astype(np.float32).copy()
        out[3] = 2.0
        return out
    raise AssertionError(fault)


def assert_one_line_naming(error: pytest.ExceptionInfo[DatasetError], path: Path | str, column: str) -> None:
    message = str(error.value)
    assert message.startswith(f"{path}: "), message
    assert f"'{column}" in message, message
    assert "\n" not in message


# --- D4RL hdf5 --------------------------------------------------------------------------------------------------
def d4rl_arrays() -> dict[str, np.ndarray]:
    rows = np.arange(N, dtype=np.float32)
    observations = np.stack([rows, -rows], axis=1)
    return {"observations": observations, "actions": np.full((N, 2), 0.5, np.float32), "rewards": rows,
            "terminals": np.isin(np.arange(N), [2]), "timeouts": np.isin(np.arange(N), [4]),
            "next_observations": observations + 1}


def write_hdf5(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        for key, value in arrays.items():
            file.create_dataset(key, data=value)


D4RL_CASES = [(column, fault) for column in ("observations", "actions", "rewards", "next_observations")
              for fault in FAULTS] + [(column, fault) for column in ("terminals", "timeouts") for fault in FLAG_FAULTS]


def test_a_good_d4rl_file_loads(tmp_path: Path) -> None:
    write_hdf5(tmp_path / "good.hdf5", d4rl_arrays())
    assert len(d4rl.load_file(tmp_path / "good.hdf5", "good")) == 4


@pytest.mark.parametrize(("column", "fault"), D4RL_CASES)
def test_d4rl_column_fault_is_refused(tmp_path: Path, column: str, fault: str) -> None:
    arrays = d4rl_arrays()
    arrays[column] = broken(arrays[column], fault)
    path = tmp_path / "broken.hdf5"
    write_hdf5(path, arrays)
    with pytest.raises(DatasetError) as caught:
        d4rl.load_file(path, "broken")
    assert_one_line_naming(caught, path, column)


def test_byte_string_terminals_in_a_lite_file_stop_run_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case: a D4RL-format file whose terminals are byte strings trained with every step terminal."""
    monkeypatch.setenv("SRPO_BENCH_DATA_DIR", str(tmp_path / "data"))
    arrays = d4rl_arrays()
    arrays["observations"] = np.zeros((N, 11), np.float32)
    arrays["next_observations"] = np.zeros((N, 11), np.float32)
    arrays["actions"] = np.zeros((N, 3), np.float32)
    arrays["terminals"] = broken(arrays["terminals"], "dtype")
    path = tmp_path / "data" / "lite" / "lite-hopper-medium-v0.hdf5"
    write_hdf5(path, arrays)
    with h5py.File(path, "a") as file:
        file.create_dataset("metadata/ref_min_score", data=0.0)
        file.create_dataset("metadata/ref_max_score", data=1.0)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", "--envs", "lite-hopper-medium-v0", "--methods", "bc", "--seeds", "0",
                                      "--profile", "smoke", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert str(path) in lines[0] and "'terminals'" in lines[0] and "dtype |S1" in lines[0], lines[0]
    assert not out.exists()


# --- OGBench npz ------------------------------------------------------------------------------------------------
def ogbench_arrays() -> dict[str, np.ndarray]:
    return {"observations": np.zeros((N, 4), np.float32), "actions": np.zeros((N, 2), np.float32),
            "terminals": np.isin(np.arange(N), [2, 5]), "qpos": np.zeros((N, 3), np.float32),
            "qvel": np.zeros((N, 3), np.float32), "button_states": np.zeros((N, 2), np.float32)}


OGBENCH_CASES = [(column, fault) for column in ("observations", "actions", "qpos", "qvel", "button_states")
                 for fault in FAULTS] + [("terminals", fault) for fault in FLAG_FAULTS]


@pytest.mark.parametrize(("column", "fault"), OGBENCH_CASES)
def test_ogbench_column_fault_is_refused_before_ogbench_reads_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, column: str, fault: str) -> None:
    monkeypatch.setenv("OGBENCH_DATA_DIR", str(tmp_path))
    arrays = ogbench_arrays()
    if column == "observations" and fault == "length":
        arrays = {key: value[:-1] if key != "observations" else value for key, value in arrays.items()}
        fault_column = "actions"  # observations set the length: the others are then one row longer than it
    else:
        arrays[column] = broken(arrays[column], fault)
        fault_column = column
    path = ogbench_source.dataset_path("cube-single")
    np.savez(path, **arrays)
    np.savez(ogbench_source.validation_path(path), **ogbench_arrays())
    with pytest.raises(DatasetError) as caught:
        ogbench_source.load_ogbench("cube-single-play-singletask-task1-v0")
    assert_one_line_naming(caught, path, fault_column)


def test_a_good_ogbench_file_passes_the_column_checks(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", **ogbench_arrays())
    ogbench_source.check_ogbench_file(tmp_path / "x.npz")


def test_ogbench_pickled_columns_are_refused_without_unpickling(tmp_path: Path) -> None:
    arrays: dict[str, Any] = ogbench_arrays()
    arrays["actions"] = np.array([None] * N, dtype=object)
    np.savez(tmp_path / "x.npz", **arrays)
    with pytest.raises(DatasetError, match="not a readable OGBench dataset"):
        ogbench_source.check_ogbench_file(tmp_path / "x.npz")


# --- Minari episodes --------------------------------------------------------------------------------------------
STEPS = 5


def minari_episode(episode_id: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        id=episode_id, observations={"observation": np.zeros((STEPS + 1, 3), np.float32),
                                     "achieved_goal": np.zeros((STEPS + 1, 2), np.float64)},
        actions=np.zeros((STEPS, 2), np.float32), rewards=np.array([0, 0, 1, 1, 0], np.float64),
        terminations=np.zeros(STEPS, bool), truncations=np.isin(np.arange(STEPS), [STEPS - 1]))


class FakeMinari:
    """What `load_minari` reads of a `MinariDataset`: metadata, the action space and the episodes."""

    def __init__(self, episodes: list[SimpleNamespace]) -> None:
        self.episodes = episodes
        self.storage = SimpleNamespace(metadata={"ref_min_score": 0.0, "ref_max_score": 1.0})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,))
        self.observation_space = gym.spaces.Dict({"observation": gym.spaces.Box(-np.inf, np.inf, (3,)),
                                                  "achieved_goal": gym.spaces.Box(-np.inf, np.inf, (2,))})

    def iterate_episodes(self) -> list[SimpleNamespace]:
        return self.episodes


def load_fake(monkeypatch: pytest.MonkeyPatch, episodes: list[SimpleNamespace], dataset_id: str = "srpotest/x-v0"):
    monkeypatch.setattr(minari_source, "open_dataset", lambda _: FakeMinari(episodes))
    return minari_source.load_minari(dataset_id)


MINARI_CASES = [(column, fault) for column in ("observations/achieved_goal", "actions", "rewards")
                for fault in FAULTS] + [(column, fault) for column in ("terminations", "truncations")
                                        for fault in FLAG_FAULTS]


@pytest.mark.parametrize(("column", "fault"), MINARI_CASES)
def test_minari_column_fault_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, column: str,
                                        fault: str) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    bad = minari_episode(1)
    if column.startswith("observations/"):
        leaf = column.split("/", 1)[1]
        bad.observations = {**bad.observations, leaf: broken(bad.observations[leaf], fault)}
    else:
        setattr(bad, column, broken(getattr(bad, column), fault))
    with pytest.raises(DatasetError) as caught:
        load_fake(monkeypatch, [minari_episode(0), bad])
    folder = minari_source.dataset_folder("srpotest/x-v0")
    message = str(caught.value)
    assert message.startswith(f"{folder}: ") and "\n" not in message, message
    if column == "rewards" and fault == "length":  # rewards set T: the other columns then disagree with them
        assert "episode 1" in message, message
    else:
        assert f"{column} (episode 1)" in message, message


# --- AntMaze terminals: D4RL -v2's "goal reached" by default ------------------------------------------------------
def test_antmaze_terminals_default_to_d4rl_goal_reached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """D4RL's relabel_antmaze_rewards.py writes terminals == sparse rewards; Minari's AntMaze terminations are never
    set (continuing task). The default rebuilds D4RL's terminals from the rewards, and cuts the episode there."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    monkeypatch.delenv("SRPO_BENCH_MINARI_TERMINALS", raising=False)
    dataset = load_fake(monkeypatch, [minari_episode(0)], "D4RL/antmaze/umaze-v1")
    assert dataset.terminals.tolist() == [0, 0, 1, 1, 0]
    assert dataset.episode_ends.tolist() == [False, False, True, True, True]
    assert dataset.metadata["terminals"].startswith("reward == 1")


def test_antmaze_terminals_can_follow_minari(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    monkeypatch.setenv("SRPO_BENCH_MINARI_TERMINALS", "minari")
    dataset = load_fake(monkeypatch, [minari_episode(0)], "D4RL/antmaze/umaze-v1")
    assert dataset.terminals.tolist() == [0, 0, 0, 0, 0]
    assert dataset.episode_ends.tolist() == [False, False, False, False, True]
    monkeypatch.setenv("SRPO_BENCH_MINARI_TERMINALS", "bogus")
    with pytest.raises(DatasetError, match="SRPO_BENCH_MINARI_TERMINALS: must be 'd4rl' or 'minari'"):
        load_fake(monkeypatch, [minari_episode(0)], "D4RL/antmaze/umaze-v1")


def test_other_minari_datasets_keep_their_terminations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    episode = minari_episode(0)
    episode.terminations = np.isin(np.arange(STEPS), [STEPS - 1])
    dataset = load_fake(monkeypatch, [episode], "mujoco/hopper/medium-v0")
    assert dataset.terminals.tolist() == [0, 0, 0, 0, 1]


def test_d4rl_terminals_rule_needs_sparse_rewards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    episode = minari_episode(0)
    episode.rewards = np.array([0, 0.5, 1, 1, 0])
    with pytest.raises(DatasetError, match="terminals rule 'd4rl'"):
        load_fake(monkeypatch, [episode], "D4RL/antmaze/umaze-v1")
