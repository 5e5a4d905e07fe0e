"""Critics shared by the methods: twin Q networks, V networks, IQL's expectile critic.

IQL (Kostrikov et al. 2022) as SRPO (`SRPO.py:IQL_Critic`) and IDQL train it (ALGORITHMS.md 1.2, 4.2):
    L_V = E[ |tau - 1(adv < 0)| adv^2 ],  adv = min(Q1', Q2')(s, a) - V(s)
    L_Q = 1/2 [ (Q1(s,a) - y)^2 + (Q2(s,a) - y)^2 ],  y = r + gamma (1 - d) V(s')
    Q' <- (1 - 0.005) Q' + 0.005 Q after every Q step.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from srpo_bench.data.sampler import EpochSampler
from srpo_bench.nn import mlp, polyak_update

if TYPE_CHECKING:
    from srpo_bench.methods import FitContext


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

    def __init__(self, obs_dim: int, hidden_dims: Sequence[int] = (256, 256), input_layer_norm: bool = False) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden_dims, 1, activation=nn.ReLU, input_layer_norm=input_layer_norm)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.net(states).squeeze(-1)


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """mean(|tau - 1(diff < 0)| diff^2): asymmetric L2, tau > 0.5 leans towards the upper expectile."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff**2).mean()


@dataclass
class IQLConfig:
    expectile: float = 0.7  # 0.7 locomotion, 0.9 antmaze
    gamma: float = 0.99
    polyak: float = 0.005
    lr: float = 3e-4
    hidden: int = 256
    value_layer_norm: bool = False  # IDQL: True


class IQLCritic(nn.Module):
    """Twin Q, target twin Q and V with their Adam optimisers; `update` is one IQL step (V then Q)."""

    def __init__(self, obs_dim: int, act_dim: int, config: IQLConfig) -> None:
        super().__init__()
        self.config = config
        self.q = TwinQ(obs_dim, act_dim, (config.hidden, config.hidden))
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.v = ValueNet(obs_dim, (config.hidden, config.hidden), input_layer_norm=config.value_layer_norm)
        self.q_optimizer = torch.optim.Adam(self.q.parameters(), lr=config.lr)
        self.v_optimizer = torch.optim.Adam(self.v.parameters(), lr=config.lr)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One V step then one Q step; returns detached losses (no host sync in the hot loop)."""
        states, actions = batch["observations"], batch["actions"]
        with torch.no_grad():
            target_q = self.q_target.min_q(states, actions)
        value = self.v(states)
        v_loss = expectile_loss(target_q - value, self.config.expectile)
        self.v_optimizer.zero_grad(set_to_none=True)
        v_loss.backward()
        self.v_optimizer.step()

        with torch.no_grad():
            next_v = self.v(batch["next_observations"])
            target = batch["rewards"] + self.config.gamma * (1.0 - batch["terminals"]) * next_v
        q1, q2 = self.q(states, actions)
        q_loss = 0.5 * (F.mse_loss(q1, target) + F.mse_loss(q2, target))
        self.q_optimizer.zero_grad(set_to_none=True)
        q_loss.backward()
        self.q_optimizer.step()
        polyak_update(self.q_target, self.q, self.config.polyak)
        return {"v_loss": v_loss.detach(), "q_loss": q_loss.detach(), "v_mean": value.mean().detach()}

    def networks_state(self) -> dict[str, dict]:
        return {"q": self.q.state_dict(), "q_target": self.q_target.state_dict(), "v": self.v.state_dict()}

    def load_networks(self, state: dict[str, dict]) -> None:
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.v.load_state_dict(state["v"])


def fit_iql_critic(ctx: FitContext, tensors: dict[str, torch.Tensor], config: IQLConfig, steps: int,
                   batch_size: int, reward_transform: str, stage: str = "critic", log_every: int = 1000) -> IQLCritic:
    """Train (or load from the stage cache) an IQL critic; SRPO and IDQL both call this.

    `tensors["rewards"]` must already be transformed; `reward_transform` names how, for the cache key.
    """
    obs_dim = tensors["observations"].shape[1]
    act_dim = tensors["actions"].shape[1]
    critic = IQLCritic(obs_dim, act_dim, config).to(ctx.device)

    def train() -> dict:
        torch.manual_seed(ctx.seed)
        fresh = IQLCritic(obs_dim, act_dim, config).to(ctx.device)
        sampler = EpochSampler(tensors, batch_size, seed=ctx.seed + 1)
        for step, _bar in ctx.steps(stage, steps):
            metrics = fresh.update(next(sampler))
            if step % log_every == 0 or step == steps - 1:
                ctx.log(stage, step, **{k: float(v) for k, v in metrics.items()})
        return fresh.networks_state()

    stage_config = {**dataclasses.asdict(config), "steps": steps, "batch_size": batch_size,
                    "reward_transform": reward_transform}
    critic.load_networks(ctx.stage(stage, "iql-critic", stage_config, train))
    return critic.eval()
