"""Soft Actor-Critic, the learner behind the lite suite's behavior policies.

D4RL trained SAC on each MuJoCo task and drew its datasets from the SAC Gaussian (Fu et al. 2020, section 5);
we do the same on gymnasium's v5 envs. Settings follow SAC's published defaults (Haarnoja et al. 2018,
"Soft Actor-Critic Algorithms and Applications", Table 1): two hidden layers of 256, Adam 3e-4, batch 256,
gamma 0.99, Polyak 0.005, automatic entropy tuning with target entropy -|A|. The paper takes one gradient
step per environment step; `update_every` can thin that out when gradient steps, not environment steps, are
the budget (the lite suite's case on CPU). The twin critic is one batched network, so both heads cost one
matrix product per layer.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # the usual clamp of the Gaussian's log std (SAC reference code)


@dataclass(frozen=True)
class SACConfig:
    total_steps: int = 80_000  # environment steps, including the uniform-random warm-up
    start_steps: int = 5_000  # uniform random actions first; updates start after them
    update_every: int = 1  # environment steps per gradient step (SAC Table 1: 1)
    checkpoint_every: int = 2_500  # actor snapshots: the candidates for the "medium" policy
    hidden: int = 256  # SAC Table 1: 2 x 256
    batch_size: int = 256  # SAC Table 1
    lr: float = 3e-4  # SAC Table 1, every network and the temperature
    gamma: float = 0.99  # SAC Table 1
    tau: float = 0.005  # SAC Table 1: target smoothing coefficient

    def __post_init__(self) -> None:
        if not 0 < self.start_steps < self.total_steps:
            raise ValueError(f"start_steps must be in (0, total_steps), got {self.start_steps}")
        if self.update_every < 1:
            raise ValueError(f"update_every must be at least 1, got {self.update_every}")
        if self.checkpoint_every <= 0:
            raise ValueError(f"checkpoint_every must be positive, got {self.checkpoint_every}")


class GaussianActor(nn.Module):
    """tanh-squashed diagonal Gaussian policy: s -> (mean, log std) -> a = tanh(mean + std * z)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, hidden
        self.trunk = nn.Sequential(
            nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.head = nn.Linear(hidden, 2 * act_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.head(self.trunk(obs)).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised draw and its log-density under the squashed Gaussian (SAC eq. 26)."""
        mean, log_std = self(obs)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        pre_tanh = mean + log_std.exp() * noise
        gaussian_log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), the stable form of SAC eq. 26's correction
        squash_correction = (2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(-1)
        return torch.tanh(pre_tanh), gaussian_log_prob - squash_correction

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Behaviour actions: a Gaussian draw (as D4RL's data), or the mean when `generator` is None."""
        if generator is None:
            return torch.tanh(self(obs)[0])
        return self.sample(obs, generator)[0]

    def spec(self) -> dict[str, int]:
        return {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "hidden": self.hidden}

    @classmethod
    def from_spec(cls, spec: dict[str, int]) -> GaussianActor:
        return cls(spec["obs_dim"], spec["act_dim"], spec["hidden"])


class TwinQ(nn.Module):
    """Two Q(s, a) MLPs [s+a -> hidden -> hidden -> 1] held as one batch of weights: output [2, B]."""

    heads = 2

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        sizes = [in_dim, hidden, hidden, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default initialisation, per head
            self.weights.append(nn.Parameter(torch.empty(self.heads, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(self.heads, 1, fan_out).uniform_(-bound, bound)))

    def forward(self, obs: torch.Tensor, action: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """`frozen=True` lets gradients reach `action` but not the weights (the actor's loss)."""
        x = torch.cat([obs, action], dim=-1).expand(self.heads, -1, -1)
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            if frozen:
                weight, bias = weight.detach(), bias.detach()
            x = torch.baddbmm(bias, x, weight)
            if i < last:
                x = F.relu(x)
        return x.squeeze(-1)


def _adam(params: list[nn.Parameter] | list[torch.Tensor], lr: float) -> torch.optim.Adam:
    # The fused kernel is about 15% faster on CPU here (measured 2026-11-24) and exists on CUDA too.
    return torch.optim.Adam(params, lr=lr, fused=True)


class SACLearner:
    """Actor, twin critic, target critic and temperature; `update` is one SAC gradient step."""

    def __init__(self, obs_dim: int, act_dim: int, config: SACConfig, device: torch.device,
                 generator: torch.Generator) -> None:
        self.config = config
        self.generator = generator
        self.actor = GaussianActor(obs_dim, act_dim, config.hidden).to(device)
        self.critic = TwinQ(obs_dim + act_dim, config.hidden).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.zeros((), device=device, requires_grad=True)
        self.target_entropy = -float(act_dim)  # SAC Applications, section 5: -dim(A)
        self.actor_optimizer = _adam(list(self.actor.parameters()), config.lr)
        self.critic_optimizer = _adam(list(self.critic.parameters()), config.lr)
        self.alpha_optimizer = _adam([self.log_alpha], config.lr)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One step on critic (SAC eq. 5), actor (eq. 7) and temperature (eq. 18).

        The three losses touch disjoint parameters (the actor's loss sees the critic frozen), so one
        backward pass serves all three; the actor is scored by the critic from before this step.
        """
        cfg = self.config
        obs, action = batch["observations"], batch["actions"]
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(batch["next_observations"], self.generator)
            next_q = self.critic_target(batch["next_observations"], next_action).min(0).values
            soft_value = next_q - alpha * next_log_prob
            target = batch["rewards"] + cfg.gamma * (1.0 - batch["terminals"]) * soft_value
        critic_loss = 0.5 * (self.critic(obs, action) - target).pow(2).mean(-1).sum()

        new_action, log_prob = self.actor.sample(obs, self.generator)
        actor_loss = (alpha * log_prob - self.critic(obs, new_action, frozen=True).min(0).values).mean()
        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()

        for optimizer in (self.critic_optimizer, self.actor_optimizer, self.alpha_optimizer):
            optimizer.zero_grad(set_to_none=True)
        (critic_loss + actor_loss + alpha_loss).backward()
        for optimizer in (self.critic_optimizer, self.actor_optimizer, self.alpha_optimizer):
            optimizer.step()
        with torch.no_grad():
            for target_param, param in zip(self.critic_target.parameters(), self.critic.parameters(), strict=True):
                target_param.lerp_(param, cfg.tau)
        return {"critic_loss": critic_loss.detach(), "alpha": alpha, "entropy": -log_prob.detach().mean()}


@dataclass
class ReplayBuffer:
    """Every transition of training, in order: its prefix is the lite suite's `medium-replay` tier."""

    capacity: int
    obs_dim: int
    act_dim: int
    size: int = 0
    arrays: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        n = self.capacity
        self.arrays = {
            "observations": np.zeros((n, self.obs_dim), np.float32),
            "actions": np.zeros((n, self.act_dim), np.float32),
            "rewards": np.zeros(n, np.float32),
            "next_observations": np.zeros((n, self.obs_dim), np.float32),
            "terminals": np.zeros(n, np.float32),
            "timeouts": np.zeros(n, np.float32),
        }

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray,
            terminated: bool, truncated: bool) -> None:
        i = self.size
        self.arrays["observations"][i] = obs
        self.arrays["actions"][i] = action
        self.arrays["rewards"][i] = reward
        self.arrays["next_observations"][i] = next_obs
        self.arrays["terminals"][i] = float(terminated)
        self.arrays["timeouts"][i] = float(truncated and not terminated)
        self.size += 1

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device) -> dict[str, torch.Tensor]:
        index = rng.integers(0, self.size, size=batch_size)
        keys = ("observations", "actions", "rewards", "next_observations", "terminals")
        return {key: torch.from_numpy(self.arrays[key][index]).to(device) for key in keys}

    def prefix(self, steps: int) -> dict[str, np.ndarray]:
        """The first `steps` transitions; the cut ends an episode, so its last row becomes a timeout."""
        out = {key: value[:steps].copy() for key, value in self.arrays.items()}
        if out["terminals"][-1] == 0.0:
            out["timeouts"][-1] = 1.0
        return out


@dataclass
class SACRun:
    """What training leaves behind: the final actor, snapshots along the way, and the replay buffer."""

    final_actor: dict[str, torch.Tensor]
    actor_spec: dict[str, int]
    snapshots: list[tuple[int, dict[str, torch.Tensor]]]  # (env steps so far, actor state_dict)
    buffer: ReplayBuffer
    episode_returns: list[tuple[int, float]]  # (env step at episode end, undiscounted return)


ProgressFn = Callable[[int, dict[str, float]], None]  # (steps just done, metrics to show)


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu", copy=True) for key, value in module.state_dict().items()}


def train_sac(env: gym.Env, config: SACConfig, seed: int, device: torch.device,
              progress: ProgressFn | None = None, report_every: int = 500) -> SACRun:
    """Train SAC online on `env` (actions in [-1, 1]) for `config.total_steps` steps; deterministic per seed."""
    obs_dim = int(env.observation_space.shape[0])
    act_dim = int(env.action_space.shape[0])
    rng = np.random.default_rng(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the caller's RNG
        torch.manual_seed(seed)
        learner = SACLearner(obs_dim, act_dim, config, device, generator)
    buffer = ReplayBuffer(config.total_steps, obs_dim, act_dim)
    snapshots: list[tuple[int, dict[str, torch.Tensor]]] = []
    episode_returns: list[tuple[int, float]] = []

    obs, _ = env.reset(seed=seed)
    episode_return, pending = 0.0, 0
    losses: dict[str, torch.Tensor] = {}
    for step in range(config.total_steps):
        if step < config.start_steps:
            action = rng.uniform(-1.0, 1.0, size=act_dim).astype(np.float32)
        else:
            obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=device).unsqueeze(0)
            action = learner.actor.act(obs_tensor, generator)[0].cpu().numpy()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, float(reward), next_obs, terminated, truncated)
        episode_return += float(reward)
        obs = next_obs
        if terminated or truncated:
            episode_returns.append((step + 1, episode_return))
            obs, _ = env.reset()
            episode_return = 0.0
        if step >= config.start_steps and (step - config.start_steps) % config.update_every == 0:
            losses = learner.update(buffer.sample(config.batch_size, rng, device))
        if (step + 1) % config.checkpoint_every == 0:
            snapshots.append((step + 1, _cpu_state(learner.actor)))
        pending += 1
        if progress is not None and (pending == report_every or step + 1 == config.total_steps):
            recent = [ret for _, ret in episode_returns[-10:]]
            metrics = {"return": float(np.mean(recent))} if recent else {}
            if losses:
                metrics["alpha"] = float(losses["alpha"])
            progress(pending, metrics)
            pending = 0
    return SACRun(
        final_actor=_cpu_state(learner.actor), actor_spec=learner.actor.spec(), snapshots=snapshots,
        buffer=buffer, episode_returns=episode_returns,
    )
