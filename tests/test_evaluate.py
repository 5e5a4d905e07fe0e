"""The evaluation loop: fixed seeds, one batched act per step over the running envs, clipping, scores."""

from __future__ import annotations

import contextlib
import json
import time
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import TimeLimit

from srpo_bench.core.agents import Agent
from srpo_bench.data.dataset import OfflineDataset
from srpo_bench.evaluate import EvalResult, NonFiniteActions, evaluate
from srpo_bench.progress import Reporter
from srpo_bench.tasks import Task, get_task


class ConstantAgent(Agent):
    """Plays one fixed action and records every batch it is asked about."""

    network_evaluations = {"policy": 1}

    def __init__(self, action: list[float]) -> None:
        self.action = torch.tensor(action, dtype=torch.float32)
        self.calls: list[torch.Tensor] = []
        self.inference_mode: list[bool] = []

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def act(self, observations: torch.Tensor) -> torch.Tensor:
        self.calls.append(observations.clone())
        self.inference_mode.append(torch.is_inference_mode_enabled())
        return self.action.expand(len(observations), -1)


class UniformAgent(ConstantAgent):
    def __init__(self, seed: int) -> None:
        super().__init__([0.0, 0.0])
        self.generator = torch.Generator().manual_seed(seed)

    def act(self, observations: torch.Tensor) -> torch.Tensor:
        return torch.rand(len(observations), 2, generator=self.generator) * 2 - 1


class CountdownEnv(gym.Env):
    """Lasts 2 + seed % 3 steps; observation [reset seed, steps taken]; reward a[0] - a[1] (at most 2)."""

    closed = 0

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.reset_seed, self.t, self.length = seed, 0, 2 + seed % 3
        return np.array([seed, 0.0], dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        assert self.action_space.contains(np.asarray(action, dtype=np.float32)), action
        self.t += 1
        observation = np.array([self.reset_seed, self.t], dtype=np.float32)
        return observation, float(action[0] - action[1]), self.t >= self.length, False, {}

    def close(self) -> None:
        CountdownEnv.closed += 1


def countdown_task(make_env=CountdownEnv, max_steps: int = 10, refs: tuple | None = (0.0, 8.0)) -> Task:
    return Task(name="countdown", suite="test", family="toy", max_episode_steps=max_steps,
                load=lambda: None, make_env=make_env, score_scale="toy",
                ref_min_score=None if refs is None else refs[0], ref_max_score=None if refs is None else refs[1])


def test_returns_lengths_and_seeds_follow_the_envs() -> None:
    # Seeds 1001..1004 give lengths 2 + seed % 3 = 4, 2, 3, 4; the agent's (5, -5) is clipped to (1, -1),
    # so every step pays 2 and a return is twice the length.
    agent = ConstantAgent([5.0, -5.0])
    result = evaluate(agent, countdown_task(), episodes=4, reporter=Reporter(quiet=True))
    assert result.seeds == [1001, 1002, 1003, 1004] and result.episodes == 4
    assert result.lengths == [4, 2, 3, 4]
    assert result.returns == [8.0, 4.0, 6.0, 8.0]
    assert result.normalized == pytest.approx([100.0, 50.0, 75.0, 100.0])  # refs (0, 8)
    assert result.mean_normalized == pytest.approx(81.25)
    assert result.std_normalized == pytest.approx(np.std([100.0, 50.0, 75.0, 100.0]))


def test_act_is_called_once_per_step_with_the_running_envs_only() -> None:
    agent = ConstantAgent([0.5, 0.0])
    evaluate(agent, countdown_task(), episodes=4)
    assert [len(batch) for batch in agent.calls] == [4, 4, 3, 2]
    assert all(batch.dtype == torch.float32 and batch.device.type == "cpu" for batch in agent.calls)
    assert all(agent.inference_mode)
    seeds_per_call = [batch[:, 0].tolist() for batch in agent.calls]
    assert seeds_per_call == [[1001, 1002, 1003, 1004], [1001, 1002, 1003, 1004], [1001, 1003, 1004], [1001, 1004]]
    assert [batch[:, 1].tolist() for batch in agent.calls][2] == [2.0, 2.0, 2.0]  # each env's latest observation


def test_time_limits_stop_episodes() -> None:
    # A TimeLimit of 3 in make_env truncates the length-4 episodes.
    limited = countdown_task(make_env=lambda: TimeLimit(CountdownEnv(), max_episode_steps=3))
    assert evaluate(ConstantAgent([1.0, 0.0]), limited, episodes=4).lengths == [3, 2, 3, 3]
    # Without a TimeLimit the task's own episode limit still ends them.
    assert evaluate(ConstantAgent([1.0, 0.0]), countdown_task(max_steps=3), episodes=4).lengths == [3, 2, 3, 3]


def test_seed_base_and_closing() -> None:
    before = CountdownEnv.closed
    result = evaluate(ConstantAgent([1.0, 0.0]), countdown_task(), episodes=3, seed_base=0)
    assert result.seeds == [0, 1, 2] and result.lengths == [2, 3, 4]
    assert CountdownEnv.closed - before == 3


def test_reference_scores_can_come_from_the_dataset() -> None:
    observations = np.zeros((2, 2), dtype=np.float32)
    data = OfflineDataset(name="d", source="mem", observations=observations, actions=np.zeros((2, 2)),
                          rewards=np.zeros(2), next_observations=observations, terminals=np.ones(2),
                          episode_ends=np.ones(2, dtype=bool), metadata={"ref_min_score": 2.0, "ref_max_score": 6.0})
    result = evaluate(ConstantAgent([1.0, -1.0]), countdown_task(refs=None), episodes=2, dataset=data)
    assert result.returns == [8.0, 4.0]
    assert result.normalized == pytest.approx([150.0, 50.0])
    info = result.to_dict()
    json.dumps(info)
    assert (info["ref_min_score"], info["ref_max_score"], info["mean_normalized"]) == (2.0, 6.0, 100.0)


def test_bad_agents_and_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="at least one episode"):
        evaluate(ConstantAgent([0.0, 0.0]), countdown_task(), episodes=0)
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        evaluate(ConstantAgent([0.0, 0.0, 0.0]), countdown_task(), episodes=2)
    with pytest.raises(ValueError, match="NaN or inf"):
        evaluate(ConstantAgent([float("nan"), 0.0]), countdown_task(), episodes=2)


class BestInDataAgent(ConstantAgent):
    """Plays, for each context, the dataset's own best action for it: of the transitions recorded with that
    observation, the action whose recorded reward is highest. Built from the data alone, so what it earns is
    known without the function that defines the toy's 100 points (`toy.best_in_support`)."""

    def __init__(self, data: OfflineDataset) -> None:
        super().__init__([0.0, 0.0])
        self.best: dict[tuple[float, float], tuple[np.ndarray, float]] = {}
        for observation, action, reward in zip(data.observations, data.actions, data.rewards, strict=True):
            key = (float(observation[0]), float(observation[1]))
            if key not in self.best or reward > self.best[key][1]:
                self.best[key] = (action, float(reward))
        self.seen: list[tuple[float, float]] = []

    def act(self, observations: torch.Tensor) -> torch.Tensor:
        keys = [(float(x), float(y)) for x, y in observations.tolist()]
        self.seen += keys
        return torch.as_tensor(np.stack([self.best[key][0] for key in keys]), dtype=torch.float32)


@pytest.mark.parametrize("name", ["toy-two-moons", "toy-eight-gaussians", "toy-checkerboard"])
def test_the_datas_best_action_per_context_earns_the_datas_best_reward(name: str) -> None:
    task = get_task(name)
    data = task.load()
    agent = BestInDataAgent(data)
    result = evaluate(agent, task, episodes=980)
    # each episode's return is the reward the data recorded for that context's best action: known from the data
    recorded = np.array([agent.best[key][1] for key in agent.seen])
    assert result.lengths == [1] * 980 and len(recorded) == 980
    np.testing.assert_allclose(result.returns, recorded, rtol=0, atol=1e-5)
    ref_min, ref_max = task.reference_scores()
    assert result.mean_normalized == pytest.approx(100 * (recorded.mean() - ref_min) / (ref_max - ref_min))
    # 100 points is the best reward inside the behavior support: at least what the data's best actions earn (up to
    # the 0.005 grid it is computed on), at most the unconstrained optimum r(c, c) = 1 of every context
    best_in_data = np.mean([reward for _, reward in agent.best.values()])
    assert len(agent.best) == 49 and best_in_data <= ref_max + 1e-3 and ref_max <= 1.0


def test_uniform_random_actions_score_about_0_on_the_toys() -> None:
    result = evaluate(UniformAgent(seed=0), get_task("toy-checkerboard"), episodes=2000)
    standard_error = result.std_normalized / np.sqrt(2000)
    assert abs(result.mean_normalized) < 4 * standard_error


def test_eval_result_dict_round_trips_through_json() -> None:
    result = EvalResult(returns=[1.0, 3.0], normalized=[10.0, 30.0], lengths=[5, 5], episodes=2,
                        seeds=[1001, 1002], seconds=0.5)
    info = json.loads(json.dumps(result.to_dict()))
    assert info["mean_normalized"] == 20.0 and info["std_normalized"] == 10.0 and info["mean_return"] == 2.0
    assert info["ref_min_score"] is None and info["seeds"] == [1001, 1002]


# --- found by mutation testing (nox -s mutants -- evaluate): what the tests above let through -----------------------
class SkewedEnv(CountdownEnv):
    """CountdownEnv with an asymmetric action box, float64 observations shaped (2, 1), and a reward that reads
    each action coordinate apart: a[0] + 10 a[1]."""

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2, 1), dtype=np.float64)
        self.action_space = gym.spaces.Box(np.array([-0.5, -2.0]), np.array([0.25, 3.0]), dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        observation, info = super().reset(seed=seed, options=options)
        return observation.astype(np.float64).reshape(2, 1), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        assert self.action_space.contains(np.asarray(action, dtype=np.float64)), action
        observation, _, terminated, truncated, info = super().step(np.zeros(2, dtype=np.float32))
        reward = float(action[0] + 10 * action[1])
        return observation.astype(np.float64).reshape(2, 1), reward, terminated, truncated, info


def test_actions_are_clipped_to_each_coordinates_own_bounds_and_observations_flattened_to_float32() -> None:
    agent = ConstantAgent([9.0, -9.0])  # above the first coordinate's 0.25, below the second's -2
    result = evaluate(agent, countdown_task(make_env=SkewedEnv), episodes=1)
    assert result.lengths == [4] and result.returns == [4 * (0.25 + 10 * -2.0)]
    assert all(batch.shape == (1, 2) and batch.dtype == torch.float32 for batch in agent.calls)
    low_agent = ConstantAgent([-9.0, 9.0])
    assert evaluate(low_agent, countdown_task(make_env=SkewedEnv), episodes=1).returns == [4 * (-0.5 + 10 * 3.0)]


def test_one_episode_is_enough_and_its_result_is_complete() -> None:
    result = evaluate(ConstantAgent([1.0, 0.0]), countdown_task(), episodes=1)
    info = result.to_dict()
    seconds = info.pop("seconds")
    assert 0 < seconds == result.seconds
    assert info == {"episodes": 1, "seeds": [1001], "returns": [4.0], "normalized": [50.0], "lengths": [4],
                    "mean_return": 4.0, "mean_normalized": 50.0, "std_normalized": 0.0, "ref_min_score": 0.0,
                    "ref_max_score": 8.0}
    assert all(type(value) is float for value in info["returns"] + info["normalized"])
    assert all(type(value) is int for value in info["lengths"])


def test_the_policys_mistakes_are_named_exactly() -> None:
    class DictEnv(CountdownEnv):
        def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
            observation, info = super().reset(seed=seed, options=options)
            return {"observation": observation}, info

    class DiscreteEnv(CountdownEnv):
        def __init__(self) -> None:
            super().__init__()
            self.action_space = gym.spaces.Discrete(3)

    with pytest.raises(ValueError, match="countdown: the env returns dict observations; its make_env must flatten"):
        evaluate(ConstantAgent([0.0, 0.0]), countdown_task(make_env=DictEnv), episodes=1)
    with pytest.raises(ValueError, match=r"countdown: evaluation needs a continuous \(Box\) action space, got "
                                         r"Discrete\(3\)"):
        evaluate(ConstantAgent([0.0, 0.0]), countdown_task(make_env=DiscreteEnv), episodes=1)
    with pytest.raises(NonFiniteActions, match="countdown: the agent returned NaN or inf actions"):
        evaluate(ConstantAgent([0.0, float("inf")]), countdown_task(), episodes=2)
    with pytest.raises(ValueError, match=r"countdown: the agent returned actions of shape \(2, 3\) for 2 "
                                         r"observations; expected \(2, 2\)"):
        evaluate(ConstantAgent([0.0, 0.0, 0.0]), countdown_task(), episodes=2)


def test_the_progress_bar_counts_every_step_of_every_episode_and_the_time_is_the_evaluations() -> None:
    tracked: list[tuple[str, int]] = []
    advanced: list[int] = []

    class SpyReporter(Reporter):
        @contextlib.contextmanager
        def track(self, description: str, total: int, unit: str = "step"):  # type: ignore[override]
            tracked.append((description, total))
            yield SimpleNamespace(advance=lambda n=1, **metrics: advanced.append(n))

    started = time.perf_counter()
    result = evaluate(ConstantAgent([1.0, 0.0]), countdown_task(), episodes=4, reporter=SpyReporter(quiet=True))
    assert tracked == [("countdown evaluation (4 episodes)", 4 * 10)]  # the bound: episodes x the task's limit
    assert advanced == [4, 4, 3, 2] and sum(advanced) == sum(result.lengths)
    assert 0 < result.seconds <= time.perf_counter() - started


def test_observations_are_sent_to_the_agents_own_device() -> None:
    """The batch is made on `agent.device` (a GPU agent gets CUDA tensors); a meta-device agent stands in for a GPU."""

    class MetaDeviceAgent(ConstantAgent):
        @property
        def device(self) -> torch.device:
            return torch.device("meta")

    agent = MetaDeviceAgent([1.0, 0.0])
    evaluate(agent, countdown_task(), episodes=2)
    assert {batch.device.type for batch in agent.calls} == {"meta"}
    assert {batch.dtype for batch in agent.calls} == {torch.float32}
