"""SfBC: candidate selection, the planning returns, standardisation, the network's score/eps pair, a smoke fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from baselines.sfbc import (
    SfBC,
    SfBCAgent,
    SfBCConfig,
    SfBCScoreNet,
    critic_schedule,
    planning_returns,
    select_candidates,
    soft_values,
    standardise,
)
from srpo_bench.data.dataset import OfflineDataset
from srpo_bench.diffusion import VPSDE
from srpo_bench.dpm_solver import dpm_solver_nfe
from srpo_bench.methods import FitContext, get_method, resolve_config
from srpo_bench.progress import Reporter
from srpo_bench.srpo import SRPO
from srpo_bench.tasks import Task, get_task


def test_selection_averages_the_four_best_candidates() -> None:
    """alpha = 100 on a clear gap: the draw without replacement is the top group, whatever the generator."""
    torch.manual_seed(0)
    batch, count, act_dim = 3, 32, 2
    candidates = torch.randn(batch, count, act_dim)
    q = torch.rand(batch, count) * 0.1
    best = torch.stack([torch.randperm(count)[:4] for _ in range(batch)])
    q.scatter_(1, best, 2.0 + torch.rand(batch, 4) * 0.1)  # a clear best group of four, slightly unequal
    expected = torch.gather(candidates, 1, best[..., None].expand(-1, -1, act_dim)).mean(dim=1)
    for seed in range(5):
        chosen = select_candidates(q, candidates, alpha=100.0, select_per_state=4, logit_cap=40.0,
                                   generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(chosen, expected)


def test_selection_draws_without_replacement() -> None:
    """One candidate dwarfs the rest: with replacement it would be drawn four times; without, the other
    three come along. The cap (4th-largest logit + 40) keeps the dominant one from owning the draw."""
    candidates = torch.arange(8, dtype=torch.float32).view(1, 8, 1)
    q = torch.tensor([[5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    for seed in range(20):
        generator = torch.Generator().manual_seed(seed)
        chosen = select_candidates(q, candidates, alpha=100.0, select_per_state=4, logit_cap=40.0,
                                   generator=generator)
        # candidate 0 plus three distinct others out of 1..7: the mean is (0 + sum of three distinct) / 4
        others = chosen.item() * 4
        assert 1 + 2 + 3 <= others <= 5 + 6 + 7
    uniform_q = torch.zeros(1, 8)
    draws = torch.stack([
        select_candidates(uniform_q, candidates, 100.0, 8, 40.0, torch.Generator().manual_seed(s)) for s in range(3)
    ])
    torch.testing.assert_close(draws, torch.full_like(draws, 3.5))  # all 8 distinct: mean of 0..7


def test_selection_with_one_draw_follows_the_softmax() -> None:
    candidates = torch.tensor([[[0.0], [1.0]]]).expand(4000, 2, 1)
    q = torch.tensor([[0.0, 0.01]]).expand(4000, 2)  # logits 0 and 1 at alpha 100
    chosen = select_candidates(q, candidates, 100.0, 1, 40.0, torch.Generator().manual_seed(0))
    assert chosen.mean().item() == pytest.approx(np.exp(1) / (1 + np.exp(1)), abs=0.03)


def test_monte_carlo_returns_stop_at_trajectory_ends() -> None:
    rewards = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
    ends = np.array([False, False, True, False, True])  # trajectories [0, 1, 2] and [3, 4]
    returns, from_value = planning_returns(rewards, ends, gamma=0.5)
    np.testing.assert_allclose(returns, [1 + 0.5 * (2 + 0.5 * 3), 2 + 0.5 * 3, 3, 10 + 0.5 * 20, 20])
    assert from_value == 0.0


def test_planning_returns_take_the_max_with_the_value_backwards() -> None:
    rewards = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
    ends = np.array([False, False, True, False, True])
    values = np.array([0.0, 9.0, 1.0, 50.0, -np.inf])  # -inf: a state that was not planned
    returns, from_value = planning_returns(rewards, ends, gamma=0.5, values=values)
    # backwards: R4 = 20; R3 = max(10 + 10, 50) = 50; R2 = max(3, 1) = 3 (new trajectory);
    # R1 = max(2 + 1.5, 9) = 9; R0 = max(1 + 4.5, 0) = 5.5: the planned value propagates to R0
    np.testing.assert_allclose(returns, [5.5, 9.0, 3.0, 50.0, 20.0])
    assert from_value == pytest.approx(2 / 5)


def test_standardisation_uses_the_population_std_with_a_floor() -> None:
    returns = np.array([1.0, 2.0, 3.0, 4.0])
    standard, mean, std = standardise(returns, 0.1)
    assert mean == 2.5 and std == pytest.approx(np.sqrt(1.25))
    np.testing.assert_allclose(standard, (returns - 2.5) / np.sqrt(1.25))
    flat, mean, std = standardise(np.array([3.0, 3.02, 2.98]), 0.1)
    assert std == 0.1
    np.testing.assert_allclose(flat, [0.0, 0.2, -0.2], atol=1e-12)


def test_soft_values_weight_q_by_its_softmax() -> None:
    q_net = nn.Linear(2, 1)  # Q(s, a) = a on a one-dimensional state and action
    with torch.no_grad():
        q_net.weight.copy_(torch.tensor([[0.0, 1.0]]))
        q_net.bias.zero_()
    sampled = torch.tensor([[[0.0], [0.1]], [[0.5], [0.5]]])
    values = soft_values(q_net, torch.zeros(2, 1), sampled, alpha=20.0)
    weights = torch.softmax(torch.tensor([0.0, 2.0]), 0)
    torch.testing.assert_close(values, torch.tensor([(weights * torch.tensor([0.0, 0.1])).sum(), 0.5]))


def test_critic_schedule_is_one_epoch_short_of_k_iterations() -> None:
    assert critic_schedule(SfBCConfig()) == (24_500, 48_755)  # 100 + 99 epochs of 245 steps


def test_score_net_predicts_the_score_and_minus_h_as_noise() -> None:
    sde = VPSDE()
    net = SfBCScoreNet(3, 2, sde)
    assert 1.6e6 < sum(p.numel() for p in net.parameters()) < 1.7e6  # STACK.md: ~1.63M
    x, t, s = torch.randn(5, 2), torch.rand(5) * 0.9 + 0.05, torch.randn(5, 3)
    sigma = sde.alpha_sigma(t)[1][:, None]
    torch.testing.assert_close(net.noise(x, t, s), -sigma * net(x, t, s))


def test_agent_acts_in_the_box_and_counts_network_evaluations() -> None:
    config = SfBCConfig(candidates=8, select_per_state=2, diffusion_steps=6)
    q_net = nn.Linear(5, 1)

    def noise_model(x: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        return -3.0 * torch.ones_like(x)  # pushes samples beyond +1, so the clamp shows

    agent = SfBCAgent(noise_model, nn.Sequential(q_net), 2, config, -1.0, 1.0, torch.device("cpu"))
    assert agent.network_evaluations == {"denoiser": 8 * dpm_solver_nfe(6, 3), "critic": 8}
    agent.seed(3)
    first = agent.act(torch.randn(4, 3))
    agent.seed(3)
    again = agent.act(torch.randn(4, 3))
    assert first.shape == (4, 2) and first.abs().max() <= 1.0
    torch.testing.assert_close(first, again)


def test_task_settings() -> None:
    assert resolve_config(SfBC, get_task("toy-two-moons"), "paper").select_per_state == 1
    loco = resolve_config(SfBC, get_task("hopper-medium-v2"), "paper")
    assert loco.select_per_state == 4 and loco.critic_hidden == (256, 256)
    large = resolve_config(SfBC, get_task("minari:D4RL/antmaze/large-play-v1"), "paper")
    assert large.select_per_state == 1 and large.critic_hidden == (512, 256, 256)
    assert large.critic_steps_per_epoch == 489
    assert get_method("sfbc") is SfBC


def tiny_dataset() -> OfflineDataset:
    rng = np.random.default_rng(0)
    size = 300
    observations = rng.normal(size=(size, 3)).astype(np.float32)
    actions = rng.uniform(-0.9, 0.9, size=(size, 2)).astype(np.float32)
    ends = np.zeros(size, dtype=bool)
    ends[49::50] = True
    return OfflineDataset(
        name="tiny", source="test", observations=observations, actions=actions,
        rewards=-(actions**2).sum(1).astype(np.float32), next_observations=np.roll(observations, -1, axis=0),
        terminals=np.zeros(size, dtype=np.float32), episode_ends=ends,
    )


def smoke_context(tmp_path: Path, shared_stage_dir: Path | None = None) -> FitContext:
    toy = get_task("toy-two-moons")
    task = Task(name="tiny", suite="test", family="locomotion", max_episode_steps=50, load=tiny_dataset,
                make_env=toy.make_env, score_scale="toy", ref_min_score=0.0, ref_max_score=1.0)
    return FitContext(task=task, dataset=tiny_dataset(), seed=0, device=torch.device("cpu"),
                      run_dir=tmp_path / "run", reporter=Reporter(quiet=True), profile="smoke",
                      shared_stage_dir=shared_stage_dir)


SMOKE_OVERRIDES = {"diffusion_steps": "3", "candidates": "4", "behavior_steps": "10"}


def test_smoke_fit_returns_an_agent_and_resumes(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    ctx = smoke_context(tmp_path)
    config = resolve_config(SfBC, ctx.task, "smoke", SMOKE_OVERRIDES)
    agent = SfBC().fit(ctx, config)
    actions = agent.act(torch.as_tensor(ctx.dataset.observations[:7]))
    assert actions.shape == (7, 2) and torch.isfinite(actions).all() and actions.abs().max() <= 1.0
    assert [(e["stage"], e["kind"], e["origin"]) for e in ctx.stage_log] == [
        ("behavior", "vpsde-behavior/sfbc-u-mlp", "trained"), ("critic", "sfbc-critic", "trained")]
    planning = [point for point in ctx.curves["critic"] if "from_value_fraction" in point]
    assert len(planning) == config.planning_iterations  # the MC targets, then one planning update
    again = smoke_context(tmp_path)
    SfBC().fit(again, config)
    assert [entry["origin"] for entry in again.stage_log] == ["resumed", "resumed"]


def test_share_stages_uses_srpo_behavior_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    shortened = {family: {**values, "behavior_steps": 5} for family, values in SRPO.profiles["smoke"].items()}
    monkeypatch.setitem(SRPO.profiles, "smoke", shortened)
    ctx = smoke_context(tmp_path, shared_stage_dir=tmp_path / "shared")
    agent = SfBC().fit(ctx, resolve_config(SfBC, ctx.task, "smoke", SMOKE_OVERRIDES))
    assert agent.act(torch.zeros(3, 3)).shape == (3, 2)
    assert ctx.stage_log[0]["kind"] == "vpsde-behavior/ln-resnet"
    assert any((tmp_path / "shared").glob("vpsde-behavior_ln-resnet-*.pt"))
