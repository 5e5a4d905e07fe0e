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
complete episodes only, so `behavior_return_*` are true episode returns (`rollouts.py`). Every random choice
comes from (seed, env, stage), so a file is the same whether its env was collected alone, in a worker process,
or after an interruption. Each env runs in its own process with one torch thread (`workers.py`). The loader
that runs use is `srpo_bench/data/lite.py`; this module writes what it reads.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import torch

from srpo_bench import __version__
from srpo_bench.atomic import atomic_torch_save
from srpo_bench.collect.rollouts import (
    Episodes,
    actor_policy,
    load_actor,
    make_lite_env,
    roll_out,
    stage_seed,
    uniform_policy,
)
from srpo_bench.collect.sac import SACConfig, SACRun, train_sac
from srpo_bench.collect.workers import BarBoard, StageProgress, one_torch_thread, run_in_workers
from srpo_bench.data import d4rl
from srpo_bench.data.dataset import DatasetError
from srpo_bench.data.lite import LITE_GYMNASIUM_ENVS, LITE_TIERS, MAX_EPISODE_STEPS, lite_dir, lite_path
from srpo_bench.progress import Reporter
from srpo_bench.vocabulary import plural

#: seeds reach numpy's and torch's seeding (numpy takes 0 to 2**32 - 1); the CLI's `--seeds` range, for one rule
MAX_SEED = 2**31 - 1

MEDIUM_FRACTION = 1.0 / 3.0  # D4RL section 5: the medium policy reaches ~1/3 of the expert's performance
_FORMAT = 1  # bump when the files' contents change for the same plan; part of the cache key


@dataclass(frozen=True)
class CollectionPlan:
    sac: SACConfig
    tier_transitions: int  # random, medium and expert files: complete episodes, at least this many rows
    reference_episodes: int  # episodes behind ref_min_score / ref_max_score (>= 10)
    candidate_episodes: int  # episodes scoring each snapshot when looking for the medium policy
    rollout_envs: int  # envs stepped in lockstep behind one batched policy call


PLANS: dict[str, CollectionPlan] = {
    # Per env on one core: ~13 min of SAC (77.5k updates), ~1-2 min of rollouts (`data.lite.FULL_SUITE_MINUTES`).
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
def policy_path(env: str, which: str, root: Path | None = None) -> Path:
    return (root or lite_dir()) / "policies" / f"{env}-{which}.pt"


def collection_key(size: str, seed: int) -> str:
    """Files and policies are reused only when size, seed, plan and format all match."""
    blob = json.dumps({"size": size, "seed": seed, "plan": asdict(PLANS[size]), "format": _FORMAT},
                      sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


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


# --- the suite ---------------------------------------------------------------------------------------
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
    # Bad arguments are `DatasetError`s named after the CLI option, as in `collect/ogbench.py`: one line there.
    unknown = [env for env in envs if env not in LITE_GYMNASIUM_ENVS]
    if unknown or not envs:
        raise DatasetError("--envs", f"unknown lite env(s) {', '.join(unknown) or '(none given)'}; choose from "
                           f"{', '.join(LITE_GYMNASIUM_ENVS)}")
    if size not in PLANS:
        raise DatasetError("--size", f"must be one of {', '.join(PLANS)}, got '{size}'")
    if workers < 1:
        raise DatasetError("--workers", f"must be at least 1, got {workers}")
    if not 0 <= seed <= MAX_SEED:
        raise DatasetError("--seed", f"must be an integer from 0 to {MAX_SEED:,}, got {seed}")
    root = lite_dir()
    root.mkdir(parents=True, exist_ok=True)
    jobs = {env: EnvJob(env, size, seed, str(root), force, str(device)) for env in dict.fromkeys(envs)}
    reporter = reporter or Reporter()
    board = BarBoard(reporter)
    try:
        with reporter:
            if workers == 1 or len(jobs) == 1:
                summaries = []
                for job in jobs.values():
                    with one_torch_thread():
                        summaries.append(collect_env(job, StageProgress(job.env, board.handle)))
                    reporter.print(describe(summaries[-1]))
            else:
                summaries = list(run_in_workers(collect_env, jobs, min(workers, len(jobs)), board,
                                                lambda summary: reporter.print(describe(summary))).values())
    finally:
        board.close()
    return [Path(path) for summary in summaries for path in summary.paths]


def describe(summary: EnvSummary) -> str:
    if not summary.trained and not summary.written:
        return f"{summary.env}: all {plural(len(summary.paths), 'file')} up to date"
    return (
        f"{summary.env}: random {summary.ref_min_score:.0f}, medium {summary.medium_return:.0f} "
        f"(SAC step {summary.medium_step}), expert {summary.ref_max_score:.0f} (step {summary.expert_steps}); "
        f"wrote {plural(len(summary.written), 'file')} in {summary.seconds / 60:.1f} min"
    )
