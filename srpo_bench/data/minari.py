"""Minari datasets (e.g. Minari's D4RL AntMaze ports) as `OfflineDataset`s, and their evaluation envs.

Minari stores whole episodes (T actions, T+1 observations); we shift observations within each episode
to get (s, a, r, s', done) with done = terminations: truncations (time limits) are not terminal, the
same rule as d4rl's qlearning_dataset (ALGORITHMS.md section 6.1). Scores use Minari's own reference
returns, never D4RL's: the envs and experts differ.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np

from srpo_bench.data.dataset import DatasetError, OfflineDataset, downloads_allowed

# Dict observations are concatenated in this key order, then any other keys in sorted order; nested
# dicts the same way, recursively. For AntMaze that is [ant state (27), achieved_goal = ant x-y (2),
# desired_goal = goal x-y (2)]. gymnasium's own `flatten_space` would use the Dict's sorted key order
# instead; we fix ours so that the dataset and the evaluation env can never disagree.
OBSERVATION_KEY_ORDER = ("observation", "achieved_goal", "desired_goal")


def _ordered_keys(keys: list[str]) -> list[str]:
    known = [key for key in OBSERVATION_KEY_ORDER if key in keys]
    return known + sorted(key for key in keys if key not in OBSERVATION_KEY_ORDER)


def flatten_observation(observation: Mapping | np.ndarray, batched: bool = False) -> np.ndarray:
    """One float32 vector per observation (a [T, dim] array when `batched`), keys in the order above.

    The dataset (episode arrays, `batched=True`) and the env wrapper (one observation) both call this."""
    if not isinstance(observation, Mapping):
        array = np.asarray(observation, dtype=np.float32)
        return array.reshape(len(array), -1) if batched else array.reshape(-1)
    parts = [flatten_observation(observation[key], batched) for key in _ordered_keys(list(observation))]
    return np.concatenate(parts, axis=-1)


def flatten_observation_space(space: gym.Space) -> gym.spaces.Box:
    """The Box that `flatten_observation` maps `space` into (bounds concatenated in the same order)."""
    if isinstance(space, gym.spaces.Box):
        return gym.spaces.Box(
            low=space.low.reshape(-1).astype(np.float32),
            high=space.high.reshape(-1).astype(np.float32),
            dtype=np.float32,
        )
    if isinstance(space, gym.spaces.Dict):
        parts = [flatten_observation_space(space[key]) for key in _ordered_keys(list(space.keys()))]
        return gym.spaces.Box(
            low=np.concatenate([part.low for part in parts]),
            high=np.concatenate([part.high for part in parts]),
            dtype=np.float32,
        )
    raise ValueError(f"cannot flatten observation space {space}: only Box and Dict of Box are supported")


class FlattenObservation(gym.ObservationWrapper):
    """Presents an env's (possibly Dict) observations as the flat vectors the dataset was built from."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = flatten_observation_space(env.observation_space)

    def observation(self, observation: Mapping | np.ndarray) -> np.ndarray:
        return flatten_observation(observation)


def datasets_root() -> Path:
    """Minari's local root: `$MINARI_DATASETS_PATH`, else `~/.minari/datasets` (minari/storage)."""
    configured = os.environ.get("MINARI_DATASETS_PATH")
    return Path(configured).expanduser() if configured else Path("~/.minari/datasets").expanduser()


def dataset_folder(dataset_id: str) -> Path:
    return datasets_root() / dataset_id


def open_dataset(dataset_id: str) -> minari.MinariDataset:
    """The local copy, else a download; a failure names the folder where Minari looks for it."""
    try:
        return minari.load_dataset(dataset_id, download=False)
    except FileNotFoundError:
        pass
    except Exception as error:  # present but unreadable: a partial copy or another Minari version
        raise DatasetError(
            dataset_folder(dataset_id), f"cannot read Minari dataset '{dataset_id}' ({_one_line(error)})"
        ) from error
    if not downloads_allowed():
        raise DatasetError(dataset_folder(dataset_id), f"Minari dataset '{dataset_id}' not found locally")
    try:
        minari.download_dataset(dataset_id)
        return minari.load_dataset(dataset_id, download=False)
    except Exception as error:  # network, remote-listing and version errors all mean "not available"
        raise DatasetError(
            dataset_folder(dataset_id),
            f"Minari dataset '{dataset_id}' not found locally and download failed ({_one_line(error)}); run "
            f"`minari download {dataset_id}` where there is internet, copy it into {datasets_root()} "
            "or set MINARI_DATASETS_PATH",
        ) from error


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def load_minari(dataset_id: str) -> OfflineDataset:
    """Transitions of every episode, with Minari's reference scores in `metadata`."""
    dataset = open_dataset(dataset_id)
    source = str(dataset_folder(dataset_id))
    stored = dataset.storage.metadata
    if stored.get("ref_min_score") is None or stored.get("ref_max_score") is None:
        raise DatasetError(
            source, f"Minari dataset '{dataset_id}' has no ref_min_score/ref_max_score to normalize scores"
        )
    action_space = dataset.action_space
    if not isinstance(action_space, gym.spaces.Box):
        raise DatasetError(source, f"needs a continuous Box action space, found {action_space}")

    columns: dict[str, list[np.ndarray]] = {
        key: [] for key in ("observations", "actions", "rewards", "next_observations", "terminals", "ends")
    }
    for episode in dataset.iterate_episodes():
        steps = len(episode)
        observations = flatten_observation(episode.observations, batched=True)
        if len(observations) != steps + 1:
            raise DatasetError(
                source, f"episode {episode.id} has {len(observations)} observations for {steps} steps "
                "(Minari stores T+1)"
            )
        columns["observations"].append(observations[:-1])
        columns["next_observations"].append(observations[1:])
        columns["actions"].append(np.asarray(episode.actions, dtype=np.float32).reshape(steps, -1))
        columns["rewards"].append(np.asarray(episode.rewards, dtype=np.float32).reshape(steps))
        columns["terminals"].append(np.asarray(episode.terminations, dtype=np.float32).reshape(steps))
        ends = np.zeros(steps, dtype=bool)
        ends[-1:] = True
        columns["ends"].append(ends)
    if not columns["rewards"]:
        raise DatasetError(source, f"Minari dataset '{dataset_id}' has no episodes")
    arrays = {key: np.concatenate(parts) for key, parts in columns.items()}
    return OfflineDataset(
        name=f"minari:{dataset_id}",
        source=source,
        observations=arrays["observations"],
        actions=arrays["actions"],
        rewards=arrays["rewards"],
        next_observations=arrays["next_observations"],
        terminals=arrays["terminals"],
        episode_ends=arrays["ends"],
        action_low=float(np.min(action_space.low)),
        action_high=float(np.max(action_space.high)),
        metadata={
            "minari_id": dataset_id,
            "ref_min_score": float(stored["ref_min_score"]),
            "ref_max_score": float(stored["ref_max_score"]),
            "num_episodes_average_score": stored.get("num_episodes_average_score"),
            "observation_key_order": list(OBSERVATION_KEY_ORDER),
        },
    )


def make_minari_env(dataset_id: str) -> gym.Env:
    """The dataset's evaluation env (`eval_env_spec`, else its collection env), observations flattened."""
    return FlattenObservation(open_dataset(dataset_id).recover_environment(eval_env=True))
