"""Diffusion-QL: schedule, Q-loss gradient path, max-Q backup, Q-weighted acting, stage fitting."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from helpers import context, fit
from torch import nn

import baselines.diffusion_ql as dql
from baselines.diffusion_ql import (
    DiffusionQL,
    DiffusionQLConfig,
    DiffusionQLNoiseNet,
    actor_losses,
    diffusion_ql_agent,
    diffusion_ql_critic,
    diffusion_ql_schedule,
    td_target,
    tuned_rewards,
)
from srpo_bench.config import ConfigError, plan_stages, resolve_config
from srpo_bench.core.agents import CandidateAgent, softmax_draw_selection
from srpo_bench.core.critics import TwinQ
from srpo_bench.core.diffusion import ddpm_sample_clipped_x0
from srpo_bench.core.stages import FitContext, PlanContext, plan_keys
from srpo_bench.data import toy
from srpo_bench.data.dataset import OfflineDataset
from srpo_bench.tasks import Task, get_task


@pytest.fixture(autouse=True)
def one_torch_thread() -> Any:
    """These tests time nothing; one thread keeps them to seconds on the shared 2-core machines."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def linear_twin_q(q1_weights: list[float], q2_weights: list[float]) -> TwinQ:
    """A TwinQ with no hidden layer: Q_i(s, a) = w_i . [s, a] (obs_dim 1, act_dim 2), weights set by hand."""
    critic = TwinQ(1, 2, hidden_dims=())
    with torch.no_grad():
        for head, weights in ((critic.q1, q1_weights), (critic.q2, q2_weights)):
            head[0].weight.copy_(torch.tensor([weights]))
            head[0].bias.zero_()
    return critic


def two_moons(size: int = 512) -> tuple[Task, OfflineDataset]:
    return get_task("toy-two-moons"), toy.load_toy("toy-two-moons", size=size)


def stage_state(ctx: FitContext, stage: str = "joint") -> dict[str, torch.Tensor]:
    """The saved state_dict of a fitted stage, from its content-addressed artifact."""
    entry = next(e for e in ctx.stage_log if e["stage"] == stage)
    path = ctx.stage_dir / f"{entry['definition']}-{entry['key']}.pt"
    return torch.load(path, weights_only=False)["state"]


def sub_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {name[len(prefix) + 1:]: value for name, value in state.items() if name.startswith(prefix + ".")}


def actor_of(agent: CandidateAgent) -> nn.Module:
    """The noise network a Diffusion-QL agent samples its candidates from."""
    return inspect.getclosurevars(agent.sampler).nonlocals["actor"]


def joint_key(config: DiffusionQLConfig, task: Task, fingerprint: str = "data", seed: int = 0) -> str:
    """The joint stage's cache key, with the plan built as `runner.fit_context` builds it."""
    plan = PlanContext(task, "smoke", lambda other: plan_stages(other, task, "smoke"))
    return plan_keys(DiffusionQL.stages(config, plan), fingerprint, seed)["joint"]


def test_vp_betas_for_five_steps_match_the_formula_by_hand() -> None:
    # beta_t = 1 - exp(-0.1/5 - 0.5 * 9.9 * (2t - 1) / 25), t = 1..5, evaluated separately with math.exp
    expected = [0.19587455833344036, 0.4588181933847971, 0.6357810204284766, 0.7548781879608826, 0.8350313791773686]
    schedule = diffusion_ql_schedule(DiffusionQLConfig())
    assert schedule.steps == 5
    np.testing.assert_allclose(schedule.betas.numpy(), expected, rtol=1e-12)


def test_noise_net_has_the_official_layout() -> None:
    net = DiffusionQLNoiseNet(obs_dim=11, act_dim=3)
    linear_shapes = [tuple(m.weight.shape) for m in net.modules() if isinstance(m, nn.Linear)]
    # time MLP 16 -> 32 -> 16, then [a_t (3), t_emb (16), s (11)] = 30 -> 256 -> 256 -> 256 -> 3
    assert linear_shapes == [(32, 16), (16, 32), (256, 30), (256, 256), (256, 256), (3, 256)]
    assert sum(isinstance(m, nn.Mish) for m in net.modules()) == 4
    eps = net(torch.zeros(7, 3), torch.full((7,), 4.0), torch.zeros(7, 11))
    assert eps.shape == (7, 3)


def test_q_loss_gradient_flows_through_all_five_denoising_steps() -> None:
    torch.manual_seed(0)
    actor, critic = DiffusionQLNoiseNet(1, 2), diffusion_ql_critic(1, 2)
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def record(_module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        output.retain_grad()
        calls.append((args[1].detach(), output))

    actor.register_forward_hook(record)
    states, actions = torch.zeros(256, 1), torch.rand(256, 2) * 2 - 1
    schedule = diffusion_ql_schedule(DiffusionQLConfig()).to(torch.device("cpu"))  # float32 coefficients
    _bc_loss, q_loss = actor_losses(actor, critic, states, actions, schedule, 1.0, q1_leads=True)
    q_loss.backward()

    assert len(calls) == 6  # one denoising-loss call, then the 5-step reverse chain
    assert calls[0][1].grad is None  # the BC call is not on the Q loss's path
    chain = calls[1:]
    assert [float(t[0]) for t, _ in chain] == [4.0, 3.0, 2.0, 1.0, 0.0]
    for t, output in chain:
        assert torch.all(t == t[0])
        assert output.grad is not None and output.grad.abs().sum() > 0, f"no Q gradient at step {int(t[0]) + 1}"
    # the critic is only read: no gradient lands on it, and it is trainable again afterwards
    assert all(p.grad is None and p.requires_grad for p in critic.parameters())


def test_q_loss_divides_by_the_other_heads_mean_abs_value() -> None:
    critic = linear_twin_q([0.0, 1.0, 0.0], [0.0, 0.0, -2.0])  # Q1 = a0, Q2 = -2 a1
    new_actions = torch.tensor([[0.5, 0.25], [0.1, -0.5]], requires_grad=True)
    states = torch.zeros(2, 1)
    loss = dql.q_improvement_loss(critic, states, new_actions, q1_leads=True)
    # -mean(Q1) / mean|Q2| = -0.3 / mean(0.5, 1.0) = -0.4
    assert float(loss.detach()) == pytest.approx(-0.4)
    (grad,) = torch.autograd.grad(loss, new_actions)
    # the denominator is held constant: d/da0 = -1 / (2 * 0.75), nothing on a1
    np.testing.assert_allclose(grad.numpy(), [[-1 / 1.5, 0.0], [-1 / 1.5, 0.0]], rtol=1e-6)
    swapped = dql.q_improvement_loss(critic, states, new_actions, q1_leads=False)
    assert float(swapped.detach()) == pytest.approx(-0.25 / 0.3)  # -mean(Q2) / mean|Q1| = -((-0.5 + 1.0) / 2) / 0.3


def test_max_q_backup_takes_the_max_over_samples_then_the_min_over_heads() -> None:
    critic = linear_twin_q([0.0, 1.0, 0.0], [0.0, 0.0, 1.0])  # Q1' = a0, Q2' = a1
    # three next actions for each of two next states
    scripted = torch.tensor([[1.0, 4.0], [5.0, 2.0], [3.0, 3.0], [0.0, -1.0], [-2.0, 1.0], [1.0, 0.0]])

    def sample(next_states: torch.Tensor) -> torch.Tensor:
        assert next_states.shape == (6, 1)
        return scripted

    rewards, terminals = torch.tensor([1.0, 0.5]), torch.tensor([0.0, 1.0])
    target = td_target(critic, sample, rewards, torch.zeros(2, 1), terminals, 0.9, True, 3)
    # state 0: max Q1' = 5, max Q2' = 4 -> V' = 4 (min over heads after max: 3 if taken the other way round)
    # state 1: terminal -> y = r
    np.testing.assert_allclose(target.numpy(), [1.0 + 0.9 * 4.0, 0.5], rtol=1e-6)


def test_plain_backup_uses_the_min_of_the_heads_at_one_next_action() -> None:
    critic = linear_twin_q([0.0, 1.0, 0.0], [0.0, 0.0, 1.0])
    target = td_target(critic, lambda s: torch.tensor([[2.0, -1.0]]), torch.tensor([0.0]), torch.zeros(1, 1),
                       torch.tensor([0.0]), 0.99, False, 10)
    assert float(target) == pytest.approx(0.99 * -1.0)


def test_draw_frequencies_follow_the_softmax_of_q() -> None:
    states = 20_000
    candidates = torch.tensor([[[0.0], [1.0], [2.0]]]).expand(states, 3, 1)
    q_values = torch.tensor([[0.0, 1.0, 2.0]]).expand(states, 3)
    drawn = softmax_draw_selection(torch.zeros(states, 1), q_values, candidates, torch.Generator().manual_seed(0))
    assert drawn.shape == (states, 1)
    frequencies = torch.bincount(drawn[:, 0].long(), minlength=3).double() / states
    expected = np.exp([0.0, 1.0, 2.0]) / np.exp([0.0, 1.0, 2.0]).sum()  # 0.090, 0.245, 0.665
    np.testing.assert_allclose(frequencies.numpy(), expected, atol=0.015)


def test_agent_draws_from_the_region_the_target_critic_favours() -> None:
    torch.manual_seed(0)
    actor = DiffusionQLNoiseNet(1, 2)
    critic_target = linear_twin_q([0.0, 20.0, 0.0], [0.0, 20.0, 0.0])  # Q = 20 a0: strongly prefers a0 > 0
    schedule = diffusion_ql_schedule(DiffusionQLConfig())
    agent = diffusion_ql_agent(actor, critic_target, schedule, act_dim=2, max_action=1.0, candidates=50,
                               device=torch.device("cpu"))
    assert agent.network_evaluations == {"denoiser": 250, "critic": 100}
    agent.seed(3)
    actions = agent.act(torch.zeros(200, 1))
    assert actions.shape == (200, 2) and actions.abs().max() <= 1.0
    assert (actions[:, 0] > 0).float().mean() > 0.95
    # the untrained actor's own candidates are not biased that way: the critic made the choice
    states = torch.zeros(200, 1)
    raw = ddpm_sample_clipped_x0(actor, states, schedule.to("cpu"), 2, generator=torch.Generator().manual_seed(3))
    assert (raw[:, 0] > 0).float().mean() < 0.8
    # seeding makes the stochastic draw reproducible
    agent.seed(3)
    np.testing.assert_array_equal(agent.act(torch.zeros(200, 1)).numpy(), actions.numpy())


def test_task_settings_follow_the_official_table() -> None:
    hopper = resolve_config(DiffusionQL, get_task("lite-hopper-medium-replay-v0"), "paper")
    assert (hopper.grad_norm, hopper.eta, hopper.lr, hopper.max_q_backup, hopper.steps) == (4.0, 1.0, 3e-4, False,
                                                                                          2_000_000)
    assert hopper.reward_tune == "no" and hopper.selection == "final" and not hopper.lr_decay
    maze = resolve_config(DiffusionQL, get_task("minari:D4RL/antmaze/medium-play-v1"), "paper")
    assert (maze.lr, maze.eta, maze.max_q_backup, maze.grad_norm, maze.steps) == (1e-3, 2.0, True, 2.0, 1_000_000)
    assert maze.reward_tune == "cql_antmaze"
    np.testing.assert_allclose(tuned_rewards(torch.tensor([0.0, 1.0]), "cql_antmaze").numpy(), [-2.0, 2.0])
    umaze = resolve_config(DiffusionQL, get_task("minari:D4RL/antmaze/umaze-v1"), "quick")
    assert (umaze.eta, umaze.max_q_backup, umaze.steps) == (0.5, False, 2000)  # quick overrides steps only


def test_smoke_fit_returns_an_agent_and_resumes_from_the_stage(tmp_path: Path) -> None:
    task, dataset = two_moons()
    agent, ctx = fit("diffusion-ql", task, dataset, tmp_path)
    config = resolve_config(DiffusionQL, task, "smoke")
    agent.seed(1)
    observations = torch.as_tensor(dataset.observations[:9])
    actions = agent.act(observations)
    assert actions.shape == (9, 2) and torch.isfinite(actions).all() and actions.abs().max() <= 1.0
    assert [entry["origin"] for entry in ctx.stage_log] == ["trained"]
    assert ctx.stage_log[0]["definition"] == "DiffusionQLJointStage.r1"
    assert ctx.curves["joint"][-1]["step"] == config.steps - 1
    state = stage_state(ctx)
    assert {name.split(".", 1)[0] for name in state} == {"actor", "ema_actor", "critic", "critic_target"}
    # before step 1000 the EMA actor is never updated: it keeps the initial weights the actor moved away from
    assert not torch.equal(state["ema_actor.body.0.weight"], state["actor.body.0.weight"])

    resumed, again = fit("diffusion-ql", task, dataset, tmp_path)
    assert [entry["origin"] for entry in again.stage_log] == ["resumed"]
    assert again.stage_log[0]["key"] == ctx.stage_log[0]["key"]
    assert len(list((tmp_path / "stages").glob("DiffusionQLJointStage.r1-*.pt"))) == 1
    resumed.seed(1)
    np.testing.assert_array_equal(resumed.act(observations).numpy(), actions.numpy())


def test_ema_actor_follows_the_actor_from_ema_start(tmp_path: Path) -> None:
    task, dataset = two_moons(size=256)
    config = dataclasses.replace(resolve_config(DiffusionQL, task, "smoke"), steps=6, ema_start=0, ema_every=1,
                                 ema_decay=0.0)  # decay 0: the EMA copy equals the actor after every update
    _agent, ctx = fit("diffusion-ql", task, dataset, tmp_path, config=config)
    state = stage_state(ctx)
    actor, ema_actor = sub_state(state, "actor"), sub_state(state, "ema_actor")
    assert actor and set(actor) == set(ema_actor)
    for name, weights in actor.items():
        torch.testing.assert_close(ema_actor[name], weights, rtol=0, atol=0)


def test_online_best_selection_keeps_the_best_evaluated_weights(tmp_path: Path, monkeypatch: Any) -> None:
    scores = iter([5.0, 50.0, 10.0])
    seen: list[dict[str, torch.Tensor]] = []

    def fake_evaluate(agent: CandidateAgent, task: Any, episodes: int, dataset: Any = None) -> SimpleNamespace:
        assert episodes == 2 and agent.num_candidates == config.action_candidates
        seen.append({k: v.clone() for k, v in actor_of(agent).state_dict().items()})
        return SimpleNamespace(mean_normalized=next(scores))

    monkeypatch.setattr(dql, "evaluate", fake_evaluate)
    task, dataset = two_moons(size=256)
    config = dataclasses.replace(resolve_config(DiffusionQL, task, "smoke"), steps=9, eval_every=3,
                                 eval_episodes=2, selection="online-best")
    agent, ctx = fit("diffusion-ql", task, dataset, tmp_path, config=config)
    assert len(seen) == 3
    assert [point["selection_normalized"] for point in ctx.curves["joint"]
            if "selection_normalized" in point] == [5, 50, 10]
    for name, weights in actor_of(agent).state_dict().items():
        torch.testing.assert_close(weights, seen[1][name], rtol=0, atol=0)
    assert not torch.equal(actor_of(agent).state_dict()["body.0.weight"], seen[2]["body.0.weight"])
    # the stage artifact holds the selected weights, so a resumed run acts with them too
    for name, weights in sub_state(stage_state(ctx), "actor").items():
        torch.testing.assert_close(weights, seen[1][name], rtol=0, atol=0)


def test_unknown_selection_is_a_clear_error(tmp_path: Path) -> None:
    # selection is a Literal setting now: a bad value is refused when the config is resolved, before any fit
    task, dataset = two_moons(size=64)
    with pytest.raises(ConfigError, match="diffusion-ql.selection: expected one of final, online-best, got 'best'"):
        resolve_config(DiffusionQL, task, "smoke", {"selection": "best"})
    with pytest.raises(ValueError, match="got 'best'"):  # the runner's path (--set diffusion-ql.selection=best)
        context("diffusion-ql", task, dataset, tmp_path, overrides={"diffusion-ql": {"selection": "best"}})
    assert not (tmp_path / "stages").exists() or not any((tmp_path / "stages").iterdir())


def test_joint_stage_key_ignores_acting_settings_unless_they_select_the_weights() -> None:
    task = get_task("toy-two-moons")
    final = resolve_config(DiffusionQL, task, "smoke")
    assert final.selection == "final"
    # under "final" the candidate count only changes acting: the trained weights, hence the key, are the same
    assert joint_key(dataclasses.replace(final, action_candidates=7), task) == joint_key(final, task)
    online = dataclasses.replace(final, selection="online-best")
    assert joint_key(online, task) != joint_key(final, task)
    # under "online-best" the evaluations (with that many candidates) pick the weights: another key
    assert joint_key(dataclasses.replace(online, action_candidates=7), task) != joint_key(online, task)
    assert joint_key(dataclasses.replace(online, eval_episodes=3), task) != joint_key(online, task)
    # a training setting, the data and the seed always enter the key
    assert joint_key(dataclasses.replace(final, eta=2.0), task) != joint_key(final, task)
    assert joint_key(final, task, fingerprint="other") != joint_key(final, task)
    assert joint_key(final, task, seed=1) != joint_key(final, task)
