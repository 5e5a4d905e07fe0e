"""IDQL: evaluation-time action selection, the T = 5 sampler, data treatment, stage sharing with SRPO, a smoke fit."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from helpers import context, fit
from torch import nn

from baselines import idql
from baselines.idql import IDQL, IDQLBehaviorStage, IDQLConfig, idql_agent, idql_score_model
from srpo_bench.config import ConfigError, plan_stages, resolve_config
from srpo_bench.core.agents import CandidateAgent
from srpo_bench.core.critics import IQLCritic, IQLCriticStage
from srpo_bench.core.diffusion import DDPMSchedule, ddpm_sample_ancestral
from srpo_bench.core.nn import FLAX_TRUNCATED_NORMAL_STD, LearnableFourierFeatures, LNResidualBlock, NoisePredictor
from srpo_bench.core.rewards import training_tensors
from srpo_bench.core.stages import FitContext, PlanContext
from srpo_bench.data import toy
from srpo_bench.data.dataset import DatasetError, OfflineDataset
from srpo_bench.tasks import Task, get_task


class StateScaledHeads(nn.Module):
    """Q1(s, a) = s_0 a_0, Q2(s, a) = s_0 a_1: known heads whose ranking flips with the sign of the state."""

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return states[:, 0] * actions[:, 0], states[:, 0] * actions[:, 1]

    def min_q(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        q1, q2 = self(states, actions)
        return torch.minimum(q1, q2)


class ConstantValue(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return torch.full((states.shape[0],), self.value)


def hand_built_critic(value: float = 0.0, expectile: float = 0.7) -> SimpleNamespace:
    """What `idql_agent` reads of an `IQLCritic`: the target twin Q, V and the expectile."""
    return SimpleNamespace(q_target=StateScaledHeads(), v=ConstantValue(value),
                           config=SimpleNamespace(expectile=expectile))


def hand_built_agent(num_candidates: int, critic: Any = None, **settings: Any) -> CandidateAgent:
    score_model = nn.Linear(1, 1)  # never called: the sampler is replaced in these tests
    config = IDQLConfig(num_candidates=num_candidates, **settings)
    return idql_agent(score_model, critic if critic is not None else hand_built_critic(), config, act_dim=2,
                      device=torch.device("cpu"))


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
    agent = hand_built_agent(num_candidates=4, critic=hand_built_critic(value=0.0, expectile=0.7),
                             action_selection="expectile-resample")
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


def test_expectile_resample_reads_the_critics_value_and_expectile(monkeypatch: pytest.MonkeyPatch) -> None:
    """The old agent took V and tau as optional arguments and refused resampling without V; the critic now always
    carries both, so the equivalent check is that they are the ones used: V = 10 is above every Q, all weights
    are 1 - tau and the draw is uniform; tau = 0.95 with V = 0 favours the two positive-advantage candidates."""
    first_component = torch.tensor([0.5, -0.5, 0.0, 0.3])
    per_state = torch.stack([first_component, first_component], dim=-1)
    batch = 20_000
    fixed_candidates(monkeypatch, per_state.expand(batch, 4, 2))

    def frequencies(critic: SimpleNamespace) -> torch.Tensor:
        agent = hand_built_agent(num_candidates=4, critic=critic, action_selection="expectile-resample")
        agent.seed(0)
        chosen = (agent.act(torch.ones(batch, 1))[:, :1] == first_component[None, :]).float().argmax(dim=1)
        return torch.bincount(chosen, minlength=4).double() / batch

    torch.testing.assert_close(frequencies(hand_built_critic(value=10.0)), torch.full((4,), 0.25, dtype=torch.float64),
                               atol=0.012, rtol=0.0)
    # weights 0.95, 0.05, 0.05, 0.95 -> 0.475, 0.025, 0.025, 0.475
    torch.testing.assert_close(frequencies(hand_built_critic(value=0.0, expectile=0.95)),
                               torch.tensor([0.475, 0.025, 0.025, 0.475], dtype=torch.float64), atol=0.012, rtol=0.0)


def test_unknown_action_selection_is_refused_when_the_config_is_resolved() -> None:
    with pytest.raises(ConfigError, match="idql.action_selection: expected one of argmax, expectile-resample, "
                                          "got 'softmax'"):
        resolve_config(IDQL, get_task("toy-two-moons"), "smoke", {"action_selection": "softmax"})


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
def counting_dataset(size: int = 1000, trajectory_length: int | None = None) -> OfflineDataset:
    """Row i has observation i and reward i, actions spanning [-1, 1] (so the clip shows); one trajectory, or
    trajectories of `trajectory_length` rows."""
    observations = np.arange(size, dtype=np.float32)[:, None]
    ends = np.arange(size) % (trajectory_length or size) == (trajectory_length or size) - 1
    return OfflineDataset(
        name="counting", source="test", observations=observations,
        actions=np.repeat(np.linspace(-1, 1, size, dtype=np.float32)[:, None], 2, axis=1),
        rewards=np.arange(size, dtype=np.float32), next_observations=observations + 1,
        terminals=np.zeros(size, dtype=np.float32), episode_ends=ends,
    )


def test_training_tensors_keep_95_percent_and_clip_actions() -> None:
    dataset = counting_dataset()
    tensors = dataset.tensors("cpu")
    config = IDQLConfig()
    cpu = torch.device("cpu")

    def view(seed: int, train_fraction: float, action_clip_eps: float) -> dict[str, torch.Tensor]:
        return training_tensors(dataset, cpu, "none", config.return_split, 1000, train_fraction, action_clip_eps, seed)

    kept = view(0, config.train_fraction, config.action_clip_eps)
    rows = kept["observations"][:, 0].long()
    assert len(rows) == 950 and len(set(rows.tolist())) == 950  # a subset, without repeats
    for key in ("rewards", "next_observations", "terminals"):  # rows stay aligned
        torch.testing.assert_close(kept[key], tensors[key][rows])
    limit = 1 - 1e-5
    torch.testing.assert_close(kept["actions"], tensors["actions"][rows].clamp(-limit, limit))
    assert kept["actions"].abs().max() <= limit
    assert not torch.equal(view(1, config.train_fraction, config.action_clip_eps)["observations"],
                           kept["observations"])
    everything = view(0, 1.0, 0.0)
    torch.testing.assert_close(everything["actions"], tensors["actions"])
    torch.testing.assert_close(everything["observations"], tensors["observations"])
    # the reward transform comes first, on the whole dataset: one trajectory's return range is 0 -> an error;
    # with two trajectories (returns 0+..+499 and 500+..+999) the scale is 1000 / (sum(500..999) - sum(0..499))
    with pytest.raises(DatasetError, match="same return"):
        training_tensors(dataset, cpu, "return_range", "trajectory", 1000)
    scaled = training_tensors(counting_dataset(trajectory_length=500), cpu, "return_range", "trajectory", 1000,
                              config.train_fraction, config.action_clip_eps, 0)
    span = float(np.arange(500, 1000).sum() - np.arange(500).sum())  # 250,000
    torch.testing.assert_close(scaled["rewards"], (kept["observations"][:, 0] * (1000.0 / span)))


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
    # fidelity defaults: jaxrl5's initialisation and flax's LayerNorm eps, the V-then-Q order, trajectory returns
    for config in (locomotion, antmaze):
        assert (config.init, config.layer_norm_eps, config.critic_next_value, config.return_split,
                config.critic_source) == ("flax", 1e-6, "after_v_step", "trajectory", "own")


# --- networks: jaxrl5's initialisation and flax's LayerNorm -------------------------------------------
def idql_stage_configs(**overrides: str) -> tuple[IDQLBehaviorStage, IQLCriticStage]:
    """IDQL's behavior and critic stage configs at the paper profile, declared as the runner declares them."""
    task = get_task("toy-two-moons")
    config = resolve_config(IDQL, task, "paper", overrides)
    behavior, critic = IDQL.stages(config, PlanContext(task, "paper", lambda other: plan_stages(other, task, "paper")))
    assert isinstance(behavior.config, IDQLBehaviorStage) and isinstance(critic.config, IQLCriticStage)
    return behavior.config, critic.config


def test_flax_init_zero_biases_lecun_blocks_xavier_elsewhere_and_flax_layer_norm_eps() -> None:
    stage, critic_stage = idql_stage_configs()
    assert (stage.init, stage.layer_norm_eps) == ("flax", 1e-6)
    assert (critic_stage.init, critic_stage.layer_norm_eps, critic_stage.value_layer_norm) == ("flax", 1e-6, True)
    torch.manual_seed(0)
    model = idql_score_model(11, 3, stage)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    in_blocks = {id(m) for block in model.modules() if isinstance(block, LNResidualBlock)
                 for m in block.modules() if isinstance(m, nn.Linear)}
    assert len(in_blocks) == 2 * 3 and len(linears) == 2 + 2 + 2 * 3  # cond MLP, ResNet input/output, blocks
    for layer in linears:
        assert torch.count_nonzero(layer.bias) == 0
        fan_out, fan_in = layer.weight.shape
        weights = layer.weight.detach().double()
        if id(layer) in in_blocks:  # lecun normal, truncated at 2 std of the underlying normal
            std = math.sqrt(1.0 / fan_in)
            assert weights.abs().max() <= 2 * std / FLAX_TRUNCATED_NORMAL_STD + 1e-7
            assert abs(float(weights.std()) - std) < 0.1 * std, (fan_in, fan_out)
            assert abs(float(weights.mean())) < 0.01 * std
        else:  # xavier uniform
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            assert weights.abs().max() <= bound + 1e-7
            if weights.numel() >= 512:  # filling the bound, not a narrower uniform (torch's is 1/sqrt(fan_in))
                assert weights.abs().max() > 0.9 * bound
                assert abs(float(weights.std()) - bound / math.sqrt(3)) < 0.1 * bound / math.sqrt(3)
    # the 1024-wide hidden layers: std sqrt(1/256) on the way up, sqrt(1/1024) on the way down
    widths = sorted({tuple(m.weight.shape) for m in linears if id(m) in in_blocks})
    assert widths == [(256, 1024), (1024, 256)]
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 3 and all(norm.eps == 1e-6 for norm in norms)
    # the critic of the own critic stage: flax init too, and the same eps on V's input LayerNorm
    critic = IQLCritic(11, 3, critic_stage)
    assert all(torch.count_nonzero(m.bias) == 0 for m in critic.modules() if isinstance(m, nn.Linear))
    critic_norms = [m for m in critic.modules() if isinstance(m, nn.LayerNorm)]
    assert len(critic_norms) == 1 and critic_norms[0].eps == 1e-6


def test_torch_init_and_eps_reproduce_the_previous_networks() -> None:
    stage, _critic = idql_stage_configs(init="torch", layer_norm_eps="1e-5")
    torch.manual_seed(0)
    model = idql_score_model(11, 3, stage)
    assert not all(torch.count_nonzero(m.bias) == 0 for m in model.modules() if isinstance(m, nn.Linear))
    assert all(m.eps == 1e-5 for m in model.modules() if isinstance(m, nn.LayerNorm))
    torch.manual_seed(0)  # the network as IDQL built it before the flax settings existed
    previous = NoisePredictor(11, 3, LearnableFourierFeatures(128), 128, cond_dims=(256, 256), width=256, blocks=3,
                              dropout=0.1, activation=nn.SiLU)
    reference = previous.state_dict()
    assert set(model.state_dict()) == set(reference)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, reference[name], rtol=0, atol=0)


# --- fitting through FitContext ----------------------------------------------------------------------
def tiny_toy(size: int = 256) -> tuple[Task, OfflineDataset]:
    return get_task("toy-two-moons"), toy.load_toy("toy-two-moons", size=size, seed=0)


def critic_entry(ctx: FitContext) -> dict:
    return next(entry for entry in ctx.stage_log if entry["stage"] == "critic")


# SRPO's behavior and policy stages are cut short: only its critic, at the smoke profile, matters here
SRPO_SHORT = {"behavior_steps": "2", "policy_steps": "2"}
IDQL_SHORT = {"actor_steps": "2", "num_candidates": "4"}


def test_shared_critic_source_makes_idql_reuse_srpos_critic(tmp_path: Path) -> None:
    task, dataset = tiny_toy()
    _srpo, srpo_ctx = fit("srpo", task, dataset, tmp_path, overrides={"srpo": SRPO_SHORT}, run_id="srpo-run")
    shared = {"idql": {**IDQL_SHORT, "critic_source": "shared"}, "srpo": SRPO_SHORT}
    agent, idql_ctx = fit("idql", task, dataset, tmp_path, overrides=shared, run_id="idql-run")
    entry = critic_entry(idql_ctx)
    assert entry["key"] == critic_entry(srpo_ctx)["key"]
    assert entry["definition"] == critic_entry(srpo_ctx)["definition"] == "IQLCriticStage.r1"
    assert (entry["origin"], entry["trained_by"]) == ("shared", "srpo-run")
    assert len(list((tmp_path / "stages").glob("IQLCriticStage.r1-*.pt"))) == 1
    assert agent.act(torch.as_tensor(dataset.observations[:3])).shape == (3, dataset.act_dim)
    # the shared critic is SRPO's as resolved with the grid's srpo overrides: another SRPO critic, another key
    _config, other = context("idql", task, dataset, tmp_path, run_id="idql-run",
                             overrides={**shared, "srpo": {**SRPO_SHORT, "expectile": "0.8"}})
    assert other.keys["critic"] != entry["key"]

    _own, own_ctx = fit("idql", task, dataset, tmp_path, overrides={"idql": IDQL_SHORT}, run_id="idql-own")
    assert critic_entry(own_ctx)["origin"] == "trained"
    assert critic_entry(own_ctx)["key"] != critic_entry(srpo_ctx)["key"]
    assert critic_entry(own_ctx)["definition"] == "IQLCriticStage.r1"
    assert len(list((tmp_path / "stages").glob("IQLCriticStage.r1-*.pt"))) == 2
    # the behavior stage does not depend on where the critic comes from: the own run shares the shared run's
    assert own_ctx.stage_log[0]["key"] == idql_ctx.stage_log[0]["key"]
    assert (own_ctx.stage_log[0]["origin"], own_ctx.stage_log[0]["trained_by"]) == ("shared", "idql-run")


def test_smoke_fit_returns_an_agent_acting_in_the_box_and_resumes(tmp_path: Path) -> None:
    task, dataset = tiny_toy(300)
    agent, ctx = fit("idql", task, dataset, tmp_path)
    config = resolve_config(IDQL, task, "smoke")
    observations = torch.as_tensor(dataset.observations[:7])
    actions = agent.act(observations)
    assert actions.shape == (7, dataset.act_dim)
    assert torch.isfinite(actions).all() and actions.abs().max() <= 1.0
    assert agent.nfe_per_action == config.num_candidates * (5 + 2)
    assert [(entry["stage"], entry["origin"]) for entry in ctx.stage_log] == [("behavior", "trained"),
                                                                               ("critic", "trained")]
    assert ctx.curves["behavior"] and ctx.curves["critic"]
    assert ctx.curves["behavior"][-1]["step"] == config.actor_steps - 1
    assert ctx.curves["critic"][-1]["step"] == config.critic_steps - 1

    resumed, again = fit("idql", task, dataset, tmp_path)
    assert [entry["origin"] for entry in again.stage_log] == ["resumed", "resumed"]
    assert [entry["key"] for entry in again.stage_log] == [entry["key"] for entry in ctx.stage_log]
    agent.seed(5)
    resumed.seed(5)
    torch.testing.assert_close(resumed.act(observations), agent.act(observations))
