"""Critics shared by the methods: twin Q networks, V networks, IQL's expectile critic.

IQL (Kostrikov et al. 2022) as SRPO (thu-ml/SRPO `SRPO.py:IQL_Critic`) and IDQL (philippe-eecs/IDQL) train it:
    L_V = E[ |tau - 1(adv < 0)| adv^2 ],  adv = min(Q1', Q2')(s, a) - V(s)
    L_Q = 1/2 [ (Q1(s,a) - y)^2 + (Q2(s,a) - y)^2 ],  y = r + gamma (1 - d) V(s')
    Q' <- (1 - 0.005) Q' + 0.005 Q after every Q step.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from srpo_bench.core.agents import Agent
from srpo_bench.core.nn import flax_initialize, mlp, polyak_update
from srpo_bench.core.optim import adam
from srpo_bench.core.rewards import ReturnSplit, RewardTransform, training_tensors
from srpo_bench.core.stages import FitContext, StageConfig
from srpo_bench.data.sampler import EpochSampler

#: an IQL step's two loss computations: (states, actions) -> (L_V, V(s)); (states, actions, target) -> L_Q
IQLLosses = tuple[Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                  Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]]


class TwinQ(nn.Module):
    """Two independent Q(s, a) heads. SRPO/IDQL: 2 x 256 ReLU; Diffusion-QL: 3 x 256 Mish."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_dims: Sequence[int] = (256, 256),
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.q1 = mlp(obs_dim + act_dim, hidden_dims, 1, activation=activation)
        self.q2 = mlp(obs_dim + act_dim, hidden_dims, 1, activation=activation)

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = torch.cat([states, actions], dim=-1)
        return self.q1(inputs).squeeze(-1), self.q2(inputs).squeeze(-1)

    def min_q(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        q1, q2 = self(states, actions)
        return torch.minimum(q1, q2)


class ValueNet(nn.Module):
    """V(s): MLP 2 x 256 ReLU; IDQL adds a LayerNorm on the input (`value_layer_norm=True`)."""

    def __init__(self, obs_dim: int, hidden_dims: Sequence[int] = (256, 256), input_layer_norm: bool = False,
                 layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden_dims, 1, activation=nn.ReLU, input_layer_norm=input_layer_norm,
                       layer_norm_eps=layer_norm_eps)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.net(states).squeeze(-1)


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """mean(|tau - 1(diff < 0)| diff^2): asymmetric L2, tau > 0.5 leans towards the upper expectile."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff**2).mean()


@dataclass(frozen=True)
class IQLCriticStage(StageConfig):
    """The IQL critic stage, whole: every setting that changes the trained networks, and the data view."""

    steps: int
    batch_size: int
    lr: float
    expectile: float  # 0.7 locomotion, 0.9 antmaze
    gamma: float
    polyak: float
    next_value: Literal["before_v_step", "after_v_step"]
    reward_transform: RewardTransform
    return_split: ReturnSplit
    hidden: int = 256
    value_layer_norm: bool = False  # IDQL: True
    layer_norm_eps: float = 1e-5  # torch's; IDQL's flax LayerNorm: 1e-6
    init: Literal["torch", "flax"] = "torch"
    train_fraction: float = 1.0  # IDQL: 0.95
    action_clip_eps: float = 0.0  # IDQL: 1e-5


class IQLCritic(nn.Module):
    """Twin Q, target twin Q and V with their Adam optimisers; `update` is one IQL step (V then Q)."""

    def __init__(self, obs_dim: int, act_dim: int, config: IQLCriticStage) -> None:
        super().__init__()
        self.config = config
        self.q = TwinQ(obs_dim, act_dim, (config.hidden, config.hidden))
        self.v = ValueNet(obs_dim, (config.hidden, config.hidden), input_layer_norm=config.value_layer_norm,
                          layer_norm_eps=config.layer_norm_eps)
        if config.init == "flax":  # jaxrl5 MLPs: xavier-uniform kernels, zero biases
            flax_initialize(self.q)
            flax_initialize(self.v)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.q_optimizer = adam(self.q.parameters(), lr=config.lr)
        self.v_optimizer = adam(self.v.parameters(), lr=config.lr)

    def value_loss(self, states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_V, V(s)) for one batch."""
        with torch.no_grad():
            target_q = self.q_target.min_q(states, actions)
        value = self.v(states)
        return expectile_loss(target_q - value, self.config.expectile), value

    def q_loss(self, states: torch.Tensor, actions: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        q1, q2 = self.q(states, actions)
        return 0.5 * (F.mse_loss(q1, target) + F.mse_loss(q2, target))

    def update(self, batch: Mapping[str, torch.Tensor], losses: IQLLosses | None = None) -> dict[str, torch.Tensor]:
        """One V step then one Q step; returns detached losses (no host sync in the hot loop). `losses`: the two
        loss computations as the stage runs them (captured, `FitContext.captured`), default this critic's own.

        The Q target's V(s') is computed before the V step (SRPO `IQL_Critic.update_q0`: `next_v = self.vf(s_)`
        precedes the V update) or after it (IDQL: `update_v` then `update_q`, which reads the new V)."""
        value_loss, q_loss_of = losses or (self.value_loss, self.q_loss)
        states, actions = batch["observations"], batch["actions"]
        if self.config.next_value == "before_v_step":
            with torch.no_grad():
                next_v = self.v(batch["next_observations"])
        v_loss, value = value_loss(states, actions)
        self.v_optimizer.zero_grad(set_to_none=True)
        v_loss.backward()
        self.v_optimizer.step()

        with torch.no_grad():
            if self.config.next_value == "after_v_step":
                next_v = self.v(batch["next_observations"])
            target = batch["rewards"] + self.config.gamma * (1.0 - batch["terminals"]) * next_v
        q_loss = q_loss_of(states, actions, target)
        self.q_optimizer.zero_grad(set_to_none=True)
        q_loss.backward()
        self.q_optimizer.step()
        polyak_update(self.q_target, self.q, self.config.polyak)
        return {"v_loss": v_loss.detach(), "q_loss": q_loss.detach(), "v_mean": value.mean().detach()}


def iql_training_tensors(ctx: FitContext, config: IQLCriticStage) -> dict[str, torch.Tensor]:
    return training_tensors(ctx.dataset, ctx.device, config.reward_transform, config.return_split,
                            ctx.task.max_episode_steps, config.train_fraction, config.action_clip_eps, ctx.seed)


def fit_iql_critic(ctx: FitContext, stage: str = "critic", agent: Callable[[IQLCritic], Agent] | None = None
                   ) -> IQLCritic:
    """Train (or load) the declared IQL critic stage `stage`; SRPO and IDQL both use it. `agent` makes the
    policy from the critic in training, for periodic evaluation when this stage is the method's last."""
    config: IQLCriticStage = ctx.config(stage)
    tensors = iql_training_tensors(ctx, config)
    obs_dim, act_dim = ctx.dataset.obs_dim, ctx.dataset.act_dim

    def train(critic: IQLCritic) -> None:
        sampler = EpochSampler(tensors, config.batch_size, seed=ctx.seed + 1)
        make_agent = None if agent is None else (lambda: agent(critic))
        losses = (ctx.captured(critic.value_loss), ctx.captured(critic.q_loss))
        for step, _bar in ctx.steps(stage, config.steps, agent=make_agent):
            metrics = critic.update(next(sampler), losses)
            if ctx.log_due(step, config.steps):
                ctx.log(stage, step, **metrics)

    return ctx.fit(stage, lambda: IQLCritic(obs_dim, act_dim, config).to(ctx.device), train)
