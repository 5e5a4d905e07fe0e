"""D4RL hdf5 source: qlearning_dataset semantics, file layout, errors, cache paths, download, references."""

from __future__ import annotations

import io
import os
import urllib.error
from pathlib import Path

import h5py
import numpy as np
import pytest

from srpo_bench.data import d4rl
from srpo_bench.data.dataset import DatasetError
from srpo_bench.progress import Reporter
from srpo_bench.tasks import get_task, normalized_score

TASK = "hopper-medium-v2"


@pytest.fixture
def d4rl_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    return tmp_path


def indexed_arrays(n: int, terminal_rows: list[int], timeout_rows: list[int] | None) -> dict[str, np.ndarray]:
    """Row i has observation (i, -i), action (i%100 / 100, -i%100 / 100) and reward 10*i: kept rows are
    readable from any of them."""
    rows = np.arange(n, dtype=np.float32)
    arrays = {
        "observations": np.stack([rows, -rows], axis=1),
        "actions": np.stack([rows % 100 / 100, -(rows % 100) / 100], axis=1),
        "rewards": 10 * rows,
        "terminals": np.isin(np.arange(n), terminal_rows),
    }
    if timeout_rows is not None:
        arrays["timeouts"] = np.isin(np.arange(n), timeout_rows)
    return arrays


def reference_qlearning_rows(raw: dict[str, np.ndarray], max_episode_steps: int) -> list[int]:
    """d4rl.qlearning_dataset(env, terminate_on_end=False)'s loop, keeping only the row indices."""
    kept, episode_step = [], 0
    for i in range(len(raw["rewards"]) - 1):
        if "timeouts" in raw:  # noqa: SIM108 (kept in d4rl's shape)
            final_timestep = bool(raw["timeouts"][i])
        else:
            final_timestep = episode_step == max_episode_steps - 1
        if final_timestep:
            episode_step = 0
            continue
        if raw["terminals"][i]:
            episode_step = 0
        kept.append(i)
        episode_step += 1
    return kept


# --- qlearning_dataset semantics ---------------------------------------------------------------------
def test_timeouts_path_keeps_d4rl_rows(d4rl_dir: Path) -> None:
    # Trajectory A: rows 0-2, terminal at 2. B: rows 3-5, timeout at 5. C: rows 6-8, cut by the file end.
    arrays = indexed_arrays(9, terminal_rows=[2], timeout_rows=[5])
    d4rl.write_d4rl_hdf5(d4rl.dataset_path(TASK), arrays, {"algorithm": "hand-built"})

    dataset = d4rl.load_d4rl(TASK, download=False)

    kept = [0, 1, 2, 3, 4, 6, 7]  # 5: timeout step dropped; 8: the last row is always dropped
    np.testing.assert_array_equal(dataset.observations[:, 0], kept)
    np.testing.assert_array_equal(dataset.next_observations[:, 0], [k + 1 for k in kept])
    np.testing.assert_array_equal(dataset.rewards, [10 * k for k in kept])
    np.testing.assert_allclose(dataset.actions[:, 1], [-k / 100 for k in kept], rtol=1e-6)
    np.testing.assert_array_equal(dataset.terminals, [0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(dataset.episode_ends, [False, False, True, False, True, False, True])
    np.testing.assert_array_equal(dataset.episode_returns(), [0 + 10 + 20, 30 + 40, 60 + 70])
    assert dataset.name == TASK
    assert dataset.source == str(d4rl.dataset_path(TASK))
    assert dataset.metadata["algorithm"] == "hand-built"


def test_timeout_is_never_terminal_even_when_terminal_is_set() -> None:
    # d4rl skips a final (timeout) step before it looks at terminals.
    raw = indexed_arrays(5, terminal_rows=[1, 2], timeout_rows=[1])
    dataset = d4rl.qlearning_dataset(raw, "mem", "mem")
    np.testing.assert_array_equal(dataset.observations[:, 0], [0, 2, 3])
    np.testing.assert_array_equal(dataset.terminals, [0, 1, 0])
    np.testing.assert_array_equal(dataset.episode_ends, [True, True, True])


def test_no_timeouts_path_counts_episode_steps() -> None:
    # max_episode_steps=3 and a terminal at row 1. d4rl's counter restarts at 1 after a kept terminal
    # (reset to 0, then += 1), so the next final step comes one row early: row 3, then rows 6 and 9.
    raw = indexed_arrays(10, terminal_rows=[1], timeout_rows=None)
    dataset = d4rl.qlearning_dataset(raw, "mem", "mem", max_episode_steps=3)
    kept = [0, 1, 2, 4, 5, 7, 8]
    np.testing.assert_array_equal(dataset.observations[:, 0], kept)
    np.testing.assert_array_equal(dataset.next_observations[:, 0], [k + 1 for k in kept])
    np.testing.assert_array_equal(dataset.terminals, [0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(dataset.episode_ends, [False, True, True, False, True, False, True])


def test_no_timeouts_default_limit_is_1000_steps() -> None:
    raw = indexed_arrays(2500, terminal_rows=[], timeout_rows=None)
    dataset = d4rl.qlearning_dataset(raw, "mem", "mem")
    dropped = sorted(set(range(2500)) - set(dataset.observations[:, 0].astype(int).tolist()))
    assert dropped == [999, 1999, 2499]


@pytest.mark.parametrize("with_timeouts", [True, False])
def test_matches_d4rl_loop_on_random_boundaries(with_timeouts: bool) -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        n, limit = int(rng.integers(2, 80)), int(rng.integers(2, 9))
        raw = indexed_arrays(n, np.flatnonzero(rng.random(n) < 0.15).tolist(),
                             np.flatnonzero(rng.random(n) < 0.1).tolist() if with_timeouts else None)
        expected = reference_qlearning_rows(raw, limit)
        if not expected:
            continue
        dataset = d4rl.qlearning_dataset(raw, "mem", "mem", max_episode_steps=limit)
        np.testing.assert_array_equal(dataset.observations[:, 0], expected)
        np.testing.assert_array_equal(dataset.terminals, raw["terminals"][expected])


def test_stored_next_observations_are_ignored_like_d4rl() -> None:
    raw = indexed_arrays(4, terminal_rows=[], timeout_rows=[])
    raw["next_observations"] = np.full((4, 2), 99.0, dtype=np.float32)
    dataset = d4rl.qlearning_dataset(raw, "mem", "mem")
    np.testing.assert_array_equal(dataset.next_observations[:, 0], [1, 2, 3])


# --- file layout ---------------------------------------------------------------------------------------
def test_write_read_round_trip(tmp_path: Path) -> None:
    arrays = indexed_arrays(6, terminal_rows=[2], timeout_rows=[4])
    arrays["observations"] = arrays["observations"].astype(np.float64)
    arrays["next_observations"] = arrays["observations"] + 1
    arrays["infos/qpos"] = np.ones((6, 3))
    metadata = {"algorithm": "SAC", "ref_min_score": -20.5, "iteration": 7}
    path = tmp_path / "sub" / "hopper_medium-v2.hdf5"

    d4rl.write_d4rl_hdf5(path, arrays, metadata)

    assert os.listdir(path.parent) == [path.name]  # the temp file was renamed, nothing left behind
    raw = d4rl.read_hdf5(path)
    assert set(raw) == {"observations", "actions", "rewards", "terminals", "timeouts", "next_observations"}
    for key in raw:
        np.testing.assert_array_equal(raw[key], arrays[key])
    assert raw["observations"].dtype == np.float32 and raw["rewards"].dtype == np.float32
    assert raw["terminals"].dtype == bool and raw["timeouts"].dtype == bool
    assert d4rl.read_metadata(path) == metadata
    with h5py.File(path, "r") as file:
        np.testing.assert_array_equal(file["infos/qpos"][()], np.ones((6, 3)))
        assert file["metadata/algorithm"][()] == b"SAC"
        assert file.attrs["iteration"] == 7


def test_write_rejects_ragged_arrays(tmp_path: Path) -> None:
    arrays = indexed_arrays(5, terminal_rows=[], timeout_rows=[])
    arrays["rewards"] = arrays["rewards"][:4]
    with pytest.raises(ValueError, match="rewards"):
        d4rl.write_d4rl_hdf5(tmp_path / "x.hdf5", arrays, {})
    assert list(tmp_path.iterdir()) == []


# --- errors: one line naming the file and the problem ---------------------------------------------------
def _write_raw(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        for key, value in arrays.items():
            file.create_dataset(key, data=value)


def _broken_nan_rewards(path: Path) -> None:
    arrays = indexed_arrays(5, [], [])
    arrays["rewards"][2] = np.nan
    _write_raw(path, arrays)


def _broken_missing_key(path: Path) -> None:
    arrays = indexed_arrays(5, [], [])
    del arrays["terminals"]
    _write_raw(path, arrays)


def _broken_lengths(path: Path) -> None:
    arrays = indexed_arrays(5, [], [])
    arrays["actions"] = arrays["actions"][:4]
    _write_raw(path, arrays)


def _broken_actions(path: Path) -> None:
    arrays = indexed_arrays(5, [], [])
    arrays["actions"][1, 0] = 1.5
    _write_raw(path, arrays)


def _broken_zero_rows(path: Path) -> None:
    _write_raw(path, {key: value[:0] for key, value in indexed_arrays(5, [], []).items()})


def _broken_truncated(path: Path) -> None:
    _write_raw(path, indexed_arrays(500, [], []))
    path.write_bytes(path.read_bytes()[:1000])


BROKEN_FILES = {
    "missing key": (_broken_missing_key, "missing key(s) terminals"),
    "NaN reward": (_broken_nan_rewards, "'rewards' contains NaN or inf"),
    "lengths": (_broken_lengths, "'actions' has 4 rows but 'observations' has 5"),
    "actions out of range": (_broken_actions, "'actions' outside the action space [-1.0, 1.0]"),
    "no rows": (_broken_zero_rows, "dataset is empty"),
    "empty file": (lambda path: path.write_bytes(b""), "not a readable HDF5 file"),
    "not hdf5": (lambda path: path.write_text("observations,actions\n1,2\n"), "not a readable HDF5 file"),
    "truncated": (_broken_truncated, "not a readable HDF5 file"),
}


@pytest.mark.parametrize("case", list(BROKEN_FILES))
def test_broken_file_gives_one_line_error(d4rl_dir: Path, case: str) -> None:
    path = d4rl.dataset_path(TASK)
    path.parent.mkdir(parents=True, exist_ok=True)
    make_broken, problem = BROKEN_FILES[case]
    make_broken(path)

    with pytest.raises(DatasetError) as caught:
        d4rl.load_d4rl(TASK, download=False)

    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    assert "\n" not in message


def test_missing_file_without_download(d4rl_dir: Path) -> None:
    with pytest.raises(DatasetError, match="not found") as caught:
        d4rl.load_d4rl(TASK, download=False)
    assert str(d4rl_dir) in str(caught.value)


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="hopper-medium-replay-v2") as caught:
        d4rl.load_d4rl("hopper-medium-v9")
    assert "unknown D4RL task 'hopper-medium-v9'" in str(caught.value)


# --- names, paths, downloads -------------------------------------------------------------------------
def test_urls_follow_d4rl_file_names() -> None:
    base = "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2"
    assert d4rl.D4RL_URLS["hopper-medium-v2"] == f"{base}/hopper_medium-v2.hdf5"
    assert d4rl.D4RL_URLS["halfcheetah-medium-replay-v2"] == f"{base}/halfcheetah_medium_replay-v2.hdf5"
    assert d4rl.D4RL_URLS["walker2d-medium-expert-v2"] == f"{base}/walker2d_medium_expert-v2.hdf5"
    assert d4rl.D4RL_URLS["hopper-random-v2"] == f"{base}/hopper_random-v2.hdf5"
    assert d4rl.D4RL_URLS["walker2d-expert-v2"] == f"{base}/walker2d_expert-v2.hdf5"
    assert len(d4rl.D4RL_URLS) == 15


def test_dataset_path_honours_env_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    assert d4rl.dataset_path("walker2d-medium-expert-v2") == tmp_path / "walker2d_medium_expert-v2.hdf5"
    monkeypatch.delenv("D4RL_DATASET_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".d4rl" / "datasets" / "hopper_medium_replay-v2.hdf5"
    assert d4rl.dataset_path("hopper-medium-replay-v2") == expected


class FakeResponse(io.BytesIO):
    def __init__(self, payload: bytes, content_length: int) -> None:
        super().__init__(payload)
        self.headers = {"Content-Length": str(content_length)}


def test_download_writes_file_atomically(d4rl_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = os.urandom(3 * (1 << 20) + 17)  # more than one chunk
    requested: list[str] = []

    def fake_urlopen(url: str, timeout: float) -> FakeResponse:
        requested.append(url)
        return FakeResponse(payload, len(payload))

    monkeypatch.setattr(d4rl.urllib.request, "urlopen", fake_urlopen)
    path = d4rl.download("hopper-medium-replay-v2", Reporter(quiet=True))
    assert requested == [d4rl.D4RL_URLS["hopper-medium-replay-v2"]]
    assert path == d4rl_dir / "hopper_medium_replay-v2.hdf5"
    assert path.read_bytes() == payload
    assert sorted(p.name for p in d4rl_dir.iterdir()) == [path.name]


def test_short_download_leaves_no_file(d4rl_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(d4rl.urllib.request, "urlopen", lambda url, timeout: FakeResponse(b"abc", 10))
    with pytest.raises(DatasetError, match="connection closed after 3 of 10 bytes"):
        d4rl.download(TASK, Reporter(quiet=True))
    assert list(d4rl_dir.iterdir()) == []


def test_download_failure_names_the_folder(d4rl_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, timeout: float) -> FakeResponse:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(d4rl.urllib.request, "urlopen", offline)
    with pytest.raises(DatasetError) as caught:
        d4rl.load_d4rl(TASK)  # missing, so it tries to download

    message = str(caught.value)
    assert message == (
        f"{d4rl_dir / 'hopper_medium-v2.hdf5'}: not found and download from {d4rl.D4RL_URLS[TASK]} failed "
        f"([Errno -3] Temporary failure in name resolution); place the file in {d4rl_dir} "
        "or set D4RL_DATASET_DIR"
    )
    assert list(d4rl_dir.iterdir()) == []


def test_http_error_reports_the_status(d4rl_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def not_found(url: str, timeout: float) -> FakeResponse:
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)  # type: ignore[arg-type]

    monkeypatch.setattr(d4rl.urllib.request, "urlopen", not_found)
    with pytest.raises(DatasetError, match=r"failed \(HTTP Error 404: Not Found\); place the file in "):
        d4rl.download(TASK, Reporter(quiet=True))


# --- D4RL's normalization constants (d4rl/infos.py) ---------------------------------------------------
@pytest.mark.parametrize(
    ("task", "ref_min", "ref_max"),
    [
        ("hopper-medium-v2", -20.272305, 3234.3),
        ("hopper-medium-expert-v2", -20.272305, 3234.3),
        ("halfcheetah-medium-replay-v2", -280.178953, 12135.0),
        ("walker2d-medium-v2", 1.629008, 4592.3),
    ],
)
def test_reference_scores_are_d4rl_ones(task: str, ref_min: float, ref_max: float) -> None:
    assert get_task(task).reference_scores() == (ref_min, ref_max)
    scores = normalized_score(np.array([ref_min, ref_max, (ref_min + ref_max) / 2]), ref_min, ref_max)
    np.testing.assert_allclose(scores, [0.0, 100.0, 50.0])
