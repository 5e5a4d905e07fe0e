"""benchmarks/critic_values.py, the diagnostic for OGBench runs that score 0: steps to success and separation."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("critic_values", ROOT / "benchmarks" / "critic_values.py")
assert spec is not None and spec.loader is not None
critic_values = importlib.util.module_from_spec(spec)
sys.modules["critic_values"] = critic_values
spec.loader.exec_module(critic_values)


def test_steps_to_success_count_within_each_episode_only() -> None:
    # two episodes: [0 0 1 0 0] and [0 1 0]; a success never reaches back into the episode before it
    terminals = np.array([0, 0, 1, 0, 0, 0, 1, 0], dtype=np.float32)
    ends = np.array([0, 0, 0, 0, 1, 0, 0, 1], dtype=bool)
    assert critic_values.steps_to_success(terminals, ends).tolist() == [2, 1, 0, -1, -1, 1, 0, -1]


def test_separation_is_the_probability_of_ranking_a_near_state_above_a_far_one() -> None:
    assert critic_values.separation(np.array([1.0, 2.0]), np.array([0.0])) == 1.0
    assert critic_values.separation(np.array([0.0]), np.array([0.0])) == 0.5  # ties count half
    assert abs(critic_values.separation(np.array([0.0, 2.0]), np.array([1.0])) - 0.5) < 0.01
