"""Making gymnasium MuJoCo envs without the two messages every load prints.

- HalfCheetah's XML uses `settotalmass`, which MuJoCo 3+ reports on every model load (to stderr and to
  MUJOCO_LOG.TXT in the working folder). Only that message is dropped; any other MuJoCo warning is passed
  on as a Python warning.
- gymnasium flags its `-v4` MuJoCo envs as out of date. We use `-v4` on purpose for D4RL `-v2` data (the
  mujoco-bindings port of the gym v3 envs it was collected on, noted in each run's `task_note`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gymnasium as gym
import mujoco


@contextmanager
def quiet_env_creation() -> Iterator[None]:
    previous = mujoco.get_mju_user_warning()

    def forward(message: str) -> None:
        if "settotalmass" not in message:
            warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)

    mujoco.set_mju_user_warning(forward)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*is out of date\. You should consider upgrading",
                                    category=DeprecationWarning)
            yield
    finally:
        mujoco.set_mju_user_warning(previous)


def make_env(env_id: str, max_episode_steps: int, **kwargs: Any) -> gym.Env:
    with quiet_env_creation():
        return gym.make(env_id, max_episode_steps=max_episode_steps, **kwargs)
