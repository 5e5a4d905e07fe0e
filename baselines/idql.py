"""IDQL: Implicit Diffusion Q-learning (Hansen-Estruch, Kostrikov, Janner, Kuba, Levine, 2023).

IQL's critic says how good an action is; a diffusion model of the *behavior* policy proposes actions; at
evaluation the policy is implicit: draw N candidates from the behavior model and keep the best by Q
(ALGORITHMS.md section 4.2; `philippe-eecs/IDQL`, the exported learner `jaxrl5/agents/ddpm_iql_simple`).

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
- Weights start from torch's default initialisation, not flax's (lecun-normal / xavier-uniform kernels, zero
  biases); LayerNorm eps is torch's 1e-5 (flax 1e-6).

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
--share-stages (ctx.shared_stage_dir set; not a Config field): the critic stage is SRPO's IQL critic exactly (SRPO's
expectile, batch, steps, reward transform, no V LayerNorm, its full unclipped data), so one artifact serves both
methods and the comparison isolates the policy-extraction step. Without it IDQL trains its own official critic.
On the toy bandits (our addition, no official setting) rewards are used unscaled.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from srpo_bench.critics import IQLConfig, fit_iql_critic
from srpo_bench.data.sampler import EpochSampler
from srpo_bench.diffusion import DDPMSchedule, ddpm_denoising_loss, ddpm_sample_ancestral
from srpo_bench.methods import Agent, FitContext, Method, resolve_config
from srpo_bench.nn import LearnableFourierFeatures, NoisePredictor, polyak_update
from srpo_bench.srpo import SRPO, dataset_tensors, srpo_iql_config
from srpo_bench.tasks import Task

ACTION_SELECTIONS = ("argmax", "expectile-resample")


@dataclass
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
    # critic stage: IQL with LayerNorm on V's input
    critic_steps: int = 3_000_000
    critic_batch_size: int = 512
    critic_lr: float = 3e-4
    expectile: float = 0.7  # critic_hyperparam: 0.7 locomotion, 0.9 antmaze
    gamma: float = 0.99
    polyak: float = 0.005
    value_layer_norm: bool = True
    reward_transform: str = "return_range"  # "return_range" | "minus_one" | "none"
    # data treatment
    train_fraction: float = 0.95
    action_clip_eps: float = 1e-5
    # evaluation-time action selection
    num_candidates: int = 64
    action_selection: str = "argmax"  # "argmax" | "expectile-resample"
    sampling_temperature: float = 1.0  # ddpm_temperature
    clip_sampler: bool = True
    log_every: int = 1000


@dataclass
class IDQLCriticConfig(IQLConfig):
    """IQL's settings plus IDQL's data treatment, so the critic's cache key names the data it was trained on."""

    train_fraction: float = 0.95
    action_clip_eps: float = 1e-5


def idql_score_model(obs_dim: int, act_dim: int, config: IDQLConfig) -> NoisePredictor:
    """IDQL's `DDPM` + `MLPResNet`: learnable Fourier (128) -> MLP 128-256-256 swish -> LN-ResNet 256 x 3, swish."""
    return NoisePredictor(
        obs_dim, act_dim, LearnableFourierFeatures(config.time_dim), config.time_dim,
        cond_dims=(2 * config.time_dim, 2 * config.time_dim), width=config.actor_width,
        blocks=config.actor_blocks, dropout=config.actor_dropout, activation=nn.SiLU,
    )


def training_tensors(tensors: dict[str, torch.Tensor], config: IDQLConfig, seed: int) -> dict[str, torch.Tensor]:
    """IDQL's view of the data: a random `train_fraction` of the transitions (`ds.split(0.95)`, drawn after the
    reward transform), actions clipped to +-(1 - action_clip_eps) (`clip_to_eps`)."""
    size = int(tensors["observations"].shape[0])
    kept = dict(tensors)
    if config.train_fraction < 1.0:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        count = max(1, int(size * config.train_fraction))
        index = torch.randperm(size, generator=generator)[:count].to(tensors["observations"].device)
        kept = {key: value[index] for key, value in tensors.items()}
    if config.action_clip_eps > 0:
        limit = 1.0 - config.action_clip_eps
        kept["actions"] = kept["actions"].clamp(-limit, limit)
    return kept


def fit_ddpm_behavior(ctx: FitContext, tensors: dict[str, torch.Tensor], config: IDQLConfig) -> NoisePredictor:
    """Stage 1: behavior cloning with the T-step DDPM; returns the EMA model in eval mode (dropout off)."""
    obs_dim, act_dim = tensors["observations"].shape[1], tensors["actions"].shape[1]
    schedule = DDPMSchedule.vp(config.diffusion_steps).to(ctx.device)
    stage_config = {
        key: value for key, value in dataclasses.asdict(config).items()
        if key.startswith("actor_") or key in ("diffusion_steps", "time_dim", "train_fraction", "action_clip_eps")
    }

    def train() -> dict[str, Any]:
        torch.manual_seed(ctx.seed)  # initial weights and dropout masks
        model = idql_score_model(obs_dim, act_dim, config).to(ctx.device)
        ema_model = copy.deepcopy(model).requires_grad_(False)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.actor_lr, weight_decay=config.actor_weight_decay)
        lr_schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.actor_steps, eta_min=0.0)
                       if config.actor_lr_decay else None)
        sampler = EpochSampler({"observations": tensors["observations"], "actions": tensors["actions"]},
                               config.actor_batch_size, seed=ctx.seed + 3)
        noise_generator = ctx.generator(offset=3)
        model.train()  # dropout on while training (`training=True` in the official actor loss)
        for step, _bar in ctx.steps("behavior", config.actor_steps):
            batch = next(sampler)
            lr = optimizer.param_groups[0]["lr"]
            loss = ddpm_denoising_loss(model, batch["actions"], batch["observations"], schedule,
                                       generator=noise_generator, reduction="sum_dims")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if lr_schedule is not None:
                lr_schedule.step()
            polyak_update(ema_model, model, config.actor_ema_rate)
            if step % config.log_every == 0 or step == config.actor_steps - 1:
                ctx.log("behavior", step, loss=loss.item(), lr=lr)
        return {"model": model.state_dict(), "ema_model": ema_model.state_dict()}

    state = ctx.stage("behavior", "ddpm-behavior/idql-ln-resnet", stage_config, train)
    ema_model = idql_score_model(obs_dim, act_dim, config).to(ctx.device)
    ema_model.load_state_dict(state["ema_model"])
    return ema_model.eval().requires_grad_(False)


class IDQLAgent(Agent):
    """N candidates per state from the EMA behavior model, one picked by the target critic.

    All B states are handled at once: states are repeated to [B * N] rows, sampled together, scored together.
    """

    def __init__(
        self,
        score_model: nn.Module,
        q_target: nn.Module,
        schedule: DDPMSchedule,
        act_dim: int,
        num_candidates: int = 64,
        action_selection: str = "argmax",
        value_net: nn.Module | None = None,
        expectile: float = 0.7,
        sampling_temperature: float = 1.0,
        clip_sampler: bool = True,
    ) -> None:
        if action_selection not in ACTION_SELECTIONS:
            raise ValueError(f"unknown action_selection '{action_selection}' ({', '.join(ACTION_SELECTIONS)})")
        if action_selection == "expectile-resample" and value_net is None:
            raise ValueError("action_selection 'expectile-resample' needs the critic's V network")
        self.score_model = score_model.eval()
        self.q_target = q_target.eval()  # returns (Q1, Q2)
        self.value_net = value_net.eval() if value_net is not None else None
        self.schedule = schedule
        self.act_dim = act_dim
        self.num_candidates = num_candidates
        self.action_selection = action_selection
        self.expectile = expectile
        self.sampling_temperature = sampling_temperature
        self.clip_sampler = clip_sampler
        self.network_evaluations = {"denoiser": num_candidates * schedule.steps, "critic": num_candidates * 2}
        if action_selection == "expectile-resample":
            self.network_evaluations["value"] = 1
        self.generator = torch.Generator(device=self.device)
        self.seed(0)

    @property
    def device(self) -> torch.device:
        return next(self.score_model.parameters()).device

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    @torch.no_grad()
    def act(self, observations: torch.Tensor) -> torch.Tensor:
        batch, count = observations.shape[0], self.num_candidates
        states = observations.repeat_interleave(count, dim=0)  # [B * N, obs_dim], state-major
        candidates = ddpm_sample_ancestral(
            self.score_model, states, self.schedule, self.act_dim, temperature=self.sampling_temperature,
            clip=1.0 if self.clip_sampler else None, generator=self.generator,
        ).clamp(-1.0, 1.0)  # the official sampler clips its result whatever `clip_sampler` says
        q1, q2 = self.q_target(states, candidates)
        q = torch.minimum(q1, q2).reshape(batch, count)
        if self.action_selection == "argmax":
            chosen = q.argmax(dim=1)
        else:  # importance weights of the expectile: tau where Q > V, 1 - tau elsewhere (`adv > 0`)
            advantage = q - self.value_net(observations)[:, None]
            weights = torch.where(advantage > 0, self.expectile, 1.0 - self.expectile)
            chosen = torch.multinomial(weights, 1, generator=self.generator).squeeze(1)
        return candidates.reshape(batch, count, self.act_dim)[torch.arange(batch, device=q.device), chosen]


class IDQL(Method):
    name = "idql"
    Config = IDQLConfig
    stages = ("behavior", "critic")
    profiles: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "smoke": {
            family: dict(actor_steps=40, actor_batch_size=64, critic_steps=50, critic_batch_size=128, log_every=10)
            for family in ("toy", "locomotion", "antmaze")
        },
        "quick": {
            # measured on the 2-core CPU (1 thread, CPU time): actor step 22 ms at batch 128 / 37 ms at 256,
            # critic step 7 ms at 256. Toy: ~12 s of training; locomotion: ~4 min. The IQL critic gets the
            # same 20k steps as SRPO's quick IQL critic (profiles.py: quick budgets matched across methods).
            "toy": dict(actor_steps=400, actor_batch_size=128, critic_steps=500, critic_batch_size=256,
                        log_every=50),
            "locomotion": dict(actor_steps=3000, actor_batch_size=256, critic_steps=20000, critic_batch_size=256,
                               log_every=500),
            "antmaze": dict(actor_steps=3000, actor_batch_size=256, critic_steps=20000, critic_batch_size=256,
                            log_every=500),
        },
    }

    @classmethod
    def task_settings(cls, task: Task) -> dict[str, Any]:
        if task.family == "toy":
            return {"reward_transform": "none"}
        if task.family == "antmaze":
            return {"expectile": 0.9, "reward_transform": "minus_one"}
        return {}

    def fit(self, ctx: FitContext, config: IDQLConfig) -> Agent:
        if config.action_selection not in ACTION_SELECTIONS:
            raise ValueError(f"unknown action_selection '{config.action_selection}' ({', '.join(ACTION_SELECTIONS)})")
        tensors = training_tensors(dataset_tensors(ctx, config.reward_transform), config, seed=ctx.seed)
        score_model = fit_ddpm_behavior(ctx, tensors, config)
        if ctx.shared_stage_dir is not None:
            # --share-stages: SRPO's exact IQL critic (its own data treatment), one artifact for both methods.
            srpo_config = resolve_config(SRPO, ctx.task, ctx.profile)
            critic = fit_iql_critic(ctx, dataset_tensors(ctx, srpo_config.reward_transform),
                                    srpo_iql_config(srpo_config), srpo_config.critic_steps,
                                    srpo_config.critic_batch_size, srpo_config.reward_transform,
                                    log_every=srpo_config.log_every)
        else:
            critic_config = IDQLCriticConfig(
                expectile=config.expectile, gamma=config.gamma, polyak=config.polyak, lr=config.critic_lr,
                value_layer_norm=config.value_layer_norm, train_fraction=config.train_fraction,
                action_clip_eps=config.action_clip_eps,
            )
            critic = fit_iql_critic(ctx, tensors, critic_config, config.critic_steps, config.critic_batch_size,
                                    config.reward_transform, log_every=config.log_every)
        return IDQLAgent(
            score_model, critic.q_target.requires_grad_(False), DDPMSchedule.vp(config.diffusion_steps).to(ctx.device),
            ctx.dataset.act_dim, num_candidates=config.num_candidates, action_selection=config.action_selection,
            value_net=critic.v.requires_grad_(False), expectile=critic.config.expectile,
            sampling_temperature=config.sampling_temperature, clip_sampler=config.clip_sampler,
        )
