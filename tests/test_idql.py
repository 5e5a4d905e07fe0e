"""IDQL: evaluation-time action selection, the T = 5 sampler, data treatment, stage sharing with SRPO, a smoke fit."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from baselines import idql
from baselines.idql import IDQL, IDQLAgent, IDQLConfig, training_tensors
from srpo_bench.data import toy
from srpo_bench.data.dataset import OfflineDataset
from srpo_bench.diffusion import DDPMSchedule, ddpm_sample_ancestral
from srpo_bench.methods import FitContext, resolve_config
from srpo_bench.progress import Reporter
from srpo_bench.srpo import SRPO
from srpo_bench.tasks import Task, get_task


class StateScaledHeads(nn.Module):
    """Q1(s, a) = s_0 a_0, Q2(s, a) = s_0 a_1: known heads whose ranking flips with the sign of the state."""

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return states[:, 0] * actions[:, 0], states[:, 0] * actions[:, 1]


class ConstantValue(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return torch.full((states.shape[0],), self.value)


def hand_built_agent(num_candidates: int, **kwargs) -> IDQLAgent:
    score_model = nn.Linear(1, 1)  # never called: the sampler is replaced in these tests
    return IDQLAgent(score_model, StateScaledHeads(), DDPMSchedule.vp(5).to("cpu"), act_dim=2,
                     num_candidates=num_candidates, **kwargs)


def fixed_candidates(monkeypatch: pytest.MonkeyPatch, per_state: torch.Tensor) -> list[dict]:
    """Make the agent's sampler return `per_state` [B, N, act_dim] and record how it was called."""
    calls: list[dict] = []

    def sampler(noise_model, states, schedule, act_dim, temperature=1.0, clip=1.0, generator=None):
        calls.append({"states": states.clone(), "steps": schedule.steps, "act_dim": act_dim, "clip": clip,
                      "temperature": temperature})
        return per_state.reshape(-1, per_state.shape[-1]).clone()

    monkeypatch.setattr(idql, "ddpm_sample_ancestral", sampler)
    return calls


def test_argmax_picks_the_best_candidate_by_the_min_of_the_two_target_heads(monkeypatch: pytest.MonkeyPatch) -> None:
    # State 0 (s = 1): mins 0, 0.1, 0 -> candidate 1 (the larger Q1 alone would pick 0).
    # State 1 (s = -1): mins -0.2, -0.3, -0.26 -> candidate 0 (Q1 alone or the mean of the heads would pick 2).
    candidates = torch.tensor([
        [[0.5, 0.0], [0.1, 0.1], [0.0, 0.4]],
        [[0.2, 0.2], [0.3, 0.05], [-0.25, 0.26]],
    ])
    calls = fixed_candidates(monkeypatch, candidates)
    agent = hand_built_agent(num_candidates=3)
    states = torch.tensor([[1.0], [-1.0]])
    actions = agent.act(states)
    torch.testing.assert_close(actions, torch.stack([candidates[0, 1], candidates[1, 0]]))
    # the sampler saw each state repeated N times, state-major, with the official T = 5 and clipping
    torch.testing.assert_close(calls[0]["states"], torch.tensor([[1.0]] * 3 + [[-1.0]] * 3))
    assert (calls[0]["steps"], calls[0]["act_dim"], calls[0]["clip"], calls[0]["temperature"]) == (5, 2, 1.0, 1.0)
    assert agent.network_evaluations == {"denoiser": 3 * 5, "critic": 3 * 2}


def test_argmax_on_random_candidates_matches_a_per_state_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = torch.Generator().manual_seed(0)
    batch, count = 6, 9
    candidates = torch.rand(batch, count, 2, generator=generator) * 2 - 1
    states = torch.randn(batch, 1, generator=generator)
    fixed_candidates(monkeypatch, candidates)
    actions = hand_built_agent(num_candidates=count).act(states)
    for b in range(batch):
        scores = [min(float(states[b, 0] * c[0]), float(states[b, 0] * c[1])) for c in candidates[b]]
        torch.testing.assert_close(actions[b], candidates[b, int(np.argmax(scores))])


def test_expectile_resample_draws_candidates_with_the_expectile_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    # Q1 = Q2 = a_0 (a_1 = a_0), V = 0, so adv = a_0: weights tau, 1 - tau, 1 - tau (adv == 0: official
    # `adv > 0`), tau -> probabilities 0.35, 0.15, 0.15, 0.35 for tau = 0.7.
    first_component = torch.tensor([0.5, -0.5, 0.0, 0.3])
    per_state = torch.stack([first_component, first_component], dim=-1)
    batch = 20_000
    fixed_candidates(monkeypatch, per_state.expand(batch, 4, 2))
    agent = hand_built_agent(num_candidates=4, action_selection="expectile-resample",
                             value_net=ConstantValue(0.0), expectile=0.7)
    agent.seed(123)
    actions = agent.act(torch.ones(batch, 1))
    chosen = (actions[:, :1] == first_component[None, :]).float().argmax(dim=1)
    frequencies = torch.bincount(chosen, minlength=4).double() / batch
    torch.testing.assert_close(frequencies, torch.tensor([0.35, 0.15, 0.15, 0.35], dtype=torch.float64),
                               atol=0.012, rtol=0.0)
    assert agent.network_evaluations == {"denoiser": 20, "critic": 8, "value": 1}
    # the agent's own generator: the same seed replays the same draws, another seed does not
    agent.seed(123)
    torch.testing.assert_close(agent.act(torch.ones(batch, 1)), actions)
    agent.seed(124)
    assert not torch.equal(agent.act(torch.ones(batch, 1)), actions)


def test_expectile_resample_needs_a_value_network() -> None:
    with pytest.raises(ValueError, match="needs the critic's V"):
        hand_built_agent(num_candidates=4, action_selection="expectile-resample")
    with pytest.raises(ValueError, match="unknown action_selection"):
        hand_built_agent(num_candidates=4, action_selection="softmax")


class GaussianOptimalNoise(nn.Module):
    """The exact eps-predictor for data a ~ N(mean, std^2) per dimension:
    E[eps | a_t] = sqrt(1 - abar_t) (a_t - sqrt(abar_t) mean) / (abar_t std^2 + 1 - abar_t)."""

    def __init__(self, schedule: DDPMSchedule, mean: float, std: float) -> None:
        super().__init__()
        self.abar = schedule.alphas_cumprod.double()
        self.mean, self.std = mean, std

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        abar = self.abar[t.long()][:, None]
        return (1 - abar).sqrt() * (noisy - abar.sqrt() * self.mean) / (abar * self.std**2 + 1 - abar)


def ancestral_output_moments(schedule: DDPMSchedule, mean: float, std: float) -> tuple[float, float]:
    """Mean and std of the sampler's output with the exact eps: every step of
    x <- (x - beta_t / sqrt(1 - abar_t) eps(x)) / sqrt(alpha_t) + [t > 1] sqrt(beta_t) z is affine in x
    plus independent Gaussian noise, starting from x_T ~ N(0, 1)."""
    mu, var = 0.0, 1.0
    for i in reversed(range(schedule.steps)):
        abar, alpha, beta = (float(schedule.alphas_cumprod[i]), float(schedule.alphas[i]), float(schedule.betas[i]))
        gain = math.sqrt(1 - abar) / (abar * std**2 + 1 - abar)  # eps(x) = gain (x - sqrt(abar) mean)
        coefficient = beta / math.sqrt(1 - abar)
        slope = (1 - coefficient * gain) / math.sqrt(alpha)
        mu = slope * mu + coefficient * gain * math.sqrt(abar) * mean / math.sqrt(alpha)
        var = slope**2 * var + (beta if i > 0 else 0.0)
    return mu, math.sqrt(var)


@pytest.mark.parametrize(("mean", "std"), [(0.3, 0.3), (-0.2, 0.6)])
def test_five_step_ancestral_sampler_with_the_exact_noise_model(mean: float, std: float) -> None:
    schedule = DDPMSchedule.vp(5)
    model = GaussianOptimalNoise(schedule, mean, std)
    rows = 200_000
    states = torch.zeros(rows, 1, dtype=torch.float64)
    samples = ddpm_sample_ancestral(model, states, schedule, act_dim=1, clip=None,
                                    generator=torch.Generator().manual_seed(0)).squeeze(1)
    expected_mean, expected_std = ancestral_output_moments(schedule, mean, std)
    # the sampler keeps the data mean (up to abar_T = 0.006 of it) ...
    assert abs(expected_mean - mean) < 0.01 * abs(mean)
    assert abs(float(samples.mean()) - expected_mean) < 0.005
    # ... and, with T = 5, ends on E[a_0 | a_1], whose spread is narrower than the data's: a property of
    # IDQL's coarse 5-step chain, not of this implementation
    assert abs(float(samples.std()) - expected_std) < 0.005
    assert expected_std < 0.95 * std
    # with the clip that IDQL uses every sample stays in the action box
    clipped = ddpm_sample_ancestral(model, states[:5000], schedule, act_dim=1, clip=1.0,
                                    generator=torch.Generator().manual_seed(1))
    assert clipped.abs().max() <= 1.0


def test_many_step_ancestral_sampler_recovers_the_gaussian() -> None:
    """The same sampler with a fine chain (T = 200, same 'vp' endpoints) reproduces N(mean, std^2) itself."""
    mean, std = 0.3, 0.3
    schedule = DDPMSchedule.vp(200)
    states = torch.zeros(50_000, 1, dtype=torch.float64)
    samples = ddpm_sample_ancestral(GaussianOptimalNoise(schedule, mean, std), states, schedule, act_dim=1,
                                    clip=None, generator=torch.Generator().manual_seed(0))
    assert abs(float(samples.mean()) - mean) < 0.01
    assert abs(float(samples.std()) - std) < 0.03 * std


# --- data treatment, per-task settings -------------------------------------------------------------
def test_training_tensors_keep_95_percent_and_clip_actions() -> None:
    size = 1000
    tensors = {"observations": torch.arange(size, dtype=torch.float32)[:, None],
               "actions": torch.linspace(-1, 1, size)[:, None].repeat(1, 2),
               "rewards": torch.arange(size, dtype=torch.float32)}
    kept = training_tensors(tensors, IDQLConfig(), seed=0)
    rows = kept["observations"][:, 0].long()
    assert len(rows) == 950 and len(set(rows.tolist())) == 950  # a subset, without repeats
    torch.testing.assert_close(kept["rewards"], tensors["rewards"][rows])  # rows stay aligned
    limit = 1 - 1e-5
    torch.testing.assert_close(kept["actions"], tensors["actions"][rows].clamp(-limit, limit))
    assert kept["actions"].abs().max() <= limit
    assert not torch.equal(training_tensors(tensors, IDQLConfig(), seed=1)["observations"], kept["observations"])
    everything = training_tensors(tensors, IDQLConfig(train_fraction=1.0, action_clip_eps=0.0), seed=0)
    torch.testing.assert_close(everything["actions"], tensors["actions"])


def _task(name: str, family: str) -> Task:
    return Task(name=name, suite=family, family=family, max_episode_steps=1000, load=lambda: None,
                make_env=lambda: None, score_scale="d4rl", ref_min_score=0.0, ref_max_score=1.0)


def test_per_family_official_settings() -> None:
    locomotion = resolve_config(IDQL, _task("hopper-medium-v2", "locomotion"), "paper")
    antmaze = resolve_config(IDQL, _task("antmaze-umaze-v2", "antmaze"), "paper")
    assert (locomotion.expectile, locomotion.reward_transform) == (0.7, "return_range")
    assert (antmaze.expectile, antmaze.reward_transform) == (0.9, "minus_one")
    assert (locomotion.actor_steps, locomotion.actor_batch_size, locomotion.critic_steps) == (3_000_000, 512, 3_000_000)
    assert locomotion.value_layer_norm and locomotion.num_candidates == 64


# --- fitting through FitContext ----------------------------------------------------------------------
def tiny_toy(size: int = 256) -> tuple[Task, OfflineDataset]:
    return get_task("toy-two-moons"), toy.load_toy("toy-two-moons", size=size, seed=0)


def context(task: Task, dataset: OfflineDataset, run_dir: Path, shared: Path | None = None,
            profile: str = "smoke") -> FitContext:
    return FitContext(task=task, dataset=dataset, seed=0, device=torch.device("cpu"), run_dir=run_dir,
                      reporter=Reporter(quiet=True), profile=profile, shared_stage_dir=shared)


def critic_entry(ctx: FitContext) -> dict:
    return next(entry for entry in ctx.stage_log if entry["stage"] == "critic")


def test_share_stages_makes_idql_reuse_srpos_critic(tmp_path: Path) -> None:
    task, dataset = tiny_toy()
    shared = tmp_path / "shared"
    # SRPO's behavior and policy stages are cut short: only its critic, at the smoke profile, matters here
    srpo_config = dataclasses.replace(resolve_config(SRPO, task, "smoke"), behavior_steps=2, policy_steps=2)
    srpo_ctx = context(task, dataset, tmp_path / "srpo", shared)
    SRPO().fit(srpo_ctx, srpo_config)
    idql_config = dataclasses.replace(resolve_config(IDQL, task, "smoke"), actor_steps=2, num_candidates=4)
    idql_ctx = context(task, dataset, tmp_path / "idql", shared)
    IDQL().fit(idql_ctx, idql_config)
    assert critic_entry(idql_ctx)["key"] == critic_entry(srpo_ctx)["key"]
    assert critic_entry(idql_ctx)["origin"] == "shared"
    assert len(list(shared.glob("iql-critic-*.pt"))) == 1

    own_ctx = context(task, dataset, tmp_path / "idql-own")
    IDQL().fit(own_ctx, idql_config)
    assert critic_entry(own_ctx)["origin"] == "trained"
    assert critic_entry(own_ctx)["key"] != critic_entry(srpo_ctx)["key"]


def test_smoke_fit_returns_an_agent_acting_in_the_box_and_resumes(tmp_path: Path) -> None:
    task, dataset = tiny_toy(300)
    config = resolve_config(IDQL, task, "smoke")
    ctx = context(task, dataset, tmp_path / "run")
    agent = IDQL().fit(ctx, config)
    observations = torch.as_tensor(dataset.observations[:7])
    actions = agent.act(observations)
    assert actions.shape == (7, dataset.act_dim)
    assert torch.isfinite(actions).all() and actions.abs().max() <= 1.0
    assert agent.nfe_per_action == config.num_candidates * (5 + 2)
    assert [entry["origin"] for entry in ctx.stage_log] == ["trained", "trained"]
    assert ctx.curves["behavior"] and ctx.curves["critic"]

    again = context(task, dataset, tmp_path / "run")
    resumed = IDQL().fit(again, config)
    assert [entry["origin"] for entry in again.stage_log] == ["resumed", "resumed"]
    agent.seed(5)
    resumed.seed(5)
    torch.testing.assert_close(resumed.act(observations), agent.act(observations))
