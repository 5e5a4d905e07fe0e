"""Diffusion-QL: Diffusion Policies as an Expressive Policy Class for Offline RL (Wang, Hunt, Zhou, ICLR 2023).

The policy is a conditional DDPM pi_theta(a|s) over actions. It is trained jointly with a TD3-style double-Q
critic; its loss is the behavior-cloning denoising loss plus a Q-maximisation term back-propagated through
the whole reverse chain (official repo Zhendong-Wang/Diffusion-Policies-for-Offline-RL).

Policy (`agents/diffusion.py`, `agents/model.py`):
    discrete DDPM, T = 5, 'vp' schedule: alpha_t = exp(-b_min/T - 1/2 (b_max - b_min)(2t - 1)/T^2),
    beta_t = 1 - alpha_t, b_min = 0.1, b_max = 10; eps-prediction; the reverse chain predicts x_0, clips it
    to [-1, 1], steps with the posterior q(x_{t-1} | x_t, x_0), and clamps the final action.
    eps_theta(a_t, t, s): sinusoidal t-embedding 16 -> Linear(16, 32)-Mish-Linear(32, 16);
    [a_t, t_emb, s] -> 3 x (Linear 256 + Mish) -> Linear(256, act_dim).
Critic (`agents/ql_diffusion.py::Critic`): two Q heads, each 3 x (Linear 256 + Mish) -> Linear(1), Adam 3e-4,
    y = r + (1 - d) gamma min(Q1', Q2')(s', a'),  a' ~ pi_ema(.|s'),  gamma = 0.99,
    L_Q = MSE(Q1(s, a), y) + MSE(Q2(s, a), y);  Q' <- (1 - 0.005) Q' + 0.005 Q after every step.
    max-Q backup (AntMaze): 10 actions a'_k ~ pi_ema(.|s'), y uses min_heads( max_k Q_head'(s', a'_k) ).
Actor (the paper's L = L_d + alpha L_q with alpha = eta / E|Q|):
    L(theta) = L_bc(theta) + eta L_q(theta),
    L_bc = E_{t ~ U{1..T}, eps, (s, a)} || eps - eps_theta(sqrt(abar_t) a + sqrt(1 - abar_t) eps, t, s) ||^2
           (mean over every element),
    L_q  = - mean Q1(s, a_0) / mean |Q2(s, a_0)|  (the denominator held constant; Q1 and Q2 swap at random 50/50),
           a_0 = the full differentiable T-step reverse chain of the (non-EMA) actor, Q the *current* critic.
    Gradient norms of critic and actor are clipped to `gn` (per task; no clipping when gn <= 0).
    EMA actor: pi_ema <- 0.995 pi_ema + 0.005 pi every 5 steps from step 1000 on (it stays at its initial weights
    before that, as in the official code). It only produces the critic's next actions.
Acting (`Diffusion_QL.sample_action`): 50 candidates from the non-EMA actor (5 steps each), q = min of the two
    *target* critic heads, one candidate drawn with probability softmax(q) (temperature 1): a stochastic policy.
    Per action: 50 x 5 = 250 denoiser evaluations and 50 x 2 = 100 critic-head evaluations.
Rewards: locomotion unchanged ('no'); AntMaze 'cql_antmaze' r' = (r - 0.5) * 4. Schedule: batch 256, 2M steps
    (2000 epochs x 1000) on locomotion, 1M on AntMaze; per-task eta, lr, gn, max-Q backup from `main.py`.

Deviations from the released code are named settings whose defaults are the official values:
    lr_decay        False. The README runs `--lr_decay`, but the official CosineAnnealingLR(T_max = num_epochs = 2000)
                    steps once per `agent.train()` call, i.e. every 50 epochs: 40 steps out of 2000, so the lr ends at
                    0.999 x its start. False is that effectively constant lr; True anneals actor and critic lr with a
                    real per-step cosine to 0 over `steps` (what the flag's name suggests, not what the code does).
    selection       "final": report the final weights (the same rule for every method in this benchmark). The
                    official README recommends "online model selection" (`--ms online`: the best evaluation over
                    training, every 50 epochs); "online-best" evaluates every `eval_every` steps with
                    `eval_episodes` episodes and keeps the best weights (the harness then evaluates them afresh).
    batch_sampling  "with_replacement" (official `Data_Sampler.sample`: torch.randint); "epoch" walks a random
                    permutation (`EpochSampler`, the SRPO code's way).
    The official AntMaze runs use D4RL -v0 data; our AntMaze tasks (Minari ports of -v2) take the -v0 rows.
On the toy bandits (our addition, no official setting) rewards are used unscaled, with `TOY_SETTINGS`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from srpo_bench.config import positive, within
from srpo_bench.core.agents import Agent, CandidateAgent, softmax_draw_selection
from srpo_bench.core.critics import TwinQ
from srpo_bench.core.diffusion import DDPMSchedule, ddpm_denoising_loss, ddpm_sample_clipped_x0
from srpo_bench.core.method import Method
from srpo_bench.core.nn import Mish, SinusoidalTimeEmbedding, mlp, per_time, polyak_update
from srpo_bench.core.noise import Noise
from srpo_bench.core.optim import adam
from srpo_bench.core.stages import FitContext, PlanContext, Stage, StageConfig, host_point, host_to_device
from srpo_bench.data.sampler import EpochSampler
from srpo_bench.evaluate import evaluate
from srpo_bench.tasks import Task, d4rl_equivalent

# Per-task settings from the official `main.py` `hyperparameters` dict (top_k is for offline model selection,
# which we do not implement; eval_freq is always 50 epochs).
OFFICIAL_SETTINGS: dict[str, dict[str, Any]] = {
    "halfcheetah-medium-v2": dict(lr=3e-4, eta=1.0, max_q_backup=False, reward_tune="no", epochs=2000, gn=9.0),
    "hopper-medium-v2": dict(lr=3e-4, eta=1.0, max_q_backup=False, reward_tune="no", epochs=2000, gn=9.0),
    "walker2d-medium-v2": dict(lr=3e-4, eta=1.0, max_q_backup=False, reward_tune="no", epochs=2000, gn=1.0),
    "halfcheetah-medium-replay-v2": dict(lr=3e-4, eta=1.0, max_q_backup=False, reward_tune="no", epochs=2000, gn=2.0),
    "hopper-medium-replay-v2": dict(lr=3e-4, eta=1.0, max_q_backup=False, reward_tune="no", epochs=2000, gn=4.0),
    "walker2d-medium-replay-v2": dict(lr=3e-4, eta=1.0, max_q_backup=False, reward_tune="no", epochs=2000, gn=4.0),
    "halfcheetah-medium-expert-v2": dict(lr=3e-4, eta=1.0, max_q_backup=False, reward_tune="no", epochs=2000, gn=7.0),
    "hopper-medium-expert-v2": dict(lr=3e-4, eta=1.0, max_q_backup=False, reward_tune="no", epochs=2000, gn=5.0),
    "walker2d-medium-expert-v2": dict(lr=3e-4, eta=1.0, max_q_backup=False, reward_tune="no", epochs=2000, gn=5.0),
    "antmaze-umaze-v0": dict(lr=3e-4, eta=0.5, max_q_backup=False, reward_tune="cql_antmaze", epochs=1000, gn=2.0),
    "antmaze-umaze-diverse-v0": dict(lr=3e-4, eta=2.0, max_q_backup=True, reward_tune="cql_antmaze", epochs=1000,
                                     gn=3.0),
    "antmaze-medium-play-v0": dict(lr=1e-3, eta=2.0, max_q_backup=True, reward_tune="cql_antmaze", epochs=1000,
                                   gn=2.0),
    "antmaze-medium-diverse-v0": dict(lr=3e-4, eta=3.0, max_q_backup=True, reward_tune="cql_antmaze", epochs=1000,
                                      gn=1.0),
    "antmaze-large-play-v0": dict(lr=3e-4, eta=4.5, max_q_backup=True, reward_tune="cql_antmaze", epochs=1000,
                                  gn=10.0),
    "antmaze-large-diverse-v0": dict(lr=3e-4, eta=3.5, max_q_backup=True, reward_tune="cql_antmaze", epochs=1000,
                                     gn=7.0),
}
STEPS_PER_EPOCH = 1000  # `--num_steps_per_epoch`
# Toy bandits: our own suite, no official row (contextual one-step bandits, every transition terminal, rewards
# <= 1): the locomotion defaults eta 1 and lr 3e-4, with gn 1 (the `Diffusion_QL` constructor's default).
TOY_SETTINGS: dict[str, Any] = dict(eta=1.0, grad_norm=1.0, reward_tune="no")


def official_settings(task_name: str) -> dict[str, Any] | None:
    """The `main.py` row for a task, matched on the D4RL name without its version (our AntMaze is -v2, the
    official rows -v0; lite tasks map onto the D4RL locomotion task of the same env and tier)."""
    stem = d4rl_equivalent(task_name).rsplit("-v", 1)[0]
    for name, row in OFFICIAL_SETTINGS.items():
        if name.rsplit("-v", 1)[0] == stem:
            return row
    return None


RewardTune = Literal["no", "cql_antmaze"]


@dataclass(frozen=True)
class DiffusionQLConfig:
    # schedule (`main.py`): batch 256, num_epochs x 1000 steps (2000 locomotion, 1000 AntMaze)
    steps: int = 2_000_000
    batch_size: int = 256
    batch_sampling: Literal["with_replacement", "epoch"] = "with_replacement"  # official torch.randint
    # diffusion policy (`--T 5`, `--beta_schedule vp`)
    diffusion_steps: int = 5
    beta_min: float = 0.1
    beta_max: float = 10.0
    time_embed_dim: int = 16
    hidden: int = 256
    # optimisation (per-task lr, eta, gn from `main.py`; the critic's Adam lr is fixed at 3e-4)
    lr: float = 3e-4
    critic_lr: float = 3e-4
    lr_decay: bool = False
    eta: float = 1.0
    grad_norm: float = 1.0  # `Diffusion_QL(grad_norm=1.0)` default; every official task sets its own gn
    # critic
    gamma: float = 0.99
    tau: float = 0.005
    max_q_backup: bool = False
    max_q_backup_samples: int = 10
    reward_tune: RewardTune = "no"
    # EMA actor (`ema_decay=0.995, step_start_ema=1000, update_ema_every=5`)
    ema_decay: float = 0.995
    ema_start: int = 1000
    ema_every: int = 5
    # acting (`sample_action`): candidates per state (acting only, unless it selects weights: online-best)
    action_candidates: int = 50
    # model selection
    selection: Literal["final", "online-best"] = "final"
    eval_every: int = 50_000  # official eval_freq: 50 epochs (online-best only)
    eval_episodes: int = 10  # official: 10 for -v2 envs, 100 otherwise (online-best only)

    def __post_init__(self) -> None:
        positive(self, "steps", "batch_size", "diffusion_steps", "action_candidates", "ema_every",
                 "max_q_backup_samples", "eval_every", "eval_episodes", "hidden", "time_embed_dim")
        within(self, "(0, inf)", "lr", "critic_lr", "grad_norm", "beta_min", "beta_max")
        within(self, "[0, inf)", "eta", "ema_start")
        within(self, "[0, 1]", "gamma", "ema_decay")
        within(self, "(0, 1]", "tau")


@dataclass(frozen=True)
class DiffusionQLJointStage(StageConfig):
    """Everything that changes the jointly trained actor and critic. The acting settings enter only under
    `selection="online-best"`, where evaluations pick the weights; otherwise they are 0 here."""

    steps: int
    batch_size: int
    batch_sampling: str
    diffusion_steps: int
    beta_min: float
    beta_max: float
    time_embed_dim: int
    hidden: int
    lr: float
    critic_lr: float
    lr_decay: bool
    eta: float
    grad_norm: float
    gamma: float
    tau: float
    max_q_backup: bool
    max_q_backup_samples: int
    reward_tune: str
    ema_decay: float
    ema_start: int
    ema_every: int
    selection: str
    eval_every: int
    eval_episodes: int
    action_candidates: int


# --- the noise network -----------------------------------------------------------------------------------
class DiffusionQLNoiseNet(nn.Module):
    """eps_theta(a_t, t, s) of `agents/model.py::MLP`: sinusoidal t (16) -> Linear(16, 32)-Mish-Linear(32, 16);
    [a_t, t_emb, s] -> 3 x (Linear 256 + Mish) -> Linear(256, act_dim)."""

    def __init__(self, obs_dim: int, act_dim: int, time_embed_dim: int = 16, hidden: int = 256) -> None:
        super().__init__()
        self.time_mlp = nn.Sequential(
            SinusoidalTimeEmbedding(time_embed_dim),
            mlp(time_embed_dim, (2 * time_embed_dim,), time_embed_dim, activation=Mish),
        )
        self.body = mlp(act_dim + time_embed_dim + obs_dim, (hidden, hidden, hidden), act_dim, activation=Mish)

    def forward(self, noisy_actions: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([noisy_actions, per_time(self.time_mlp, t), states], dim=-1))


def diffusion_ql_schedule(config: DiffusionQLConfig | DiffusionQLJointStage) -> DDPMSchedule:
    """The 'vp' DDPM schedule (`helpers.vp_beta_schedule`): T = 5, b_min = 0.1, b_max = 10."""
    return DDPMSchedule.vp(config.diffusion_steps, config.beta_min, config.beta_max)


def diffusion_ql_critic(obs_dim: int, act_dim: int, hidden: int = 256) -> TwinQ:
    """`ql_diffusion.py::Critic`: two heads, each 3 x (Linear 256 + Mish) -> Linear(1)."""
    return TwinQ(obs_dim, act_dim, (hidden, hidden, hidden), Mish)


# --- the losses ------------------------------------------------------------------------------------------
def tuned_rewards(rewards: torch.Tensor, reward_tune: str) -> torch.Tensor:
    """`Data_Sampler(reward_tune=...)`: 'no' keeps r; 'cql_antmaze' r' = (r - 0.5) * 4."""
    if reward_tune == "no":
        return rewards
    if reward_tune == "cql_antmaze":
        return (rewards - 0.5) * 4.0
    raise ValueError(f"unknown reward_tune '{reward_tune}' (no, cql_antmaze)")


def max_q_backup_value(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """[B, K] target-head values of K next actions per s' -> [B]: max over the K per head, then min over heads."""
    return torch.minimum(q1.max(dim=1).values, q2.max(dim=1).values)


def td_target(
    critic_target: TwinQ,
    sample_next_actions: Callable[[torch.Tensor], torch.Tensor],
    rewards: torch.Tensor,
    next_states: torch.Tensor,
    terminals: torch.Tensor,
    gamma: float,
    max_q_backup: bool,
    backup_samples: int,
) -> torch.Tensor:
    """y = r + (1 - d) gamma V', V' = min(Q1', Q2')(s', a'), a' ~ pi_ema(.|s');
    with max-Q backup V' = min_heads max_k Q'(s', a'_k) over `backup_samples` next actions per s'."""
    with torch.no_grad():
        if max_q_backup:
            repeated = next_states.repeat_interleave(backup_samples, dim=0)
            q1, q2 = critic_target(repeated, sample_next_actions(repeated))
            next_value = max_q_backup_value(q1.view(-1, backup_samples), q2.view(-1, backup_samples))
        else:
            next_value = critic_target.min_q(next_states, sample_next_actions(next_states))
        return rewards + (1.0 - terminals) * gamma * next_value


def q_improvement_loss(critic: TwinQ, states: torch.Tensor, new_actions: torch.Tensor, q1_leads: bool) -> torch.Tensor:
    """L_q = -mean Q_i(s, a_0) / mean |Q_j(s, a_0)| with the denominator constant; (i, j) = (1, 2) or (2, 1)."""
    q1, q2 = critic(states, new_actions)
    lead, other = (q1, q2) if q1_leads else (q2, q1)
    return -lead.mean() / other.abs().mean().detach()


def actor_losses(
    actor: nn.Module,
    critic: TwinQ,
    states: torch.Tensor,
    actions: torch.Tensor,
    schedule: DDPMSchedule,
    max_action: float,
    q1_leads: bool,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_bc, L_q): the element-mean denoising loss and the Q loss through the full differentiable reverse chain.
    The critic's parameters get no gradient here (the official code zeroes them before the next critic step)."""
    bc_loss = ddpm_denoising_loss(actor, actions, states, schedule, generator=generator, reduction="mean")
    new_actions = ddpm_sample_clipped_x0(actor, states, schedule, actions.shape[1], max_action, generator=generator)
    critic.requires_grad_(False)
    try:
        q_loss = q_improvement_loss(critic, states, new_actions, q1_leads)
    finally:
        critic.requires_grad_(True)
    return bc_loss, q_loss


# --- acting ----------------------------------------------------------------------------------------------
def diffusion_ql_agent(actor: nn.Module, critic_target: TwinQ, schedule: DDPMSchedule, act_dim: int,
                       max_action: float, candidates: int, device: torch.device) -> CandidateAgent:
    """`Diffusion_QL.sample_action`: `candidates` actions per state from the 5-step reverse chain of the
    (non-EMA) actor, one drawn with probability softmax(min target-Q) (temperature 1): a stochastic policy.
    Per action: candidates x T denoiser calls and candidates x 2 critic heads."""
    schedule = schedule.to(device)

    def sampler(states: torch.Tensor, noise: Noise) -> torch.Tensor:
        return ddpm_sample_clipped_x0(actor, states, schedule, act_dim, max_action, generator=noise)

    cost = {"denoiser": candidates * schedule.steps, "critic": candidates * 2}
    return CandidateAgent(sampler, critic_target.min_q, softmax_draw_selection, candidates, act_dim, cost, device)


# --- the method ------------------------------------------------------------------------------------------
class DiffusionQLNetworks(nn.Module):
    """Actor, EMA actor, critic and target critic (one joint stage)."""

    def __init__(self, obs_dim: int, act_dim: int, config: DiffusionQLJointStage) -> None:
        super().__init__()
        self.actor = DiffusionQLNoiseNet(obs_dim, act_dim, config.time_embed_dim, config.hidden)
        self.ema_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = diffusion_ql_critic(obs_dim, act_dim, config.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)


class DiffusionQL(Method):
    name = "diffusion-ql"
    Config = DiffusionQLConfig
    profiles: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        # ~60 ms per step on 2 CPU threads (~185 ms with AntMaze's 10-sample max-Q backup), batch 256
        "smoke": {
            "toy": dict(steps=30, eval_every=15, eval_episodes=2),
            "locomotion": dict(steps=30, eval_every=15, eval_episodes=2),
            "antmaze": dict(steps=12, eval_every=6, eval_episodes=2),
            "ogbench": dict(steps=30, eval_every=15, eval_episodes=2),
        },
        # quick: about 12 s of training on the toy bandits; on locomotion ~4-5 min at one thread, about what
        # SRPO's quick schedule takes (profiles.py: quick budgets are matched in CPU time across methods).
        "quick": {
            "toy": dict(steps=200, eval_every=50, eval_episodes=64),
            "locomotion": dict(steps=5000, eval_every=1000, eval_episodes=5),
            "antmaze": dict(steps=2000, eval_every=500, eval_episodes=5),
            "ogbench": dict(steps=5000, eval_every=1000, eval_episodes=5),  # as locomotion (no OGBench setting)
        },
    }

    @classmethod
    def task_settings(cls, task: Task) -> dict[str, Any]:
        if task.family == "toy":
            return dict(TOY_SETTINGS)
        row = official_settings(task.name)
        if row is None:  # e.g. lite random/expert tiers: the Config defaults (family reward tuning)
            if task.family == "antmaze":
                return {"reward_tune": "cql_antmaze", "steps": 1000 * STEPS_PER_EPOCH}
            return {}
        return dict(lr=row["lr"], eta=row["eta"], max_q_backup=row["max_q_backup"], reward_tune=row["reward_tune"],
                    grad_norm=row["gn"], steps=row["epochs"] * STEPS_PER_EPOCH)

    @classmethod
    def stages(cls, config: DiffusionQLConfig, plan: PlanContext) -> tuple[Stage, ...]:
        selects = config.selection == "online-best"
        joint = DiffusionQLJointStage(
            steps=config.steps, batch_size=config.batch_size, batch_sampling=config.batch_sampling,
            diffusion_steps=config.diffusion_steps, beta_min=config.beta_min, beta_max=config.beta_max,
            time_embed_dim=config.time_embed_dim, hidden=config.hidden, lr=config.lr, critic_lr=config.critic_lr,
            lr_decay=config.lr_decay, eta=config.eta, grad_norm=config.grad_norm, gamma=config.gamma, tau=config.tau,
            max_q_backup=config.max_q_backup, max_q_backup_samples=config.max_q_backup_samples,
            reward_tune=config.reward_tune, ema_decay=config.ema_decay, ema_start=config.ema_start,
            ema_every=config.ema_every, selection=config.selection,
            eval_every=config.eval_every if selects else 0, eval_episodes=config.eval_episodes if selects else 0,
            action_candidates=config.action_candidates if selects else 0,
        )
        return (Stage("joint", joint),)

    def fit(self, ctx: FitContext, config: DiffusionQLConfig) -> Agent:
        stage: DiffusionQLJointStage = ctx.config("joint")
        obs_dim, act_dim = ctx.dataset.obs_dim, ctx.dataset.act_dim
        max_action = float(ctx.dataset.action_high)
        schedule = diffusion_ql_schedule(stage).to(ctx.device)

        def agent_of(nets: DiffusionQLNetworks) -> CandidateAgent:
            return diffusion_ql_agent(nets.actor, nets.critic_target, schedule, act_dim, max_action,
                                      config.action_candidates, ctx.device)

        networks = ctx.fit("joint", lambda: DiffusionQLNetworks(obs_dim, act_dim, stage).to(ctx.device),
                           lambda nets: train_joint(ctx, stage, nets, max_action, schedule, agent_of))
        return agent_of(networks)


def train_joint(
    ctx: FitContext,
    config: DiffusionQLJointStage,
    nets: DiffusionQLNetworks,
    max_action: float,
    schedule: DDPMSchedule,
    agent_of: Callable[[DiffusionQLNetworks], CandidateAgent],
) -> None:
    """The official training loop: per step a critic update, an actor update, the EMA (every 5 steps from step
    1000) and the critic's Polyak target update. Under online-best the best evaluated weights are kept."""
    act_dim = ctx.dataset.act_dim
    actor_optimizer = adam(nets.actor.parameters(), lr=config.lr)
    critic_optimizer = adam(nets.critic.parameters(), lr=config.critic_lr)
    schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps, eta_min=0.0)
                  for opt in (actor_optimizer, critic_optimizer)] if config.lr_decay else []
    generator = ctx.generator()
    tensors = ctx.dataset.tensors(ctx.device)
    tensors["rewards"] = tuned_rewards(tensors["rewards"], config.reward_tune)
    sampler = EpochSampler(tensors, config.batch_size, seed=ctx.seed) if config.batch_sampling == "epoch" else None
    data_size = len(ctx.dataset)
    index_generator = torch.Generator(device="cpu").manual_seed(ctx.seed)

    def sample_next_actions(next_states: torch.Tensor) -> torch.Tensor:
        return ddpm_sample_clipped_x0(nets.ema_actor, next_states, schedule, act_dim, max_action, generator=generator)

    def critic_loss_of(states: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, next_states: torch.Tensor,
                       terminals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target = td_target(nets.critic_target, sample_next_actions, rewards, next_states, terminals, config.gamma,
                           config.max_q_backup, config.max_q_backup_samples)
        q1, q2 = nets.critic(states, actions)
        return F.mse_loss(q1, target) + F.mse_loss(q2, target), target

    critic_loss_step, actor_losses_step = ctx.captured(critic_loss_of), ctx.captured(actor_losses)
    best_score, best_state = float("-inf"), None
    for step, _bar in ctx.steps("joint", config.steps, agent=lambda: agent_of(copy.deepcopy(nets))):
        if sampler is not None:
            batch = next(sampler)
        else:  # `Data_Sampler.sample`: uniform indices with replacement
            index = host_to_device(torch.randint(0, data_size, (config.batch_size,), generator=index_generator),
                                   ctx.device)
            batch = {key: value[index] for key, value in tensors.items()}
        states, actions = batch["observations"], batch["actions"]

        # critic: y = r + (1 - d) gamma min(Q1', Q2')(s', a'), a' from the EMA actor
        critic_loss, target = critic_loss_step(states, actions, batch["rewards"], batch["next_observations"],
                                               batch["terminals"])
        critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        if config.grad_norm > 0:
            nn.utils.clip_grad_norm_(nets.critic.parameters(), max_norm=config.grad_norm)
        critic_optimizer.step()

        # actor: L_bc + eta L_q, L_q through the full reverse chain, numerator head chosen 50/50
        with host_point():  # a CPU generator's draw, read on the host: no device sync
            q1_leads = bool(torch.rand((), generator=index_generator) > 0.5)
        bc_loss, q_loss = actor_losses_step(nets.actor, nets.critic, states, actions, schedule, max_action, q1_leads,
                                            generator)
        actor_loss = bc_loss + config.eta * q_loss
        actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        if config.grad_norm > 0:
            nn.utils.clip_grad_norm_(nets.actor.parameters(), max_norm=config.grad_norm)
        actor_optimizer.step()

        if step % config.ema_every == 0 and step >= config.ema_start:
            polyak_update(nets.ema_actor, nets.actor, 1.0 - config.ema_decay)
        polyak_update(nets.critic_target, nets.critic, config.tau)
        for scheduler in schedulers:
            scheduler.step()

        if ctx.log_due(step, config.steps):
            ctx.log("joint", step, critic_loss=critic_loss, bc_loss=bc_loss, q_loss=q_loss, actor_loss=actor_loss,
                    target_q=target.mean(), lr=actor_optimizer.param_groups[0]["lr"])
        if config.selection == "online-best" and ((step + 1) % config.eval_every == 0 or step == config.steps - 1):
            agent = agent_of(nets)
            agent.seed(ctx.seed)
            score = evaluate(agent, ctx.task, config.eval_episodes, dataset=ctx.dataset).mean_normalized
            ctx.log("joint", step, selection_normalized=score)
            if score > best_score:
                best_score, best_state = score, copy.deepcopy(nets.state_dict())
    if best_state is not None:
        nets.load_state_dict(best_state)
