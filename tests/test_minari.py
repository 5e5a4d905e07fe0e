"""Minari source: a tiny local dataset built from our own arrays, loaded back offline."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

from srpo_bench.data.dataset import DatasetError
from srpo_bench.data.minari import (
    flatten_observation,
    flatten_observation_space,
    load_minari,
    make_minari_env,
)
from srpo_bench.tasks import get_task

PENDULUM_ID = "srpotest/pendulum/tiny-v0"
# Two Pendulum episodes: 3 steps ending in a termination, 4 steps ending in a truncation.
EPISODE_STEPS = (3, 4)


@pytest.fixture
def minari_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    return tmp_path


def pendulum_buffers() -> list[EpisodeBuffer]:
    buffers, first_row = [], 0
    for episode_id, steps in enumerate(EPISODE_STEPS):
        # observation row k of the whole file is (k, k+0.5, -k): easy to follow through the shift
        rows = np.arange(first_row, first_row + steps + 1, dtype=np.float32)
        first_row += steps + 1
        terminated = episode_id == 0
        buffers.append(
            EpisodeBuffer(
                id=episode_id,
                observations=np.stack([rows, rows + 0.5, -rows], axis=1),
                actions=np.linspace(-2.0, 2.0, steps, dtype=np.float32).reshape(steps, 1),
                rewards=[float(-r) for r in rows[:-1]],
                terminations=[False] * (steps - 1) + [terminated],
                truncations=[False] * (steps - 1) + [not terminated],
            )
        )
    return buffers


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_round_trip_through_a_local_minari_dataset(minari_root: Path) -> None:
    minari.create_dataset_from_buffers(
        PENDULUM_ID, pendulum_buffers(), env="Pendulum-v1", ref_min_score=-1500.0, ref_max_score=-150.0,
        algorithm_name="hand-built",
    )

    dataset = load_minari(PENDULUM_ID)

    # episode 0 holds observation rows 0-3, episode 1 rows 4-8; s = obs[:-1], s' = obs[1:] per episode
    np.testing.assert_array_equal(dataset.observations[:, 0], [0, 1, 2, 4, 5, 6, 7])
    np.testing.assert_array_equal(dataset.next_observations[:, 0], [1, 2, 3, 5, 6, 7, 8])
    np.testing.assert_array_equal(dataset.observations[:, 1], [0.5, 1.5, 2.5, 4.5, 5.5, 6.5, 7.5])
    np.testing.assert_array_equal(dataset.rewards, [0, -1, -2, -4, -5, -6, -7])
    np.testing.assert_allclose(dataset.actions[:, 0], [-2, 0, 2, -2, -2 / 3, 2 / 3, 2], rtol=1e-6)
    np.testing.assert_array_equal(dataset.terminals, [0, 0, 1, 0, 0, 0, 0])  # truncation is not terminal
    np.testing.assert_array_equal(dataset.episode_ends, [False, False, True, False, False, False, True])
    assert (dataset.action_low, dataset.action_high) == (-2.0, 2.0)  # Pendulum's torque bounds
    assert dataset.metadata["ref_min_score"] == -1500.0
    assert dataset.metadata["ref_max_score"] == -150.0
    assert dataset.source == str(minari_root / PENDULUM_ID)

    task = get_task(f"minari:{PENDULUM_ID}")
    assert task.score_scale == "minari"
    assert task.reference_scores(dataset) == (-1500.0, -150.0)

    env = make_minari_env(PENDULUM_ID)
    observation, _ = env.reset(seed=0)
    assert observation.shape == (3,) and env.observation_space.shape == (3,)
    env.close()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_dataset_without_reference_scores_is_refused(minari_root: Path) -> None:
    minari.create_dataset_from_buffers(PENDULUM_ID, pendulum_buffers(), env="Pendulum-v1")
    with pytest.raises(DatasetError, match="has no ref_min_score/ref_max_score") as caught:
        load_minari(PENDULUM_ID)
    assert str(caught.value).startswith(str(minari_root / PENDULUM_ID))


def test_missing_dataset_names_the_local_folder(minari_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(dataset_id: str) -> None:
        raise ConnectionError("Failed to establish a new connection:\n [Errno -3] name resolution")

    monkeypatch.setattr(minari, "download_dataset", offline)
    with pytest.raises(DatasetError) as caught:
        load_minari("D4RL/antmaze/umaze-v1")
    message = str(caught.value)
    assert message.startswith(f"{minari_root / 'D4RL/antmaze/umaze-v1'}: ")
    assert "download failed (Failed to establish a new connection: [Errno -3] name resolution)" in message
    assert str(minari_root) in message and "MINARI_DATASETS_PATH" in message
    assert "\n" not in message


def test_unreadable_local_dataset_is_reported(minari_root: Path) -> None:
    data = minari_root / "srpotest" / "broken" / "tiny-v0" / "data"
    data.mkdir(parents=True)
    (data / "metadata.json").write_text("{not json")
    with pytest.raises(DatasetError, match="cannot read Minari dataset 'srpotest/broken/tiny-v0'") as caught:
        load_minari("srpotest/broken/tiny-v0")
    assert str(caught.value).startswith(f"{data.parent}: ") and "\n" not in str(caught.value)


# --- dict observations (AntMaze's observation / achieved_goal / desired_goal) ----------------------------
def test_flatten_order_is_observation_achieved_desired_then_sorted_rest() -> None:
    single = {
        "desired_goal": np.array([7.0, 8.0]),
        "zeta": np.array([10.0]),
        "achieved_goal": np.array([4.0, 5.0]),
        "extra": np.array([9.0]),
        "observation": np.array([1.0, 2.0, 3.0]),
    }
    np.testing.assert_array_equal(flatten_observation(single), [1, 2, 3, 4, 5, 7, 8, 9, 10])
    batched = {key: np.stack([value, 2 * value]) for key, value in single.items()}
    np.testing.assert_array_equal(flatten_observation(batched, batched=True)[1], [2, 4, 6, 8, 10, 14, 16, 18, 20])

    space = gym.spaces.Dict({
        "observation": gym.spaces.Box(-1.0, 1.0, (3,)),
        "achieved_goal": gym.spaces.Box(-5.0, 5.0, (2,)),
        "desired_goal": gym.spaces.Box(-9.0, 9.0, (2,)),
    })
    flat = flatten_observation_space(space)
    np.testing.assert_array_equal(flat.high, [1, 1, 1, 5, 5, 9, 9])
    sample = space.sample()
    assert flat.contains(flatten_observation(sample))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_dict_observation_dataset_is_flattened(minari_root: Path) -> None:
    space = gym.spaces.Dict({
        "observation": gym.spaces.Box(-10.0, 10.0, (2,), np.float32),
        "achieved_goal": gym.spaces.Box(-10.0, 10.0, (2,), np.float32),
        "desired_goal": gym.spaces.Box(-10.0, 10.0, (2,), np.float32),
    })
    steps = np.arange(3, dtype=np.float32)[:, None]
    buffer = EpisodeBuffer(
        id=0,
        observations={"observation": np.hstack([steps, steps]), "achieved_goal": np.hstack([steps, -steps]),
                      "desired_goal": np.full((3, 2), 5.0, dtype=np.float32)},
        actions=np.zeros((2, 1), dtype=np.float32), rewards=[0.0, 1.0],
        terminations=[False, True], truncations=[False, False],
    )
    created = minari.create_dataset_from_buffers(
        "srpotest/dict/tiny-v0", [buffer], observation_space=space,
        action_space=gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
    )
    # without an env, Minari stores no reference scores; add them as a dataset author would
    created.storage.update_metadata({"ref_min_score": 0.0, "ref_max_score": 1.0})

    dataset = load_minari("srpotest/dict/tiny-v0")
    np.testing.assert_array_equal(dataset.observations, [[0, 0, 0, 0, 5, 5], [1, 1, 1, -1, 5, 5]])
    np.testing.assert_array_equal(dataset.next_observations[1], [2, 2, 2, -2, 5, 5])
    np.testing.assert_array_equal(dataset.terminals, [0, 1])
