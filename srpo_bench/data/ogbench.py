"""The `ogbench` suite as a data source: OGBench manipulation "play" datasets, singletask names, loading, envs.

Files keep OGBench's own names and format (`cube-single-play-v0.npz` and `-val.npz` beside it, the keys of
`data_gen_scripts/generate_manipspace.py`) and live where OGBench looks for them: `$OGBENCH_DATA_DIR` if set,
else `~/.ogbench/data`. A file a user downloaded there is used as it is; `srpo-bench collect --suite ogbench`
makes missing ones locally from OGBench's scripted oracles (`srpo_bench/collect/ogbench.py`) and writes its
provenance beside them (`<name>.srpo-bench.json`).

Loading goes through `ogbench.make_env_and_datasets(task, dataset_path=...)`, so rewards (-number of unfinished
subtasks) and masks (1 - success of s) come from OGBench's own singletask relabelling. Q-learning uses `masks`:
our `OfflineDataset.terminals` holds `1 - masks` ("no bootstrap after this transition"), and `episode_ends`
holds OGBench's `terminals` (where a 1,001-step collection episode stops).

Evaluation: one singletask episode scores 100 if `info["success"]` is set at its last step (success ends the
episode), else 0, so a run's normalized score is the success rate in percent, as OGBench and FQL report it.
`success_timing`: OGBench >= 1.2.0 judges reward, termination and success on s (`"pre"`); 1.1.0, which FQL's
published table used, judged them on s' (`"post"`). Our default is `"post"`, matching that table;
`$SRPO_BENCH_OGBENCH_SUCCESS_TIMING=pre` selects OGBench's current default. The version and timing are in every
run's task note.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from srpo_bench.data.dataset import DatasetError, OfflineDataset, check_column

OGBENCH_ENVS = ("cube-single", "cube-double", "scene", "puzzle-3x3")
DATASET_TYPE = "play"
#: the default task of each environment (`...-singletask-v0`, OGBench's `reward_task_id=0`)
DEFAULT_TASK = {"cube-single": 2, "cube-double": 2, "scene": 2, "puzzle-3x3": 4}
#: OGBench's registered episode limits (`ogbench/manipspace/__init__.py`; tests check them against gymnasium)
EPISODE_LIMITS = {"cube-single": 200, "cube-double": 500, "scene": 750, "puzzle-3x3": 500}
TASK_IDS = (1, 2, 3, 4, 5)
SUCCESS_TIMINGS = ("post", "pre")
DEFAULT_SUCCESS_TIMING = "post"  # ogbench 1.1.0's behaviour, under which FQL's published table was made
PROVENANCE_SUFFIX = ".srpo-bench.json"
_NAME = re.compile(r"^(?P<env>[a-z0-9-]+?)-play-singletask(?:-task(?P<task>\d+))?-v0$")


# --- names and places ------------------------------------------------------------------------------
def ogbench_dir() -> Path:
    """`$OGBENCH_DATA_DIR` if set, else `~/.ogbench/data` (OGBench's `DEFAULT_DATASET_DIR`)."""
    root = os.environ.get("OGBENCH_DATA_DIR")
    return Path(root).expanduser() if root else Path("~/.ogbench/data").expanduser()


def dataset_name(env: str) -> str:
    return f"{env}-{DATASET_TYPE}-v0"


def dataset_path(env: str, root: Path | None = None) -> Path:
    return (root or ogbench_dir()) / f"{dataset_name(env)}.npz"


def validation_path(path: Path) -> Path:
    return path.with_name(path.name.replace(".npz", "-val.npz"))


def provenance_path(path: Path) -> Path:
    return path.with_name(path.name.replace(".npz", PROVENANCE_SUFFIX))


def task_names(env: str) -> list[str]:
    return [f"{env}-{DATASET_TYPE}-singletask-task{k}-v0" for k in TASK_IDS]


def parse_task(name: str) -> tuple[str, int]:
    """'cube-single-play-singletask-task2-v0' -> ('cube-single', 2); the alias without '-taskN' is the default
    task. ValueError for anything else."""
    match = _NAME.match(name)
    if match is None or match["env"] not in OGBENCH_ENVS:
        raise ValueError(f"unknown ogbench task '{name}'; expected <env>-play-singletask[-task1..5]-v0 with env one "
                         f"of {', '.join(OGBENCH_ENVS)}")
    task = int(match["task"]) if match["task"] else DEFAULT_TASK[match["env"]]
    if task not in TASK_IDS:
        raise ValueError(f"unknown ogbench task '{name}': tasks are task1..task5")
    return match["env"], task


def ogbench_version() -> str:
    try:
        return version("ogbench")
    except PackageNotFoundError:
        return "not installed"


def success_timing() -> str:
    timing = os.environ.get("SRPO_BENCH_OGBENCH_SUCCESS_TIMING", DEFAULT_SUCCESS_TIMING)
    if timing not in SUCCESS_TIMINGS:
        raise DatasetError("SRPO_BENCH_OGBENCH_SUCCESS_TIMING", f"must be 'post' or 'pre', got '{timing}'")
    return timing


@contextmanager
def quiet_ogbench() -> Iterator[Any]:
    """Import ogbench without its import-time noise (glfw's missing-display warning, gymnasium's Box casts)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"glfw.*")
        warnings.filterwarnings("ignore", message=r".*precision lowered by casting.*")
        import ogbench

        yield ogbench


# --- loading -----------------------------------------------------------------------------------------
def load_ogbench(task_name: str) -> OfflineDataset:
    """The training split of a singletask dataset, relabelled by OGBench; metadata names its origin."""
    env, _ = parse_task(task_name)
    path = dataset_path(env)
    for needed in (path, validation_path(path)):
        if not needed.is_file():
            raise DatasetError(needed, f"not found; run `srpo-bench collect --suite ogbench --envs {env}` "
                               "(or put OGBench's downloaded files there)")
    for needed in (path, validation_path(path)):
        check_ogbench_file(needed)
    with quiet_ogbench() as ogbench:
        try:
            _, train, _ = ogbench.make_env_and_datasets(task_name, dataset_path=str(path), compact_dataset=False)
        except (KeyError, ValueError, OSError, EOFError) as error:
            raise DatasetError(path, f"not a readable OGBench dataset ({type(error).__name__}: {error})") from None
    # OGBench's singletask relabelling made these two from qpos/qvel/button_states: checked like any column
    n = len(train["observations"])
    check_column(path, "rewards", train.get("rewards"), "values", (1,), rows=n)
    check_column(path, "masks", train.get("masks"), "flags", (1,), rows=n)
    provenance = read_provenance(path)
    metadata = {"ogbench_task": task_name, "ogbench_version": ogbench_version(), "success_timing": success_timing(),
                "origin": "srpo-bench collect" if provenance else "user file (OGBench download or own)",
                "provenance": provenance}
    ends = np.asarray(train["terminals"], dtype=bool)
    return OfflineDataset(
        name=task_name, source=str(path), observations=train["observations"], actions=train["actions"],
        rewards=train["rewards"], next_observations=train["next_observations"],
        terminals=1.0 - np.asarray(train["masks"], dtype=np.float32), episode_ends=ends, metadata=metadata,
    )


#: the columns `ogbench.utils.load_dataset` reads (`add_info=True` for the singletask relabelling): kind, number
#: of dimensions; all as long as `observations`
OGBENCH_COLUMNS: dict[str, tuple[str, tuple[int, ...]]] = {
    "observations": ("values", (2,)), "actions": ("values", (2,)), "terminals": ("flags", (1,)),
    "qpos": ("values", (2,)), "qvel": ("values", (2,)), "button_states": ("values", (1, 2))}
_REQUIRED_COLUMNS = ("observations", "actions", "terminals")


def check_ogbench_file(path: Path) -> None:
    """Every column OGBench's loader will read, checked before it casts them (`load_dataset` does
    `astype(np.float32)`, which turns b"1" into 1.0): a one-line `DatasetError` naming the file and column."""
    try:
        with np.load(path, allow_pickle=False) as file:
            missing = [key for key in _REQUIRED_COLUMNS if key not in file.files]
            if missing:
                raise DatasetError(path, f"missing column(s) {', '.join(missing)}; an OGBench file needs "
                                   f"{', '.join(_REQUIRED_COLUMNS)}")
            n = len(check_column(path, "observations", file["observations"], "values", (2,)))
            for key, (kind, ndims) in OGBENCH_COLUMNS.items():
                if key != "observations" and key in file.files:
                    check_column(path, key, file[key], kind, ndims, rows=n)  # type: ignore[arg-type]
    except DatasetError:
        raise
    except (KeyError, ValueError, OSError, EOFError) as error:  # not an npz, truncated, or object (pickled) arrays
        raise DatasetError(path, f"not a readable OGBench dataset ({type(error).__name__}: "
                           f"{' '.join(str(error).split())})") from None


def read_provenance(path: Path) -> dict[str, Any]:
    side = provenance_path(path)
    if not side.is_file():
        return {}
    try:
        return json.loads(side.read_text())
    except (OSError, ValueError):
        return {}


# --- evaluation env ---------------------------------------------------------------------------------
class SuccessScore(gym.Wrapper):
    """Reward 1 at the episode's last step if OGBench's `info["success"]` is set there, else 0: the return is the
    episode's success. The last step is termination (success), truncation, or `max_episode_steps`."""

    def __init__(self, env: gym.Env, max_episode_steps: int) -> None:
        super().__init__(env)
        self.max_episode_steps = max_episode_steps
        self._steps = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._steps = 0
        with warnings.catch_warnings():  # OGBench builds float64 Box spaces on reset; gymnasium warns each time
            warnings.filterwarnings("ignore", message=r".*precision lowered by casting.*")
            return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        observation, _, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        last = terminated or truncated or self._steps >= self.max_episode_steps
        return observation, float(last and bool(info.get("success", False))), terminated, truncated, info


def make_ogbench_env(task_name: str) -> gym.Env:
    env_name, _ = parse_task(task_name)
    with quiet_ogbench() as ogbench:
        env = ogbench.make_env_and_datasets(task_name, env_only=True, success_timing=success_timing())
    return SuccessScore(env, EPISODE_LIMITS[env_name])
