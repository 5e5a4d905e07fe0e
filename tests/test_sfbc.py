"""SfBC: candidate selection, the planning returns, standardisation, the network's score/eps pair, a smoke fit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import context, fit
from torch import nn

from baselines.sfbc import (
    SfBC,
    SfBCConfig,
    SfBCCriticStage,
    SfBCScoreNet,
    critic_schedule,
    epoch_steps,
    planning_returns,
    select_candidates,
    sfbc_agent,
    soft_values,
    standardise,
    training_rows,
)
from srpo_bench.config import plan_stages, resolve_config
from srpo_bench.core.diffusion import VPSDE
from srpo_bench.core.dpm_solver import dpm_solver_nfe
from srpo_bench.core.stages import PlanContext, Stage
from srpo_bench.data.d4rl import qlearning_dataset
from srpo_bench.data.dataset import OfflineDataset
from srpo_bench.registry import get_method
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


def sfbc_stages(config: SfBCConfig, task: Task | None = None) -> tuple[Stage, ...]:
    """SfBC's declared stages, with the plan built as `runner.fit_context` builds it."""
    task = task or get_task("toy-two-moons")
    return SfBC.stages(config, PlanContext(task, "paper", lambda other: plan_stages(other, task, "paper")))


def critic_stage(config: SfBCConfig, task: Task | None = None) -> SfBCCriticStage:
    stage = sfbc_stages(config, task)[1]
    assert stage.name == "critic" and isinstance(stage.config, SfBCCriticStage)
    return stage.config


def test_epoch_steps_follow_the_official_fake_len_rule() -> None:
    # fake_len = max(round(S / N), 1) N rows, ceil(fake_len / batch) batches
    assert epoch_steps(4_000_000, 1_000_000, 4096) == 977  # behavior: 4M rows -> 976.6 -> 977
    assert epoch_steps(1_000_000, 1_000_000, 4096) == 245  # critic: 1M rows -> 244.1 -> 245
    # medium-expert size: round(0.5) = 0 -> max(0, 1) = 1 -> the whole 2M rows: more steps for bigger data
    assert epoch_steps(1_000_000, 2_000_000, 4096) == 489
    assert epoch_steps(1_000_000, 400_000, 4096) == 196  # round(2.5) = 2 (half to even): 800k rows
    assert epoch_steps(1_000_000, 1_000_000, 1_000_000) == 1


def test_critic_schedule_is_one_epoch_short_of_k_iterations() -> None:
    stage = critic_stage(SfBCConfig())
    assert (stage.steps_per_epoch, stage.planning_iterations, stage.epochs_per_iteration) == (0, 2, 100)
    # steps_per_epoch 0: the fake_len rule, 245 steps per epoch for N = 1M; 100 + 99 epochs
    assert critic_schedule(stage, 1_000_000) == (24_500, 48_755)
    assert critic_schedule(stage, 2_000_000) == (100 * 489, 199 * 489)
    # an explicit steps_per_epoch (CPU profiles) overrides the rule, whatever the data size
    explicit = dataclasses.replace(stage, steps_per_epoch=5)
    assert critic_schedule(explicit, 1_000_000) == critic_schedule(explicit, 300) == (500, 995)


def test_score_net_predicts_the_score_and_minus_h_as_noise() -> None:
    sde = VPSDE()
    net = SfBCScoreNet(3, 2, sde)
    assert 1.6e6 < sum(p.numel() for p in net.parameters()) < 1.7e6  # the official U-MLP ScoreNet: ~1.63M
    x, t, s = torch.randn(5, 2), torch.rand(5) * 0.9 + 0.05, torch.randn(5, 3)
    sigma = sde.alpha_sigma(t)[1][:, None]
    torch.testing.assert_close(net.noise(x, t, s), -sigma * net(x, t, s))


def test_agent_acts_in_the_box_and_counts_network_evaluations() -> None:
    """The behavior model is the exact noise predictor of a Gaussian N(m(s), 0.1^2) per state, m inside [-0.5, 0.5]:
    candidates land inside the action box, so no action clamps and the actions show the draws and the states. With
    the observations held fixed, the same seed gives the same actions and another seed others; other observations
    give other actions."""
    config = SfBCConfig(candidates=8, select_per_state=2, diffusion_steps=6)
    q_net = nn.Linear(5, 1)
    sde, spread = VPSDE(), 0.1

    def behavior_mean(states: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.tanh(states[:, :2])

    def noise_model(x: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        alpha, sigma = (value[:, None] for value in sde.alpha_sigma(t))
        return sigma * (x - alpha * behavior_mean(states)) / (alpha**2 * spread**2 + sigma**2)

    agent = sfbc_agent(noise_model, nn.Sequential(q_net), 2, config, -1.0, 1.0, torch.device("cpu"))
    assert agent.network_evaluations == {"denoiser": 8 * dpm_solver_nfe(6, 3), "critic": 8}
    observations = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))

    def act(seed: int, states: torch.Tensor = observations) -> torch.Tensor:
        agent.seed(seed)
        with torch.inference_mode():
            return agent.act(states)

    first = act(3)
    assert first.shape == (4, 2) and first.abs().max() < 1.0  # inside the box: nothing clamps
    assert (first - behavior_mean(observations)).abs().max() < 3 * spread  # the mean of two candidates near m(s)
    torch.testing.assert_close(act(3), first)
    assert (act(4) - first).abs().min() > 0  # every action differs with the seed
    assert not torch.allclose(act(3, observations + 1.0), first, atol=1e-3)


def test_task_settings() -> None:
    assert resolve_config(SfBC, get_task("toy-two-moons"), "paper").select_per_state == 1
    loco = resolve_config(SfBC, get_task("hopper-medium-v2"), "paper")
    assert loco.select_per_state == 4 and loco.critic_hidden == (256, 256)
    assert (loco.critic_samples_per_epoch, loco.critic_steps_per_epoch, loco.data_rows) == (1_000_000, 0, "raw")
    large_task = get_task("minari:D4RL/antmaze/large-play-v1")
    large = resolve_config(SfBC, large_task, "paper")
    assert large.select_per_state == 1 and large.critic_hidden == (512, 256, 256)
    # antmaze epochs are 2M samples (fake_len rule): 489 steps per epoch on the 1M-row antmaze datasets
    assert (large.critic_samples_per_epoch, large.critic_steps_per_epoch) == (2_000_000, 0)
    assert critic_schedule(critic_stage(large, large_task), 1_000_000) == (100 * 489, 199 * 489)
    assert get_method("sfbc") is SfBC


def timed_out_raw() -> dict[str, np.ndarray]:
    """A D4RL-format file: trajectory A (rows 0-2) times out at row 2, trajectory B (rows 3-4) terminates at
    row 4, trajectory C (rows 5-6) runs to the end of the file."""
    rewards = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0], dtype=np.float32)
    return {
        "observations": np.arange(14, dtype=np.float32).reshape(7, 2),
        "actions": np.linspace(-0.9, 0.9, 7, dtype=np.float32)[:, None],
        "rewards": rewards,
        "terminals": np.array([0, 0, 0, 0, 1, 0, 0], dtype=bool),
        "timeouts": np.array([0, 0, 1, 0, 0, 0, 0], dtype=bool),
    }


def test_raw_rows_keep_the_timed_out_final_step_and_its_reward() -> None:
    raw = timed_out_raw()
    dataset = qlearning_dataset(raw, "test.hdf5", "timed-out")
    # qlearning rows drop the timed-out final step (row 2) and the file's last row (6)
    np.testing.assert_array_equal(dataset.rewards, [1.0, 2.0, 8.0, 16.0, 32.0])
    rows = training_rows(dataset, "raw")
    assert dataset.raw_rows is not None and set(rows) == {"observations", "actions", "rewards", "ends"}
    np.testing.assert_array_equal(rows["observations"], raw["observations"])
    np.testing.assert_array_equal(rows["actions"], raw["actions"])
    np.testing.assert_array_equal(rows["rewards"], raw["rewards"])
    np.testing.assert_array_equal(rows["ends"], [False, False, True, False, True, False, True])  # terminal or timeout
    qlearning = training_rows(dataset, "qlearning")
    np.testing.assert_array_equal(qlearning["rewards"], dataset.rewards)
    np.testing.assert_array_equal(qlearning["ends"], [False, True, False, True, True])
    # gamma 0.5: on raw rows R_0 = 1 + 0.5 * 2 + 0.25 * 4 = 3 (the timed-out step's reward counts);
    # the qlearning rows stop before it: R_0 = 1 + 0.5 * 2 = 2
    raw_returns, _ = planning_returns(rows["rewards"], rows["ends"], gamma=0.5)
    assert raw_returns[0] == 3.0
    np.testing.assert_allclose(raw_returns, [3.0, 4.0, 4.0, 16.0, 16.0, 64.0, 64.0])
    assert planning_returns(qlearning["rewards"], qlearning["ends"], gamma=0.5)[0][0] == 2.0
    # a source without raw rows (toy, Minari) trains on its one kind of row either way
    plain = tiny_dataset()
    assert plain.raw_rows is None
    for key, value in training_rows(plain, "raw").items():
        np.testing.assert_array_equal(value, training_rows(plain, "qlearning")[key])


def test_fit_counts_epochs_over_the_rows_it_trains_on(tmp_path: Path) -> None:
    """Behavior epochs of 10 samples, batch 1: max(round(10 / 7), 1) 7 = 7 steps on the 7 raw rows,
    max(round(10 / 5), 1) 5 = 10 steps on the 5 qlearning rows; the critic epoch likewise."""
    dataset = qlearning_dataset(timed_out_raw(), "test.hdf5", "timed-out")
    task = Task(name="timed-out", suite="test", family="locomotion", max_episode_steps=3, load=lambda: dataset,
                make_env=get_task("toy-two-moons").make_env, score_scale="toy", ref_min_score=0.0, ref_max_score=1.0)
    schedule = {"behavior_epochs": "1", "behavior_samples_per_epoch": "10", "behavior_steps": "0",
                "behavior_batch_size": "1", "critic_samples_per_epoch": "10", "critic_steps_per_epoch": "0",
                "critic_batch_size": "1", "critic_epochs_per_iteration": "1", "planning_states": "0",
                "diffusion_steps": "2", "candidates": "4", "planning_samples": "2"}
    for rows, steps in (("raw", 7), ("qlearning", 10)):
        _agent, ctx = fit("sfbc", task, dataset, tmp_path / rows, overrides={"sfbc": {**schedule, "data_rows": rows}})
        assert ctx.curves["behavior"][-1]["step"] == steps - 1
        # K = 2 iterations of one epoch, one epoch short: one epoch of critic steps, no planning update
        assert [point["step"] for point in ctx.curves["critic"] if "loss" in point][-1] == steps - 1
        assert [point["step"] for point in ctx.curves["critic"] if "from_value_fraction" in point] == [0]


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


def tiny_task() -> Task:
    toy = get_task("toy-two-moons")
    return Task(name="tiny", suite="test", family="locomotion", max_episode_steps=50, load=tiny_dataset,
                make_env=toy.make_env, score_scale="toy", ref_min_score=0.0, ref_max_score=1.0)


SMOKE_OVERRIDES = {"diffusion_steps": "3", "candidates": "4", "behavior_steps": "10"}


def test_smoke_fit_returns_an_agent_and_resumes(tmp_path: Path) -> None:
    task, dataset = tiny_task(), tiny_dataset()
    agent, ctx = fit("sfbc", task, dataset, tmp_path, overrides={"sfbc": SMOKE_OVERRIDES})
    config = resolve_config(SfBC, task, "smoke", SMOKE_OVERRIDES)
    actions = agent.act(torch.as_tensor(dataset.observations[:7]))
    assert actions.shape == (7, 2) and torch.isfinite(actions).all() and actions.abs().max() <= 1.0
    assert [(e["stage"], e["definition"], e["origin"]) for e in ctx.stage_log] == [
        ("behavior", "SfBCBehaviorStage.r1", "trained"), ("critic", "SfBCCriticStage.r1", "trained")]
    planning = [point for point in ctx.curves["critic"] if "from_value_fraction" in point]
    assert len(planning) == config.planning_iterations  # the MC targets, then one planning update
    _resumed, again = fit("sfbc", task, dataset, tmp_path, overrides={"sfbc": SMOKE_OVERRIDES})
    assert [entry["origin"] for entry in again.stage_log] == ["resumed", "resumed"]
    assert [entry["key"] for entry in again.stage_log] == [entry["key"] for entry in ctx.stage_log]


def test_shared_behavior_source_uses_srpos_behavior_model(tmp_path: Path) -> None:
    task, dataset = tiny_task(), tiny_dataset()
    overrides = {"sfbc": {**SMOKE_OVERRIDES, "behavior_source": "shared"}, "srpo": {"behavior_steps": "5"}}
    agent, ctx = fit("sfbc", task, dataset, tmp_path, overrides=overrides, run_id="sfbc-run")
    assert agent.act(torch.zeros(3, 3)).shape == (3, 2)
    assert [(e["stage"], e["definition"]) for e in ctx.stage_log] == [
        ("behavior", "VPSDEBehaviorStage.r1"), ("critic", "SfBCCriticStage.r1")]
    assert [path.name for path in (tmp_path / "stages").glob("VPSDEBehaviorStage.r1-*.pt")] == [
        f"VPSDEBehaviorStage.r1-{ctx.stage_log[0]['key']}.pt"]
    # it is SRPO's stage exactly as SRPO declares it with the grid's srpo overrides: one key, one artifact
    _config, srpo_ctx = context("srpo", task, dataset, tmp_path, overrides=overrides, run_id="srpo-run")
    assert srpo_ctx.keys["behavior"] == ctx.stage_log[0]["key"]
    srpo_behavior = dataclasses.asdict(srpo_ctx.config("behavior"))
    assert srpo_behavior["steps"] == 5 and dataclasses.asdict(ctx.config("behavior")) == srpo_behavior
    # the critic stage depends on the behavior stage: another behavior model, another critic key
    _own_config, own = context("sfbc", task, dataset, tmp_path, overrides={"sfbc": SMOKE_OVERRIDES})
    assert own.keys["critic"] != ctx.keys["critic"]
    assert own.keys["critic"] != context("sfbc", task, dataset, tmp_path, overrides={
        **overrides, "srpo": {"behavior_steps": "6"}})[1].keys["critic"]
