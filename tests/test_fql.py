"""FQL: flow matching and the Euler sampler on a hand-solvable flow, the three loss terms against hand-computed
values on hand-built networks, gradient routing, the agent's cost and seeding, per-task settings, a smoke fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import fit
from torch import nn

from baselines import fql
from baselines.fql import FQL, FQLAgent, FQLConfig, FQLNets
from srpo_bench.config import plan_stages, resolve_config
from srpo_bench.core.flow import euler_sample, flow_matching_loss
from srpo_bench.data import toy
from srpo_bench.tasks import get_task


# --- flow matching and Euler on a point mass ------------------------------------------------------------
def point_mass_velocity(target: torch.Tensor):
    """The exact flow to a point mass c along the linear path: v(x, t) = (c - x) / (1 - t)."""
    return lambda states, x, t: (target - x) / (1.0 - t)


def test_euler_reaches_a_point_mass_exactly_and_halfway_points_are_on_the_line() -> None:
    target = torch.tensor([[0.3, -0.7]])
    noise = torch.tensor([[1.5, 2.0]])
    velocity = point_mass_velocity(target)
    for steps in (1, 2, 10):
        assert torch.allclose(euler_sample(velocity, torch.zeros(1, 3), noise, steps), target, atol=1e-6)
    # a constant field v = d moves noise by exactly d over t in [0, 1], whatever the step count
    drift = torch.tensor([[0.25, -1.0]])
    assert torch.allclose(euler_sample(lambda s, x, t: drift.expand_as(x), torch.zeros(1, 3), noise, 7), noise + drift)
    # the time fed at step k is k / steps
    seen: list[float] = []
    euler_sample(lambda s, x, t: seen.append(float(t[0, 0])) or torch.zeros_like(x), torch.zeros(1, 1), noise, 4)
    assert seen == [0.0, 0.25, 0.5, 0.75]


def test_flow_matching_loss_is_zero_for_the_true_field_and_hand_computed_for_a_wrong_one() -> None:
    actions = torch.tensor([[0.5, -0.5], [0.5, -0.5]])
    noise = torch.tensor([[1.0, 0.0], [-1.0, 2.0]])
    t = torch.tensor([[0.25], [0.5]])
    exact = point_mass_velocity(actions)
    assert float(flow_matching_loss(exact, torch.zeros(2, 1), actions, noise, t)) == pytest.approx(0.0, abs=1e-12)
    zero = flow_matching_loss(lambda s, x, tt: torch.zeros_like(x), torch.zeros(2, 1), actions, noise, t)
    # targets a - x0: (-0.5, -0.5), (1.5, -2.5): mean of squares = (0.25 + 0.25 + 2.25 + 6.25) / 4
    assert float(zero) == pytest.approx(9.0 / 4)


def test_a_trained_velocity_field_carries_noise_to_a_point_mass() -> None:
    """Train the official vector field (small) on a one-action dataset: 10 Euler steps land near it."""
    torch.manual_seed(0)
    field = fql.VectorField(obs_dim=1, act_dim=2, hidden=64, layers=2, layer_norm=False, with_time=True)
    optimizer = torch.optim.Adam(field.parameters(), lr=3e-3)
    target = torch.tensor([0.6, -0.4])
    for _ in range(600):
        noise = torch.randn(128, 2)
        loss = flow_matching_loss(field, torch.zeros(128, 1), target.expand(128, 2), noise, torch.rand(128, 1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        samples = euler_sample(field, torch.zeros(256, 1), torch.randn(256, 2), 10)
    assert (samples - target).norm(dim=1).mean() < 0.1  # noise starts ~1.3 away on average


# --- the FQL terms on hand-built networks -------------------------------------------------------------------
class LinearOneStep(nn.Module):
    """mu(s, z) = s_0 * w + z (w a parameter, so gradients can be checked)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.5, 2.0]))

    def forward(self, states: torch.Tensor, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        return states[:, :1] * self.w + x


class ConstantVelocity(nn.Module):
    def __init__(self, velocity: list[float]) -> None:
        super().__init__()
        self.v = nn.Parameter(torch.tensor(velocity))

    def forward(self, states: torch.Tensor, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        return self.v.expand_as(x)


class LinearHeads(nn.Module):
    """Q_1(s, a) = c_1 * (a_0 + a_1), Q_2(s, a) = c_2 * a_0 + s_0: two heads with parameters."""

    def __init__(self, c1: float = 1.0, c2: float = 3.0) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor([c1, c2]))

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.c[0] * actions.sum(dim=1), self.c[1] * actions[:, 0] + states[:, 0]])


def hand_built(config: FQLConfig) -> FQLNets:
    nets = FQLNets(obs_dim=1, act_dim=2, config=dataclass_small(config))
    nets.onestep = LinearOneStep()
    nets.bc_flow = ConstantVelocity([0.2, -0.4])
    nets.critic = LinearHeads(1.0, 3.0)
    nets.target_critic = LinearHeads(2.0, -1.0).requires_grad_(False)
    return nets


def dataclass_small(config: FQLConfig) -> FQLConfig:
    return FQLConfig(**{**config.__dict__, "hidden": 4, "layers": 1})


STATES = torch.tensor([[1.0], [-2.0]])
NOISE = torch.tensor([[0.1, 0.2], [0.3, -0.9]])


def test_distillation_targets_the_clipped_euler_flow_and_is_hand_computed() -> None:
    nets = hand_built(FQLConfig())
    # flow action: z + (0.2, -0.4), clipped: (0.3, -0.2), (0.5, -1.3 -> -1)
    flow = fql.flow_targets(nets, STATES, NOISE, flow_steps=10)
    assert torch.allclose(flow, torch.tensor([[0.3, -0.2], [0.5, -1.0]]))
    # mu(s, z) = s * (0.5, 2) + z: (0.6, 2.2), (-0.7, -4.9)
    expected = ((0.6 - 0.3) ** 2 + (2.2 + 0.2) ** 2 + (-0.7 - 0.5) ** 2 + (-4.9 + 1.0) ** 2) / 4
    loss = fql.distillation_loss(nets, STATES, NOISE, 10, nets.onestep(STATES, NOISE))
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    loss.backward()  # the target is constant: only the one-step policy gets a gradient
    assert nets.onestep.w.grad is not None and nets.bc_flow.v.grad is None


@pytest.mark.parametrize("normalize", [False, True])
def test_q_term_is_minus_the_mean_head_value_at_the_clipped_action(normalize: bool) -> None:
    nets = hand_built(FQLConfig())
    # clipped mu: (0.6, 1.0), (-0.7, -1.0); Q1 = a0 + a1: 1.6, -1.7; Q2 = 3 a0 + s: 2.8, -4.1
    q = torch.tensor([(1.6 + 2.8) / 2, (-1.7 - 4.1) / 2])
    expected = -q.mean() / (q.abs().mean() if normalize else 1.0)
    loss = fql.q_loss(nets, STATES, nets.onestep(STATES, NOISE), normalize)
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)
    loss.backward()
    assert nets.critic.c.grad is None  # the actor's Q term never trains the critic
    # d/dw of -mean_s mean_k Q at unclipped coordinates only: a0 is inside [-1, 1] for both states,
    # a1 is clipped for both, so only w_0 moves: dQ/da0 = (1 + 3) / 2 = 2, da0/dw0 = s
    scale = float(q.abs().mean()) if normalize else 1.0
    assert torch.allclose(nets.onestep.w.grad, torch.tensor([-(2.0 * 1.0 + 2.0 * -2.0) / 2 / scale, 0.0]))


@pytest.mark.parametrize("q_agg", ["mean", "min"])
def test_critic_target_uses_masks_the_target_heads_and_the_clipped_one_step_action(q_agg: str) -> None:
    config = FQLConfig(q_agg=q_agg, discount=0.9)
    nets = hand_built(config)
    batch = {"observations": STATES, "actions": torch.tensor([[0.1, 0.1], [0.0, -0.5]]),
             "next_observations": STATES, "rewards": torch.tensor([-1.0, 0.0]),
             "terminals": torch.tensor([0.0, 1.0])}  # OGBench: terminals = 1 - masks
    # next action (clipped mu): (0.6, 1.0), (-0.7, -1.0); target heads 2 (a0 + a1), -a0 + s: 3.2 / 0.4, -3.4 / -1.3
    next_q = torch.tensor([3.6 / 2, -4.7 / 2]) if q_agg == "mean" else torch.tensor([0.4, -3.4])
    target = torch.tensor([-1.0, 0.0]) + 0.9 * torch.tensor([1.0, 0.0]) * next_q
    q = torch.stack([torch.tensor([0.2, -0.5]), torch.tensor([0.3 + 1.0, 0.0 - 2.0])])
    expected = ((q - target) ** 2).mean()
    loss = fql.critic_loss(nets, batch, NOISE, config)
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)
    loss.backward()
    assert nets.critic.c.grad is not None and nets.onestep.w.grad is None


def test_actor_loss_adds_flow_matching_alpha_times_distillation_and_the_q_term() -> None:
    config = FQLConfig(alpha=7.0)
    nets = hand_built(config)
    batch = {"observations": STATES, "actions": torch.tensor([[0.1, 0.1], [0.0, -0.5]])}
    t = torch.tensor([[0.3], [0.6]])
    total, parts = fql.actor_loss(nets, batch, NOISE, t, NOISE, config)
    flow = float(flow_matching_loss(nets.bc_flow, STATES, batch["actions"], NOISE, t).detach())
    assert float(parts["bc_flow_loss"]) == pytest.approx(flow)
    assert float(total.detach()) == pytest.approx(flow + 7.0 * float(parts["distill_loss"]) + float(parts["q_loss"]),
                                                  rel=1e-6)


# --- networks, agent, settings ------------------------------------------------------------------------------
def test_official_network_shapes_and_initialisation() -> None:
    nets = FQLNets(obs_dim=28, act_dim=5, config=FQLConfig())
    linears = [m for m in nets.critic.heads[0] if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [512, 512, 512, 512, 1]
    assert sum(isinstance(m, nn.LayerNorm) for m in nets.critic.heads[0]) == 4  # critic: LayerNorm on
    assert not any(isinstance(m, nn.LayerNorm) for m in nets.onestep.net)  # actors: off (official)
    assert nets.bc_flow.net[0].in_features == 28 + 5 + 1 and nets.onestep.net[0].in_features == 28 + 5
    assert all(not m.bias.detach().any() for m in linears)
    assert not any(p.requires_grad for p in nets.target_critic.parameters())


def test_agent_is_one_pass_seeded_and_inside_the_box() -> None:
    nets = FQLNets(obs_dim=3, act_dim=2, config=FQLConfig(hidden=16, layers=2))
    agent = FQLAgent(nets.onestep, act_dim=2)
    assert agent.network_evaluations == {"policy": 1} and agent.nfe_per_action == 1
    states = torch.randn(64, 3)
    agent.seed(3)
    first = agent.act(states)
    agent.seed(3)
    assert torch.equal(agent.act(states), first)
    assert not torch.equal(agent.act(states), first)  # a fresh z per call
    assert first.abs().max() <= 1.0


def test_per_task_settings_follow_the_fql_readme() -> None:
    def resolved(task: str):
        return resolve_config(FQL, get_task(task), "paper")

    assert resolved("cube-single-play-singletask-task2-v0").alpha == 300.0
    assert resolved("scene-play-singletask-v0").alpha == 300.0
    assert resolved("puzzle-3x3-play-singletask-task1-v0").alpha == 1000.0
    assert resolved("cube-double-play-singletask-v0").steps == 1_000_000
    assert resolved("hopper-medium-v2").steps == 500_000 and resolved("hopper-medium-v2").alpha == 10.0
    config = resolved("cube-single-play-singletask-v0")
    assert (config.discount, config.tau, config.batch_size, config.q_agg, config.flow_steps) == (0.99, 0.005, 256,
                                                                                             "mean", 10)
    stages = plan_stages("fql", get_task("toy-two-moons"), "paper")
    assert [stage.name for stage in stages] == ["joint"]


def test_smoke_fit_on_the_toy_bandit(tmp_path: Path) -> None:
    task = get_task("toy-two-moons")
    agent, ctx = fit("fql", task, toy.load_toy("toy-two-moons"), tmp_path)
    assert [entry["origin"] for entry in ctx.stage_log] == ["trained"]
    assert set(ctx.curves["joint"][0]) >= {"critic_loss", "bc_flow_loss", "distill_loss", "q_loss"}
    actions = agent.act(torch.zeros(5, 2))
    assert actions.shape == (5, 2) and torch.isfinite(actions).all()
    again, ctx2 = fit("fql", task, toy.load_toy("toy-two-moons"), tmp_path)  # the stage is reused
    assert [entry["origin"] for entry in ctx2.stage_log] == ["resumed"]


# --- the data FQL trains on (issue 27) -------------------------------------------------------------------------
def sparse_dataset(actions: torch.Tensor, rewards: list[float]):
    from srpo_bench.data.dataset import OfflineDataset

    n = len(rewards)
    return OfflineDataset(name="antmaze-like", source="mem", observations=torch.zeros(n, 3).numpy(),
                          actions=actions.numpy(), rewards=torch.tensor(rewards).numpy(),
                          next_observations=torch.zeros(n, 3).numpy(), terminals=torch.tensor(rewards).numpy(),
                          episode_ends=torch.zeros(n, dtype=torch.bool).numpy())


def test_antmaze_trains_on_rewards_minus_one_and_clipped_actions_as_the_official_loader() -> None:
    """seohongpark/fql `envs/d4rl_utils.py` line 37 (rewards - 1 on AntMaze) and `envs/env_utils.py` lines
    139-141 (actions clipped to +-(1 - 1e-5) for every environment)."""
    config = resolve_config(FQL, get_task("minari:D4RL/antmaze/umaze-v1"), "paper")
    assert (config.reward_transform, config.action_clip_eps, config.alpha) == ("minus_one", 1e-5, 10.0)
    actions = torch.tensor([[1.0, -1.0], [0.5, -0.25], [0.99999, -0.999995]])
    tensors = fql.training_tensors(sparse_dataset(actions, [0.0, 1.0, 0.0]), "cpu", config)
    assert torch.equal(tensors["rewards"], torch.tensor([-1.0, 0.0, -1.0]))
    limit = 1.0 - 1e-5
    assert torch.equal(tensors["actions"], actions.clamp(-limit, limit))
    assert tensors["actions"].abs().max() == torch.tensor(limit, dtype=torch.float32)
    assert torch.equal(tensors["terminals"], torch.tensor([0.0, 1.0, 0.0]))  # masks are untouched


@pytest.mark.parametrize("task", ["cube-single-play-singletask-task2-v0", "toy-two-moons", "hopper-medium-v2"])
def test_other_tasks_keep_their_rewards_and_still_clip_actions(task: str) -> None:
    config = resolve_config(FQL, get_task(task), "paper")
    assert (config.reward_transform, config.action_clip_eps) == ("none", 1e-5)
    tensors = fql.training_tensors(sparse_dataset(torch.ones(2, 2), [0.0, 1.0]), "cpu", config)
    assert torch.equal(tensors["rewards"], torch.tensor([0.0, 1.0]))
    assert tensors["actions"].max() < 1.0


def test_action_clipping_can_be_switched_off_and_is_range_checked() -> None:
    config = resolve_config(FQL, get_task("toy-two-moons"), "paper", {"action_clip_eps": "0"})
    tensors = fql.training_tensors(sparse_dataset(torch.ones(2, 2), [0.0, 1.0]), "cpu", config)
    assert tensors["actions"].max() == 1.0
    with pytest.raises(Exception, match="action_clip_eps"):
        resolve_config(FQL, get_task("toy-two-moons"), "paper", {"action_clip_eps": "1"})


def test_fit_trains_on_the_transformed_tensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, torch.Tensor]] = []
    original = fql.training_tensors

    def spy(dataset, device, config):
        seen.append(original(dataset, device, config))
        return seen[-1]

    monkeypatch.setattr(fql, "training_tensors", spy)
    fit("fql", get_task("toy-two-moons"), toy.load_toy("toy-two-moons"), tmp_path)
    assert len(seen) == 1 and seen[0]["actions"].abs().max() <= 1.0 - 1e-5
