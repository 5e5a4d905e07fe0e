"""Stages as data: keys cover whole stage configs and nothing else; every method"s keys are pinned.

A pinned key changing means a stage definition changed: if on purpose, bump the stage"s `revision` (or the
store schema) and update the pin here, so old artifacts stop matching instead of being silently reused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import context, fit

from srpo_bench.config import plan_stages, resolve_config
from srpo_bench.core import stages as stages_module
from srpo_bench.core.stages import EvaluationSchedule, plan_keys, precision_settings
from srpo_bench.data import toy
from srpo_bench.registry import get_method
from srpo_bench.tasks import get_task

FINGERPRINT, SEED = "0123456789abcdef", 0
TASKS = ("toy-two-moons", "lite-hopper-medium-v0")

# paper profile (the official settings), fixed fingerprint and seed
PINNED: dict[tuple[str, str], dict[str, str]] = {
    ("srpo", "toy-two-moons"): {"behavior": "c575caa1007246f7", "critic": "e0204b93639ce13c",
                                "policy": "9f3efc9276a7b1d4"},
    ("diffusion-ql", "toy-two-moons"): {"joint": "4993191c5df8b60d"},
    ("idql", "toy-two-moons"): {"behavior": "4fbcd36e5676dcc2", "critic": "0a2474f2cef15e75"},
    ("sfbc", "toy-two-moons"): {"behavior": "2ee5269f77a9a64c", "critic": "03b5ad7952b6c2f1"},
    ("bc", "toy-two-moons"): {"policy": "42f5626e9ce3e077"},
    ("srpo", "lite-hopper-medium-v0"): {"behavior": "c575caa1007246f7", "critic": "d20fe2ab79ee7ccd",
                                        "policy": "225b1fd04a0737fe"},
    ("diffusion-ql", "lite-hopper-medium-v0"): {"joint": "8bbc8dea746190b5"},
    ("idql", "lite-hopper-medium-v0"): {"behavior": "4fbcd36e5676dcc2", "critic": "df90adc17efbf8fd"},
    ("sfbc", "lite-hopper-medium-v0"): {"behavior": "2ee5269f77a9a64c", "critic": "03b5ad7952b6c2f1"},
    ("bc", "lite-hopper-medium-v0"): {"policy": "42f5626e9ce3e077"},
    ("fql", "toy-two-moons"): {"joint": "2df4217393a083fc"},
    ("fql", "lite-hopper-medium-v0"): {"joint": "254eab69a27d2063"},
}


def keys_of(method: str, task: str, overrides: dict[str, dict[str, str]] | None = None,
            profile: str = "paper") -> dict[str, str]:
    return plan_keys(plan_stages(method, get_task(task), profile, overrides), FINGERPRINT, SEED)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("method", ["srpo", "diffusion-ql", "idql", "sfbc", "bc", "fql"])
def test_stage_keys_are_pinned(method: str, task: str) -> None:
    assert keys_of(method, task) == PINNED[(method, task)]


ACTING = {"idql": {"num_candidates": "16", "action_selection": "expectile-resample", "sampling_temperature": "0.5",
                   "clip_sampler": "false"},
          "sfbc": {"candidates": "64", "select_alpha": "10", "select_per_state": "2", "logit_cap": "10"},
          "diffusion-ql": {"action_candidates": "10"}}


@pytest.mark.parametrize("method", sorted(ACTING))
def test_acting_settings_enter_no_training_key(method: str) -> None:
    before = keys_of(method, "toy-two-moons")
    for key, value in ACTING[method].items():
        assert keys_of(method, "toy-two-moons", {method: {key: value}}) == before, key


@pytest.mark.parametrize("method", ["srpo", "diffusion-ql", "idql", "sfbc", "bc", "fql"])
def test_every_stage_setting_changes_its_key_and_the_keys_downstream(method: str) -> None:
    """Change each field of each stage config by hand: that stage"s key and every dependent"s key move, the
    keys of stages it does not feed stay."""
    stages = plan_stages(method, get_task("toy-two-moons"), "paper")
    base = plan_keys(stages, FINGERPRINT, SEED)
    for index, stage in enumerate(stages):
        for field in dataclasses.fields(stage.config):
            value = getattr(stage.config, field.name)
            changed_value = (not value if isinstance(value, bool) else value + 1 if isinstance(value, int | float)
                             else (*value, 1) if isinstance(value, tuple) else f"{value}-changed")
            try:
                config = dataclasses.replace(stage.config, **{field.name: changed_value})
            except ValueError:  # out of the setting's range (a discount of 1.99): halve it instead
                config = dataclasses.replace(stage.config, **{field.name: value / 2})
            changed = list(stages)
            changed[index] = dataclasses.replace(stage, config=config)
            keys = plan_keys(changed, FINGERPRINT, SEED)
            assert keys[stage.name] != base[stage.name], (stage.name, field.name)
            for other in stages:
                downstream = stage.name in other.depends_on
                assert (keys[other.name] != base[other.name]) == (other is stage or downstream), (other.name, field)


def test_shared_critic_is_srpos_critic_with_the_users_srpo_overrides() -> None:
    own = keys_of("idql", "toy-two-moons")
    shared = keys_of("idql", "toy-two-moons", {"idql": {"critic_source": "shared"}})
    assert shared["critic"] == keys_of("srpo", "toy-two-moons")["critic"] != own["critic"]
    tuned = {"idql": {"critic_source": "shared"}, "srpo": {"critic_steps": "77"}}
    assert keys_of("idql", "toy-two-moons", tuned)["critic"] == keys_of("srpo", "toy-two-moons", tuned)["critic"]
    assert keys_of("idql", "toy-two-moons", tuned)["critic"] != shared["critic"]
    sfbc = keys_of("sfbc", "toy-two-moons", {"sfbc": {"behavior_source": "shared"}})
    assert sfbc["behavior"] == keys_of("srpo", "toy-two-moons")["behavior"]


def test_a_policy_only_change_reuses_the_behavior_model_and_critic(tmp_path: Path) -> None:
    task = get_task("toy-two-moons")
    dataset = toy.load_toy("toy-two-moons", size=256)
    _, first = fit("srpo", task, dataset, tmp_path, run_id="a")
    _, second = fit("srpo", task, dataset, tmp_path, run_id="b", overrides={"srpo": {"beta": "3.0"}})
    origins = {entry["stage"]: entry["origin"] for entry in second.stage_log}
    assert origins == {"behavior": "shared", "critic": "shared", "policy": "trained"}
    assert [e["key"] for e in second.stage_log][:2] == [e["key"] for e in first.stage_log][:2]


def test_evaluating_during_training_leaves_the_trained_weights_unchanged(tmp_path: Path) -> None:
    """Periodic evaluation uses the agent"s own generator and copies of the networks: the policy trained with
    evaluations is bit-identical to the one trained without."""
    task = get_task("toy-two-moons")
    dataset = toy.load_toy("toy-two-moons", size=256)
    config = dataclasses.replace(resolve_config(get_method("srpo"), task, "smoke"), behavior_steps=20,
                                 critic_steps=20, policy_steps=30)
    plain, _ = fit("srpo", task, dataset, tmp_path / "a", config=config)
    evaluated, ctx = fit("srpo", task, dataset, tmp_path / "b", config=config,
                         evaluation=EvaluationSchedule(points=2, episodes=8))
    assert [point["step"] for point in ctx.evaluations] == [10, 20]
    for got, want in zip(evaluated.policy.state_dict().values(), plain.policy.state_dict().values(), strict=True):
        assert torch.equal(got, want)


def test_evaluation_schedule_spaces_points_evenly() -> None:
    schedule = EvaluationSchedule(points=3, episodes=1)
    assert [step + 1 for step in range(100) if schedule.due(step, 100)] == [25, 50, 75]
    assert not any(EvaluationSchedule(points=0, episodes=1).due(step, 10) for step in range(10))


# --- numerical precision: named settings, off by default, in the keys when on ----------------------------------------
PRECISIONS = {"tf32": {"SRPO_BENCH_TF32": "1"}, "bf16": {"SRPO_BENCH_MIXED_PRECISION": "bf16"},
              "both": {"SRPO_BENCH_TF32": "1", "SRPO_BENCH_MIXED_PRECISION": "bf16"}}


@pytest.mark.parametrize("method", ["srpo", "diffusion-ql", "idql", "sfbc", "bc", "fql"])
def test_precision_settings_enter_every_stage_key_only_when_on(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Off (the default, unset or spelled out) keeps the pinned keys: every artifact trained before the settings
    existed was float32. Each setting on moves every stage's key, and differently from the others."""
    for name in ("SRPO_BENCH_TF32", "SRPO_BENCH_MIXED_PRECISION"):
        monkeypatch.delenv(name, raising=False)
    default = keys_of(method, "toy-two-moons")
    monkeypatch.setenv("SRPO_BENCH_TF32", "0")
    monkeypatch.setenv("SRPO_BENCH_MIXED_PRECISION", "off")
    assert keys_of(method, "toy-two-moons") == default == PINNED[(method, "toy-two-moons")]
    seen = [default]
    for variables in PRECISIONS.values():
        for name in ("SRPO_BENCH_TF32", "SRPO_BENCH_MIXED_PRECISION"):
            monkeypatch.delenv(name, raising=False)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        keys = keys_of(method, "toy-two-moons")
        assert all(keys[stage] not in [other[stage] for other in seen] for stage in keys), variables
        seen.append(keys)


def test_a_bad_precision_setting_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SRPO_BENCH_MIXED_PRECISION", "fp8")
    with pytest.raises(ValueError, match="SRPO_BENCH_MIXED_PRECISION: expected one of off, bf16, got 'fp8'"):
        precision_settings()
    monkeypatch.setenv("SRPO_BENCH_MIXED_PRECISION", "off")
    monkeypatch.setenv("SRPO_BENCH_TF32", "maybe")
    with pytest.raises(ValueError, match="SRPO_BENCH_TF32"):
        precision_settings()


def test_the_step_loop_runs_under_the_precision_settings_and_evaluations_in_float32(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With both settings on, a stage's step loop multiplies in bf16 (the CPU's autocast here, CUDA's on a GPU) with
    TF32 allowed, the periodic evaluations inside it act in float32, and both are restored after the stage."""
    monkeypatch.setenv("SRPO_BENCH_MIXED_PRECISION", "bf16")
    monkeypatch.setenv("SRPO_BENCH_TF32", "1")
    task = get_task("toy-two-moons")
    _, ctx = context("bc", task, toy.load_toy("toy-two-moons", size=256), tmp_path,
                     evaluation=EvaluationSchedule(points=1, episodes=1))
    assert ctx.precision.as_dict() == {"tf32": True, "mixed_precision": "bf16"}

    def product_dtype() -> torch.dtype:
        return (torch.ones(2, 2) @ torch.ones(2, 2)).dtype

    evaluated: list[torch.dtype] = []

    def evaluate(*args: object, **kwargs: object) -> SimpleNamespace:
        evaluated.append(product_dtype())
        return SimpleNamespace(mean_normalized=0.0, normalized=[0.0])

    monkeypatch.setattr(stages_module, "evaluate", evaluate)
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    agent = SimpleNamespace(seed=lambda seed: None)
    in_loop = [(product_dtype(), matmul.fp32_precision) for _step, _bar in ctx.steps("policy", 4, agent=lambda: agent)]
    assert in_loop == [(torch.bfloat16, "tf32")] * 4
    assert evaluated == [torch.float32]
    assert (product_dtype(), matmul.fp32_precision) == (torch.float32, before)
