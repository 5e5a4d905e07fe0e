"""FQL: Flow Q-Learning (Park, Li, Levine, ICML 2025; official JAX code seohongpark/fql, `agents/fql.py`).

Three networks are trained jointly, one Adam step on their summed losses per batch (the official `FQLAgent.update`):

    BC flow     v_phi(s, x_t, t), linear path x_t = (1 - t) x_0 + t a, x_0 ~ N(0, I), t ~ U(0, 1):
                    L_flow = mean || v_phi(s, x_t, t) - (a - x_0) ||^2                        (`core/flow.py`)
    one-step    mu_omega(s, z), z ~ N(0, I): distilled from the BC flow and pushed up the critic:
    policy          L_mu = alpha * mean || mu_omega(s, z) - sg[clip(Euler_10(v_phi; s, z))] ||^2
                           - lambda * mean_s Q(s, clip(mu_omega(s, z)))
                with Q the mean of the two critic heads (current critic, no gradient into it) and
                lambda = sg[1 / mean |Q|] if `normalize_q_loss` else 1.
    critic      twin Q_theta with LayerNorm, target y = r + gamma * mask * agg_k Qbar_k(s', clip(mu_omega(s', z'))),
                    L_Q = mean_{k, batch} (Q_k(s, a) - y)^2,  agg = mean (`q_agg`; min on some tasks),
                Qbar a Polyak copy (rate tau) of the critic's weights before each step's update (as the
                official `target_update` reads `self.network`, the pre-update parameters).
    total       L_Q + L_flow + L_mu, one Adam (3e-4) over all parameters: the terms do not share gradients
                (the actor's Q term reads the critic's weights detached; the critic's target reads the
                one-step policy without gradient), so this is three independent updates, as in the official code.

Acting is one pass of the one-step policy: a = clip(mu_omega(s, z), -1, 1), z ~ N(0, I) (the official
`sample_actions` ignores its temperature, so evaluation samples z too): one network evaluation per action.

Official defaults (`get_config`, `main.py`): MLPs 4 x 512, GELU (tanh approximation, flax's default), LayerNorm
after every hidden activation in the critic (`layer_norm=True`) and none in the actors (`actor_layer_norm=False`),
xavier-uniform kernels and zero biases (`variance_scaling(1, fan_avg, uniform)`), flax LayerNorm eps 1e-6;
batch 256 drawn uniformly with replacement, Adam 3e-4, gamma 0.99, tau 0.005, q_agg mean, alpha 10 (tuned per
environment), 10 flow steps, normalize_q_loss False; 1M gradient steps on OGBench, 500k on D4RL.
Q-learning uses OGBench's `masks` (1 - success of s), which our OGBench loader stores as `terminals`
(`srpo_bench/data/ogbench.py`); on D4RL-style data `mask = 1 - terminals` as in the official D4RL path
(`envs/d4rl_utils.py` line 36, `masks[i] = 1 - dataset['terminals'][i]`). On our Minari AntMaze port the
terminals are D4RL -v2's "goal reached" by default (`srpo_bench/data/minari.py`, `SRPO_BENCH_MINARI_TERMINALS`).

The data FQL trains on (official file and line at seohongpark/fql 719d044):
    reward_transform "minus_one" on AntMaze, "none" elsewhere (official: `envs/d4rl_utils.py` line 37,
                     `rewards = rewards - 1.0` inside `if 'antmaze' in env_name`; OGBench rewards are used as
                     OGBench relabels them). The per-task alpha on AntMaze was tuned at this -1/0 scale.
    action_clip_eps  1e-5: dataset actions clipped to [-1 + eps, 1 - eps] before training, for every environment
                     (`envs/env_utils.py` line 91 `make_env_and_datasets(..., action_clip_eps=1e-5)`, applied at
                     lines 139-141); 0 trains on the actions as stored.

Per-task settings (FQL README "exact command-line flags"): alpha 300 on cube-single, cube-double and scene,
1000 on puzzle-3x3/4x4; D4RL AntMaze alpha 10 (umaze, medium) and 3 (large). D4RL locomotion has no published
FQL setting: it keeps the official defaults (alpha 10), our choice. On the toy bandits (our suite, no official
setting) we use alpha 1 with `normalize_q_loss=True`, the README's advice for new environments.

Deviations from the official code are named settings whose defaults are the official values:
    q_agg            "mean" (official default) or "min" (clipped double Q, used on D4RL Adroit / OGBench AntMaze)
    normalize_q_loss False (official default; the README recommends True for new environments)
    batch_sampling   "with_replacement" (official `Dataset.sample`: uniform indices); "epoch" walks a permutation
    actor_layer_norm False (official); critic_layer_norm True (official `layer_norm`)
    reward_transform, action_clip_eps   above
The official code evaluates 50 episodes every 100k steps and
reports the mean of the last three evaluations on OGBench; our harness evaluates on the profile's schedule,
the same for every method, and reports the final policy's score; with the paper profile on OGBench (50 episodes,
nine evaluations during training: every 100k of 1M steps) the stored `mean_last3` is exactly FQL's reported
quantity, the mean of the 800k, 900k and 1M evaluations.

Stages: one, "joint" (`FQLJointStage`): the critic and both actors are updated in the same step from the same
batch, so none of them exists without the others and nothing can be shared with another method; its key covers
every training setting (including `flow_steps`, which shapes the distillation target). Acting has no setting.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from srpo_bench.config import positive, within
from srpo_bench.core import rewards
from srpo_bench.core.agents import Agent
from srpo_bench.core.flow import euler_sample, flow_matching_loss
from srpo_bench.core.method import FAMILIES, Method
from srpo_bench.core.nn import GELUTanh, Linear, polyak_update
from srpo_bench.core.noise import Noise
from srpo_bench.core.optim import adam
from srpo_bench.core.stages import FitContext, PlanContext, Stage, StageConfig, host_to_device
from srpo_bench.data.dataset import OfflineDataset
from srpo_bench.data.sampler import EpochSampler
from srpo_bench.tasks import Task, d4rl_equivalent

QAgg = Literal["mean", "min"]
#: FQL's own reward transforms: the official code has no return-range scaling (`core/rewards.py` has it for SRPO/IDQL)
FQLRewardTransform = Literal["none", "minus_one"]
OFFICIAL_ACTION_CLIP_EPS = 1e-5  # seohongpark/fql `envs/env_utils.py` line 91
BatchSampling = Literal["with_replacement", "epoch"]

# alpha per environment (FQL README, "FQL on state-based OGBench (all tasks)" and "FQL on D4RL").
FQL_ALPHA_OGBENCH: dict[str, float] = {"cube-single": 300.0, "cube-double": 300.0, "scene": 300.0,
                                       "puzzle-3x3": 1000.0, "puzzle-4x4": 1000.0}
FQL_ALPHA_D4RL: dict[str, float] = {"antmaze-umaze-v2": 10.0, "antmaze-umaze-diverse-v2": 10.0,
                                    "antmaze-medium-play-v2": 10.0, "antmaze-medium-diverse-v2": 10.0,
                                    "antmaze-large-play-v2": 3.0, "antmaze-large-diverse-v2": 3.0}
TOY_SETTINGS: dict[str, Any] = {"alpha": 1.0, "normalize_q_loss": True}  # our choice: no official toy setting
OFFICIAL_D4RL_STEPS = 500_000
FLAX_LAYER_NORM_EPS = 1e-6


@dataclass(frozen=True)
class FQLConfig(StageConfig):
    """FQL's one stage is configured by the whole method config (acting has no setting of its own)."""

    steps: int = 1_000_000  # `--offline_steps` (OGBench); 500k on D4RL (task_settings)
    batch_size: int = 256
    batch_sampling: BatchSampling = "with_replacement"
    lr: float = 3e-4
    hidden: int = 512
    layers: int = 4
    critic_layer_norm: bool = True
    actor_layer_norm: bool = False
    discount: float = 0.99
    tau: float = 0.005
    q_agg: QAgg = "mean"
    alpha: float = 10.0
    flow_steps: int = 10
    normalize_q_loss: bool = False
    reward_transform: FQLRewardTransform = "none"  # "minus_one" on AntMaze (task_settings)
    action_clip_eps: float = OFFICIAL_ACTION_CLIP_EPS

    def __post_init__(self) -> None:
        positive(self, "steps", "batch_size", "hidden", "layers", "flow_steps")
        within(self, "(0, inf)", "lr")
        within(self, "[0, inf)", "alpha")
        within(self, "[0, 1]", "discount")
        within(self, "(0, 1]", "tau")
        within(self, "[0, 1)", "action_clip_eps")


FQLJointStage = FQLConfig


# --- networks ----------------------------------------------------------------------------------------
def fql_mlp(input_dim: int, hidden: int, layers: int, output_dim: int, layer_norm: bool) -> nn.Sequential:
    """The official `MLP`: Dense -> GELU(tanh) [-> LayerNorm] per hidden layer, then a linear output;
    xavier-uniform kernels, zero biases (flax `variance_scaling(1, 'fan_avg', 'uniform')`)."""
    modules: list[nn.Module] = []
    width = input_dim
    for _ in range(layers):
        modules += [Linear(width, hidden), GELUTanh()]
        if layer_norm:
            modules.append(nn.LayerNorm(hidden, eps=FLAX_LAYER_NORM_EPS))
        width = hidden
    modules.append(Linear(width, output_dim))
    for module in modules:
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return nn.Sequential(*modules)


class TwinCritic(nn.Module):
    """Two independent Q(s, a) MLPs (the official `Value` ensemble of 2); forward returns [2, B]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int, layer_norm: bool) -> None:
        super().__init__()
        self.heads = nn.ModuleList([fql_mlp(obs_dim + act_dim, hidden, layers, 1, layer_norm) for _ in range(2)])

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([states, actions], dim=-1)
        return torch.stack([head(inputs).squeeze(-1) for head in self.heads])


class VectorField(nn.Module):
    """The official `ActorVectorField`: MLP(concat(s, x[, t])) -> R^act. With `with_time` it is the BC flow
    v(s, x_t, t); without, the one-step policy mu(s, z)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int, layer_norm: bool,
                 with_time: bool) -> None:
        super().__init__()
        self.with_time = with_time
        self.net = fql_mlp(obs_dim + act_dim + int(with_time), hidden, layers, act_dim, layer_norm)

    def forward(self, states: torch.Tensor, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        inputs = [states, x] if t is None else [states, x, t]
        return self.net(torch.cat(inputs, dim=-1))


class FQLNets(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, config: FQLConfig) -> None:
        super().__init__()
        self.critic = TwinCritic(obs_dim, act_dim, config.hidden, config.layers, config.critic_layer_norm)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.bc_flow = VectorField(obs_dim, act_dim, config.hidden, config.layers, config.actor_layer_norm, True)
        self.onestep = VectorField(obs_dim, act_dim, config.hidden, config.layers, config.actor_layer_norm, False)


# --- the data ---------------------------------------------------------------------------------------
def training_tensors(dataset: OfflineDataset, device: torch.device | str, config: FQLConfig) -> dict[str, torch.Tensor]:
    """The dataset as FQL trains on it: rewards transformed (`reward_transform`), actions clipped to
    +-(1 - `action_clip_eps`), as the official `make_env_and_datasets` / `d4rl_utils.get_dataset` prepare them."""
    return rewards.training_tensors(dataset, device, config.reward_transform, "trajectory", 1,
                                    action_clip_eps=config.action_clip_eps)


# --- the losses --------------------------------------------------------------------------------------
def aggregate(qs: torch.Tensor, how: QAgg) -> torch.Tensor:
    """[2, B] -> [B]: mean or min over the two heads."""
    return qs.mean(dim=0) if how == "mean" else qs.min(dim=0).values


def critic_loss(nets: FQLNets, batch: dict[str, torch.Tensor], next_noise: torch.Tensor,
                config: FQLConfig) -> torch.Tensor:
    """mean_{k, batch} (Q_k(s, a) - y)^2, y = r + gamma * mask * agg Qbar(s', clip(mu(s', z')))."""
    with torch.no_grad():
        next_actions = nets.onestep(batch["next_observations"], next_noise).clamp(-1.0, 1.0)
        next_q = aggregate(nets.target_critic(batch["next_observations"], next_actions), config.q_agg)
        target = batch["rewards"] + config.discount * (1.0 - batch["terminals"]) * next_q
    return ((nets.critic(batch["observations"], batch["actions"]) - target[None]) ** 2).mean()


def flow_targets(nets: FQLNets, states: torch.Tensor, noise: torch.Tensor, flow_steps: int) -> torch.Tensor:
    """The BC flow's action for noise z: clip(Euler_{flow_steps}(v; s, z)), a constant for the one-step policy."""
    with torch.no_grad():
        return euler_sample(nets.bc_flow, states, noise, flow_steps).clamp(-1.0, 1.0)


def distillation_loss(nets: FQLNets, states: torch.Tensor, noise: torch.Tensor, flow_steps: int,
                      onestep_actions: torch.Tensor) -> torch.Tensor:
    """mean || mu(s, z) - sg[flow action(s, z)] ||^2 (not yet times alpha); `onestep_actions` = mu(s, z)."""
    return ((onestep_actions - flow_targets(nets, states, noise, flow_steps)) ** 2).mean()


def q_loss(nets: FQLNets, states: torch.Tensor, onestep_actions: torch.Tensor, normalize: bool) -> torch.Tensor:
    """-lambda * mean Q(s, clip(mu(s, z))), Q the mean of the heads read with the critic's weights detached;
    lambda = sg[1 / mean |Q|] when `normalize`, else 1."""
    actions = onestep_actions.clamp(-1.0, 1.0)
    detached = {name: value.detach() for name, value in nets.critic.named_parameters()}
    q = torch.func.functional_call(nets.critic, detached, (states, actions)).mean(dim=0)
    loss = -q.mean()
    if normalize:
        loss = loss / q.abs().mean().detach()
    return loss


def actor_loss(nets: FQLNets, batch: dict[str, torch.Tensor], flow_noise: torch.Tensor, t: torch.Tensor,
               noise: torch.Tensor, config: FQLConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_flow + alpha * L_distill + L_Q, with the three terms for logging (detached tensors: read back only at
    the logged points, so a step never waits for the device)."""
    states = batch["observations"]
    flow = flow_matching_loss(nets.bc_flow, states, batch["actions"], flow_noise, t)
    # mu(s, z) once for both terms, as the official `actor_loss` does (`actor_actions`)
    onestep_actions = nets.onestep(states, noise)
    distill = distillation_loss(nets, states, noise, config.flow_steps, onestep_actions)
    q_term = q_loss(nets, states, onestep_actions, config.normalize_q_loss)
    return flow + config.alpha * distill + q_term, {"bc_flow_loss": flow.detach(), "distill_loss": distill.detach(),
                                                    "q_loss": q_term.detach()}


# --- the agent -------------------------------------------------------------------------------------------
class OneStepPolicy(nn.Module):
    """a = clip(mu(s, z), -1, 1): the one-step policy, its noise z given."""

    def __init__(self, onestep: VectorField) -> None:
        super().__init__()
        self.onestep = onestep

    def forward(self, states: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.onestep(states, noise).clamp(-1.0, 1.0)


class FQLAgent(Agent):
    """One pass of the one-step policy per action (network evaluations: {"policy": 1}), z ~ N(0, I) drawn from
    the agent's own generator: a pure act, so it exports and compiles like every other method's."""

    network_evaluations: ClassVar[dict[str, int]] = {"policy": 1}

    def __init__(self, onestep: VectorField, act_dim: int) -> None:
        self.policy = OneStepPolicy(onestep).eval()
        self.act_dim = act_dim

    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    def act_with_noise(self, observations: torch.Tensor, noise: Noise) -> torch.Tensor:
        z = noise.normal((observations.shape[0], self.act_dim), observations.device)
        return self.policy(observations, z)


# --- the method ----------------------------------------------------------------------------------------
class FQL(Method):
    name = "fql"
    Config = FQLConfig
    profiles: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {
        "smoke": {family: dict(steps=20) for family in FAMILIES},  # official sizes: `speed` times smoke weights
        # quick: CPU time matched to the other methods (profiles.py). One FQL step at the official sizes
        # (4 x 512 networks, batch 256, 10 Euler passes of the BC flow for the distillation target) takes 224 ms
        # of CPU time at one thread here (OGBench shapes, obs 28 / act 5; toy: 600 steps in 133 s CPU): 200 toy steps
        # (~1 min, toy-two-moons 98.4 at 600 steps, toy-checkerboard 91.8 at 200, seed 0) and 1,500 steps (~5 min)
        # on locomotion-sized and OGBench data. That is 0.15 % of the official 1M steps: a pipeline check.
        "quick": {
            "toy": dict(steps=200),
            "locomotion": dict(steps=1500),
            "antmaze": dict(steps=1500),
            "ogbench": dict(steps=1500),
        },
        # ogbench-cpu (profiles.CPU_BUDGET_SECONDS, ~900 s of CPU at one thread): 6.6 joint steps/s at OGBench shapes.
        "ogbench-cpu": {"ogbench": dict(steps=6000)},
    }

    @classmethod
    def task_settings(cls, task: Task) -> dict[str, Any]:
        if task.family == "toy":
            return dict(TOY_SETTINGS)
        if task.family == "ogbench":
            environment = task.name.split("-play-")[0]
            return {"alpha": FQL_ALPHA_OGBENCH[environment]} if environment in FQL_ALPHA_OGBENCH else {}
        settings: dict[str, Any] = {"steps": OFFICIAL_D4RL_STEPS}
        if task.family == "antmaze":  # official `envs/d4rl_utils.py` line 37: rewards - 1 on AntMaze
            settings["reward_transform"] = "minus_one"
        alpha = FQL_ALPHA_D4RL.get(d4rl_equivalent(task.name))
        if alpha is not None:
            settings["alpha"] = alpha
        return settings

    @classmethod
    def stages(cls, config: FQLConfig, plan: PlanContext) -> tuple[Stage, ...]:
        return (Stage("joint", config),)

    def fit(self, ctx: FitContext, config: FQLConfig) -> Agent:
        act_dim = ctx.dataset.act_dim
        tensors = training_tensors(ctx.dataset, ctx.device, config)
        size = len(ctx.dataset)

        def train(nets: FQLNets) -> None:
            trained = [p for p in nets.parameters() if p.requires_grad]
            optimizer = adam(trained, lr=config.lr)  # the fused kernel, as every method (core/optim.py)
            generator = ctx.generator()
            index_generator = torch.Generator(device="cpu").manual_seed(ctx.seed)
            sampler = EpochSampler(tensors, config.batch_size, seed=ctx.seed) \
                if config.batch_sampling == "epoch" else None
            critic_loss_step, actor_loss_step = ctx.captured(critic_loss), ctx.captured(actor_loss)
            for step, _bar in ctx.steps("joint", config.steps, agent=lambda: FQLAgent(copy.deepcopy(nets.onestep),
                                                                                         act_dim)):
                if sampler is not None:
                    batch = next(sampler)
                else:  # `Dataset.sample`: uniform indices with replacement
                    index = host_to_device(torch.randint(0, size, (config.batch_size,), generator=index_generator),
                                           ctx.device)
                    batch = {key: value[index] for key, value in tensors.items()}
                rows = batch["actions"].shape[0]
                next_noise, flow_noise, noise = (torch.randn(rows, act_dim, device=ctx.device, generator=generator)
                                                 for _ in range(3))
                t = torch.rand(rows, 1, device=ctx.device, generator=generator)
                batch = dict(batch)  # plain tensors (a captured step takes no lazy `Batch`)
                q_term = critic_loss_step(nets, batch, next_noise, config)
                pi_term, parts = actor_loss_step(nets, batch, flow_noise, t, noise, config)
                optimizer.zero_grad(set_to_none=True)
                (q_term + pi_term).backward()
                # official `update`: the target moves toward the critic's weights *before* this step's update
                polyak_update(nets.target_critic, nets.critic, config.tau)
                optimizer.step()
                if ctx.log_due(step, config.steps):
                    ctx.log("joint", step, critic_loss=q_term, **parts)

        nets = ctx.fit("joint", lambda: FQLNets(ctx.dataset.obs_dim, act_dim, config).to(ctx.device), train)
        return FQLAgent(nets.onestep, act_dim)
