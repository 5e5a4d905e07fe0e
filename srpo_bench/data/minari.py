"""Minari datasets (e.g. Minari's D4RL AntMaze ports) as `OfflineDataset`s, and their evaluation envs.

Minari stores whole episodes (T actions, T+1 observations); we shift observations within each episode
to get (s, a, r, s', done) with done = terminations: truncations (time limits) are not terminal, the
same rule as d4rl's qlearning_dataset. Scores use Minari's own reference
returns, never D4RL's: the envs and experts differ.

AntMaze terminals (`SRPO_BENCH_MINARI_TERMINALS`, default "d4rl"). The official codes (IQL, IDQL, SRPO, FQL)
bootstrap on `1 - terminals` of D4RL's AntMaze -v2 files, and there a terminal means "s' is at the goal":
D4RL's `scripts/generation/relabel_antmaze_rewards.py` writes both `rewards` and `terminals` as
`norm(obs[1:, :2] - target_goal) <= 0.5`, so `terminals == rewards` row by row (D4RL issue #199: "a
reward/terminal of 1 when the ant is near the goal"; the ant stays at the goal, hence runs of 1s). The Minari
port (`minari-dataset-generation-scripts`, `scripts/antmaze/create_antmaze_dataset.py`) collects with
`continuing_task=True, reset_target=False`, and Gymnasium-Robotics' `maze_v4.py` `compute_terminated` returns
False for continuing tasks: its `terminations` are never set, and its episodes end only in truncations
(the env's time limit or the script's checkpoint). Its sparse reward is `distance <= 0.45` on s'
(`compute_reward`), the same event as D4RL's terminal with a 0.45 instead of 0.5 radius. So:
    "d4rl"    terminal where the sparse reward is 1 (goal reached at s'): the semantics the official codes trained
              on; the episode is also cut there (D4RL's qlearning_dataset rows end a trajectory at a terminal).
    "minari"  Minari's `terminations` as stored (never set in AntMaze: every transition bootstraps).
Only AntMaze datasets (an id containing "antmaze") take the rule; other Minari datasets keep their terminations.
The -v0 timeouts bug of D4RL AntMaze (D4RL issue #77: timeouts out of sync with resets, fixed by the -v2 files,
D4RL PR #128) has no counterpart here: Minari stores episodes, and transitions never cross an episode boundary.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import gymnasium as gym
import minari
import numpy as np

from srpo_bench.data.dataset import DatasetError, OfflineDataset, check_column, downloads_allowed
from srpo_bench.vocabulary import plural

# Dict observations are concatenated in this key order, then any other keys in sorted order; nested
# dicts the same way, recursively. For AntMaze that is [ant state (27), achieved_goal = ant x-y (2),
# desired_goal = goal x-y (2)]. gymnasium's own `flatten_space` would use the Dict's sorted key order
# instead; we fix ours so that the dataset and the evaluation env can never disagree.
OBSERVATION_KEY_ORDER = ("observation", "achieved_goal", "desired_goal")

AntMazeTerminals = Literal["d4rl", "minari"]
ANTMAZE_TERMINALS: tuple[AntMazeTerminals, ...] = ("d4rl", "minari")
DEFAULT_ANTMAZE_TERMINALS: AntMazeTerminals = "d4rl"  # what the official codes trained on (module docstring)


def antmaze_terminals() -> AntMazeTerminals:
    """`$SRPO_BENCH_MINARI_TERMINALS`: "d4rl" (default) or "minari"; anything else is a one-line error."""
    rule = os.environ.get("SRPO_BENCH_MINARI_TERMINALS", DEFAULT_ANTMAZE_TERMINALS)
    if rule not in ANTMAZE_TERMINALS:
        raise DatasetError("SRPO_BENCH_MINARI_TERMINALS", f"must be 'd4rl' or 'minari', got '{rule}'")
    return rule  # type: ignore[return-value]


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

    rule = antmaze_terminals() if "antmaze" in dataset_id else "minari"
    columns: dict[str, list[np.ndarray]] = {
        key: [] for key in ("observations", "actions", "rewards", "next_observations", "terminals", "ends")
    }
    for episode in dataset.iterate_episodes():
        steps, columns_of_episode = _checked_episode(source, episode, dataset.observation_space, action_space)
        observations = flatten_observation(columns_of_episode["observations"], batched=True)
        columns["observations"].append(observations[:-1])
        columns["next_observations"].append(observations[1:])
        columns["actions"].append(np.asarray(columns_of_episode["actions"], dtype=np.float32).reshape(steps, -1))
        rewards = np.asarray(columns_of_episode["rewards"], dtype=np.float32).reshape(steps)
        columns["rewards"].append(rewards)
        if rule == "d4rl":
            check_column(source, f"rewards (episode {episode.id}; terminals rule 'd4rl' reads them as goal reached)",
                         rewards, "flags", (1,))
            terminals = rewards
        else:
            terminals = np.asarray(columns_of_episode["terminations"], dtype=np.float32).reshape(steps)
        columns["terminals"].append(terminals)
        ends = terminals.astype(bool) if rule == "d4rl" else np.zeros(steps, dtype=bool)
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
            "terminals": "reward == 1 (D4RL -v2 AntMaze: goal reached)" if rule == "d4rl"
            else "Minari terminations",
        },
    )


def _leaves(tree: object, prefix: str = "observations") -> dict[str, object]:
    """{column name: leaf} of a (possibly nested Dict) observation or observation space:
    'observations/achieved_goal', or just 'observations' for a plain array / Box."""
    if isinstance(tree, Mapping | gym.spaces.Dict):
        return {name: leaf for key in _ordered_keys(list(tree.keys()))
                for name, leaf in _leaves(tree[key], f"{prefix}/{key}").items()}
    return {prefix: tree}


def _checked_episode(source: str, episode: object, observation_space: gym.Space,
                     action_space: gym.spaces.Box) -> tuple[int, dict[str, object]]:
    """An episode's columns, each checked before any cast (`dataset.check_column`): T+1 observations (every leaf of
    a Dict, shaped as the dataset's observation space says), T actions of the action space's shape, T rewards,
    terminations and truncations (bool or 0/1). Returns T and the columns."""
    tag = f"(episode {getattr(episode, 'id', '?')})"
    rewards = check_column(source, f"rewards {tag}", getattr(episode, "rewards", None), "values", (1,))
    steps = len(rewards)
    observations = getattr(episode, "observations", None)
    spaces = _leaves(observation_space)
    for name, leaf in _leaves(observations).items():
        space = spaces.get(name)
        if not isinstance(space, gym.spaces.Box):
            raise DatasetError(source, f"column '{name} {tag}' is not in the dataset's observation space "
                               f"({observation_space})")
        array = check_column(source, f"{name} {tag}", leaf, "values", (1 + len(space.shape),))
        if len(array) != steps + 1:
            raise DatasetError(source, f"'{name} {tag}' has {plural(len(array), 'row')} for "
                               f"{plural(steps, 'step')} (Minari stores T+1 observations)")
        if array.shape[1:] != space.shape:
            raise DatasetError(source, f"column '{name} {tag}' has shape {array.shape}; expected "
                               f"[{steps + 1}, {', '.join(map(str, space.shape))}] (the observation space)")
    actions = check_column(source, f"actions {tag}", getattr(episode, "actions", None), "values",
                           (1 + len(action_space.shape),), rows=steps, rows_of=f"rewards {tag}")
    if actions.shape[1:] != action_space.shape:
        raise DatasetError(source, f"column 'actions {tag}' has shape {actions.shape}; expected "
                           f"[{steps}, {', '.join(map(str, action_space.shape))}] (the action space)")
    for key in ("terminations", "truncations"):
        check_column(source, f"{key} {tag}", getattr(episode, key, None), "flags", (1,), rows=steps,
                     rows_of=f"rewards {tag}")
    return steps, {"observations": observations, "actions": actions, "rewards": rewards,
                   "terminations": episode.terminations}  # type: ignore[attr-defined]


def make_minari_env(dataset_id: str) -> gym.Env:
    """The dataset's evaluation env (`eval_env_spec`, else its collection env), observations flattened."""
    return FlattenObservation(open_dataset(dataset_id).recover_environment(eval_env=True))
