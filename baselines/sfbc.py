"""SfBC: Selecting from Behavior Candidates (Chen, Lu, Zhou, Chen, Zhu, "Offline Reinforcement Learning via
High-Fidelity Generative Behavior Modeling", ICLR 2023; official code ChenDRAG/SfBC).

A diffusion model mu(a|s) clones the behavior policy; a critic Q(s, a) is fitted to returns by "in-sample
planning"; at evaluation time the agent draws candidates from mu and keeps the ones Q likes.

behavior  Continuous VP-SDE (beta 0.1..20), score network s(a_t, t, s) = h / sigma_t with a U-shaped residual
          MLP (`SfBCScoreNet`). Loss, t ~ U(1e-5, 1), z ~ N(0, I), a_t = alpha_t a + sigma_t z:
              L = mean_batch sum_dims (s(a_t, t, s) sigma_t + z)^2       (= || eps_hat - z ||^2, eps_hat = -sigma_t s)
          Adam 1e-4, batch 4096, 600 epochs; an epoch is the dataset repeated to fake_len = max(round(4M / N), 1) N
          samples, ceil(fake_len / 4096) batches (977 for N = 1M: 586,200 steps; the count depends on N).
critic    Q(s, a): MLP (s, a) -> 256 -> 256 -> 1, SiLU (512-256-256 on antmaze-large). Adam 1e-3, batch 4096,
          MSE to standardised returns (R - mean) / max(std, 0.1).
          Iteration 0 targets: discounted Monte-Carlo returns R_i = r_i + gamma R_{i+1} (1 - done_i),
          gamma = 0.99, done_i = the trajectory ends after i (termination or timeout: `episode_ends`).
          Before training, M = 16 behavior actions a_ij are drawn for every dataset state (15-step DPM-Solver).
          After each planning iteration but the last, the returns are recomputed:
              V(s_i) = sum_j softmax_j(alpha Q(s_i, a_ij)) Q(s_i, a_ij),   alpha = 20, Q on the standardised scale
                       (then mapped back to returns with the current mean / std),
              R_i = max(r_i + gamma R_{i+1} (1 - done_i), V(s_i))            (backwards over the dataset),
          re-standardised, the critic is reset to its initial weights and a fresh Adam is made.
          K = 2 iterations of 100 epochs, 199 epochs in all (official `n_epochs = 100 K - 1`: the last
          iteration is one epoch short); an epoch is fake_len = max(round(1M / N), 1) N samples (2M on antmaze),
          ceil(fake_len / 4096) steps: 245 for N = 1M, so 48,755 critic steps; ~2x more for a 2M-row dataset.
acting    32 candidates per state from the 15-step, order-3 singlestep DPM-Solver (time-uniform, t 1 -> 1e-3);
          logits 100 Q(s, a_j), capped at (the select_per_state-th largest logit) + 40; draw select_per_state
          candidates without replacement with probabilities softmax(logits) and return their plain mean:
          4 on locomotion ("stabilise performance"), 1 elsewhere (antmaze).

Data: the official loader trains on the file's raw rows (`env.get_dataset()`, done = terminal or timeout), not on
`qlearning_dataset` rows: the final step of a timed-out trajectory is kept and its reward counts in the returns.
`data_rows="raw"` (official) does that where the source has raw rows (D4RL and lite hdf5); toy and Minari data
have one kind of row. Steps per epoch follow the official `fake_len` rule unless a profile sets
`behavior_steps` / `critic_steps_per_epoch` (> 0) explicitly (quick and smoke profiles, on CPU).

Settings that are not the official code's own, each a named field whose default is the official value:
    planning_states   0 = every dataset state gets its M behavior samples and V(s_i) (official). n > 0 draws
                      n states at random (quick profiles on CPU); the other states keep the plain bootstrap
                      R_i = r_i + gamma R_{i+1} (1 - done_i), i.e. V(s_i) = -inf there.
    select_per_state  4 locomotion / 1 antmaze (official). Toy bandits (our suite, no official value): 1, since
                      averaging draws from different modes of a multi-modal bandit lands between them.
    behavior_source   "own" (the U-MLP). "shared": SRPO's VP-SDE LN-ResNet behavior stage exactly as SRPO declares
                      it in the same grid (eps-prediction, its data rows, its `--set srpo.*` overrides), one
                      artifact for both methods, so the comparison isolates action selection.
Not applied: the antmaze-medium-play-v2 reward-label fix of SfBC's loader (specific to D4RL's hdf5; our
antmaze data are Minari's regenerated ports) and SfBC's dropping of antmaze trajectories shorter than 5 steps.
Rewards are used as stored (SfBC standardises returns instead of scaling rewards). The final averaged action
is clamped to the action box (the official code leaves it to the simulator, which clips controls).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from srpo_bench.config import positive, within
from srpo_bench.core.agents import Agent, CandidateAgent
from srpo_bench.core.behavior import fit_vpsde_behavior
from srpo_bench.core.diffusion import VPSDE, NoiseModel, vpsde_denoising_loss
from srpo_bench.core.dpm_solver import dpm_solver_nfe, dpm_solver_sample
from srpo_bench.core.method import FAMILIES, Method
from srpo_bench.core.nn import GaussianFourierProjection, Linear, mlp, per_time
from srpo_bench.core.noise import Noise, as_noise
from srpo_bench.core.optim import adam
from srpo_bench.core.stages import FitContext, PlanContext, Stage, StageConfig, host_point, train_mode
from srpo_bench.data.dataset import OfflineDataset
from srpo_bench.data.sampler import EpochSampler
from srpo_bench.tasks import Task, d4rl_equivalent

PLANNING_CHUNK_STATES = 256  # official: behavior samples for planning are drawn 256 states (x 16) at a time
VALUE_CHUNK_ROWS = 65_536  # rows per Q forward when computing V(s_i): memory only, no effect on results
DataRows = Literal["raw", "qlearning"]


@dataclass(frozen=True)
class SfBCConfig:
    # behavior model (official `train_behavior.py`)
    behavior_source: Literal["own", "shared"] = "own"
    behavior_epochs: int = 600
    behavior_samples_per_epoch: int = 4_000_000
    behavior_steps: int = 0  # > 0: this many steps instead of the epochs (CPU profiles)
    behavior_batch_size: int = 4096
    behavior_lr: float = 1e-4
    behavior_t_min: float = 1e-5  # `loss_fn(eps=1e-5)`
    data_rows: DataRows = "raw"
    # critic with in-sample planning (official `train_critic.py`, `dataset.update_returns`)
    critic_lr: float = 1e-3
    critic_batch_size: int = 4096
    critic_hidden: tuple[int, ...] = (256, 256)
    critic_samples_per_epoch: int = 1_000_000  # antmaze: 2M
    critic_steps_per_epoch: int = 0  # > 0: this many steps per epoch instead of the fake_len rule (CPU profiles)
    critic_epochs_per_iteration: int = 100
    planning_iterations: int = 2  # `--K`
    gamma: float = 0.99
    planning_samples: int = 16  # M behavior actions per state
    planning_alpha: float = 20.0  # `--alpha`
    planning_states: int = 0  # 0: all (official)
    return_std_floor: float = 0.1
    reset_critic: bool = True  # `--reset_critic 1`
    # sampling (DPM-Solver as SfBC calls it)
    diffusion_steps: int = 15
    solver_order: Literal[1, 2, 3] = 3
    t_end: float = 1e-3  # DPM-Solver's default 1 / total_N, total_N = 1000
    # evaluation-time selection (`ScoreBase.select_actions`, `pallaral_eval_policy`): acting only
    candidates: int = 32
    select_alpha: float = 100.0
    select_per_state: int = 4
    logit_cap: float = 40.0  # `allowed_max = sorted[-num] + 40`

    def __post_init__(self) -> None:
        positive(self, "behavior_epochs", "behavior_samples_per_epoch", "behavior_batch_size", "critic_batch_size",
                 "critic_samples_per_epoch", "critic_epochs_per_iteration", "planning_iterations", "planning_samples",
                 "diffusion_steps", "candidates", "select_per_state")
        within(self, "(0, inf)", "behavior_lr", "critic_lr", "planning_alpha", "select_alpha", "t_end")
        within(self, "[0, inf)", "behavior_steps", "critic_steps_per_epoch", "planning_states", "return_std_floor")
        within(self, "(0, 1)", "behavior_t_min")
        within(self, "[0, 1]", "gamma")
        if not self.critic_hidden or min(self.critic_hidden) < 1:
            raise ValueError(f"critic_hidden must be one or more positive widths, got {self.critic_hidden}")
        if self.select_per_state > self.candidates:
            raise ValueError(f"select_per_state ({self.select_per_state}) > candidates ({self.candidates})")


@dataclass(frozen=True)
class SfBCBehaviorStage(StageConfig):
    epochs: int
    samples_per_epoch: int
    steps: int  # > 0 overrides epochs
    batch_size: int
    lr: float
    t_min: float
    data_rows: DataRows

    def training_steps(self, rows: int) -> int:
        return self.steps or self.epochs * epoch_steps(self.samples_per_epoch, rows, self.batch_size)


@dataclass(frozen=True)
class SfBCCriticStage(StageConfig):
    lr: float
    batch_size: int
    hidden: tuple[int, ...]
    samples_per_epoch: int
    steps_per_epoch: int  # > 0 overrides the fake_len rule
    epochs_per_iteration: int
    planning_iterations: int
    gamma: float
    planning_samples: int
    planning_alpha: float
    planning_states: int
    return_std_floor: float
    reset_critic: bool
    diffusion_steps: int
    solver_order: int
    t_end: float
    data_rows: DataRows

    def training_steps(self, rows: int) -> int:
        return critic_schedule(self, rows)[1]


def epoch_steps(samples_per_epoch: int, size: int, batch_size: int) -> int:
    """Official epoch length: the data repeated to fake_len = max(round(S / N), 1) N rows, in batches (the last
    one partial): ceil(fake_len / batch)."""
    fake_len = max(round(samples_per_epoch / size), 1) * size
    return math.ceil(fake_len / batch_size)


def training_rows(dataset: OfflineDataset, data_rows: DataRows) -> dict[str, np.ndarray]:
    """observations, actions, rewards, ends (trajectory ends) of the rows SfBC trains on."""
    if data_rows == "raw" and dataset.raw_rows is not None:
        return dict(dataset.raw_rows)
    return {"observations": dataset.observations, "actions": dataset.actions, "rewards": dataset.rewards,
            "ends": dataset.episode_ends}


# --- the behavior network ----------------------------------------------------------------------------
class ResidualBlock(nn.Module):
    """SiLU(Linear(x)) + Linear(SiLU(emb)) -> SiLU(Linear(.)) plus a (projected) skip of x (`Residual_Block`)."""

    def __init__(self, input_dim: int, output_dim: int, embed_dim: int = 128) -> None:
        super().__init__()
        self.dense1 = nn.Sequential(Linear(input_dim, output_dim), nn.SiLU())
        self.embed = nn.Sequential(nn.SiLU(), Linear(embed_dim, output_dim))
        self.dense2 = nn.Sequential(Linear(output_dim, output_dim), nn.SiLU())
        self.skip = Linear(input_dim, output_dim) if input_dim != output_dim else nn.Identity()

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return self.dense2(self.dense1(x) + self.embed(embedding)) + self.skip(x)


class SfBCScoreNet(nn.Module):
    """SfBC's "large" `ScoreNet`: a U-shaped residual MLP on the noisy action, conditioned on (state, time).

    time: Gaussian Fourier (32, scale 30) -> Linear(32, 32); state: Linear(obs, 32) + SiLU;
    [state, time] (64) -> Linear(64, 128) -> SiLU -> Linear(128, 128) = the embedding every block adds.
    down 512 -> 256 -> 128, middle 128, up (cat 256 -> 256), (cat 512 -> 512), out Linear(cat 1024 -> act).
    The output h is divided by sigma_t: the network predicts the score, so eps_hat = -sigma_t score = -h.
    """

    def __init__(self, obs_dim: int, act_dim: int, sde: VPSDE) -> None:
        super().__init__()
        self.sde = sde
        self.time_embed = nn.Sequential(GaussianFourierProjection(32, 30.0), Linear(32, 32))
        self.state_embed = nn.Sequential(Linear(obs_dim, 32), nn.SiLU())
        self.cond = nn.Sequential(Linear(64, 128), nn.SiLU(), Linear(128, 128))
        self.down1 = ResidualBlock(act_dim, 512)
        self.down2 = ResidualBlock(512, 256)
        self.down3 = ResidualBlock(256, 128)
        self.middle = ResidualBlock(128, 128)
        self.up3 = ResidualBlock(256, 256)
        self.up2 = ResidualBlock(512, 512)
        self.out = Linear(1024, act_dim)

    def unnormalised(self, noisy_actions: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        embedding = self.cond(torch.cat([self.state_embed(states), per_time(self.time_embed, t)], dim=-1))
        d1 = self.down1(noisy_actions, embedding)
        d2 = self.down2(d1, embedding)
        d3 = self.down3(d2, embedding)
        middle = self.middle(d3, embedding)
        u2 = self.up3(torch.cat([d3, middle], dim=-1), embedding)
        u1 = self.up2(torch.cat([d2, u2], dim=-1), embedding)
        return self.out(torch.cat([d1, u1], dim=-1))

    def forward(self, noisy_actions: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """The score: h / sigma_t (official output)."""
        return self.unnormalised(noisy_actions, t, states) / self.sde.alpha_sigma(t)[1][:, None]

    def noise(self, noisy_actions: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """eps_hat = -sigma_t score = -h, without dividing and multiplying by sigma_t."""
        return -self.unnormalised(noisy_actions, t, states)


def q_network(obs_dim: int, act_dim: int, hidden: tuple[int, ...]) -> nn.Sequential:
    """SfBC's `MlpQnet` (256-256, SiLU) / `MUlQnet` (512-256-256) on cat(s, a)."""
    return mlp(obs_dim + act_dim, hidden, 1, activation=nn.SiLU)


def q_values(q_net: nn.Module, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return q_net(torch.cat([states, actions], dim=-1)).squeeze(-1)


# --- returns and planning ----------------------------------------------------------------------------
def planning_returns(rewards: np.ndarray, episode_ends: np.ndarray, gamma: float,
                     values: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Backwards over the dataset: R_i = r_i + gamma R_{i+1} (1 - done_i), or with `values`
    R_i = max(that, V(s_i)) (in-sample planning). done_i = `episode_ends[i]` (the file's last transition
    ends a trajectory too). Returns R and the fraction of transitions where V(s_i) was taken."""
    rewards_list = np.asarray(rewards, dtype=np.float64).tolist()
    continues = (~np.asarray(episode_ends, dtype=bool)).tolist()
    values_list = None if values is None else np.asarray(values, dtype=np.float64).tolist()
    returns = [0.0] * len(rewards_list)
    following, taken_from_value = 0.0, 0
    for i in range(len(rewards_list) - 1, -1, -1):
        following = rewards_list[i] + gamma * following * continues[i]
        if values_list is not None and values_list[i] >= following:
            following = values_list[i]
            taken_from_value += 1
        returns[i] = following
    return np.asarray(returns, dtype=np.float64), taken_from_value / max(len(returns), 1)


def standardise(returns: np.ndarray, std_floor: float) -> tuple[np.ndarray, float, float]:
    """(R - mean) / max(std, floor) with the population std (`np.std`), and the mean and std used."""
    mean = float(np.mean(returns))
    std = max(float(np.std(returns)), std_floor)
    return (returns - mean) / std, mean, std


def soft_values(q_net: nn.Module, states: torch.Tensor, sampled_actions: torch.Tensor, alpha: float) -> torch.Tensor:
    """V(s_i) = sum_j softmax_j(alpha Q(s_i, a_ij)) Q(s_i, a_ij) for states [n, obs], actions [n, M, act] -> [n]."""
    n, samples, act_dim = sampled_actions.shape
    flat_states = states.repeat_interleave(samples, dim=0)
    flat_actions = sampled_actions.reshape(n * samples, act_dim)
    with torch.no_grad():
        q = torch.cat([
            q_values(q_net, flat_states[i: i + VALUE_CHUNK_ROWS], flat_actions[i: i + VALUE_CHUNK_ROWS])
            for i in range(0, n * samples, VALUE_CHUNK_ROWS)
        ]).view(n, samples)
        return (torch.softmax(alpha * q, dim=-1) * q).sum(dim=-1)


def critic_schedule(config: SfBCCriticStage, size: int) -> tuple[int, int]:
    """(steps per planning iteration, total critic steps) for `size` training rows: official
    `n_epochs = 100 K - 1`, so the last iteration is one epoch short (K = 2, N = 1M: (100 + 99) x 245 = 48,755)."""
    per_epoch = config.steps_per_epoch or epoch_steps(config.samples_per_epoch, size, config.batch_size)
    total_epochs = config.planning_iterations * config.epochs_per_iteration - 1
    return config.epochs_per_iteration * per_epoch, total_epochs * per_epoch


# --- evaluation-time selection -----------------------------------------------------------------------
def select_candidates(q: torch.Tensor, candidates: torch.Tensor, alpha: float, select_per_state: int,
                      logit_cap: float, generator: Noise | torch.Generator | None = None) -> torch.Tensor:
    """Per state: logits alpha Q capped at (k-th largest + cap); draw k candidates without replacement with
    probabilities softmax(logits) (Gumbel top-k: the same law as drawing one at a time and renormalising);
    return their mean. q [B, C], candidates [B, C, act] -> [B, act]."""
    logits = alpha * q
    kth_largest = torch.topk(logits, select_per_state, dim=-1).values[:, -1:]
    logits = torch.minimum(logits, kth_largest + logit_cap)
    uniform = as_noise(generator).uniform(logits.shape, logits.device, logits.dtype)
    gumbel = -torch.log(-torch.log(uniform.clamp(1e-20, 1.0 - 1e-7)))
    chosen = torch.topk(logits + gumbel, select_per_state, dim=-1).indices  # distinct indices
    picked = torch.gather(candidates, 1, chosen[..., None].expand(-1, -1, candidates.shape[-1]))
    return picked.mean(dim=1)


def sfbc_agent(noise_model: NoiseModel, q_net: nn.Module, act_dim: int, config: SfBCConfig, action_low: float,
               action_high: float, device: torch.device) -> CandidateAgent:
    """32 behavior candidates per state (15-step DPM-Solver), a Q-softmax draw of `select_per_state`, their mean,
    clamped to the action box."""
    sde = VPSDE()

    def sampler(states: torch.Tensor, noise: Noise) -> torch.Tensor:
        return dpm_solver_sample(noise_model, states, act_dim, sde, steps=config.diffusion_steps,
                                 order=config.solver_order, t_end=config.t_end, generator=noise)

    def selection(observations: torch.Tensor, q: torch.Tensor, candidates: torch.Tensor,
                  noise: Noise) -> torch.Tensor:
        return select_candidates(q, candidates, config.select_alpha, config.select_per_state, config.logit_cap,
                                 noise).clamp(action_low, action_high)

    cost = {"denoiser": config.candidates * dpm_solver_nfe(config.diffusion_steps, config.solver_order),
            "critic": config.candidates}
    return CandidateAgent(sampler, lambda states, actions: q_values(q_net, states, actions), selection,
                          config.candidates, act_dim, cost, device)


# --- the method --------------------------------------------------------------------------------------
class SfBC(Method):
    name = "sfbc"
    Config = SfBCConfig
    profiles: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "smoke": {
            family: dict(behavior_steps=20, behavior_batch_size=256, critic_batch_size=256,
                         critic_steps_per_epoch=5, critic_epochs_per_iteration=3, planning_states=64)
            for family in FAMILIES
        },
        # Measured on this CPU, one thread (CPU seconds; the shared machine's wall clock runs 1.5-3x longer):
        # toy fit 15.5 s (behavior 300 x 35 ms, 256 x 16 planning samples, 580 critic steps), evaluation of
        # 256 states 5 s; locomotion (150k transitions, obs 17, act 6) fit 196 s, one 5-state action 95 ms.
        "quick": {
            "toy": dict(behavior_steps=300, behavior_batch_size=256, critic_batch_size=256,
                        critic_steps_per_epoch=20, critic_epochs_per_iteration=15, planning_states=256),
            "locomotion": dict(behavior_steps=5000, behavior_batch_size=256, critic_batch_size=1024,
                               critic_steps_per_epoch=50, critic_epochs_per_iteration=15, planning_states=1024),
            "antmaze": dict(behavior_steps=5000, behavior_batch_size=256, critic_batch_size=1024,
                            critic_steps_per_epoch=50, critic_epochs_per_iteration=15, planning_states=1024),
            "ogbench": dict(behavior_steps=5000, behavior_batch_size=256, critic_batch_size=1024,
                            critic_steps_per_epoch=50, critic_epochs_per_iteration=15, planning_states=1024),
        },
    }

    @classmethod
    def task_settings(cls, task: Task) -> dict[str, Any]:
        if task.family == "toy":
            return {"select_per_state": 1}
        if task.family == "antmaze":
            settings: dict[str, Any] = {"select_per_state": 1, "critic_samples_per_epoch": 2_000_000}
            if "antmaze-large" in d4rl_equivalent(task.name):
                settings["critic_hidden"] = (512, 256, 256)
            return settings
        return {}

    @classmethod
    def stages(cls, config: SfBCConfig, plan: PlanContext) -> tuple[Stage, ...]:
        if config.behavior_source == "shared":
            behavior = plan.stage_of("srpo", "behavior")
        else:
            behavior = Stage("behavior", SfBCBehaviorStage(
                epochs=config.behavior_epochs, samples_per_epoch=config.behavior_samples_per_epoch,
                steps=config.behavior_steps, batch_size=config.behavior_batch_size, lr=config.behavior_lr,
                t_min=config.behavior_t_min, data_rows=config.data_rows))
        critic = SfBCCriticStage(
            lr=config.critic_lr, batch_size=config.critic_batch_size, hidden=config.critic_hidden,
            samples_per_epoch=config.critic_samples_per_epoch, steps_per_epoch=config.critic_steps_per_epoch,
            epochs_per_iteration=config.critic_epochs_per_iteration, planning_iterations=config.planning_iterations,
            gamma=config.gamma, planning_samples=config.planning_samples, planning_alpha=config.planning_alpha,
            planning_states=config.planning_states, return_std_floor=config.return_std_floor,
            reset_critic=config.reset_critic, diffusion_steps=config.diffusion_steps,
            solver_order=config.solver_order, t_end=config.t_end, data_rows=config.data_rows)
        return behavior, Stage("critic", critic, depends_on=("behavior",))

    def fit(self, ctx: FitContext, config: SfBCConfig) -> Agent:
        dataset = ctx.dataset
        if config.behavior_source == "shared":
            noise_model: NoiseModel = fit_vpsde_behavior(ctx, "behavior")
        else:
            noise_model = fit_behavior(ctx).noise

        def agent_of(q_net: nn.Module) -> CandidateAgent:
            return sfbc_agent(noise_model, q_net, dataset.act_dim, config, dataset.action_low, dataset.action_high,
                              ctx.device)

        q_net = fit_critic(ctx, noise_model, lambda training: agent_of(copy.deepcopy(training).eval()))
        return agent_of(q_net)


# stage 1 -----------------------------------------------------------------------------------------------
def fit_behavior(ctx: FitContext) -> SfBCScoreNet:
    config: SfBCBehaviorStage = ctx.config("behavior")
    rows = training_rows(ctx.dataset, config.data_rows)
    tensors = {key: torch.as_tensor(rows[key], device=ctx.device) for key in ("observations", "actions")}
    steps = config.training_steps(len(rows["actions"]))
    sde = VPSDE()

    def train(model: SfBCScoreNet) -> None:
        optimizer = adam(model.parameters(), lr=config.lr)
        sampler = EpochSampler(tensors, config.batch_size, seed=ctx.seed)
        train_mode(model)
        loss_of = ctx.captured(vpsde_denoising_loss)
        for step, _bar in ctx.steps("behavior", steps):
            batch = next(sampler)
            # (score sigma_t + z)^2 == (eps_hat - z)^2 with eps_hat = -sigma_t score
            loss = loss_of(model.noise, batch["actions"], batch["observations"], sde, t_min=config.t_min)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ctx.log_due(step, steps):
                ctx.log("behavior", step, loss=loss)

    return ctx.fit("behavior", lambda: SfBCScoreNet(ctx.dataset.obs_dim, ctx.dataset.act_dim, sde).to(ctx.device),
                   train)


# stage 2 -----------------------------------------------------------------------------------------------
def fit_critic(ctx: FitContext, noise_model: NoiseModel, agent: Any) -> nn.Module:
    config: SfBCCriticStage = ctx.config("critic")
    rows = training_rows(ctx.dataset, config.data_rows)
    tensors = {key: torch.as_tensor(rows[key], device=ctx.device) for key in ("observations", "actions")}
    size = len(rows["actions"])

    def train(q_net: nn.Module) -> None:
        initial_weights = copy.deepcopy(q_net.state_dict())
        planned, sampled_actions = planning_candidates(ctx, tensors, config, noise_model)
        returns, _ = planning_returns(rows["rewards"], rows["ends"], config.gamma)
        targets, mean, std = standardise(returns, config.return_std_floor)
        ctx.log("critic", 0, returns_mean=mean, returns_std=std, from_value_fraction=0.0)
        optimizer = adam(q_net.parameters(), lr=config.lr)
        iteration_steps, total_steps = critic_schedule(config, size)
        sampler = return_sampler(tensors, targets, config, ctx.seed + 1)
        loss_of = ctx.captured(lambda states, actions, targets: F.mse_loss(q_values(q_net, states, actions), targets))
        for step, _bar in ctx.steps("critic", total_steps, agent=lambda: agent(q_net)):
            batch = next(sampler)
            loss = loss_of(batch["observations"], batch["actions"], batch["targets"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ctx.log_due(step, total_steps):
                ctx.log("critic", step, loss=loss)
            if (step + 1) % iteration_steps == 0 and step + 1 < total_steps:  # planning: new targets
                values = np.full(size, -np.inf)
                with host_point():  # the planning runs on the host, once per critic iteration (not per step)
                    values[planned.cpu().numpy()] = (
                        soft_values(q_net, tensors["observations"][planned], sampled_actions, config.planning_alpha)
                        .double().cpu().numpy() * std + mean
                    )
                returns, from_value = planning_returns(rows["rewards"], rows["ends"], config.gamma, values)
                targets, mean, std = standardise(returns, config.return_std_floor)
                ctx.log("critic", step + 1, returns_mean=mean, returns_std=std, from_value_fraction=from_value)
                sampler = return_sampler(tensors, targets, config, ctx.seed + 1 + (step + 1) // iteration_steps)
                if config.reset_critic:
                    q_net.load_state_dict(initial_weights)
                    optimizer = adam(q_net.parameters(), lr=config.lr)

    return ctx.fit("critic", lambda: q_network(ctx.dataset.obs_dim, ctx.dataset.act_dim, config.hidden)
                   .to(ctx.device), train)


def return_sampler(tensors: dict[str, torch.Tensor], targets: np.ndarray, config: SfBCCriticStage,
                   seed: int) -> EpochSampler:
    device = tensors["observations"].device
    return EpochSampler({"observations": tensors["observations"], "actions": tensors["actions"],
                         "targets": torch.as_tensor(targets, dtype=torch.float32, device=device)},
                        config.batch_size, seed=seed)


def planning_candidates(ctx: FitContext, tensors: dict[str, torch.Tensor], config: SfBCCriticStage,
                        noise_model: NoiseModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the planned states and their M behavior actions [n, M, act], drawn once (official:
    before critic training, 256 states at a time, with the same 15-step DPM-Solver as acting)."""
    size = int(tensors["observations"].shape[0])
    generator = ctx.generator(offset=7)
    if config.planning_states <= 0 or config.planning_states >= size:
        planned = torch.arange(size, device=ctx.device)
    else:
        planned = torch.randperm(size, generator=torch.Generator().manual_seed(ctx.seed + 7))
        planned = planned[: config.planning_states].sort().values.to(ctx.device)
    chunks = math.ceil(len(planned) / PLANNING_CHUNK_STATES)
    sampled = []
    sde = VPSDE()
    act_dim = int(tensors["actions"].shape[1])
    for chunk, _bar in ctx.steps("critic behavior samples", chunks):
        index = planned[chunk * PLANNING_CHUNK_STATES: (chunk + 1) * PLANNING_CHUNK_STATES]
        states = tensors["observations"][index].repeat_interleave(config.planning_samples, dim=0)
        actions = dpm_solver_sample(noise_model, states, act_dim, sde, steps=config.diffusion_steps,
                                    order=config.solver_order, t_end=config.t_end, generator=generator)
        sampled.append(actions.view(len(index), config.planning_samples, act_dim))
    return planned, torch.cat(sampled)
