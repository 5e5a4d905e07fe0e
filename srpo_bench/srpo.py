"""SRPO: Score Regularized Policy Optimization (Chen, Lu, Wang, Zhu, ICLR 2024).

A deterministic policy a = pi_theta(s) maximises Q while a pretrained diffusion behavior model regularises it
through its *score*, so acting is one MLP forward pass (ALGORITHMS.md section 1).

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
    eval_every         0: no evaluation during training; the final policy is reported (as the official README)
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
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from srpo_bench.critics import IQLConfig, TwinQ, fit_iql_critic
from srpo_bench.data.dataset import OfflineDataset, return_range_scaled_rewards
from srpo_bench.data.sampler import EpochSampler
from srpo_bench.diffusion import VPSDE, vpsde_denoising_loss
from srpo_bench.methods import Agent, FitContext, Method
from srpo_bench.nn import DeterministicPolicy, GaussianFourierProjection, NoisePredictor
from srpo_bench.tasks import Task

# Per-task temperature beta (`utils.py:temperature_coefficients` in thu-ml/SRPO).
SRPO_TEMPERATURES: dict[str, float] = {
    "halfcheetah-medium-v2": 0.2, "hopper-medium-v2": 0.05, "walker2d-medium-v2": 0.05,
    "halfcheetah-medium-replay-v2": 0.2, "hopper-medium-replay-v2": 0.2, "walker2d-medium-replay-v2": 0.5,
    "halfcheetah-medium-expert-v2": 0.01, "hopper-medium-expert-v2": 0.01, "walker2d-medium-expert-v2": 0.1,
    "antmaze-umaze-v2": 0.02, "antmaze-umaze-diverse-v2": 0.04, "antmaze-medium-play-v2": 0.08,
    "antmaze-medium-diverse-v2": 0.05, "antmaze-large-play-v2": 0.06, "antmaze-large-diverse-v2": 0.05,
}
# Toy bandits (our suite, rewards unscaled): the middle of the sweep beta in {0.02 .. 200}, where about half
# the contexts stay inside the support (two moons, quick profile: score 99; beta 0.02: 67; beta >= 2: 106).
TOY_TEMPERATURE = 0.2


def d4rl_equivalent(task_name: str) -> str:
    """Map our names onto D4RL's for per-task settings: lite-hopper-medium-v0 -> hopper-medium-v2,
    minari:D4RL/antmaze/umaze-v1 -> antmaze-umaze-v2. Other names map to themselves."""
    if task_name.startswith("lite-"):
        return task_name.removeprefix("lite-").rsplit("-v", 1)[0] + "-v2"
    if task_name.startswith("minari:D4RL/antmaze/"):
        return "antmaze-" + task_name.rsplit("/", 1)[1].rsplit("-v", 1)[0] + "-v2"
    return task_name


@dataclass
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
    # stage 3: policy extraction
    policy_steps: int = 1_000_000
    policy_batch_size: int = 256
    policy_lr: float = 3e-4
    policy_layers: int = 2
    policy_hidden: int = 256
    beta: float = 0.05
    weighting: str = "sigma2"
    epsilon_baseline: bool = False
    t_min: float = 0.02
    t_max: float = 0.98
    q_head: str = "mean"
    normalize_q_grad: bool = False
    reward_transform: str = "return_range"  # "return_range" | "minus_one" | "none"
    log_every: int = 1000


def transformed_rewards(dataset: OfflineDataset, transform: str) -> torch.Tensor:
    if transform == "return_range":
        rewards = return_range_scaled_rewards(dataset)
    elif transform == "minus_one":
        rewards = dataset.rewards - 1.0
    elif transform == "none":
        rewards = dataset.rewards
    else:
        raise ValueError(f"unknown reward_transform '{transform}' (return_range, minus_one, none)")
    return torch.as_tensor(rewards)


def diffusion_weight(weighting: str, alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """w(t) of the surrogate: sigma_t^2 (official 'VDS'), 1 ('stable'), alpha_t / sigma_t ('score')."""
    if weighting == "sigma2":
        return sigma**2
    if weighting == "constant":
        return torch.ones_like(sigma)
    if weighting == "score":
        return alpha / sigma
    raise ValueError(f"unknown weighting '{weighting}' (sigma2, constant, score)")


def q_action_gradient(q_net: TwinQ, states: torch.Tensor, actions: torch.Tensor, q_head: str,
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
    config: SRPOConfig,
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


def srpo_behavior_model(obs_dim: int, act_dim: int, config: SRPOConfig) -> NoisePredictor:
    """SRPO's `ScoreNet_IDQL`: Gaussian Fourier (64, scale 30) -> MLP 64-128-128 Mish -> LN-ResNet."""
    return NoisePredictor(
        obs_dim, act_dim, GaussianFourierProjection(64, 30.0), 64, cond_dims=(128, 128),
        width=config.behavior_width, blocks=config.behavior_blocks, dropout=config.behavior_dropout,
        activation=nn.Mish,
    )


def fit_vpsde_behavior(ctx: FitContext, tensors: dict[str, torch.Tensor], config: SRPOConfig) -> NoisePredictor:
    """Stage 1, also reusable by any method that wants SRPO's behavior model (`--share-stages`)."""
    obs_dim, act_dim = tensors["observations"].shape[1], tensors["actions"].shape[1]
    sde = VPSDE()
    stage_config = {
        "steps": config.behavior_steps, "batch_size": config.behavior_batch_size, "lr": config.behavior_lr,
        "width": config.behavior_width, "blocks": config.behavior_blocks, "dropout": config.behavior_dropout,
    }

    def train() -> dict:
        torch.manual_seed(ctx.seed)
        model = srpo_behavior_model(obs_dim, act_dim, config).to(ctx.device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.behavior_lr)  # torch default wd 0.01
        sampler = EpochSampler(tensors, config.behavior_batch_size, seed=ctx.seed)
        model.train()  # dropout on while training, as the official code
        for step, _bar in ctx.steps("behavior", config.behavior_steps):
            batch = next(sampler)
            loss = vpsde_denoising_loss(model, batch["actions"], batch["observations"], sde)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % config.log_every == 0 or step == config.behavior_steps - 1:
                ctx.log("behavior", step, loss=float(loss.detach()))
        return model.state_dict()

    model = srpo_behavior_model(obs_dim, act_dim, config).to(ctx.device)
    model.load_state_dict(ctx.stage("behavior", "vpsde-behavior/ln-resnet", stage_config, train))
    return model.eval().requires_grad_(False)  # stage 3 uses eval mode: dropout off


class PolicyAgent(Agent):
    """One forward pass of a deterministic policy per action."""

    def __init__(self, policy: nn.Module) -> None:
        self.policy = policy.eval()
        self.network_evaluations = {"policy": 1}

    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    def act(self, observations: torch.Tensor) -> torch.Tensor:
        return self.policy(observations)


def dataset_tensors(ctx: FitContext, reward_transform: str) -> dict[str, torch.Tensor]:
    tensors = ctx.dataset.tensors(ctx.device)
    tensors["rewards"] = transformed_rewards(ctx.dataset, reward_transform).to(ctx.device)
    return tensors


class SRPO(Method):
    name = "srpo"
    Config = SRPOConfig
    stages = ("behavior", "critic", "policy")
    profiles: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "smoke": {
            family: dict(behavior_steps=100, behavior_batch_size=256, critic_steps=100, policy_steps=100,
                         log_every=20)
            for family in ("toy", "locomotion", "antmaze")
        },
        "quick": {
            "toy": dict(behavior_steps=600, behavior_batch_size=256, critic_steps=1000, policy_steps=1000,
                        log_every=100),
            # ~6 min per task at one thread (behavior ~40 ms, IQL ~8 ms, policy ~15 ms per step). The critic gets
            # the most steps: with 5000 IQL steps, lite-halfcheetah-medium-replay scored 5.1 (data 5.6); 20000: 6.7.
            "locomotion": dict(behavior_steps=3000, behavior_batch_size=256, critic_steps=20000, policy_steps=5000,
                               log_every=500),
            "antmaze": dict(behavior_steps=3000, behavior_batch_size=256, critic_steps=20000, policy_steps=5000,
                            log_every=500),
        },
    }

    @classmethod
    def task_settings(cls, task: Task) -> dict[str, Any]:
        if task.family == "toy":
            return {"beta": TOY_TEMPERATURE, "reward_transform": "none"}
        name = d4rl_equivalent(task.name)
        settings: dict[str, Any] = {"beta": SRPO_TEMPERATURES.get(name, 0.05)}
        if task.family == "antmaze":
            settings.update(expectile=0.9, policy_layers=4, normalize_q_grad=True, reward_transform="minus_one")
        return settings

    def fit(self, ctx: FitContext, config: SRPOConfig) -> Agent:
        tensors = dataset_tensors(ctx, config.reward_transform)
        obs_dim, act_dim = ctx.dataset.obs_dim, ctx.dataset.act_dim
        behavior_model = fit_vpsde_behavior(ctx, tensors, config)
        critic = fit_iql_critic(ctx, tensors, srpo_iql_config(config), config.critic_steps,
                                config.critic_batch_size, config.reward_transform, log_every=config.log_every)
        q_target = critic.q_target.requires_grad_(False)
        sde = VPSDE()

        def train_policy() -> dict:
            torch.manual_seed(ctx.seed)
            policy = DeterministicPolicy(obs_dim, act_dim, config.policy_hidden, config.policy_layers).to(ctx.device)
            optimizer = torch.optim.Adam(policy.parameters(), lr=config.policy_lr)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.policy_steps, eta_min=0.0)
            sampler = EpochSampler({"observations": tensors["observations"]}, config.policy_batch_size, ctx.seed + 2)
            for step, _bar in ctx.steps("policy", config.policy_steps):
                states = next(sampler)["observations"]
                loss = score_regularized_loss(policy, behavior_model, q_target, states, config, sde)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                if step % config.log_every == 0 or step == config.policy_steps - 1:
                    ctx.log("policy", step, loss=float(loss.detach()), lr=schedule.get_last_lr()[0])
            return policy.state_dict()

        policy_config = {
            k: v for k, v in dataclasses.asdict(config).items()
            if k.startswith("policy_") or k in ("beta", "weighting", "epsilon_baseline", "t_min", "t_max",
                                                  "q_head", "normalize_q_grad")
        }
        policy_config["behavior_key"] = ctx.stage_key_of("behavior")
        policy_config["critic_key"] = ctx.stage_key_of("critic")
        policy = DeterministicPolicy(obs_dim, act_dim, config.policy_hidden, config.policy_layers).to(ctx.device)
        policy.load_state_dict(ctx.stage("policy", "srpo-policy", policy_config, train_policy))
        return PolicyAgent(policy)


def srpo_iql_config(config: SRPOConfig) -> IQLConfig:
    return IQLConfig(expectile=config.expectile, gamma=config.gamma, polyak=config.polyak, lr=config.critic_lr)
