"""Task registry: a task name -> its data source, evaluation env, episode limit and score normalization.

Suites name groups of tasks (`toy`, `locomotion-lite`, `locomotion`, `antmaze`, `ogbench`). D4RL tasks keep D4RL's
own names and reference scores (D4RL's `d4rl/infos.py`); Minari tasks use Minari's
reference scores; our collected lite tasks carry their own (random and expert behavior policy returns,
measured at collection). The three scales are never mixed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from srpo_bench.data.dataset import DatasetError, OfflineDataset
from srpo_bench.data.lite import (
    LITE_DEFAULT_TIERS,
    LITE_ENVS,
    LITE_GYMNASIUM_ENVS,
    LITE_TIERS,
    lite_task_name,
    load_lite,
)
from srpo_bench.data.ogbench import EPISODE_LIMITS as OGBENCH_EPISODE_LIMITS
from srpo_bench.data.ogbench import OGBENCH_ENVS
from srpo_bench.data.ogbench import parse_task as parse_ogbench_task
from srpo_bench.data.ogbench import task_names as ogbench_task_names
from srpo_bench.envs import make_env
from srpo_bench.vocabulary import did_you_mean, plural


class UnknownTaskError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; a CLI error should not
        return str(self.args[0])


@dataclass(frozen=True)
class Task:
    name: str
    suite: str
    family: str  # "locomotion" | "antmaze" | "toy" | "ogbench": selects per-family official settings
    max_episode_steps: int
    load: Callable[[], OfflineDataset]
    make_env: Callable[[], gym.Env]
    score_scale: str  # "d4rl" | "minari" | "lite" | "toy" | "ogbench": whose reference scores normalize returns
    ref_min_score: float | None = None  # None: read from the loaded dataset's metadata
    ref_max_score: float | None = None
    note: str = ""

    def space_widths(self) -> tuple[dict[str, int], str]:
        """The environment's flattened widths ({"observations": ..., "actions": ...}) and its id, without data."""
        env = self.make_env()
        try:
            widths = {key: int(np.prod(space.shape or (0,)))
                      for key, space in (("observations", env.observation_space), ("actions", env.action_space))}
            return widths, env.spec.id if env.spec is not None else self.name
        finally:
            env.close()

    def check_data(self, dataset: OfflineDataset) -> None:
        """Raise `DatasetError` if the data's arrays do not fit this task's environment: checked before anything
        trains, so data of another task (or a mislabelled file) never costs a training run."""
        widths, env_id = self.space_widths()
        for key, width in widths.items():
            found = getattr(dataset, key).shape[1]
            if width != found:
                raise DatasetError(dataset.source, f"'{key}' have {plural(found, 'column')} but {self.name}'s "
                                   f"environment ({env_id}) has {width}: the data does not belong to this task")

    def reference_scores(self, dataset: OfflineDataset | None = None) -> tuple[float, float]:
        if self.ref_min_score is not None and self.ref_max_score is not None:
            return self.ref_min_score, self.ref_max_score
        dataset = dataset if dataset is not None else self.load()
        return float(dataset.metadata["ref_min_score"]), float(dataset.metadata["ref_max_score"])


def normalized_score(returns: np.ndarray, ref_min: float, ref_max: float) -> np.ndarray:
    """D4RL convention, times 100: 100 * (R - min) / (max - min)."""
    return 100.0 * (np.asarray(returns, dtype=np.float64) - ref_min) / (ref_max - ref_min)


# --- D4RL ----------------------------------------------------------------------------------------
# REF_MIN_SCORE / REF_MAX_SCORE from d4rl==1.1 infos.py; the -v2 gym tasks reuse the -random-v0 values.
D4RL_REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
}
# gymnasium v4 is the mujoco-bindings port of gym's v3 envs that D4RL -v2 data was collected on.
D4RL_GYMNASIUM_ENVS = {"halfcheetah": "HalfCheetah-v4", "hopper": "Hopper-v4", "walker2d": "Walker2d-v4"}
D4RL_LOCOMOTION = [
    f"{env}-{tier}-v2"
    for tier in ("medium", "medium-replay", "medium-expert")
    for env in ("halfcheetah", "hopper", "walker2d")
]


def _make_gym(env_id: str, max_episode_steps: int, **kwargs) -> Callable[[], gym.Env]:
    return lambda: make_env(env_id, max_episode_steps, **kwargs)


def _d4rl_task(name: str) -> Task:
    from srpo_bench.data import d4rl

    env = name.split("-")[0]
    ref_min, ref_max = D4RL_REFERENCE_SCORES[env]
    return Task(
        name=name, suite="locomotion", family="locomotion", max_episode_steps=1000,
        load=lambda: d4rl.load_d4rl(name), make_env=_make_gym(D4RL_GYMNASIUM_ENVS[env], 1000),
        score_scale="d4rl", ref_min_score=ref_min, ref_max_score=ref_max,
        note="D4RL -v2 data evaluated on gymnasium v4 (mujoco bindings); D4RL's references were measured on "
        "gym v3 (mujoco-py), so normalized scores are close to, not identical with, published ones.",
    )


# --- Minari --------------------------------------------------------------------------------------
ANTMAZE_MINARI = [
    f"minari:D4RL/antmaze/{maze}-v1"
    for maze in ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse")
]


def _minari_task(name: str, suite: str = "minari") -> Task:
    from srpo_bench.data import minari as minari_source

    dataset_id = name.removeprefix("minari:")
    family = "antmaze" if "antmaze" in dataset_id else "locomotion"
    steps = 700 if "umaze" in dataset_id else 1000
    return Task(
        name=name, suite=suite, family=family, max_episode_steps=steps,
        load=lambda: minari_source.load_minari(dataset_id),
        make_env=lambda: minari_source.make_minari_env(dataset_id),
        score_scale="minari",
        note="Scored with Minari's own reference scores; not comparable with D4RL tables.",
    )


# --- our collected lite suite ----------------------------------------------------------------------
# Named but not in the default suite: random and expert, the tiers behind the reference scores.
LITE_EXTRA_TIERS = tuple(tier for tier in LITE_TIERS if tier not in LITE_DEFAULT_TIERS)
LITE_SUITE = [lite_task_name(env, tier) for tier in LITE_DEFAULT_TIERS for env in LITE_ENVS]


def _lite_task(name: str) -> Task:
    env = name.split("-")[1]
    return Task(
        name=name, suite="locomotion-lite", family="locomotion", max_episode_steps=1000,
        load=lambda: load_lite(name),
        make_env=_make_gym(LITE_GYMNASIUM_ENVS[env], 1000),
        score_scale="lite",
        note="Collected by `srpo-bench collect` from our own SAC behavior policies; scored against the "
        "random and expert policies' returns recorded at collection. Not D4RL.",
    )


# --- toy bandits ---------------------------------------------------------------------------------
TOY_SUITE = ["toy-two-moons", "toy-eight-gaussians", "toy-checkerboard"]


def _toy_task(name: str) -> Task:
    from srpo_bench.data import toy

    return Task(
        name=name, suite="toy", family="toy", max_episode_steps=1,
        load=lambda: toy.load_toy(name), make_env=lambda: toy.ToyBanditEnv(name),
        score_scale="toy", ref_min_score=toy.reference_scores(name)[0],
        ref_max_score=toy.reference_scores(name)[1],
        note="One-step 2-D bandit: 0 = uniform random actions, 100 = the best reward inside the behavior support.",
    )


# --- OGBench manipulation (singletask, success rate) ----------------------------------------------------
OGBENCH_SUITE = [name for env in OGBENCH_ENVS for name in ogbench_task_names(env)]


def _ogbench_task(name: str) -> Task:
    from srpo_bench.data import ogbench as source

    env, task_id = parse_ogbench_task(name)
    return Task(
        name=name, suite="ogbench", family="ogbench", max_episode_steps=OGBENCH_EPISODE_LIMITS[env],
        load=lambda: source.load_ogbench(name), make_env=lambda: source.make_ogbench_env(name),
        score_scale="ogbench", ref_min_score=0.0, ref_max_score=1.0,
        note=f"OGBench {env} task{task_id} (ogbench {source.ogbench_version()}, success_timing="
        f"{source.success_timing()}; 'post' = ogbench 1.1.0's rule, under which FQL's table was made). Score: "
        "success rate in percent; Q-learning on OGBench's masks.",
    )


#: suite -> its tasks, under the names of `vocabulary.SUITES` (tests/test_cli_words.py checks they agree)
SUITES: dict[str, list[str]] = {
    "toy": TOY_SUITE,
    "locomotion-lite": LITE_SUITE,
    "locomotion": D4RL_LOCOMOTION,
    "antmaze": ANTMAZE_MINARI,
    "ogbench": OGBENCH_SUITE,
}


def all_task_names() -> list[str]:
    lite_all = [lite_task_name(env, tier) for tier in LITE_DEFAULT_TIERS + LITE_EXTRA_TIERS for env in LITE_ENVS]
    return TOY_SUITE + lite_all + D4RL_LOCOMOTION + ANTMAZE_MINARI + OGBENCH_SUITE


def get_task(name: str) -> Task:
    if name in TOY_SUITE:
        return _toy_task(name)
    if name.startswith("lite-") and name in all_task_names():
        return _lite_task(name)
    if name in D4RL_LOCOMOTION:
        return _d4rl_task(name)
    if "-singletask" in name:
        try:
            parse_ogbench_task(name)
        except ValueError as error:
            raise UnknownTaskError(str(error)) from None
        return _ogbench_task(name)
    if name.startswith("minari:"):
        return _minari_task(name, suite="antmaze" if name in ANTMAZE_MINARI else "minari")
    raise UnknownTaskError(
        f"unknown task '{name}'{did_you_mean(name, [*SUITES, *all_task_names()])}; suites: {', '.join(SUITES)}; "
        "run `srpo-bench list` for every task name"
    )


def expand_tasks(spec: str) -> list[str]:
    """'toy' or 'toy,hopper-medium-v2' -> task names, suites expanded, order kept, duplicates dropped."""
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        for name in SUITES.get(part, [part]):
            get_task(name)  # raises UnknownTaskError with the list of suites
            if name not in names:
                names.append(name)
    if not names:
        raise UnknownTaskError("no task given")
    return names


def d4rl_equivalent(task_name: str) -> str:
    """Our task names mapped onto D4RL's, for per-task official settings (temperatures, gradient norms):
    lite-hopper-medium-v0 -> hopper-medium-v2, minari:D4RL/antmaze/umaze-v1 -> antmaze-umaze-v2; other names
    map to themselves."""
    if task_name.startswith("lite-"):
        return task_name.removeprefix("lite-").rsplit("-v", 1)[0] + "-v2"
    if task_name.startswith("minari:D4RL/antmaze/"):
        return "antmaze-" + task_name.rsplit("/", 1)[1].rsplit("-v", 1)[0] + "-v2"
    return task_name
