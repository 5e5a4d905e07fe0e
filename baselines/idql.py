"""IDQL: Implicit Diffusion Q-learning (Hansen-Estruch, Kostrikov, Janner, Kuba, Levine, 2023).

IQL's critic says how good an action is; a diffusion model of the *behavior* policy proposes actions; at
evaluation the policy is implicit: draw N candidates from the behavior model and keep the best by Q
(official code `philippe-eecs/IDQL`, the exported learner `jaxrl5/agents/ddpm_iql_simple`).

Behavior ("actor") model, pure behavior cloning (not advantage weighted) with a discrete DDPM, T = 5, 'vp' betas:
    t ~ U{1..T}, z ~ N(0, I), a_t = sqrt(abar_t) a + sqrt(1 - abar_t) z
    L(psi) = E[ sum_dims (eps_psi(a_t, t, s) - z)^2 ]
    eps_psi: learnable Fourier features (128) -> MLP 128-256-256 swish -> concat(a_t, s, cond) -> LN-ResNet
             256 x 3 blocks (Dropout 0.1 -> LayerNorm -> 1024 -> swish -> 256, residual) -> swish -> act_dim
    AdamW 3e-4 (optax default weight decay 1e-4) with cosine decay to 0 over the actor steps
    (`optax.cosine_decay_schedule(3e-4, 3e6)`); EMA copy psi' <- 0.999 psi' + 0.001 psi after every step
    (`actor_tau = 0.001`); the EMA model is the one that samples at evaluation.
Critic, IQL with a LayerNorm on V's input (`value_layer_norm=True`):
    L_V = E[ |tau - 1(adv < 0)| adv^2 ], adv = min(Q1', Q2')(s, a) - V(s),  tau = 0.7 (0.9 antmaze)
    L_Q = E[ (Q_i(s, a) - r - 0.99 (1 - d) V(s'))^2 ],  Q' <- 0.995 Q' + 0.005 Q,  Adam 3e-4
Action at evaluation (`eval_actions`): repeat s N = 64 times, run the 5-step ancestral DDPM sampler from the EMA
model (clipped to [-1, 1] after every step), q = min of the two *target* Q heads, return the argmax candidate.
Official schedule: 3M steps, batch 512, for actor and critic alike. Rewards: locomotion r * 1000 / (max - min
episode return), antmaze r - 1, others unchanged. Actions are clipped to +-(1 - 1e-5) for training.

Cost per action (`network_evaluations`): the denoiser runs N * T times (T batched calls on N rows), the critic
N * 2 times (two Q heads on N candidates); the resampling variant also evaluates V once.

Structure, not settings:
- Two stages. The official `update()` takes one actor, one V and one Q step on the same batch. The actor never
  reads the critic during training and the critic never reads the actor, so the two are independent learning
  problems and are trained here one after the other ("behavior", then "critic"), each with its own batches.
- Minibatches come from the shared `EpochSampler` (a random permutation walked in order); the official loader
  draws indices uniformly with replacement. The shared IQL stage has only the epoch sampler.

Choices of the released code and the options it offers are named settings; the defaults are the official values:
    train_fraction     0.95: the official script trains on a random 95 % of the transitions (`ds.split(0.95)`;
                       the other 5 % only feed validation logs). 1.0 trains on everything.
    action_clip_eps    1e-5: training actions clipped to +-(1 - eps) (`D4RLDataset(clip_to_eps=True)`); 0 disables.
    num_candidates     64 (`training_time_inference_params`); the launcher also evaluates 16 and 256.
    action_selection   "argmax" (HEAD's `eval_actions`). "expectile-resample" is the paper's importance-weighted
                       resampling (the older learner's `sample_implicit_policy`): weight tau if Q - V > 0 else
                       1 - tau, one categorical draw among the candidates (needs V at evaluation).
    actor_lr_decay     True: cosine decay to 0 over `actor_steps` (officially decay_steps = 3e6 = the step count).
    clip_sampler       True: clip to [-1, 1] after every denoising step (the result is clipped either way).
    init               "flax" (official JAX/Flax): jaxrl5's initialisation, xavier-uniform kernels in the MLPs and
                       the LN-ResNet's input/output Dense, flax's lecun-normal inside the residual blocks, zero
                       biases (`core.nn.flax_initialize`). "torch" keeps torch's defaults.
    layer_norm_eps     1e-6 (flax `nn.LayerNorm`); torch's default is 1e-5, which moves sampled candidates by ~5e-4.
    critic_next_value  "after_v_step" (official: `update_v` then `update_q`, whose target reads the new V).
    return_split       "trajectory" (jaxrl5 `split_into_trajectories` for `normalize_returns`).
    critic_source      "own" (IDQL's official critic). "shared": the critic stage is SRPO's IQL critic exactly as
                       SRPO resolves it in the same grid (its expectile, batch, steps, reward treatment, no V
                       LayerNorm, full unclipped data, and the user's `--set srpo.*` overrides), so both methods
                       use one artifact and the comparison isolates the policy-extraction step.
Evaluation during training: the official launcher evaluates every 250k steps; here the policy (EMA behavior
model + the critic being trained) is evaluated on the profile's schedule during the critic stage, which is
the last. The reported score is the final policy's.
On the toy bandits (our addition, no official setting) rewards are used unscaled.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from srpo_bench.config import positive, within
from srpo_bench.core.agents import Agent, CandidateAgent, Selection, argmax_selection, pick
from srpo_bench.core.critics import IQLCritic, IQLCriticStage, fit_iql_critic
from srpo_bench.core.diffusion import DDPMSchedule, ddpm_denoising_loss, ddpm_sample_ancestral
from srpo_bench.core.method import FAMILIES, Method
from srpo_bench.core.nn import LearnableFourierFeatures, NoisePredictor, flax_initialize, polyak_update
from srpo_bench.core.noise import Noise, as_noise
from srpo_bench.core.optim import adamw
from srpo_bench.core.rewards import ReturnSplit, RewardTransform, training_tensors
from srpo_bench.core.stages import FitContext, PlanContext, Stage, StageConfig, train_mode
from srpo_bench.data.sampler import EpochSampler
from srpo_bench.tasks import Task

ActionSelection = Literal["argmax", "expectile-resample"]
Init = Literal["flax", "torch"]


@dataclass(frozen=True)
class IDQLConfig:
    # behavior ("actor") stage: DDPM behavior cloning (launcher `train_ddpm_iql_offline.py`, learner defaults)
    actor_steps: int = 3_000_000
    actor_batch_size: int = 512
    actor_lr: float = 3e-4
    actor_weight_decay: float = 1e-4  # optax.adamw default
    actor_lr_decay: bool = True  # cosine to 0 over actor_steps
    actor_ema_rate: float = 0.001  # actor_tau: EMA 0.999 per step
    diffusion_steps: int = 5  # T, 'vp' betas (b_min 0.1, b_max 10)
    time_dim: int = 128  # learnable Fourier features; the conditioning MLP is 2 x (2 * time_dim)
    actor_width: int = 256
    actor_blocks: int = 3
    actor_dropout: float = 0.1
    init: Init = "flax"
    layer_norm_eps: float = 1e-6
    # critic stage: IQL with LayerNorm on V's input
    critic_source: Literal["own", "shared"] = "own"
    critic_steps: int = 3_000_000
    critic_batch_size: int = 512
    critic_lr: float = 3e-4
    expectile: float = 0.7  # critic_hyperparam: 0.7 locomotion, 0.9 antmaze
    gamma: float = 0.99
    polyak: float = 0.005
    value_layer_norm: bool = True
    critic_next_value: Literal["before_v_step", "after_v_step"] = "after_v_step"
    reward_transform: RewardTransform = "return_range"
    return_split: ReturnSplit = "trajectory"
    # data treatment
    train_fraction: float = 0.95
    action_clip_eps: float = 1e-5
    # evaluation-time action selection (acting only: in no stage key)
    num_candidates: int = 64
    action_selection: ActionSelection = "argmax"
    sampling_temperature: float = 1.0  # ddpm_temperature
    clip_sampler: bool = True

    def __post_init__(self) -> None:
        positive(self, "actor_steps", "actor_batch_size", "critic_steps", "critic_batch_size", "diffusion_steps",
                 "num_candidates", "time_dim", "actor_width", "actor_blocks")
        within(self, "(0, inf)", "actor_lr", "critic_lr", "sampling_temperature", "layer_norm_eps")
        within(self, "[0, inf)", "actor_weight_decay")
        within(self, "(0, 1]", "actor_ema_rate", "polyak")
        within(self, "[0, 1)", "actor_dropout")
        within(self, "(0, 1)", "expectile")
        within(self, "[0, 1]", "gamma")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")


@dataclass(frozen=True)
class IDQLBehaviorStage(StageConfig):
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    lr_decay: bool
    ema_rate: float
    diffusion_steps: int
    time_dim: int
    width: int
    blocks: int
    dropout: float
    init: Init
    layer_norm_eps: float
    train_fraction: float
    action_clip_eps: float


def idql_score_model(obs_dim: int, act_dim: int, config: IDQLBehaviorStage) -> NoisePredictor:
    """IDQL's `DDPM` + `MLPResNet`: learnable Fourier (128) -> MLP 128-256-256 swish -> LN-ResNet 256 x 3, swish."""
    model = NoisePredictor(
        obs_dim, act_dim, LearnableFourierFeatures(config.time_dim), config.time_dim,
        cond_dims=(2 * config.time_dim, 2 * config.time_dim), width=config.width, blocks=config.blocks,
        dropout=config.dropout, activation=nn.SiLU, layer_norm_eps=config.layer_norm_eps,
    )
    return flax_initialize(model) if config.init == "flax" else model


class IDQLBehavior(nn.Module):
    """The score model being trained and its EMA copy (the one that samples at evaluation)."""

    def __init__(self, obs_dim: int, act_dim: int, config: IDQLBehaviorStage) -> None:
        super().__init__()
        self.model = idql_score_model(obs_dim, act_dim, config)
        self.ema_model = copy.deepcopy(self.model).requires_grad_(False)


def fit_ddpm_behavior(ctx: FitContext) -> NoisePredictor:
    """Stage 1: behavior cloning with the T-step DDPM; returns the EMA model in eval mode (dropout off)."""
    config: IDQLBehaviorStage = ctx.config("behavior")
    tensors = training_tensors(ctx.dataset, ctx.device, "none", "trajectory", ctx.task.max_episode_steps,
                               config.train_fraction, config.action_clip_eps, ctx.seed)
    schedule = DDPMSchedule.vp(config.diffusion_steps).to(ctx.device)

    def train(behavior: IDQLBehavior) -> None:
        model, ema_model = behavior.model, behavior.ema_model
        optimizer = adamw(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        lr_schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps, eta_min=0.0)
                       if config.lr_decay else None)
        sampler = EpochSampler({"observations": tensors["observations"], "actions": tensors["actions"]},
                               config.batch_size, seed=ctx.seed + 3)
        noise_generator = ctx.generator(offset=3)
        train_mode(model)  # dropout on while training (`training=True` in the official actor loss)
        loss_of = ctx.captured(ddpm_denoising_loss)
        for step, _bar in ctx.steps("behavior", config.steps):
            batch = next(sampler)
            lr = optimizer.param_groups[0]["lr"]
            loss = loss_of(model, batch["actions"], batch["observations"], schedule, generator=noise_generator,
                           reduction="sum_dims")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if lr_schedule is not None:
                lr_schedule.step()
            polyak_update(ema_model, model, config.ema_rate)
            if ctx.log_due(step, config.steps):
                ctx.log("behavior", step, loss=loss, lr=lr)

    behavior = ctx.fit("behavior", lambda: IDQLBehavior(ctx.dataset.obs_dim, ctx.dataset.act_dim, config)
                       .to(ctx.device), train)
    return behavior.ema_model


def expectile_resample_selection(value_net: nn.Module, expectile: float) -> Selection:
    """The paper's importance-weighted resampling: weight tau where Q > V, 1 - tau elsewhere (`adv > 0`), one
    categorical draw among the candidates (the older learner's `sample_implicit_policy`)."""

    def select(observations: torch.Tensor, q: torch.Tensor, candidates: torch.Tensor,
               noise: Noise | torch.Generator | None = None) -> torch.Tensor:
        advantage = q - value_net(observations)[:, None]
        weights = torch.where(advantage > 0, expectile, 1.0 - expectile)
        return pick(candidates, as_noise(noise).categorical(weights))

    return select


def idql_agent(score_model: nn.Module, critic: IQLCritic, config: IDQLConfig, act_dim: int,
               device: torch.device) -> CandidateAgent:
    """N candidates per state from the 5-step ancestral sampler of the EMA model, q = min of the two *target*
    Q heads, argmax (or the expectile resampling)."""
    schedule = DDPMSchedule.vp(config.diffusion_steps).to(device)
    clip = 1.0 if config.clip_sampler else None

    def sampler(states: torch.Tensor, noise: Noise) -> torch.Tensor:
        return ddpm_sample_ancestral(score_model, states, schedule, act_dim, temperature=config.sampling_temperature,
                                     clip=clip, generator=noise).clamp(-1.0, 1.0)  # clipped whatever clip says

    cost = {"denoiser": config.num_candidates * config.diffusion_steps, "critic": config.num_candidates * 2}
    selection = argmax_selection
    if config.action_selection == "expectile-resample":
        selection = expectile_resample_selection(critic.v, critic.config.expectile)
        cost["value"] = 1
    return CandidateAgent(sampler, critic.q_target.min_q, selection, config.num_candidates, act_dim, cost, device)


class IDQL(Method):
    name = "idql"
    Config = IDQLConfig
    profiles: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "smoke": {
            family: dict(actor_steps=40, actor_batch_size=64, critic_steps=50, critic_batch_size=128)
            for family in FAMILIES
        },
        "quick": {
            # measured on the 2-core CPU (1 thread, CPU time): actor step 22 ms at batch 128 / 37 ms at 256,
            # critic step 7 ms at 256. Toy: ~12 s of training; locomotion: ~4 min. The IQL critic gets the
            # same 20k steps as SRPO's quick IQL critic (profiles.py: quick budgets matched across methods).
            "toy": dict(actor_steps=400, actor_batch_size=128, critic_steps=500, critic_batch_size=256),
            "locomotion": dict(actor_steps=3000, actor_batch_size=256, critic_steps=20000, critic_batch_size=256),
            "antmaze": dict(actor_steps=3000, actor_batch_size=256, critic_steps=20000, critic_batch_size=256),
            "ogbench": dict(actor_steps=3000, actor_batch_size=256, critic_steps=20000, critic_batch_size=256),
        },
        # ogbench-cpu (profiles.CPU_BUDGET_SECONDS, ~900 s of CPU at one thread): two thirds for the diffusion actor
        # (30 steps/s at batch 256), a third for the IQL critic (142/s at 256), with SRPO's 40k critic steps.
        "ogbench-cpu": {
            "ogbench": dict(actor_steps=18000, actor_batch_size=256, critic_steps=40000, critic_batch_size=256),
        },
    }

    @classmethod
    def task_settings(cls, task: Task) -> dict[str, Any]:
        if task.family in ("toy", "ogbench"):  # OGBench: rewards as given, other settings D4RL's (our choice)
            return {"reward_transform": "none"}
        if task.family == "antmaze":
            return {"expectile": 0.9, "reward_transform": "minus_one"}
        return {}

    @classmethod
    def stages(cls, config: IDQLConfig, plan: PlanContext) -> tuple[Stage, ...]:
        behavior = IDQLBehaviorStage(
            steps=config.actor_steps, batch_size=config.actor_batch_size, lr=config.actor_lr,
            weight_decay=config.actor_weight_decay, lr_decay=config.actor_lr_decay, ema_rate=config.actor_ema_rate,
            diffusion_steps=config.diffusion_steps, time_dim=config.time_dim, width=config.actor_width,
            blocks=config.actor_blocks, dropout=config.actor_dropout, init=config.init,
            layer_norm_eps=config.layer_norm_eps, train_fraction=config.train_fraction,
            action_clip_eps=config.action_clip_eps,
        )
        if config.critic_source == "shared":
            critic = plan.stage_of("srpo", "critic")
        else:
            critic = Stage("critic", IQLCriticStage(
                steps=config.critic_steps, batch_size=config.critic_batch_size, lr=config.critic_lr,
                expectile=config.expectile, gamma=config.gamma, polyak=config.polyak,
                next_value=config.critic_next_value, reward_transform=config.reward_transform,
                return_split=config.return_split, value_layer_norm=config.value_layer_norm,
                layer_norm_eps=config.layer_norm_eps, init=config.init, train_fraction=config.train_fraction,
                action_clip_eps=config.action_clip_eps,
            ))
        return Stage("behavior", behavior), critic

    def fit(self, ctx: FitContext, config: IDQLConfig) -> Agent:
        score_model = fit_ddpm_behavior(ctx)
        act_dim = ctx.dataset.act_dim
        critic = fit_iql_critic(ctx, "critic", agent=lambda training: idql_agent(
            score_model, copy.deepcopy(training), config, act_dim, ctx.device))
        return idql_agent(score_model, critic, config, act_dim, ctx.device)
