"""SRPO: Score Regularized Policy Optimization (Chen, Lu, Wang, Su, Zhu, ICLR 2024; official code thu-ml/SRPO).

A deterministic policy a = pi_theta(s) maximises Q while a pretrained diffusion behavior model regularises it
through its *score*, so acting is one MLP forward pass.

Objective (paper notation; beta larger = weaker regularisation, as the official `--beta`):
    max_theta  E_s[ Q(s, pi_theta(s)) ] - 1/beta E_s KL(pi_theta(.|s) || mu(.|s))
Surrogate actually optimised, an ensemble over diffusion times (score-distillation style):
    grad_theta L = E_{s, t~U(0.02, 0.98), z}[ (w(t) (eps_psi(alpha_t a + sigma_t z, t, s) [- z]) - beta grad_a Q(s, a))
                                               d pi_theta(s) / d theta ],   w(t) = sigma_t^2
implemented as loss = mean( w(t) <eps_hat, a> - beta <g, a> ) with eps_hat and g = grad_a Q held constant.

Three stages, trained one after another (stages 1 and 2 are independent):
    behavior  VP-SDE (beta 0.1..20) eps-prediction LN-ResNet, t ~ U(1e-3, 1), AdamW 3e-4, 2M steps x 2048
    critic    IQL, expectile 0.7 (0.9 antmaze), gamma 0.99, Polyak 0.005, Adam 3e-4, 1.5M steps x 256
    policy    tanh MLP 2 x 256 (4 x 256 antmaze), Adam 3e-4 + cosine to 0, 1M steps x 256

Q is the *mean* of the two target heads (official code, not the min). AntMaze normalises each sample's
grad_a Q by its RMS. Rewards: locomotion r * 1000 / (max - min episode return); antmaze r - 1.

Deviations from the released code are named settings whose defaults are the official values:
    weighting          "sigma2" (official "VDS"), "constant" (official "stable"), "score" (alpha_t / sigma_t)
    epsilon_baseline   False (official default `--WT VDS` does not subtract z; the paper presents the
                       subtraction as a variance-reduction baseline: it leaves the expected gradient unchanged)
    q_head             "mean" (official) or "min"
    critic_next_value  "before_v_step" (official `IQL_Critic.update_q0`: next_v = V(s') is computed before the V
                       update of the same step); "after_v_step" is IQL's/IDQL's order
    return_split       "episode_limit" (official `utils.return_range`: q-learning rows cut at terminals or every
                       1000 steps, final partial segment dropped); "trajectory" cuts at the true trajectory ends
The policy is evaluated during its stage on the profile's schedule (a curve of scores); the reported score is
the final policy's, as the official README reports it.
On the toy bandits (our addition, no official setting) rewards are used unscaled and beta is per dataset.

On locomotion-lite (our suite, no official setting) beta is borrowed from the D4RL task of the same env and
tier (`d4rl_equivalent`). beta multiplies Q, and pi* ~ mu exp(beta Q) is unchanged by (beta, Q) -> (beta / c, c Q),
so a borrowed beta is only right if Q has D4RL's scale. It need not: lite Hopper's medium policy falls after
~85 steps, so the official 1000 / (max - min return) scaling makes its per-step reward ~12 (D4RL's, estimated:
~3 raw per step x 1000 / ~2,900 = ~1).
Measured at the quick profile, seed 0 (official-tier beta -> smaller beta, normalized score):
hopper-medium 0.05: -1.3 -> 0.01: 50.4; halfcheetah-medium 0.2: 0.9 -> 0.002: 26.2; walker2d-medium-expert
0.1: -0.5 -> 0.01: 50.1; hopper-medium-expert 0.01: 37.8 -> 0.002: 65.1. Halfcheetah's reward scale matches
D4RL's, so an under-trained critic (quick: 20k of 1.5M IQL steps) is the other half of the story. The default
stays the borrowed official value; `--set srpo.beta=...` changes it, and the run records the value it used.

Stages (`stages`): behavior (shared definition `VPSDEBehaviorStage`), critic (`IQLCriticStage`, SRPO's settings),
policy (`SRPOPolicyStage`, depends on both). Each key covers its whole stage config, so a policy-only change
(beta, weighting) reuses the behavior model and critic already trained for the same data and seed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from srpo_bench.config import positive, within
from srpo_bench.core.agents import Agent, PolicyAgent
from srpo_bench.core.behavior import VPSDEBehaviorStage, fit_vpsde_behavior
from srpo_bench.core.critics import IQLCriticStage, TwinQ, fit_iql_critic
from srpo_bench.core.diffusion import VPSDE
from srpo_bench.core.method import FAMILIES, Method
from srpo_bench.core.nn import DeterministicPolicy
from srpo_bench.core.optim import adam
from srpo_bench.core.rewards import ReturnSplit, RewardTransform
from srpo_bench.core.stages import FitContext, PlanContext, Stage, StageConfig
from srpo_bench.data.sampler import EpochSampler
from srpo_bench.tasks import Task, d4rl_equivalent

# Per-task temperature beta (`utils.py:temperature_coefficients` in thu-ml/SRPO).
SRPO_TEMPERATURES: dict[str, float] = {
    "halfcheetah-medium-v2": 0.2, "hopper-medium-v2": 0.05, "walker2d-medium-v2": 0.05,
    "halfcheetah-medium-replay-v2": 0.2, "hopper-medium-replay-v2": 0.2, "walker2d-medium-replay-v2": 0.5,
    "halfcheetah-medium-expert-v2": 0.01, "hopper-medium-expert-v2": 0.01, "walker2d-medium-expert-v2": 0.1,
    "antmaze-umaze-v2": 0.02, "antmaze-umaze-diverse-v2": 0.04, "antmaze-medium-play-v2": 0.08,
    "antmaze-medium-diverse-v2": 0.05, "antmaze-large-play-v2": 0.06, "antmaze-large-diverse-v2": 0.05,
}
# OGBench (FQL paper, Appendix: SRPO re-implemented on IDQL's code): beta per environment. OGBench rewards
# (-number of unfinished subtasks, masks for success) are used as they are: our choice, the paper states no
# reward scaling; the other SRPO settings keep their D4RL locomotion values (our choice).
OGBENCH_TEMPERATURES: dict[str, float] = {"cube-single": 0.03, "cube-double": 0.1, "scene": 0.1, "puzzle-3x3": 0.1,
                                          "puzzle-4x4": 0.1}
# Toy bandits (our suite, rewards unscaled): the middle of the sweep beta in {0.02 .. 200}, where about half
# the contexts stay inside the support (two moons, quick profile: score 99; beta 0.02: 67; beta >= 2: 106).
TOY_TEMPERATURE = 0.2

Weighting = Literal["sigma2", "constant", "score"]
QHead = Literal["mean", "min"]


@dataclass(frozen=True)
class SRPOConfig:
    # stage 1: diffusion behavior model
    behavior_steps: int = 2_000_000
    behavior_batch_size: int = 2048
    behavior_lr: float = 3e-4
    behavior_width: int = 256
    behavior_blocks: int = 3
    behavior_dropout: float = 0.1
    # stage 2: IQL critic
    critic_steps: int = 1_500_000
    critic_batch_size: int = 256
    critic_lr: float = 3e-4
    expectile: float = 0.7
    gamma: float = 0.99
    polyak: float = 0.005
    critic_next_value: Literal["before_v_step", "after_v_step"] = "before_v_step"
    reward_transform: RewardTransform = "return_range"
    return_split: ReturnSplit = "episode_limit"
    # stage 3: policy extraction
    policy_steps: int = 1_000_000
    policy_batch_size: int = 256
    policy_lr: float = 3e-4
    policy_layers: int = 2
    policy_hidden: int = 256
    beta: float = 0.05
    weighting: Weighting = "sigma2"
    epsilon_baseline: bool = False
    t_min: float = 0.02
    t_max: float = 0.98
    q_head: QHead = "mean"
    normalize_q_grad: bool = False

    def __post_init__(self) -> None:
        positive(self, "behavior_steps", "behavior_batch_size", "critic_steps", "critic_batch_size", "policy_steps",
                 "policy_batch_size", "policy_layers", "policy_hidden", "behavior_width", "behavior_blocks")
        within(self, "(0, inf)", "behavior_lr", "critic_lr", "policy_lr", "beta")
        within(self, "[0, 1)", "behavior_dropout")
        within(self, "(0, 1)", "expectile")
        within(self, "[0, 1]", "gamma")
        within(self, "(0, 1]", "polyak")
        if not 0.0 <= self.t_min < self.t_max <= 1.0:
            raise ValueError(f"need 0 <= t_min < t_max <= 1, got t_min={self.t_min}, t_max={self.t_max}")


@dataclass(frozen=True)
class SRPOPolicyStage(StageConfig):
    steps: int
    batch_size: int
    lr: float
    layers: int
    hidden: int
    beta: float
    weighting: Weighting
    epsilon_baseline: bool
    t_min: float
    t_max: float
    q_head: QHead
    normalize_q_grad: bool


# --- the loss ------------------------------------------------------------------------------------------
def diffusion_weight(weighting: Weighting, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """w(t) of the surrogate: sigma_t^2 (official 'VDS'), 1 ('stable'), alpha_t / sigma_t ('score')."""
    if weighting == "sigma2":
        return sigma**2
    if weighting == "constant":
        return torch.ones_like(sigma)
    return alpha / sigma


def q_action_gradient(q_net: TwinQ, states: torch.Tensor, actions: torch.Tensor, q_head: QHead,
                      normalize: bool) -> torch.Tensor:
    """g = grad_a Q(s, a), constant w.r.t. the policy; Q = mean (official) or min of the twin target heads.
    AntMaze divides each row by its RMS over action dims (`regq`)."""
    with torch.enable_grad():
        actions = actions.detach().requires_grad_(True)
        q1, q2 = q_net(states, actions)
        q = 0.5 * (q1 + q2) if q_head == "mean" else torch.minimum(q1, q2)
        (grad,) = torch.autograd.grad(q.sum(), actions)
    if normalize:
        grad = grad / grad.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-8)
    return grad.detach()


def score_regularized_loss(
    policy: nn.Module,
    behavior_model: nn.Module,
    q_net: TwinQ,
    states: torch.Tensor,
    config: SRPOPolicyStage,
    sde: VPSDE,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The SRPO surrogate for one batch; its gradient is E[(w(t) eps_hat - beta grad_a Q) d pi / d theta]."""
    actions = policy(states)
    t = torch.rand(states.shape[0], device=states.device, generator=generator) * (config.t_max - config.t_min)
    t = t + config.t_min
    z = torch.randn(actions.shape, device=states.device, generator=generator)
    alpha, sigma = sde.alpha_sigma(t)
    with torch.no_grad():  # no gradient through the diffusion model: eps_hat is a constant
        eps_hat = behavior_model(alpha[:, None] * actions + sigma[:, None] * z, t, states)
        if config.epsilon_baseline:
            eps_hat = eps_hat - z
    weight = diffusion_weight(config.weighting, alpha, sigma)[:, None]
    q_grad = q_action_gradient(q_net, states, actions, config.q_head, config.normalize_q_grad)
    return (weight * eps_hat * actions - config.beta * q_grad * actions).sum(dim=-1).mean()


# --- the method ----------------------------------------------------------------------------------------
class SRPO(Method):
    name = "srpo"
    Config = SRPOConfig
    profiles: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "smoke": {
            family: dict(behavior_steps=100, behavior_batch_size=256, critic_steps=100, policy_steps=100)
            for family in FAMILIES
        },
        "quick": {
            "toy": dict(behavior_steps=600, behavior_batch_size=256, critic_steps=1000, policy_steps=1000),
            # ~6 min per task at one thread (behavior ~40 ms, IQL ~8 ms, policy ~15 ms per step). The critic gets
            # the most steps: with 5000 IQL steps, lite-halfcheetah-medium-replay scored 5.1 (data 5.6); 20000: 6.7.
            "locomotion": dict(behavior_steps=3000, behavior_batch_size=256, critic_steps=20000, policy_steps=5000),
            "antmaze": dict(behavior_steps=3000, behavior_batch_size=256, critic_steps=20000, policy_steps=5000),
            "ogbench": dict(behavior_steps=3000, behavior_batch_size=256, critic_steps=20000, policy_steps=5000),
        },
        # ogbench-cpu (profiles.CPU_BUDGET_SECONDS, ~900 s of CPU at one thread): a third each for the behavior
        # model (25 steps/s at batch 256), the IQL critic (143/s) and the policy (58/s). Behavior batch 256, not the
        # official 2048 (4.3 steps/s: 1,300 steps in the same time).
        "ogbench-cpu": {
            "ogbench": dict(behavior_steps=8000, behavior_batch_size=256, critic_steps=40000, policy_steps=18000),
        },
    }

    @classmethod
    def task_settings(cls, task: Task) -> dict[str, Any]:
        if task.family == "toy":
            return {"beta": TOY_TEMPERATURE, "reward_transform": "none"}
        if task.family == "ogbench":
            return {"beta": OGBENCH_TEMPERATURES.get(task.name.split("-play-")[0], 0.1), "reward_transform": "none"}
        settings: dict[str, Any] = {"beta": SRPO_TEMPERATURES.get(d4rl_equivalent(task.name), 0.05)}
        if task.family == "antmaze":
            settings.update(expectile=0.9, policy_layers=4, normalize_q_grad=True, reward_transform="minus_one")
        return settings

    @classmethod
    def critic_stage(cls, config: SRPOConfig) -> IQLCriticStage:
        """SRPO's IQL critic; IDQL reuses this exact definition under `critic_source="shared"`."""
        return IQLCriticStage(
            steps=config.critic_steps, batch_size=config.critic_batch_size, lr=config.critic_lr,
            expectile=config.expectile, gamma=config.gamma, polyak=config.polyak,
            next_value=config.critic_next_value, reward_transform=config.reward_transform,
            return_split=config.return_split,
        )

    @classmethod
    def behavior_stage(cls, config: SRPOConfig) -> VPSDEBehaviorStage:
        """SRPO's VP-SDE behavior model; SfBC reuses it under `behavior_source="shared"`."""
        return VPSDEBehaviorStage(steps=config.behavior_steps, batch_size=config.behavior_batch_size,
                                  lr=config.behavior_lr, width=config.behavior_width, blocks=config.behavior_blocks,
                                  dropout=config.behavior_dropout)

    @classmethod
    def stages(cls, config: SRPOConfig, plan: PlanContext) -> tuple[Stage, ...]:
        policy = SRPOPolicyStage(
            steps=config.policy_steps, batch_size=config.policy_batch_size, lr=config.policy_lr,
            layers=config.policy_layers, hidden=config.policy_hidden, beta=config.beta, weighting=config.weighting,
            epsilon_baseline=config.epsilon_baseline, t_min=config.t_min, t_max=config.t_max, q_head=config.q_head,
            normalize_q_grad=config.normalize_q_grad,
        )
        return (Stage("behavior", cls.behavior_stage(config)), Stage("critic", cls.critic_stage(config)),
                Stage("policy", policy, depends_on=("behavior", "critic")))

    def fit(self, ctx: FitContext, config: SRPOConfig) -> Agent:
        behavior_model = fit_vpsde_behavior(ctx, "behavior")
        q_target = fit_iql_critic(ctx, "critic").q_target
        stage: SRPOPolicyStage = ctx.config("policy")
        observations = ctx.dataset.tensors(ctx.device)["observations"]
        sde = VPSDE()

        def train(policy: DeterministicPolicy) -> None:
            optimizer = adam(policy.parameters(), lr=stage.lr)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=stage.steps, eta_min=0.0)
            sampler = EpochSampler({"observations": observations}, stage.batch_size, ctx.seed + 2)
            loss_of = ctx.captured(score_regularized_loss)
            for step, _bar in ctx.steps("policy", stage.steps, agent=lambda: PolicyAgent(copy.deepcopy(policy))):
                states = next(sampler)["observations"]
                loss = loss_of(policy, behavior_model, q_target, states, stage, sde)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                if ctx.log_due(step, stage.steps):
                    ctx.log("policy", step, loss=loss, lr=schedule.get_last_lr()[0])

        policy = ctx.fit("policy", lambda: DeterministicPolicy(ctx.dataset.obs_dim, ctx.dataset.act_dim, stage.hidden,
                                                               stage.layers).to(ctx.device), train)
        return PolicyAgent(policy)
