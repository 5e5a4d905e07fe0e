"""The timing harness: call counts, result keys, rates of a sleeping agent (broad bounds), the budget cap."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from srpo_bench.core.agents import Agent
from srpo_bench.speed import SpeedResult, measure_speed, speedup_table


class SleepingAgent(Agent):
    """Sleeps a known time per call and records the batches it sees."""

    network_evaluations = {"denoiser": 250, "critic": 50}

    def __init__(self, seconds_per_call: float = 0.0, act_dim: int = 2) -> None:
        self.seconds_per_call = seconds_per_call
        self.act_dim = act_dim
        self.batches: list[torch.Tensor] = []
        self.inference_mode: list[bool] = []

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def act(self, observations: torch.Tensor) -> torch.Tensor:
        self.batches.append(observations)
        self.inference_mode.append(torch.is_inference_mode_enabled())
        if self.seconds_per_call:
            time.sleep(self.seconds_per_call)
        return torch.zeros(len(observations), self.act_dim)


def test_call_counts_without_calibration() -> None:
    # min_seconds=0 makes k = 1 call per measurement, so the count is exact: warm-up + repeats per size.
    agent = SleepingAgent()
    result = measure_speed(agent, obs_dim=3, batch_sizes=(1, 4), warmup=2, repeats=5, min_seconds=0.0)
    assert len(agent.batches) == 2 * (2 + 5)
    assert [len(b) for b in agent.batches] == [1] * 7 + [4] * 7
    assert all(agent.inference_mode)
    for size in (1, 4):
        timing = result.batches[size]
        assert (timing.calls_per_repeat, timing.repeats, timing.calls_timed, timing.warmup_calls) == (1, 5, 5, 2)
        assert not timing.capped


def test_calibrated_call_counts_add_up() -> None:
    agent = SleepingAgent()
    result = measure_speed(agent, obs_dim=3, batch_sizes=(1, 8), warmup=3, repeats=4, min_seconds=0.005)
    expected = sum(t.warmup_calls + t.calls_timed for t in result.batches.values())
    assert len(agent.batches) == expected
    # A call that does nothing takes far less than 5 ms, so each measurement times many calls.
    assert all(t.calls_per_repeat > 1 for t in result.batches.values())


def test_result_keys_and_json() -> None:
    result = measure_speed(SleepingAgent(), obs_dim=3, batch_sizes=(1, 256), warmup=1, repeats=3, min_seconds=0.0)
    info = json.loads(json.dumps(result.to_dict()))
    assert set(info["batches"]) == {"1", "256"}
    assert set(info["batches"]["256"]) >= {
        "actions_per_second", "actions_per_second_p25", "actions_per_second_p75", "ms_per_call",
        "calls_timed", "repeats", "calls_per_repeat", "capped",
    }
    assert info["network_evaluations"] == {"denoiser": 250, "critic": 50}
    assert info["nfe_per_action"] == 300
    assert info["device"]["type"] == "cpu" and info["device"]["name"]
    assert info["torch_version"] == torch.__version__ and info["torch_threads"] == torch.get_num_threads()
    timing = info["batches"]["1"]
    assert timing["actions_per_second_p25"] <= timing["actions_per_second"] <= timing["actions_per_second_p75"]


def test_rates_match_a_known_sleep() -> None:
    # 4 ms per call: batch 1 is ~250 actions/s and batch 64 ~16,000; broad bounds, no timing assertion.
    result = measure_speed(SleepingAgent(0.004), obs_dim=2, batch_sizes=(1, 64), warmup=2, repeats=3,
                           min_seconds=0.01)
    for size in (1, 64):
        timing = result.batches[size]
        assert 0.3 * size / 0.004 < timing.actions_per_second < 3 * size / 0.004
        assert 0.3 * 4 < timing.ms_per_call < 3 * 4
        assert timing.calls_per_repeat >= 2  # 10 ms per measurement needs at least 2 calls of ~4 ms


def test_slow_agents_are_capped_but_keep_three_repeats() -> None:
    agent = SleepingAgent(0.05)
    result = measure_speed(agent, obs_dim=2, batch_sizes=(256,), warmup=10, repeats=30, min_seconds=0.0,
                           max_seconds=0.3)
    timing = result.batches[256]
    assert timing.capped and 3 <= timing.repeats < 30 and timing.warmup_calls < 10
    assert timing.calls_timed == timing.repeats * timing.calls_per_repeat
    assert len(agent.batches) == timing.warmup_calls + timing.calls_timed
    # With a budget shorter than one call: one warm-up call and the minimum of three measurements.
    tiny = measure_speed(SleepingAgent(0.01), obs_dim=2, batch_sizes=(1,), min_seconds=0.0,
                         max_seconds=0.001).batches[1]
    assert (tiny.warmup_calls, tiny.repeats, tiny.calls_per_repeat) == (1, 3, 1)


def test_the_context_and_the_machine_load_are_recorded() -> None:
    """What the report reads to label a timing (report/frame.py: context, loadavg_before, cpu_count, torch threads);
    mutmut found every one of these could be dropped or renamed without a test of speed.py noticing."""
    import os

    result = measure_speed(SleepingAgent(), obs_dim=3, batch_sizes=(1,), warmup=1, repeats=3, min_seconds=0.0,
                           context="timing-phase")
    info = json.loads(json.dumps(result.to_dict()))
    assert info["context"] == "timing-phase"
    load = info["machine_load"]
    assert set(load) == {"loadavg_before", "loadavg_after", "cpu_count", "torch_threads"}
    assert load["cpu_count"] == os.cpu_count() and load["torch_threads"] == torch.get_num_threads()
    for key in ("loadavg_before", "loadavg_after"):
        assert len(load[key]) == 3 and all(value >= 0 for value in load[key])  # 1, 5 and 15 minutes (Linux)


def test_observations_come_from_the_given_states() -> None:
    states = np.repeat(np.arange(5, dtype=np.float32)[:, None] * 10, 3, axis=1)  # rows (0,0,0) ... (40,40,40)
    agent = SleepingAgent()
    measure_speed(agent, obs_dim=3, batch_sizes=(16,), warmup=1, repeats=3, min_seconds=0.0, observations=states)
    batch = agent.batches[0]
    assert batch.dtype == torch.float32 and batch.shape == (16, 3)
    assert set(batch[:, 0].tolist()) <= {0.0, 10.0, 20.0, 30.0, 40.0}
    assert (batch == batch[:, :1]).all()  # whole rows are drawn, not single values
    # Without states: standard normal draws.
    agent = SleepingAgent()
    measure_speed(agent, obs_dim=4, batch_sizes=(2000,), warmup=1, repeats=3, min_seconds=0.0)
    drawn = agent.batches[0]
    assert abs(float(drawn.mean())) < 0.05 and float(drawn.std()) == pytest.approx(1.0, abs=0.05)


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"shape \[N, 3\]"):
        measure_speed(SleepingAgent(), obs_dim=3, observations=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="batch sizes"):
        measure_speed(SleepingAgent(), obs_dim=3, batch_sizes=(0,))
    with pytest.raises(ValueError, match="repeats >= 3"):
        measure_speed(SleepingAgent(), obs_dim=3, repeats=2)
    # a timing says where it was taken, in words the report knows (speed.CONTEXTS)
    with pytest.raises(ValueError, match="unknown timing context 'in-training' .choices: alone, in-run, timing-phase"):
        measure_speed(SleepingAgent(), obs_dim=3, context="in-training")


def test_speedup_table_divides_reference_rates() -> None:
    fast = measure_speed(SleepingAgent(), obs_dim=2, batch_sizes=(1, 8), warmup=1, repeats=3, min_seconds=0.0)
    slow = measure_speed(SleepingAgent(), obs_dim=2, batch_sizes=(1,), warmup=1, repeats=3, min_seconds=0.0)
    fast.batches[1].actions_per_second, fast.batches[8].actions_per_second = 1000.0, 8000.0
    slow.batches[1].actions_per_second = 40.0
    rows = speedup_table({"srpo": fast, "idql": slow}, reference="srpo")
    assert rows == [{"method": "idql", "nfe_per_action": 300, "speedup b1": 25.0, "speedup b8": None}]
    with pytest.raises(ValueError, match="'sfbc' was not timed"):
        speedup_table({"srpo": fast}, reference="sfbc")
    assert isinstance(fast, SpeedResult) and fast.actions_per_second(8) == 8000.0
