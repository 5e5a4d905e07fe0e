"""Evaluation episodes and normalized scores, the same loop for every method.

As in SRPO's `pallaral_simple_eval_policy` (thu-ml/SRPO `utils.py`): all episodes run side by side, the
policy sees one batch per step made of the observations of the envs still running, and env i is reset
with the fixed seed `seed_base + i` (1001, 1002, ... by default) whatever the method or training seed.
Envs are a plain list, not a gymnasium vector env: on 2 cores vector envs are no faster (measured),
and the batching that matters is the policy's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from srpo_bench.core.agents import Agent
from srpo_bench.data.dataset import OfflineDataset
from srpo_bench.progress import Reporter
from srpo_bench.tasks import Task, normalized_score
from srpo_bench.vocabulary import plural

OFFICIAL_EVAL_SEED_BASE = 1001  # SRPO's train_policy.py evaluates on env seeds 1001..1020


@dataclass
class EvalResult:
    """Per-episode returns (raw and normalized x100), lengths and the env seeds, in episode order."""

    returns: list[float]
    normalized: list[float]
    lengths: list[int]
    episodes: int
    seeds: list[int]
    seconds: float
    reference_scores: tuple[float, float] | None = None  # (ref_min, ref_max) used to normalize

    @property
    def mean_normalized(self) -> float:
        return float(np.mean(self.normalized))

    @property
    def std_normalized(self) -> float:
        """Population std over episodes (ddof=0): the spread of this evaluation, not an error bar."""
        return float(np.std(self.normalized))

    def to_dict(self) -> dict[str, Any]:
        return {
            "episodes": self.episodes, "seeds": list(self.seeds),
            "returns": [float(r) for r in self.returns], "normalized": [float(s) for s in self.normalized],
            "lengths": [int(n) for n in self.lengths],
            "mean_return": float(np.mean(self.returns)), "mean_normalized": self.mean_normalized,
            "std_normalized": self.std_normalized,
            "ref_min_score": None if self.reference_scores is None else float(self.reference_scores[0]),
            "ref_max_score": None if self.reference_scores is None else float(self.reference_scores[1]),
            "seconds": float(self.seconds),
        }


class NonFiniteActions(ValueError):
    """The policy returned NaN or inf: a diverged run, recorded as failed by the runner."""


def evaluate(
    agent: Agent,
    task: Task,
    episodes: int,
    reporter: Reporter | None = None,
    seed_base: int = OFFICIAL_EVAL_SEED_BASE,
    dataset: OfflineDataset | None = None,
) -> EvalResult:
    """Run `episodes` episodes of `task` with `agent`; env i is reset with seed `seed_base + i`.

    `dataset` supplies the reference scores of tasks that keep them in the data's metadata (Minari,
    lite); pass it to avoid loading the data again.
    """
    if episodes < 1:
        raise ValueError(f"evaluation needs at least one episode, got {episodes}")
    reference = task.reference_scores(dataset)
    started = time.perf_counter()
    envs = [task.make_env() for _ in range(episodes)]
    try:
        returns, lengths = _run_episodes(agent, task, envs, seed_base, reporter or Reporter(quiet=True))
    finally:
        for env in envs:
            env.close()
    return EvalResult(
        returns=returns, normalized=normalized_score(np.array(returns), *reference).tolist(),
        lengths=lengths, episodes=episodes, seeds=[seed_base + i for i in range(episodes)],
        seconds=time.perf_counter() - started, reference_scores=reference,
    )


def _run_episodes(
    agent: Agent, task: Task, envs: list[gym.Env], seed_base: int, reporter: Reporter
) -> tuple[list[float], list[int]]:
    observations = [_as_vector(env.reset(seed=seed_base + i)[0], task) for i, env in enumerate(envs)]
    low, high = _action_bounds(envs[0], task)
    returns, lengths = [0.0] * len(envs), [0] * len(envs)
    running = list(range(len(envs)))
    label = f"{task.name} evaluation ({plural(len(envs), 'episode')})"
    with reporter.track(label, len(envs) * task.max_episode_steps) as bar:
        while running:
            actions = _act(agent, np.stack([observations[i] for i in running]), low.shape[0], task)
            still_running = []
            for i, action in zip(running, np.clip(actions, low, high), strict=True):
                observation, reward, terminated, truncated, _ = envs[i].step(action)
                returns[i] += float(reward)
                lengths[i] += 1
                observations[i] = _as_vector(observation, task)
                # The task's TimeLimit lives in make_env; the length check guards envs made without one.
                if not (terminated or truncated or lengths[i] >= task.max_episode_steps):
                    still_running.append(i)
            bar.advance(len(running))
            running = still_running
    return returns, lengths


def _act(agent: Agent, observations: np.ndarray, act_dim: int, task: Task) -> np.ndarray:
    """One batched `agent.act` call: float32 on the agent's device, no autograd."""
    with torch.inference_mode():
        batch = torch.as_tensor(observations, dtype=torch.float32, device=agent.device)
        actions = agent.act(batch).detach().to("cpu", torch.float32).numpy()
    if actions.shape != (len(observations), act_dim):
        raise ValueError(
            f"{task.name}: the agent returned actions of shape {actions.shape} for {len(observations)} "
            f"observations; expected ({len(observations)}, {act_dim})"
        )
    if not np.isfinite(actions).all():
        raise NonFiniteActions(f"{task.name}: the agent returned NaN or inf actions")
    return actions


def _as_vector(observation: Any, task: Task) -> np.ndarray:
    if isinstance(observation, dict):
        raise ValueError(
            f"{task.name}: the env returns dict observations; its make_env must flatten them to a vector"
        )
    return np.asarray(observation, dtype=np.float32).reshape(-1)


def _action_bounds(env: gym.Env, task: Task) -> tuple[np.ndarray, np.ndarray]:
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"{task.name}: evaluation needs a continuous (Box) action space, got {space}")
    return space.low.astype(np.float32).reshape(-1), space.high.astype(np.float32).reshape(-1)
