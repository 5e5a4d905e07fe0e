"""Behavior cloning: the reference row every offline-RL table carries.

A deterministic tanh policy of SRPO's shape regressed onto the dataset actions by mean squared error,
    min_theta E_{(s,a)~D} || pi_theta(s) - a ||^2,
Adam 3e-4 with the same cosine schedule as SRPO's policy stage. It uses no reward, so any method that
beats it on a task has used the reward signal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch

from srpo_bench.data.sampler import EpochSampler
from srpo_bench.methods import Agent, FitContext, Method
from srpo_bench.nn import DeterministicPolicy
from srpo_bench.srpo import PolicyAgent


@dataclass
class BCConfig:
    steps: int = 1_000_000  # SRPO's policy schedule, so the two policies see the same number of updates
    batch_size: int = 256
    lr: float = 3e-4
    hidden: int = 256
    layers: int = 2
    log_every: int = 1000


class BC(Method):
    name = "bc"
    Config = BCConfig
    stages = ("policy",)
    profiles: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "smoke": {f: dict(steps=100, log_every=20) for f in ("toy", "locomotion", "antmaze")},
        "quick": {"toy": dict(steps=1000, log_every=100), "locomotion": dict(steps=4000, log_every=200),
                  "antmaze": dict(steps=4000, log_every=200)},
    }

    def fit(self, ctx: FitContext, config: BCConfig) -> Agent:
        obs_dim, act_dim = ctx.dataset.obs_dim, ctx.dataset.act_dim
        tensors = ctx.dataset.tensors(ctx.device)

        def train() -> dict:
            torch.manual_seed(ctx.seed)
            policy = DeterministicPolicy(obs_dim, act_dim, config.hidden, config.layers).to(ctx.device)
            optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
            sampler = EpochSampler(tensors, config.batch_size, seed=ctx.seed)
            for step, _bar in ctx.steps("policy", config.steps):
                batch = next(sampler)
                loss = ((policy(batch["observations"]) - batch["actions"]) ** 2).sum(dim=-1).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                if step % config.log_every == 0 or step == config.steps - 1:
                    ctx.log("policy", step, loss=float(loss.detach()))
            return policy.state_dict()

        policy = DeterministicPolicy(obs_dim, act_dim, config.hidden, config.layers).to(ctx.device)
        policy.load_state_dict(ctx.stage("policy", "bc-policy", asdict(config), train))
        return PolicyAgent(policy)
