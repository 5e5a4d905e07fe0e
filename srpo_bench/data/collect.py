"""`srpo-bench collect`: the locomotion-lite suite, D4RL-format datasets made from our own SAC policies.

D4RL's files cannot be downloaded here, so we remake its recipe (Fu et al. 2020, section 5) on gymnasium's
v5 MuJoCo envs, per env:

- train SAC online (`sac.py`), keeping actor snapshots and the whole replay buffer;
- `random`: uniform random actions; its mean return over `reference_episodes` is `ref_min_score`;
- `expert`: the final SAC policy; its mean return is `ref_max_score`;
- `medium`: the first snapshot whose return reaches 1/3 of the way from random to expert (D4RL: "trained
  to approximately 1/3 the performance of the expert");
- `medium-replay`: the replay buffer up to the step at which that snapshot was taken;
- `medium-expert`: the medium and expert files concatenated.

Behaviour actions are draws from the SAC Gaussian (as D4RL sampled its SAC policies). Rollout files hold
complete episodes only, so `behavior_return_*` are true episode returns. Every random choice comes from
(seed, env, stage), so a file is the same whether its env was collected alone, in a worker process, or
after an interruption. Each env runs in its own process with one torch thread.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import queue
import time
import traceback
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import torch

from srpo_bench import __version__
from srpo_bench.data import d4rl
from srpo_bench.data.dataset import DatasetError, OfflineDataset
from srpo_bench.data.sac import GaussianActor, SACConfig, SACRun, train_sac
from srpo_bench.envs import make_env
from srpo_bench.methods import atomic_torch_save
from srpo_bench.progress import Reporter

LITE_GYMNASIUM_ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}
LITE_TIERS = ("random", "medium", "medium-replay", "medium-expert", "expert")
MAX_EPISODE_STEPS = 1000  # D4RL's gym-MuJoCo episode limit, and gymnasium v5's default
MEDIUM_FRACTION = 1.0 / 3.0  # D4RL section 5: the medium policy reaches ~1/3 of the expert's performance
# Measured full-suite time (3 envs, 2 workers, 2 shared CPU cores); the "not collected" hint quotes it.
FULL_SUITE_MINUTES = 35
_FORMAT = 1  # bump when the files' contents change for the same plan; part of the cache key

BatchPolicy = Callable[[np.ndarray], np.ndarray]  # [k, obs_dim] float32 -> [k, act_dim] in [-1, 1]
Event = tuple  # progress events sent from a collection job to the bars in the parent


@dataclass(frozen=True)
class CollectionPlan:
    sac: SACConfig
    tier_transitions: int  # random, medium and expert files: complete episodes, at least this many rows
    reference_episodes: int  # episodes behind ref_min_score / ref_max_score (>= 10)
    candidate_episodes: int  # episodes scoring each snapshot when looking for the medium policy
    rollout_envs: int  # envs stepped in lockstep behind one batched policy call


PLANS: dict[str, CollectionPlan] = {
    # Per env on one core: ~13 min of SAC (77.5k updates), ~1-2 min of rollouts (FULL_SUITE_MINUTES).
    # One update per 2 env steps: on Hopper, at equal compute, 160k steps at 0.5 updates/step reached a
    # return of ~900 by step 80k where 80k steps at 1 update/step stayed on the ~300 plateau.
    "full": CollectionPlan(
        sac=SACConfig(total_steps=160_000, start_steps=5_000, update_every=2, checkpoint_every=5_000),
        tier_transitions=200_000, reference_episodes=20, candidate_episodes=5, rollout_envs=10,
    ),
    # Seconds per env: tiny networks, a few thousand steps. For tests and smoke runs, not for scores.
    "small": CollectionPlan(
        sac=SACConfig(total_steps=3_000, start_steps=1_000, checkpoint_every=250, hidden=64, batch_size=64),
        tier_transitions=2_000, reference_episodes=10, candidate_episodes=2, rollout_envs=4,
    ),
}


# --- names and places ------------------------------------------------------------------------------
def lite_dir() -> Path:
    """`$SRPO_BENCH_DATA_DIR/lite` if set, else `~/.srpo-bench/lite`."""
    root = os.environ.get("SRPO_BENCH_DATA_DIR")
    base = Path(root).expanduser() if root else Path("~/.srpo-bench").expanduser()
    return base / "lite"


def lite_task_name(env: str, tier: str) -> str:
    return f"lite-{env}-{tier}-v0"


def lite_path(env: str, tier: str, root: Path | None = None) -> Path:
    return (root or lite_dir()) / f"{lite_task_name(env, tier)}.hdf5"


def policy_path(env: str, which: str, root: Path | None = None) -> Path:
    return (root or lite_dir()) / "policies" / f"{env}-{which}.pt"


def parse_lite_task(task_name: str) -> tuple[str, str]:
    """'lite-hopper-medium-replay-v0' -> ('hopper', 'medium-replay'); ValueError for anything else."""
    for env in LITE_GYMNASIUM_ENVS:
        for tier in LITE_TIERS:
            if task_name == lite_task_name(env, tier):
                return env, tier
    known = ", ".join(lite_task_name(env, tier) for env in LITE_GYMNASIUM_ENVS for tier in LITE_TIERS)
    raise ValueError(f"unknown lite task '{task_name}'; known: {known}")


def collection_key(size: str, seed: int) -> str:
    """Files and policies are reused only when size, seed, plan and format all match."""
    blob = json.dumps({"size": size, "seed": seed, "plan": asdict(PLANS[size]), "format": _FORMAT},
                      sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


# --- loading -----------------------------------------------------------------------------------------
def load_lite(task_name: str) -> OfflineDataset:
    """A collected lite task with D4RL `qlearning_dataset` semantics; its metadata carries the ref scores."""
    env, tier = parse_lite_task(task_name)
    path = lite_path(env, tier)
    if not path.is_file():
        raise DatasetError(
            path,
            "not collected yet; run `srpo-bench collect --suite locomotion-lite` "
            f"(about {FULL_SUITE_MINUTES} minutes)",
        )
    dataset = d4rl.load_file(path, task_name, {"lite_task": task_name})
    for key in ("ref_min_score", "ref_max_score"):
        if key not in dataset.metadata:
            raise DatasetError(path, f"metadata '{key}' missing; recollect with `srpo-bench collect --force`")
    return dataset


# --- rollouts ---------------------------------------------------------------------------------------
def make_lite_env(env: str) -> gym.Env:
    made = make_env(LITE_GYMNASIUM_ENVS[env], MAX_EPISODE_STEPS)
    space = made.action_space
    if not (np.all(space.low == -1.0) and np.all(space.high == 1.0)):
        raise ValueError(f"{LITE_GYMNASIUM_ENVS[env]}: action space must be [-1, 1], got {space}")
    return made


@dataclass
class Episodes:
    """Complete episodes back to back in D4RL's layout (within an episode obs[i+1] == next_obs[i])."""

    arrays: dict[str, np.ndarray]
    returns: np.ndarray  # one undiscounted return per episode

    def __len__(self) -> int:
        return int(len(self.arrays["observations"]))

    @staticmethod
    def concatenate(parts: Sequence[Episodes]) -> Episodes:
        keys = parts[0].arrays.keys()
        return Episodes(
            arrays={key: np.concatenate([part.arrays[key] for part in parts]) for key in keys},
            returns=np.concatenate([part.returns for part in parts]),
        )


class _Trajectory:
    def __init__(self) -> None:
        self.rows: dict[str, list] = {key: [] for key in
                                      ("observations", "actions", "rewards", "next_observations",
                                       "terminals", "timeouts")}

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray,
            terminated: bool, truncated: bool) -> None:
        self.rows["observations"].append(obs)
        self.rows["actions"].append(action)
        self.rows["rewards"].append(reward)
        self.rows["next_observations"].append(next_obs)
        self.rows["terminals"].append(terminated)
        self.rows["timeouts"].append(truncated and not terminated)  # D4RL: a timeout is never terminal

    def finish(self) -> dict[str, np.ndarray]:
        out = {
            "observations": np.asarray(self.rows["observations"], np.float32),
            "actions": np.asarray(self.rows["actions"], np.float32),
            "rewards": np.asarray(self.rows["rewards"], np.float32),
            "next_observations": np.asarray(self.rows["next_observations"], np.float32),
            "terminals": np.asarray(self.rows["terminals"], np.float32),
            "timeouts": np.asarray(self.rows["timeouts"], np.float32),
        }
        self.__init__()
        return out


def roll_out(envs: Sequence[gym.Env], policy: BatchPolicy, seed: int, min_transitions: int | None = None,
             advance: Callable[[int], None] | None = None) -> Episodes:
    """Step `envs` in lockstep with one batched policy call per step.

    `min_transitions=None`: exactly one episode per env (unbiased returns: short episodes do not crowd
    out long ones). Otherwise keep resetting until the complete episodes hold at least `min_transitions`
    rows; episodes still running then are dropped. `advance` gets episodes (first mode) or steps.
    """
    env_seeds = np.random.SeedSequence(seed).generate_state(len(envs))
    obs = [env.reset(seed=int(env_seed))[0] for env, env_seed in zip(envs, env_seeds, strict=True)]
    running = [_Trajectory() for _ in envs]
    episode_returns: list[float] = []
    finished: list[dict[str, np.ndarray]] = []
    complete_rows, stepped = 0, 0
    active = list(range(len(envs)))
    while active:
        actions = policy(np.asarray([obs[i] for i in active], dtype=np.float32))
        still_running = []
        for row, i in enumerate(active):
            next_obs, reward, terminated, truncated, _ = envs[i].step(actions[row])
            running[i].add(obs[i], actions[row], float(reward), next_obs, bool(terminated), bool(truncated))
            obs[i] = next_obs
            if terminated or truncated:
                episode = running[i].finish()
                finished.append(episode)
                episode_returns.append(float(episode["rewards"].sum(dtype=np.float64)))
                complete_rows += len(episode["rewards"])
                if min_transitions is None:
                    if advance is not None:
                        advance(1)
                    continue
                obs[i] = envs[i].reset()[0]
            still_running.append(i)
        active = still_running
        if min_transitions is not None:
            step = min(len(actions), max(min_transitions - stepped, 0))
            stepped += len(actions)
            if advance is not None and step:
                advance(step)
            if complete_rows >= min_transitions:
                break
    keys = finished[0].keys()
    return Episodes(
        arrays={key: np.concatenate([episode[key] for episode in finished]) for key in keys},
        returns=np.asarray(episode_returns, dtype=np.float64),
    )


def uniform_policy(act_dim: int, seed: int) -> BatchPolicy:
    rng = np.random.default_rng(seed)
    return lambda obs: rng.uniform(-1.0, 1.0, size=(len(obs), act_dim)).astype(np.float32)


def actor_policy(actor: GaussianActor, device: torch.device, seed: int) -> BatchPolicy:
    """Draws from the SAC Gaussian, as D4RL's behaviour data were."""
    generator = torch.Generator(device=device).manual_seed(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        observations = torch.as_tensor(obs, dtype=torch.float32, device=device)
        return actor.act(observations, generator).cpu().numpy()

    return act


def load_actor(spec: dict[str, int], state: dict[str, torch.Tensor], device: torch.device) -> GaussianActor:
    actor = GaussianActor.from_spec(spec)
    actor.load_state_dict(state)
    return actor.to(device).eval()


def stage_seed(seed: int, env: str, stage: str) -> int:
    """Independent, stable seeds per (seed, env, stage): names, not positions, so any subset reproduces."""
    sequence = np.random.SeedSequence([seed, zlib.crc32(env.encode()), zlib.crc32(stage.encode())])
    return int(sequence.generate_state(1)[0])


# --- progress across processes ----------------------------------------------------------------------
class StageProgress:
    """One env's progress, stage by stage, as events for the parent's bars (throttled: a queue is cheap,
    but not free at thousands of steps per second)."""

    def __init__(self, env: str, send: Callable[[Event], None], interval_s: float = 0.25) -> None:
        self.env = env
        self.send = send
        self.interval_s = interval_s

    @contextmanager
    def stage(self, name: str, total: int) -> Iterator[Callable[..., None]]:
        self.send(("start", self.env, name, total))
        pending = {"steps": 0, "time": time.monotonic(), "metrics": {}}

        def flush() -> None:
            if pending["steps"] or pending["metrics"]:
                self.send(("advance", self.env, name, pending["steps"], pending["metrics"]))
            pending.update(steps=0, time=time.monotonic(), metrics={})

        def advance(steps: int = 1, **metrics: float) -> None:
            pending["steps"] += steps
            pending["metrics"].update(metrics)
            if time.monotonic() - pending["time"] >= self.interval_s:
                flush()

        try:
            yield advance
        finally:
            flush()
            self.send(("end", self.env, name))


class _BarBoard:
    """The parent's side: one `Reporter` bar per (env, stage) while that stage runs."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.open: dict[tuple[str, str], tuple[Any, Any]] = {}

    def handle(self, event: Event) -> None:
        kind = event[0]
        if kind == "start":
            _, env, stage, total = event
            context = self.reporter.track(f"{env} {stage}", total)
            self.open[(env, stage)] = (context, context.__enter__())
        elif kind == "advance":
            _, env, stage, steps, metrics = event
            self.open[(env, stage)][1].advance(steps, **metrics)
        elif kind == "end":
            context, _ = self.open.pop((event[1], event[2]))
            context.__exit__(None, None, None)

    def close(self) -> None:
        for context, _ in self.open.values():
            context.__exit__(None, None, None)
        self.open.clear()


# --- one env's collection ---------------------------------------------------------------------------
@dataclass(frozen=True)
class EnvJob:
    env: str
    size: str
    seed: int
    root: str
    force: bool
    device: str


@dataclass
class EnvSummary:
    env: str
    paths: list[str]
    written: list[str]
    ref_min_score: float
    ref_max_score: float
    medium_return: float
    medium_step: int
    expert_steps: int
    seconds: float
    trained: bool


def _is_current(path: Path, key: str) -> bool:
    if not path.is_file():
        return False
    try:
        return d4rl.read_metadata(path).get("collection_key") == key
    except DatasetError:
        return False


def _load_policies(job: EnvJob, key: str) -> dict[str, Any] | None:
    """Both cached policies with this key, or None."""
    loaded = {}
    for which in ("medium", "expert"):
        path = policy_path(job.env, which, Path(job.root))
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError):
            return None
        if payload.get("collection_key") != key:
            return None
        loaded[which] = payload
    return loaded


def _train(job: EnvJob, plan: CollectionPlan, envs: list[gym.Env], device: torch.device,
           progress: StageProgress) -> tuple[dict[str, Any], SACRun]:
    """SAC, the reference returns, and the medium snapshot; returns what the policy files keep."""
    config = plan.sac
    train_env = make_lite_env(job.env)
    with progress.stage("train SAC", config.total_steps) as advance:
        run = train_sac(train_env, config, stage_seed(job.seed, job.env, "train"), device,
                        progress=lambda steps, metrics: advance(steps, **metrics))
    train_env.close()
    act_dim = int(envs[0].action_space.shape[0])
    expert = load_actor(run.actor_spec, run.final_actor, device)
    reference_envs = envs[: plan.reference_episodes]
    random_policy = uniform_policy(act_dim, stage_seed(job.seed, job.env, "ref-random-act"))
    expert_policy = actor_policy(expert, device, stage_seed(job.seed, job.env, "ref-expert-act"))
    with progress.stage("reference episodes", 2 * plan.reference_episodes) as advance:
        random_returns = roll_out(reference_envs, random_policy, stage_seed(job.seed, job.env, "ref-random"),
                                  advance=advance).returns
        expert_returns = roll_out(reference_envs, expert_policy, stage_seed(job.seed, job.env, "ref-expert"),
                                  advance=advance).returns
    ref_min, ref_max = float(random_returns.mean()), float(expert_returns.mean())

    candidates = [(step, state) for step, state in run.snapshots if step > config.start_steps]
    target = ref_min + MEDIUM_FRACTION * (ref_max - ref_min)
    scored: list[tuple[int, dict[str, torch.Tensor], float]] = []
    with progress.stage(f"find medium (return {target:.0f})", len(candidates)) as advance:
        for step, state in candidates:
            actor = load_actor(run.actor_spec, state, device)
            # The same seeds for every snapshot: common random numbers make their comparison less noisy.
            policy = actor_policy(actor, device, stage_seed(job.seed, job.env, "candidate-act"))
            mean = float(roll_out(envs[: plan.candidate_episodes], policy,
                                  stage_seed(job.seed, job.env, "candidate")).returns.mean())
            scored.append((step, state, mean))
            advance(1, **{"return": mean})
            if mean >= target:
                break
    medium_step, medium_state, medium_return = _pick_medium(scored, target)
    summary = {
        "ref_min_score": ref_min, "ref_max_score": ref_max, "medium_step": medium_step,
        "medium_candidate_return": medium_return, "expert_steps": config.total_steps,
    }
    common = {"collection_key": collection_key(job.size, job.seed), "env": job.env, "size": job.size,
              "seed": job.seed, "actor_spec": run.actor_spec, "summary": summary}
    for which, state, steps in (("medium", medium_state, medium_step),
                                ("expert", run.final_actor, config.total_steps)):
        atomic_torch_save({**common, "which": which, "training_steps": steps, "state_dict": state},
                          policy_path(job.env, which, Path(job.root)))
    return {"medium": {**common, "state_dict": medium_state},
            "expert": {**common, "state_dict": run.final_actor}}, run


def _pick_medium(scored: list[tuple[int, dict[str, torch.Tensor], float]],
                 target: float) -> tuple[int, dict[str, torch.Tensor], float]:
    """The first snapshot reaching `target`, or the one before it when that one is closer."""
    if scored[-1][2] >= target:
        if len(scored) > 1 and abs(scored[-2][2] - target) < abs(scored[-1][2] - target):
            return scored[-2]
        return scored[-1]
    return max(scored, key=lambda item: item[2])  # none reached it (tiny "small" runs): the best one


def _replay_returns(run: SACRun, steps: int) -> np.ndarray:
    return np.asarray([ret for end, ret in run.episode_returns if end <= steps], dtype=np.float64)


def _metadata(job: EnvJob, summary: dict[str, Any], tier: str, returns: np.ndarray, rows: int,
              behavior_steps: int) -> dict[str, str | float | int]:
    return {
        "collection_key": collection_key(job.size, job.seed),
        "tier": tier,
        "env": job.env,
        "env_id": LITE_GYMNASIUM_ENVS[job.env],
        "max_episode_steps": MAX_EPISODE_STEPS,
        "size": job.size,
        "seed": job.seed,
        "behavior_policy": "uniform random" if tier == "random" else "SAC (Gaussian draws)",
        "behavior_training_steps": behavior_steps,  # environment steps of SAC training
        "sac_update_every": PLANS[job.size].sac.update_every,  # env steps per gradient step
        "medium_training_steps": int(summary["medium_step"]),
        "expert_training_steps": int(summary["expert_steps"]),
        "ref_min_score": float(summary["ref_min_score"]),
        "ref_max_score": float(summary["ref_max_score"]),
        "ref_episodes": PLANS[job.size].reference_episodes,
        "behavior_return_mean": float(returns.mean()) if len(returns) else float("nan"),
        "behavior_return_std": float(returns.std()) if len(returns) else float("nan"),
        "episodes": int(len(returns)),
        "transitions": int(rows),
        "srpo_bench_version": __version__,
        "gymnasium_version": gym.__version__,
        "mujoco_version": mujoco.__version__,
    }


def collect_env(job: EnvJob, progress: StageProgress) -> EnvSummary:
    """Every tier file of one env; files already current are left untouched."""
    start = time.perf_counter()
    plan = PLANS[job.size]
    key = collection_key(job.size, job.seed)
    root = Path(job.root)
    paths = {tier: lite_path(job.env, tier, root) for tier in LITE_TIERS}
    missing = [tier for tier in LITE_TIERS if job.force or not _is_current(paths[tier], key)]
    policies = None if job.force else _load_policies(job, key)
    if not missing and policies is not None:
        summary = policies["expert"]["summary"]
        return EnvSummary(job.env, [str(p) for p in paths.values()], [], summary["ref_min_score"],
                          summary["ref_max_score"], summary["medium_candidate_return"], summary["medium_step"],
                          summary["expert_steps"], time.perf_counter() - start, trained=False)

    device = torch.device(job.device)
    envs = [make_lite_env(job.env) for _ in range(max(plan.reference_episodes, plan.rollout_envs,
                                                      plan.candidate_episodes))]
    run: SACRun | None = None
    if policies is None or "medium-replay" in missing:
        policies, run = _train(job, plan, envs, device, progress)
        # The replay buffer exists only now: medium-replay is (re)written whenever SAC is trained.
        missing = [tier for tier in LITE_TIERS if tier in missing or tier == "medium-replay"]
    summary = policies["expert"]["summary"]
    act_dim = int(envs[0].action_space.shape[0])
    behavior_steps = {"random": 0, "medium": summary["medium_step"], "expert": summary["expert_steps"]}

    written: list[str] = []

    def write(tier: str, episodes_arrays: dict[str, np.ndarray], returns: np.ndarray, steps: int) -> None:
        metadata = _metadata(job, summary, tier, returns, len(episodes_arrays["observations"]), steps)
        d4rl.write_d4rl_hdf5(paths[tier], episodes_arrays, metadata)
        written.append(str(paths[tier]))

    if "medium-replay" in missing:
        assert run is not None  # a missing medium-replay file always retrains (it needs the buffer)
        steps = int(summary["medium_step"])
        write("medium-replay", run.buffer.prefix(steps), _replay_returns(run, steps), steps)

    rollouts: dict[str, Episodes] = {}
    needed = [tier for tier in ("random", "medium", "expert")
              if tier in missing or (tier != "random" and "medium-expert" in missing)]
    for tier in needed:
        if tier == "random":
            policy = uniform_policy(act_dim, stage_seed(job.seed, job.env, "random-act"))
        else:
            actor = load_actor(policies[tier]["actor_spec"], policies[tier]["state_dict"], device)
            policy = actor_policy(actor, device, stage_seed(job.seed, job.env, f"{tier}-act"))
        with progress.stage(f"{tier} data", plan.tier_transitions) as advance:
            rollouts[tier] = roll_out(envs[: plan.rollout_envs], policy, stage_seed(job.seed, job.env, tier),
                                      min_transitions=plan.tier_transitions, advance=advance)
        if tier in missing:
            write(tier, rollouts[tier].arrays, rollouts[tier].returns, behavior_steps[tier])
    if "medium-expert" in missing:
        both = Episodes.concatenate([rollouts["medium"], rollouts["expert"]])
        write("medium-expert", both.arrays, both.returns, int(summary["expert_steps"]))
    for env in envs:
        env.close()

    seconds = time.perf_counter() - start
    return EnvSummary(job.env, [str(p) for p in paths.values()], written, summary["ref_min_score"],
                      summary["ref_max_score"], summary["medium_candidate_return"], summary["medium_step"],
                      summary["expert_steps"], seconds, trained=run is not None)


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Collection always runs on one thread: parallelism comes from processes (1.4x on 2 cores, STACK.md),
    and the same thread count in and out of workers keeps the floating point, hence the files, identical."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# --- worker processes ---------------------------------------------------------------------------------
def _worker_main(job: EnvJob, events: Any) -> None:
    """One env in a spawned process; everything, the result included, goes back through `events`."""
    torch.set_num_threads(1)
    try:
        summary = collect_env(job, StageProgress(job.env, events.put))
        events.put(("result", job.env, summary))
    except BaseException as error:  # the parent re-raises it; a worker must not die silently
        events.put(("error", job.env, f"{type(error).__name__}: {error}", traceback.format_exc()))


class CollectionError(RuntimeError):
    pass


def collect_suite(
    envs: Sequence[str] = ("hopper", "halfcheetah", "walker2d"),
    size: str = "full",
    seed: int = 0,
    workers: int = 2,
    reporter: Reporter | None = None,
    force: bool = False,
    device: str | torch.device = "cpu",
) -> list[Path]:
    """Write every tier file of `envs` under `lite_dir()`, training SAC where needed; returns all their paths.

    `workers` processes run one env each (torch on one thread each); `workers=1` runs in this process.
    Files already collected with the same size, seed and plan are kept as they are unless `force`.
    """
    unknown = [env for env in envs if env not in LITE_GYMNASIUM_ENVS]
    if unknown:
        raise ValueError(f"unknown lite env(s) {', '.join(unknown)}; choose from {', '.join(LITE_GYMNASIUM_ENVS)}")
    if size not in PLANS:
        raise ValueError(f"unknown size '{size}'; choose from {', '.join(PLANS)}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not envs:
        raise ValueError("no env given")
    root = lite_dir()
    root.mkdir(parents=True, exist_ok=True)
    jobs = [EnvJob(env, size, seed, str(root), force, str(device)) for env in dict.fromkeys(envs)]
    reporter = reporter or Reporter()
    board = _BarBoard(reporter)
    try:
        with reporter:
            if workers == 1 or len(jobs) == 1:
                summaries = []
                for job in jobs:
                    with _one_torch_thread():
                        summaries.append(collect_env(job, StageProgress(job.env, board.handle)))
                    reporter.print(describe(summaries[-1]))
            else:
                summaries = _collect_in_workers(jobs, min(workers, len(jobs)), board)
    finally:
        board.close()
    return [Path(path) for summary in summaries for path in summary.paths]


def describe(summary: EnvSummary) -> str:
    if not summary.trained and not summary.written:
        return f"{summary.env}: all {len(summary.paths)} files up to date"
    return (
        f"{summary.env}: random {summary.ref_min_score:.0f}, medium {summary.medium_return:.0f} "
        f"(SAC step {summary.medium_step}), expert {summary.ref_max_score:.0f} (step {summary.expert_steps}); "
        f"wrote {len(summary.written)} file(s) in {summary.seconds / 60:.1f} min"
    )


def _collect_in_workers(jobs: list[EnvJob], workers: int, board: _BarBoard) -> list[EnvSummary]:
    """At most `workers` spawned processes at a time (fork after torch has started threads can deadlock)."""
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    waiting = list(jobs)
    running: dict[str, Any] = {}
    results: dict[str, EnvSummary] = {}
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                job = waiting.pop(0)
                process = context.Process(target=_worker_main, args=(job, events), daemon=True)
                process.start()
                running[job.env] = process
            try:
                event = events.get(timeout=0.2)
            except queue.Empty:
                for env, process in running.items():
                    if process.exitcode is not None:  # died without a word: killed (memory?) or crashed
                        raise CollectionError(
                            f"collecting {env} failed: its worker exited with code {process.exitcode}"
                        ) from None
                continue
            if event[0] == "result":
                results[event[1]] = event[2]
                running.pop(event[1]).join()
                board.reporter.print(describe(event[2]))
            elif event[0] == "error":
                raise CollectionError(f"collecting {event[1]} failed: {event[2]}\n{event[3]}")
            else:
                board.handle(event)
    finally:
        for process in running.values():
            process.terminate()
            process.join()
    return [results[job.env] for job in jobs]
