"""Shared test helpers: fit a method the way the runner does, on data the test made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from srpo_bench.core.agents import Agent
from srpo_bench.core.stages import EvaluationSchedule, FitContext
from srpo_bench.data.dataset import OfflineDataset
from srpo_bench.progress import Reporter
from srpo_bench.registry import get_method
from srpo_bench.runner import fit_context
from srpo_bench.tasks import Task


def context(method: str, task: Task, dataset: OfflineDataset, out: Path, config: Any = None, seed: int = 0,
            profile: str = "smoke", overrides: dict[str, dict[str, str]] | None = None, run_id: str = "run",
            evaluation: EvaluationSchedule | None = None) -> tuple[Any, FitContext]:
    """(config, ctx) for `method` on `dataset`, with stages cached under `out`/stages (as in a results folder)."""
    return fit_context(task, method, dataset, seed, profile, out, torch.device("cpu"), Reporter(quiet=True),
                       overrides, evaluation, run_id, config)


def fit(method: str, task: Task, dataset: OfflineDataset, out: Path, config: Any = None, **kwargs: Any
        ) -> tuple[Agent, FitContext]:
    config, ctx = context(method, task, dataset, out, config, **kwargs)
    return get_method(method)().fit(ctx, config), ctx
