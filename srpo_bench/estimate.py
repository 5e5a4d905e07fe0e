"""Compute estimates for `run --dry-run`: each stage's training steps (from its stage config, `training_steps`),
times seconds per step measured here, now, on the device the run would use.

Seconds per step are measured by calling the method's own `fit` on synthetic data of the task's shapes (from its
environment's spaces, so no download is needed) with a context that runs only the first few steps of every
training loop, timed after a warm-up. Step counts that depend on the data size (SfBC's epochs) use the real row
count when the data is here, else the size of D4RL's file. What is not a training step (evaluations, SfBC's
in-sample planning, data loading) is not in the estimate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from srpo_bench.core.stages import FitContext, M, Stage
from srpo_bench.data.dataset import OfflineDataset
from srpo_bench.progress import Bar, Reporter
from srpo_bench.registry import get_method
from srpo_bench.tasks import Task

#: Rows of D4RL's locomotion files (`qlearning_dataset`, rounded): only for step counts that depend on the data
#: size when the file is not downloaded. An estimate's input, never a result.
D4RL_ROWS = {"medium": 1_000_000, "medium-expert": 2_000_000, "medium-replay": {"halfcheetah": 202_000,
                                                                                 "hopper": 402_000,
                                                                                 "walker2d": 302_000}}
SYNTHETIC_ROWS = 4096


def data_rows(task: Task, dataset: OfflineDataset | None) -> int | None:
    if dataset is not None:
        return len(dataset)
    if task.score_scale == "d4rl":
        env, tier = task.name.split("-", 1)
        rows = D4RL_ROWS.get(tier.removesuffix("-v2"))
        return rows.get(env) if isinstance(rows, dict) else rows
    return None


def synthetic_dataset(task: Task, rows: int = SYNTHETIC_ROWS, seed: int = 0) -> OfflineDataset:
    """Random transitions with the task's observation and action widths (episodes of 100 steps)."""
    widths, _ = task.space_widths()
    obs_dim, act_dim = widths["observations"], widths["actions"]
    rng = np.random.default_rng(seed)
    ends = np.zeros(rows, dtype=bool)
    ends[99::100] = True
    ends[-1] = True
    return OfflineDataset(
        name=f"synthetic-{task.name}", source="synthetic (compute estimate)",
        observations=rng.standard_normal((rows, obs_dim)).astype(np.float32),
        actions=rng.uniform(-0.99, 0.99, (rows, act_dim)).astype(np.float32),
        rewards=rng.standard_normal(rows).astype(np.float32),
        next_observations=rng.standard_normal((rows, obs_dim)).astype(np.float32),
        terminals=np.zeros(rows, dtype=np.float32), episode_ends=ends,
    )


@dataclass
class ProbeContext(FitContext):
    """A FitContext that trains nothing to the end: every `steps` loop runs `warmup + probe` steps, timed.
    Nothing is cached or saved."""

    warmup: int = 1
    probe: int = 4
    timed: dict[str, tuple[float, int]] = field(default_factory=dict)  # stage -> (seconds, steps timed)

    def fit(self, name: str, build: Callable[[], M], train: Callable[[M], None]) -> M:
        torch.manual_seed(self.seed)
        module = build()
        train(module)
        self.stage_log.append({"stage": name})
        return module.eval().requires_grad_(False)

    def steps(self, stage: str, total: int, agent: Any = None) -> Iterator[tuple[int, Bar]]:
        run = min(total, self.warmup + self.probe)
        with self.reporter.track(f"{self.task.name} {stage} (probe)", run) as bar:
            started = 0.0
            for step in range(run):
                if step == self.warmup:
                    started = time.perf_counter()
                self.position = (stage, step)
                yield step, bar
            if run > self.warmup:
                seconds, count = self.timed.get(stage, (0.0, 0))
                self.timed[stage] = (seconds + time.perf_counter() - started, count + run - self.warmup)


@dataclass(frozen=True)
class Estimate:
    steps: dict[str, int]  # stage -> declared training steps
    seconds_per_step: dict[str, float]

    @property
    def seconds(self) -> float:
        return sum(self.steps[stage] * self.seconds_per_step.get(stage, 0.0) for stage in self.steps)


def estimate_run(method: str, config: Any, task: Task, plan: Sequence[Stage], rows: int | None,
                 device: torch.device) -> Estimate:
    """Probe `method`'s fit with `config` (declaring the stages `plan`) on synthetic data of the task's shapes."""
    dataset = synthetic_dataset(task)
    ctx = ProbeContext(task=task, dataset=dataset, seed=0, device=device, stage_dir=Path("/nonexistent"),
                       reporter=Reporter(quiet=True), plan=plan)
    get_method(method)().fit(ctx, config)
    per_step = {stage: seconds / count for stage, (seconds, count) in ctx.timed.items() if count}
    steps = {stage.name: stage.config.training_steps(rows or len(dataset)) for stage in plan}
    return Estimate(steps, per_step)


def describe_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:,.1f} h"
