"""Env creation stays quiet: the two known load-time messages are dropped, nothing else is hidden."""

from __future__ import annotations

import warnings

import mujoco
import pytest

from srpo_bench.envs import make_env, quiet_env_creation
from srpo_bench.tasks import get_task


@pytest.mark.parametrize("task", ["halfcheetah-medium-v2", "lite-halfcheetah-medium-v0"])
def test_halfcheetah_env_loads_without_messages(task: str, capfd: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any Python warning fails the test
        env = get_task(task).make_env()
        env.reset(seed=0)
    env.close()
    captured = capfd.readouterr()
    assert "settotalmass" not in captured.err + captured.out
    assert "out of date" not in captured.err + captured.out


def test_other_mujoco_warnings_still_reach_the_user() -> None:
    with quiet_env_creation(), pytest.warns(RuntimeWarning, match="MuJoCo: something else"):
        mujoco.get_mju_user_warning()("something else")


def test_previous_mujoco_handler_is_restored() -> None:
    before = mujoco.get_mju_user_warning()
    make_env("Hopper-v5", 10)
    assert mujoco.get_mju_user_warning() is before
