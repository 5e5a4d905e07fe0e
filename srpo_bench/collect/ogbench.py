"""`srpo-bench collect --suite ogbench`: OGBench manipulation "play" datasets made here by OGBench's own oracles.

This follows `data_gen_scripts/generate_manipspace.py` (ogbench repository; the script is not in the pip
package) with `--dataset_type=play`, as `data_gen_scripts/commands.sh` runs it for the published files:

- env `<env>-v0` made with `terminate_at_goal=False, mode="data_collection"`, `max_episode_steps` = 1,001;
- plan oracles (`ogbench.manipspace.oracles.plan`): cube -> `CubePlanOracle`; scene -> cube, button, drawer and
  window plan oracles; puzzle -> `ButtonPlanOracle(gripper_always_closed=True)`; all with `noise=0.1`,
  `noise_smoothing=0.5` (the oracle adds temporally smoothed Gaussian noise of that scale to its plan);
  `p_random_action` 0 (the play setting). The per-episode noise level xi ~ U(0, noise) of the script applies to
  its Markov ("noisy") oracles only, not to play data, so it is not drawn here;
- per episode: p_stack 0 (single), U(0, 0.25) (double), 0.5 (others); when the oracle finishes a subtask the env
  sets a new target (`set_new_target(p_stack)`) and the matching oracle takes over;
- scene episodes failing the script's health check (cube too far right, or too far left outside the drawer)
  are dropped and redrawn;
- rows: observations, actions (clipped to [-1, 1]), terminals (episode end), qpos/qvel (`info["prev_qpos"]`,
  `info["prev_qvel"]`: the state of the row's observation) and button_states where the env has buttons; dtypes
  as the script's (float32, bool terminals, int64 button states); `num_episodes` training episodes and
  `num_episodes // 10` more for `-val.npz`.

Deviation (ours): the script never seeds (`--seed` is unused), so its files differ run to run. We seed numpy's
global generator (the oracles and the env's task draws use it) and the env's first reset from (seed, env), so the
same `--seed` gives the same file; numpy's global state is restored afterwards. MuJoCo's version can still move
the physics: the provenance file records it with the ogbench version, the oracle settings and the seed.
Besides the file, we count the oracle's subtasks and how many ended with the env's `success` flag set.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from srpo_bench import __version__
from srpo_bench.atomic import atomic_write, atomic_write_json
from srpo_bench.data.dataset import DatasetError
from srpo_bench.data.ogbench import (
    OGBENCH_ENVS,
    dataset_path,
    ogbench_dir,
    ogbench_version,
    provenance_path,
    quiet_ogbench,
    read_provenance,
    validation_path,
)
from srpo_bench.progress import Reporter
from srpo_bench.vocabulary import plural

_FORMAT = 1  # bump when the files change for the same plan; part of the provenance key


@dataclass(frozen=True)
class OracleSettings:
    """`generate_manipspace.py` flags for `--dataset_type=play` (defaults of the script and `commands.sh`)."""

    dataset_type: str = "play"
    noise: float = 0.1
    noise_smoothing: float = 0.5
    p_random_action: float = 0.0


@dataclass(frozen=True)
class GenerationPlan:
    num_episodes: int  # training episodes; `num_episodes // 10` more go to the -val file
    max_episode_steps: int


PLANS: dict[str, GenerationPlan] = {
    "full": GenerationPlan(num_episodes=1000, max_episode_steps=1001),  # `commands.sh` for the four envs
    "small": GenerationPlan(num_episodes=10, max_episode_steps=201),  # tests and smoke runs: seconds
}


def generation_key(env: str, size: str, seed: int, oracle: OracleSettings) -> str:
    blob = json.dumps({"env": env, "size": size, "seed": seed, "plan": asdict(PLANS[size]), "oracle": asdict(oracle),
                       "ogbench": ogbench_version(), "format": _FORMAT}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


MAX_SEED = 2**31 - 1  # as `collect/lite.py` and `run --seeds`


def env_seed(seed: int, env: str) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}-{env}".encode()).digest()[:4], "little")


def p_stack(env: str, rng: Any) -> float:
    """The script's per-episode stacking probability (drawn from numpy's global generator, as there)."""
    if "single" in env:
        return 0.0
    if "double" in env:
        return float(rng.uniform(0.0, 0.25))
    return 0.5


def make_oracles(env: str, gym_env: Any, oracle: OracleSettings) -> dict[str, Any]:
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    noise = {"noise": oracle.noise, "noise_smoothing": oracle.noise_smoothing}
    if env.startswith("cube"):
        return {"cube": CubePlanOracle(env=gym_env, **noise)}
    if env == "scene":
        return {"cube": CubePlanOracle(env=gym_env, **noise), "button": ButtonPlanOracle(env=gym_env, **noise),
                "drawer": DrawerPlanOracle(env=gym_env, **noise), "window": WindowPlanOracle(env=gym_env, **noise)}
    return {"button": ButtonPlanOracle(env=gym_env, gripper_always_closed=True, **noise)}


def scene_is_healthy(qpos: np.ndarray) -> bool:
    """The script's check: the cube (qpos 14:17) never too far right, nor too far left outside the drawer."""
    block = qpos[:, 14:17]
    too_right = (block[:, 1] >= 0.29).any()
    too_left = ((block[:, 1] <= -0.3) & ((block[:, 2] < 0.06) | (block[:, 2] > 0.08))).any()
    return not (too_right or too_left)


@dataclass
class Generated:
    rows: dict[str, list[Any]]
    train_steps: int
    subtasks: int
    subtask_successes: int
    redrawn: int


def generate(env: str, plan: GenerationPlan, seed: int, oracle: OracleSettings, reporter: Reporter) -> Generated:
    """All rows of one environment's play data (training episodes first, then validation ones)."""
    import gymnasium

    with quiet_ogbench():
        gym_env = gymnasium.make(f"{env}-v0", terminate_at_goal=False, mode="data_collection",
                                 max_episode_steps=plan.max_episode_steps)
    oracles = make_oracles(env, gym_env, oracle)
    has_buttons = hasattr(gym_env.unwrapped, "_cur_button_states")
    rng = np.random  # the oracles and the env's task draws use numpy's global generator: seeded by the caller
    rows: dict[str, list[Any]] = defaultdict(list)
    episodes = plan.num_episodes + plan.num_episodes // 10
    train_steps = subtasks = successes = redrawn = 0
    first_reset = True
    with reporter.track(f"ogbench {env} ({plural(episodes, 'episode')})", episodes * plan.max_episode_steps) as bar:
        for episode in range(episodes):
            while True:
                ob, info = gym_env.reset(seed=env_seed(seed, env) if first_reset else None)
                first_reset = False
                stacking = p_stack(env, rng)
                agent = oracles[info["privileged/target_task"]]
                agent.reset(ob, info)
                episode_rows: dict[str, list[Any]] = defaultdict(list)
                episode_subtasks = episode_successes = 0
                done = False
                while not done:
                    if oracle.p_random_action > 0 and rng.rand() < oracle.p_random_action:
                        action = gym_env.action_space.sample()
                    else:
                        action = np.array(agent.select_action(ob, info))
                    action = np.clip(action, -1, 1)
                    next_ob, _, terminated, truncated, info = gym_env.step(action)
                    done = terminated or truncated
                    if agent.done:
                        episode_subtasks += 1
                        episode_successes += int(bool(info["success"]))
                        agent_ob, agent_info = gym_env.unwrapped.set_new_target(p_stack=stacking)
                        agent = oracles[agent_info["privileged/target_task"]]
                        agent.reset(agent_ob, agent_info)
                    episode_rows["observations"].append(ob)
                    episode_rows["actions"].append(action)
                    episode_rows["terminals"].append(done)
                    episode_rows["qpos"].append(info["prev_qpos"])
                    episode_rows["qvel"].append(info["prev_qvel"])
                    if has_buttons:
                        episode_rows["button_states"].append(info["prev_button_states"])
                    ob = next_ob
                    bar.advance()
                if env != "scene" or scene_is_healthy(np.asarray(episode_rows["qpos"])):
                    break
                redrawn += 1
                bar.advance(-len(episode_rows["observations"]))
            for key, values in episode_rows.items():
                rows[key].extend(values)
            subtasks += episode_subtasks
            successes += episode_successes
            if episode < plan.num_episodes:
                train_steps += len(episode_rows["observations"])
    gym_env.close()
    return Generated(rows, train_steps, subtasks, successes, redrawn)


def as_arrays(rows: dict[str, list[Any]], start: int, stop: int) -> dict[str, np.ndarray]:
    """The script's dtypes: bool terminals, int64 button states, float32 for the rest."""
    dtypes = {"terminals": bool, "button_states": np.int64}
    return {key: np.array(values[start:stop], dtype=dtypes.get(key, np.float32)) for key, values in rows.items()}


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(temporary: str) -> None:
        with open(temporary, "wb") as handle:  # a handle: numpy would append ".npz" to a bare temporary name
            np.savez_compressed(handle, **arrays)

    atomic_write(path, write)


@dataclass
class EnvOutcome:
    env: str
    path: Path
    status: str  # "written" | "current" | "user file"
    steps: int = 0
    seconds: float = 0.0


def collect_env(env: str, size: str, seed: int, reporter: Reporter, force: bool = False,
                root: Path | None = None, oracle: OracleSettings | None = None) -> EnvOutcome:
    oracle = oracle or OracleSettings()
    path = dataset_path(env, root)
    key = generation_key(env, size, seed, oracle)
    provenance = read_provenance(path)
    if path.is_file() and validation_path(path).is_file() and not force:
        if not provenance:
            return EnvOutcome(env, path, "user file")
        if provenance.get("key") == key:
            return EnvOutcome(env, path, "current")
    plan = PLANS[size]
    started = time.perf_counter()
    saved_state = np.random.get_state()
    np.random.seed(env_seed(seed, env))
    try:
        generated = generate(env, plan, seed, oracle, reporter)
    finally:
        np.random.set_state(saved_state)
    seconds = time.perf_counter() - started
    total = len(generated.rows["observations"])
    write_npz(path, as_arrays(generated.rows, 0, generated.train_steps))
    write_npz(validation_path(path), as_arrays(generated.rows, generated.train_steps, total))
    atomic_write_json(provenance_path(path), {
        "key": key, "env": env, "size": size, "seed": seed, "plan": asdict(plan), "oracle": asdict(oracle),
        "oracle_classes": oracle_classes(env),
        "ogbench": ogbench_version(), "mujoco": version("mujoco"), "srpo_bench": __version__,
        "script": "ogbench data_gen_scripts/generate_manipspace.py (play), as srpo_bench/collect/ogbench.py",
        "steps": total, "train_steps": generated.train_steps, "seconds": seconds,
        "steps_per_second": total / seconds if seconds > 0 else None,
        "oracle_subtasks": generated.subtasks, "oracle_subtask_successes": generated.subtask_successes,
        "scene_episodes_redrawn": generated.redrawn,
    })
    return EnvOutcome(env, path, "written", total, seconds)


def oracle_classes(env: str) -> dict[str, str]:
    """Which plan oracle drives each target type (for the provenance record)."""
    if env.startswith("cube"):
        return {"cube": "CubePlanOracle"}
    if env == "scene":
        return {"cube": "CubePlanOracle", "button": "ButtonPlanOracle", "drawer": "DrawerPlanOracle",
                "window": "WindowPlanOracle"}
    return {"button": "ButtonPlanOracle(gripper_always_closed=True)"}


def check_envs(envs: Sequence[str]) -> list[str]:
    unknown = [env for env in envs if env not in OGBENCH_ENVS]
    if unknown or not envs:
        raise DatasetError("--envs", f"unknown ogbench environment(s) {', '.join(unknown) or '(none given)'}; "
                           f"choose from {', '.join(OGBENCH_ENVS)}")
    return list(envs)


def collect_suite(envs: Sequence[str], size: str, seed: int, reporter: Reporter, force: bool = False,
                  root: Path | None = None) -> list[EnvOutcome]:
    """Make each environment's play dataset unless a current one (ours, same key) or a user's file is there."""
    if size not in PLANS:
        raise DatasetError("--size", f"must be one of {', '.join(PLANS)}, got '{size}'")
    if not 0 <= seed <= MAX_SEED:  # any integer hashes (env_seed); one range for both suites keeps the CLI simple
        raise DatasetError("--seed", f"must be an integer from 0 to {MAX_SEED:,}, got {seed}")
    outcomes = []
    for env in check_envs(envs):
        outcome = collect_env(env, size, seed, reporter, force, root)
        rate = f" ({outcome.steps / outcome.seconds:,.0f} steps/s)" if outcome.seconds > 0 else ""
        reporter.print(f"ogbench {env}: {outcome.status} {outcome.path}{rate}")
        outcomes.append(outcome)
    return outcomes


__all__ = ["PLANS", "OracleSettings", "collect_suite", "ogbench_dir"]
