"""Failures docs/faults.md promises to record, each with its stage or phase: non-finite weights at a stage's end, and
non-finite actions in the final evaluation and in a periodic evaluation during training (a non-finite loss is
tests/test_faults.py). BC on a toy task, smoke profile: one evaluation during training, then the final one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_cli import invoke

from srpo_bench.core.agents import PolicyAgent
from srpo_bench.core.nn import DeterministicPolicy

TOY = ("--envs", "toy-two-moons", "--profile", "smoke", "--device", "cpu", "--quiet", "--methods", "bc",
       "--seeds", "0")


def failure_of(out: Path) -> dict:
    run = json.loads((out / "runs" / "smoke" / "toy-two-moons" / "bc" / "seed0" / "run.json").read_text())
    assert run["status"] == "failed", run
    assert not (out / "runs" / "smoke" / "toy-two-moons" / "bc" / "seed0" / "eval.json").exists()
    return run["failure"]


class NaNActions(PolicyAgent):
    def act(self, observations: torch.Tensor) -> torch.Tensor:
        return torch.full_like(super().act(observations), float("nan"))


def test_non_finite_weights_at_a_stages_end_fail_the_run_in_that_stage(tmp_path: Path, monkeypatch) -> None:
    """A floating buffer turned NaN: the losses and actions stay finite, only the end-of-stage check sees it."""
    from baselines import bc

    class Poisoned(DeterministicPolicy):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.register_buffer("poison", torch.tensor(float("nan")))

    monkeypatch.setattr(bc, "DeterministicPolicy", Poisoned)
    result = invoke("run", *TOY, "--out", str(tmp_path))
    assert result.exit_code == 1, result.output
    failure = failure_of(tmp_path)
    assert failure["kind"] == "diverged" and failure["stage"] == "policy"
    assert failure["reason"] == "non-finite weights at the end of the stage"
    assert failure["step"] == 99  # the stage's last step (smoke: 100 steps)
    assert not list((tmp_path / "stages").glob("*.pt"))  # a diverged stage is never cached


def test_non_finite_actions_in_the_final_evaluation_fail_the_evaluation_phase(tmp_path: Path, monkeypatch) -> None:
    """The final policy (acting through the run's runtime wrapper) returns NaN; training's own evaluation did not."""
    from srpo_bench import runner

    monkeypatch.setattr(runner, "with_runtime", lambda agent, runtime: NaNActions(agent.policy))
    result = invoke("run", *TOY, "--out", str(tmp_path))
    assert result.exit_code == 1, result.output
    failure = failure_of(tmp_path)
    assert failure == {**failure, "kind": "diverged", "stage": "evaluation", "step": 0,
                       "reason": "non-finite actions in the final evaluation"}
    assert "non-finite actions in the final evaluation (evaluation step 0)" in result.output
    assert list((tmp_path / "stages").glob("*.pt"))  # the trained stage stays cached


def test_non_finite_actions_in_a_periodic_evaluation_fail_the_stage_at_that_step(tmp_path: Path,
                                                                                monkeypatch) -> None:
    from baselines import bc

    monkeypatch.setattr(bc, "PolicyAgent", NaNActions)  # the agent the policy stage evaluates while it trains
    result = invoke("run", *TOY, "--out", str(tmp_path))
    assert result.exit_code == 1, result.output
    failure = failure_of(tmp_path)
    assert failure["kind"] == "diverged" and failure["stage"] == "policy"
    assert failure["reason"] == "non-finite actions in an evaluation during training"
    assert 0 <= failure["step"] < 100
    assert failure["last_metrics"] and all(key != "eval_normalized" for key in failure["last_metrics"])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_evaluate_refuses_each_kind_of_non_finite_action(value: float) -> None:
    from srpo_bench.evaluate import NonFiniteActions, evaluate
    from srpo_bench.tasks import get_task

    class Bad(PolicyAgent):
        def act(self, observations: torch.Tensor) -> torch.Tensor:
            actions = torch.zeros(observations.shape[0], 2)
            actions[-1, -1] = value  # one entry of one row is enough
            return actions

    with pytest.raises(NonFiniteActions, match="NaN or inf"):
        evaluate(Bad(DeterministicPolicy(2, 2, hidden=8)), get_task("toy-two-moons"), 3)
