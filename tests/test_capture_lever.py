"""The captured-training-step lever (`srpo_bench.core.stages.CAPTURE_STEPS`, opt-in) trains every method to the same
weights as the eager step, within float tolerance.

Every stage of every method trains on the toy bandit at a few steps with the lever off and on. With the lever on,
each stage's per-step loss computation goes through `torch.compile`: here with the `aot_eager` backend for every
method (the same Dynamo capture and AOTAutograd forward/backward graphs as on a GPU, graph breaks and random
draws included, without code generation: inductor's C++ compile costs ~25 s per graph on this 2-core machine), and
once with inductor itself for BC. A GPU adds CUDA graphs on top, which `benchmarks/gpu_check.py` exercises.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from srpo_bench.core import stages
from srpo_bench.core.levers import OPT_IN, SWITCHES, set_opt_in_levers, set_training_levers
from srpo_bench.progress import Reporter
from srpo_bench.registry import expand_methods, get_method
from srpo_bench.runner import fit_context
from srpo_bench.runtimes import modules_of
from srpo_bench.tasks import get_task

STEPS = {"srpo": {"behavior_steps": "6", "critic_steps": "6", "policy_steps": "6"},
         "diffusion-ql": {"steps": "6"}, "idql": {"actor_steps": "6", "critic_steps": "6"},
         "sfbc": {"behavior_steps": "6", "critic_steps_per_epoch": "2"}, "bc": {"steps": "6"}, "fql": {"steps": "6"}}


def trained_weights(method: str, out: Path, captured: bool) -> list[torch.Tensor]:
    task = get_task("toy-two-moons")
    set_opt_in_levers(captured)
    try:
        config, ctx = fit_context(task, method, task.load(), 0, "smoke", out, torch.device("cpu"),
                                  Reporter(quiet=True), {method: STEPS[method]})
        agent = get_method(method)().fit(ctx, config)
    finally:
        set_opt_in_levers(False)
        torch._dynamo.reset()  # the next fit's modules are new objects: no stale compiled graphs
    modules = [agent.policy] if hasattr(agent, "policy") else modules_of(agent)
    return [p.detach().clone() for module in modules for p in module.parameters()]


def largest_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("method", expand_methods("all"))
def test_a_captured_step_trains_to_the_eager_weights(method: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(STEPS) == set(expand_methods("all")), "a new method needs its step settings here"
    monkeypatch.setattr(stages, "CAPTURE_BACKEND", "aot_eager")
    eager = trained_weights(method, tmp_path / "eager", captured=False)
    captured = trained_weights(method, tmp_path / "captured", captured=True)
    assert largest_difference(eager, captured) < 1e-5


def test_a_captured_step_compiled_by_inductor_trains_to_the_eager_weights(tmp_path: Path) -> None:
    eager = trained_weights("bc", tmp_path / "eager", captured=False)
    captured = trained_weights("bc", tmp_path / "captured", captured=True)
    assert largest_difference(eager, captured) < 1e-5


def test_the_lever_is_off_by_default_and_compiles_the_step_when_on(monkeypatch: pytest.MonkeyPatch) -> None:
    def loss(x: torch.Tensor) -> torch.Tensor:
        return (x * x).sum()

    assert stages.CAPTURE_STEPS is False
    assert stages.captured(loss, torch.device("cpu")) is loss
    monkeypatch.setattr(stages, "CAPTURE_STEPS", True)
    monkeypatch.setattr(stages, "CAPTURE_BACKEND", "aot_eager")
    compiled = stages.captured(loss, torch.device("cpu"))
    assert compiled is not loss
    counts: dict[str, int] = {}
    torch._dynamo.reset()
    from torch._dynamo.utils import counters

    counters.clear()
    assert float(compiled(torch.ones(3))) == 3.0
    counts = dict(counters["stats"])
    assert counts.get("unique_graphs", 0) >= 1  # Dynamo captured a graph: the step really went through compile
    torch._dynamo.reset()


def test_the_opt_in_lever_is_a_real_flag_that_the_default_levers_leave_alone() -> None:
    assert all(isinstance(getattr(module, name), bool) for module, name in OPT_IN)
    set_training_levers(True)
    assert not any(getattr(module, name) for module, name in OPT_IN)
    assert not set(OPT_IN) & set(SWITCHES)
    try:
        set_opt_in_levers(True)
        assert all(getattr(module, name) for module, name in OPT_IN)
    finally:
        set_opt_in_levers(False)
