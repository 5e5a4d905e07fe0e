"""Behavior data from a policy: lite envs stepped in lockstep, complete episodes in D4RL's layout.

Behaviour actions are draws from the SAC Gaussian (as D4RL sampled its SAC policies) or uniform random
actions. Rollouts keep complete episodes only, so the returns they report are true episode returns. Every
seed is derived from names (seed, env, stage), never from positions, so any subset of a collection
reproduces on its own.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from srpo_bench.collect.sac import GaussianActor
from srpo_bench.data.lite import LITE_GYMNASIUM_ENVS, MAX_EPISODE_STEPS
from srpo_bench.envs import make_env

BatchPolicy = Callable[[np.ndarray], np.ndarray]  # [k, obs_dim] float32 -> [k, act_dim] in [-1, 1]


def make_lite_env(env: str) -> gym.Env:
    made = make_env(LITE_GYMNASIUM_ENVS[env], MAX_EPISODE_STEPS)
    space = made.action_space
    if not (np.all(space.low == -1.0) and np.all(space.high == 1.0)):
        raise ValueError(f"{LITE_GYMNASIUM_ENVS[env]}: action space must be [-1, 1], got {space}")
    return made


@dataclass
class Episodes:
    """Complete episodes back to back in D4RL's layout (within an episode obs[i+1] == next_obs[i])."""

    arrays: dict[str, np.ndarray]
    returns: np.ndarray  # one undiscounted return per episode

    def __len__(self) -> int:
        return int(len(self.arrays["observations"]))

    @staticmethod
    def concatenate(parts: Sequence[Episodes]) -> Episodes:
        keys = parts[0].arrays.keys()
        return Episodes(
            arrays={key: np.concatenate([part.arrays[key] for part in parts]) for key in keys},
            returns=np.concatenate([part.returns for part in parts]),
        )


class _Trajectory:
    def __init__(self) -> None:
        self.rows: dict[str, list] = {key: [] for key in
                                      ("observations", "actions", "rewards", "next_observations",
                                       "terminals", "timeouts")}

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray,
            terminated: bool, truncated: bool) -> None:
        self.rows["observations"].append(obs)
        self.rows["actions"].append(action)
        self.rows["rewards"].append(reward)
        self.rows["next_observations"].append(next_obs)
        self.rows["terminals"].append(terminated)
        self.rows["timeouts"].append(truncated and not terminated)  # D4RL: a timeout is never terminal

    def finish(self) -> dict[str, np.ndarray]:
        out = {
            "observations": np.asarray(self.rows["observations"], np.float32),
            "actions": np.asarray(self.rows["actions"], np.float32),
            "rewards": np.asarray(self.rows["rewards"], np.float32),
            "next_observations": np.asarray(self.rows["next_observations"], np.float32),
            "terminals": np.asarray(self.rows["terminals"], np.float32),
            "timeouts": np.asarray(self.rows["timeouts"], np.float32),
        }
        self.__init__()
        return out


def roll_out(envs: Sequence[gym.Env], policy: BatchPolicy, seed: int, min_transitions: int | None = None,
             advance: Callable[[int], None] | None = None) -> Episodes:
    """Step `envs` in lockstep with one batched policy call per step.

    `min_transitions=None`: exactly one episode per env (unbiased returns: short episodes do not crowd
    out long ones). Otherwise keep resetting until the complete episodes hold at least `min_transitions`
    rows; episodes still running then are dropped. `advance` gets episodes (first mode) or steps.
    """
    env_seeds = np.random.SeedSequence(seed).generate_state(len(envs))
    obs = [env.reset(seed=int(env_seed))[0] for env, env_seed in zip(envs, env_seeds, strict=True)]
    running = [_Trajectory() for _ in envs]
    episode_returns: list[float] = []
    finished: list[dict[str, np.ndarray]] = []
    complete_rows, stepped = 0, 0
    active = list(range(len(envs)))
    while active:
        actions = policy(np.asarray([obs[i] for i in active], dtype=np.float32))
        still_running = []
        for row, i in enumerate(active):
            next_obs, reward, terminated, truncated, _ = envs[i].step(actions[row])
            running[i].add(obs[i], actions[row], float(reward), next_obs, bool(terminated), bool(truncated))
            obs[i] = next_obs
            if terminated or truncated:
                episode = running[i].finish()
                finished.append(episode)
                episode_returns.append(float(episode["rewards"].sum(dtype=np.float64)))
                complete_rows += len(episode["rewards"])
                if min_transitions is None:
                    if advance is not None:
                        advance(1)
                    continue
                obs[i] = envs[i].reset()[0]
            still_running.append(i)
        active = still_running
        if min_transitions is not None:
            step = min(len(actions), max(min_transitions - stepped, 0))
            stepped += len(actions)
            if advance is not None and step:
                advance(step)
            if complete_rows >= min_transitions:
                break
    keys = finished[0].keys()
    return Episodes(
        arrays={key: np.concatenate([episode[key] for episode in finished]) for key in keys},
        returns=np.asarray(episode_returns, dtype=np.float64),
    )


def uniform_policy(act_dim: int, seed: int) -> BatchPolicy:
    rng = np.random.default_rng(seed)
    return lambda obs: rng.uniform(-1.0, 1.0, size=(len(obs), act_dim)).astype(np.float32)


def actor_policy(actor: GaussianActor, device: torch.device, seed: int) -> BatchPolicy:
    """Draws from the SAC Gaussian, as D4RL's behaviour data were."""
    generator = torch.Generator(device=device).manual_seed(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        observations = torch.as_tensor(obs, dtype=torch.float32, device=device)
        return actor.act(observations, generator).cpu().numpy()

    return act


def load_actor(spec: dict[str, int], state: dict[str, torch.Tensor], device: torch.device) -> GaussianActor:
    actor = GaussianActor.from_spec(spec)
    actor.load_state_dict(state)
    return actor.to(device).eval()


def stage_seed(seed: int, env: str, stage: str) -> int:
    """Independent, stable seeds per (seed, env, stage): names, not positions, so any subset reproduces."""
    sequence = np.random.SeedSequence([seed, zlib.crc32(env.encode()), zlib.crc32(stage.encode())])
    return int(sequence.generate_state(1)[0])
