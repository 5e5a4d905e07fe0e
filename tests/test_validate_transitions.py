"""OfflineDataset's own checks (`validate_transitions`), on arrays built by hand: what `nox -s mutants -- data`
found untested (a one-row dataset, the next observations' width, the flags of `terminals`, the action box's two
sides and the row the message names, the file named in every message, the dtypes of the cast)."""

from __future__ import annotations

import numpy as np
import pytest

from srpo_bench.data.dataset import DatasetError, OfflineDataset


def arrays(rows: int = 3, obs: int = 2, act: int = 2) -> dict[str, np.ndarray]:
    return {"observations": np.zeros((rows, obs)), "actions": np.zeros((rows, act)), "rewards": np.zeros(rows),
            "next_observations": np.zeros((rows, obs)), "terminals": np.zeros(rows),
            "episode_ends": np.eye(1, rows, rows - 1, dtype=bool)[0]}


def dataset(rows: int = 3, **changes: np.ndarray | None) -> OfflineDataset:
    return OfflineDataset(name="hand", source="hand.hdf5", **{**arrays(rows), **changes})  # type: ignore[arg-type]


def test_a_one_row_dataset_is_accepted_and_cast() -> None:
    data = dataset(rows=1)
    assert len(data) == 1
    assert [getattr(data, key).dtype for key in ("observations", "actions", "rewards", "next_observations",
                                                 "terminals")] == [np.float32] * 5
    assert data.episode_ends.dtype == bool


@pytest.mark.parametrize(("changes", "message"), [
    ({"rewards": None}, "hand.hdf5: missing key 'rewards'"),
    ({"next_observations": np.zeros((3, 3))},
     "hand.hdf5: column 'next_observations' has shape (3, 3); expected [N, 2]"),  # the observations' width
    ({"terminals": np.array([0.0, 2.0, 0.0])},
     "hand.hdf5: column 'terminals' must hold only 0/1 or bool, found 2.0 at row 1"),
    ({"observations": np.zeros((0, 2))}, "hand.hdf5: dataset is empty (0 transitions)"),
])
def test_each_fault_is_one_line_naming_the_file_and_the_column(changes: dict, message: str) -> None:
    with pytest.raises(DatasetError) as refused:
        dataset(**changes)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


@pytest.mark.parametrize("value", [1.5, -1.5])
def test_actions_outside_either_side_of_the_box_name_their_first_row(value: float) -> None:
    actions = np.zeros((3, 2))
    actions[1, 1] = value
    actions[2, 0] = value
    with pytest.raises(DatasetError, match=rf"hand.hdf5: 'actions' outside the action space \[-1.0, 1.0\] "
                                           rf"\(first at row 1: \[0.0, {value}\]\)"):
        dataset(actions=actions)


def test_actions_on_the_box_within_its_tolerance_are_kept() -> None:
    actions = np.array([[1.00005, -1.00005], [1.0, -1.0], [0.0, 0.0]])
    assert dataset(actions=actions).actions.max() == np.float32(1.00005)


def test_episode_returns_split_on_episode_ends_and_close_an_unfinished_last_episode() -> None:
    rewards = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    data = dataset(rows=6, rewards=rewards, episode_ends=np.array([0, 0, 1, 0, 1, 0], dtype=bool))
    assert data.episode_returns().tolist() == [6.0, 9.0, 6.0]  # the last row ends its episode when unmarked
    assert data.episode_returns().dtype == np.float64
    whole = dataset(rows=6, rewards=rewards, episode_ends=np.zeros(6, dtype=bool))
    assert whole.episode_returns().tolist() == [21.0]


def test_the_fingerprint_follows_every_column() -> None:
    base = dataset().fingerprint()
    assert dataset().fingerprint() == base and len(base) == 16
    for key in ("observations", "actions", "rewards", "next_observations", "terminals"):
        changed = arrays()[key].copy()
        changed.flat[0] = 1.0
        assert dataset(**{key: changed}).fingerprint() != base, key
    assert dataset(episode_ends=np.array([1, 0, 1], dtype=bool)).fingerprint() != base
