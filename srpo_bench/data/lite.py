"""The locomotion-lite suite as a data source: where its files live, its task names, and loading one.

The files are D4RL-format hdf5 made offline by `srpo-bench collect` (`srpo_bench/collect/`) from our own SAC
behavior policies on gymnasium's v5 MuJoCo envs. Each file's metadata carries the suite's reference scores:
`ref_min_score` (the uniform random policy's mean return) and `ref_max_score` (the expert SAC policy's).

This module is what every lite run imports; it must stay free of the generator (SAC, rollouts, workers) and
of the method layer, so that loading a dataset never pulls in training code.
"""

from __future__ import annotations

import os
from pathlib import Path

from srpo_bench.data.dataset import DatasetError, OfflineDataset
from srpo_bench.vocabulary import plural

LITE_GYMNASIUM_ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5"}
LITE_ENVS = tuple(LITE_GYMNASIUM_ENVS)
# Every tier `srpo-bench collect` writes, in the order it writes them.
LITE_TIERS = ("random", "medium", "medium-replay", "medium-expert", "expert")
# The tiers of the `locomotion-lite` suite (D4RL's three offline-RL tiers); random and expert are collected
# because they define the reference scores, and can be named as tasks, but are not in the default suite.
LITE_DEFAULT_TIERS = ("medium", "medium-replay", "medium-expert")
MAX_EPISODE_STEPS = 1000  # D4RL's gym-MuJoCo episode limit, and gymnasium v5's default
# Measured full-suite time (3 envs, 2 workers, 2 shared CPU cores); the "not collected" hint quotes it.
FULL_SUITE_MINUTES = 35


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


def parse_lite_task(task_name: str) -> tuple[str, str]:
    """'lite-hopper-medium-replay-v0' -> ('hopper', 'medium-replay'); ValueError for anything else."""
    for env in LITE_GYMNASIUM_ENVS:
        for tier in LITE_TIERS:
            if task_name == lite_task_name(env, tier):
                return env, tier
    known = ", ".join(lite_task_name(env, tier) for env in LITE_GYMNASIUM_ENVS for tier in LITE_TIERS)
    raise ValueError(f"unknown lite task '{task_name}'; known: {known}")


# --- loading -----------------------------------------------------------------------------------------
def load_lite(task_name: str) -> OfflineDataset:
    """A collected lite task with D4RL `qlearning_dataset` semantics; its metadata carries the ref scores."""
    # Imported here: the task registry imports this module for its names, and h5py is not needed for those.
    from srpo_bench.data import d4rl

    env, tier = parse_lite_task(task_name)
    path = lite_path(env, tier)
    if not path.is_file():
        raise DatasetError(
            path,
            "not collected yet; run `srpo-bench collect --suite locomotion-lite` "
            f"(about {plural(FULL_SUITE_MINUTES, 'minute')})",
        )
    dataset = d4rl.load_file(path, task_name, {"lite_task": task_name})
    for key in ("ref_min_score", "ref_max_score"):
        if key not in dataset.metadata:
            raise DatasetError(path, f"metadata '{key}' missing; recollect with `srpo-bench collect --force`")
    return dataset
