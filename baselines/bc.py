"""Behavior cloning: the reference row every offline-RL table carries.

A deterministic tanh policy of SRPO's shape regressed onto the dataset actions by mean squared error,
    min_theta E_{(s,a)~D} || pi_theta(s) - a ||^2,
Adam 3e-4 with the same cosine schedule as SRPO's policy stage. It uses no reward, so any method that
beats it on a task has used the reward signal.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from srpo_bench.config import positive, within
from srpo_bench.core.agents import Agent, PolicyAgent
from srpo_bench.core.method import FAMILIES, Method
from srpo_bench.core.nn import DeterministicPolicy
from srpo_bench.core.optim import adam
from srpo_bench.core.stages import FitContext, PlanContext, Stage, StageConfig
from srpo_bench.data.sampler import EpochSampler


@dataclass(frozen=True)
class BCConfig(StageConfig):
    """BC's one stage is configured by the method's whole config (every setting changes the weights)."""

    steps: int = 1_000_000  # SRPO's policy schedule, so the two policies see the same number of updates
    batch_size: int = 256
    lr: float = 3e-4
    hidden: int = 256
    layers: int = 2

    def __post_init__(self) -> None:
        positive(self, "steps", "batch_size", "hidden", "layers")
        within(self, "(0, inf)", "lr")


class BC(Method):
    name = "bc"
    Config = BCConfig
    profiles: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "smoke": {family: dict(steps=100) for family in FAMILIES},
        "quick": {"toy": dict(steps=1000), "locomotion": dict(steps=4000), "antmaze": dict(steps=4000),
                  "ogbench": dict(steps=4000)},
        # ogbench-cpu (profiles.CPU_BUDGET_SECONDS, ~900 s of CPU at one thread): 476 steps/s at OGBench shapes.
        "ogbench-cpu": {"ogbench": dict(steps=420_000)},
    }

    @classmethod
    def stages(cls, config: BCConfig, plan: PlanContext) -> tuple[Stage, ...]:
        return (Stage("policy", config),)

    def fit(self, ctx: FitContext, config: BCConfig) -> Agent:
        tensors = ctx.dataset.tensors(ctx.device)

        def train(policy: DeterministicPolicy) -> None:
            optimizer = adam(policy.parameters(), lr=config.lr)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
            sampler = EpochSampler(tensors, config.batch_size, seed=ctx.seed)
            loss_of = ctx.captured(lambda states, actions: ((policy(states) - actions) ** 2).sum(dim=-1).mean())
            for step, _bar in ctx.steps("policy", config.steps, agent=lambda: PolicyAgent(copy.deepcopy(policy))):
                batch = next(sampler)
                loss = loss_of(batch["observations"], batch["actions"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                if ctx.log_due(step, config.steps):
                    ctx.log("policy", step, loss=loss)

        policy = ctx.fit("policy", lambda: DeterministicPolicy(ctx.dataset.obs_dim, ctx.dataset.act_dim, config.hidden,
                                                               config.layers).to(ctx.device), train)
        return PolicyAgent(policy)
