"""Reward transforms of the official codes, and the training view of a dataset that a stage config names.

    return_range  r * 1000 / (max - min episode return)   SRPO (`utils.return_range`), IDQL (`normalize_returns`)
    minus_one     r - 1                                   AntMaze in SRPO and IDQL
    none          r

The two codes split "episodes" differently for the return range (both are named settings, each method defaults
to its own):
    episode_limit  SRPO: walk the q-learning rows (timeout rows already dropped) and cut where `terminals` is
                   set or the running length reaches the env's `max_episode_steps`; the final partial segment
                   is discarded (`# returns.append(ep_ret)  # incomplete trajectory`).
    trajectory     IDQL (jaxrl5 `split_into_trajectories`): cut at the true trajectory ends (termination,
                   timeout, or a break between next_observations and observations), keeping the last one.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from srpo_bench.data.dataset import DatasetError, OfflineDataset
from srpo_bench.vocabulary import plural

RewardTransform = Literal["return_range", "minus_one", "none"]
ReturnSplit = Literal["episode_limit", "trajectory"]


def episode_limit_returns(rewards: np.ndarray, terminals: np.ndarray, max_episode_steps: int) -> np.ndarray:
    """Segment returns as SRPO's `return_range` counts them (complete segments only)."""
    returns: list[float] = []
    episode_return, episode_length = 0.0, 0
    for reward, terminal in zip(np.asarray(rewards, dtype=np.float64).tolist(),
                                np.asarray(terminals).astype(bool).tolist(), strict=True):
        episode_return += reward
        episode_length += 1
        if terminal or episode_length == max_episode_steps:
            returns.append(episode_return)
            episode_return, episode_length = 0.0, 0
    return np.asarray(returns)


def return_range(dataset: OfflineDataset, split: ReturnSplit, max_episode_steps: int) -> float:
    if split == "episode_limit":
        returns = episode_limit_returns(dataset.rewards, dataset.terminals, max_episode_steps)
    else:
        returns = dataset.episode_returns()
    if len(returns) == 0:
        raise DatasetError(dataset.source, f"no complete episode (terminal or {plural(max_episode_steps, 'step')}) to "
                           "scale rewards by; use return_split=trajectory")
    span = float(returns.max() - returns.min())
    if span <= 0:
        raise DatasetError(dataset.source, "all episodes have the same return; cannot scale rewards")
    return span


def transformed_rewards(dataset: OfflineDataset, transform: RewardTransform, split: ReturnSplit,
                        max_episode_steps: int) -> np.ndarray:
    if transform == "return_range":
        return (dataset.rewards * (1000.0 / return_range(dataset, split, max_episode_steps))).astype(np.float32)
    if transform == "minus_one":
        return (dataset.rewards - 1.0).astype(np.float32)
    return dataset.rewards.astype(np.float32)


def training_tensors(
    dataset: OfflineDataset,
    device: torch.device,
    transform: RewardTransform,
    split: ReturnSplit,
    max_episode_steps: int,
    train_fraction: float = 1.0,
    action_clip_eps: float = 0.0,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """The dataset as a stage trains on it: transformed rewards, then (IDQL) a random `train_fraction` of the
    rows (`ds.split(0.95)`, drawn after the reward transform) and actions clipped to +-(1 - action_clip_eps)."""
    tensors = dataset.tensors(device)
    tensors["rewards"] = torch.as_tensor(transformed_rewards(dataset, transform, split, max_episode_steps),
                                         device=device)
    if train_fraction < 1.0:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        size = len(dataset)
        index = torch.randperm(size, generator=generator)[: max(1, int(size * train_fraction))].to(device)
        tensors = {key: value[index] for key, value in tensors.items()}
    if action_clip_eps > 0:
        limit = 1.0 - action_clip_eps
        tensors["actions"] = tensors["actions"].clamp(-limit, limit)
    return tensors
