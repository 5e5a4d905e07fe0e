"""Run the grid of (task, method, seed): fit, evaluate, time, and write each run into the store.

Each run is resumable: stage checkpoints survive an interruption, a finished run with the same resolved
config is skipped, and nothing is written for a task whose data fails validation.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from srpo_bench import store
from srpo_bench.config import check_choices, config_dict, plan_stages, resolve_config
from srpo_bench.core.agents import Agent
from srpo_bench.core.stages import EvaluationSchedule, FitContext
from srpo_bench.data.dataset import OfflineDataset
from srpo_bench.evaluate import EvalResult, evaluate
from srpo_bench.profiles import harness_settings
from srpo_bench.progress import Reporter
from srpo_bench.registry import get_method
from srpo_bench.speed import measure_speed
from srpo_bench.tasks import Task, get_task, normalized_score


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class RunSpec:
    task: str
    method: str
    seed: int
    profile: str
    overrides: dict[str, dict[str, str]]  # the grid's overrides, by method (shared stages read others')


@dataclass
class RunOutcome:
    spec: RunSpec
    path: Path
    status: str  # "finished" | "skipped"
    normalized: float | None = None


def validate_grid(tasks: Sequence[str], methods: Sequence[str], profile: str,
                  overrides: dict[str, dict[str, str]] | None = None) -> None:
    """Resolve every (task, method) config and stage plan up front: a bad --set fails before anything runs."""
    for task_name in tasks:
        task = get_task(task_name)
        for method in methods:
            plan_stages(method, task, profile, overrides)


def fit_context(task: Task, method: str, dataset: OfflineDataset, seed: int, profile: str, out: Path,
                device: torch.device, reporter: Reporter, overrides: dict[str, dict[str, str]] | None = None,
                evaluation: EvaluationSchedule | None = None, run_id: str = "", config: Any = None
                ) -> tuple[Any, FitContext]:
    """The resolved config of `method` (or `config` as given) and the FitContext its `fit` runs in: the stage
    plan declared from that config, and the results folder's shared stage cache."""
    method_cls = get_method(method)
    if config is None:
        config = resolve_config(method_cls, task, profile, (overrides or {}).get(method, {}))
    check_choices(method, config)  # a config built in code gets the same Literal checks as a resolved one
    ctx = FitContext(task=task, dataset=dataset, seed=seed, device=device, stage_dir=store.stage_dir(out),
                     reporter=reporter, plan=plan_stages(method, task, profile, overrides, config),
                     run_id=run_id, evaluation=evaluation)
    return config, ctx


def run_grid(
    tasks: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
    profile: str,
    out: Path,
    device: torch.device,
    reporter: Reporter,
    overrides: dict[str, dict[str, str]] | None = None,
) -> list[RunOutcome]:
    """Run every (task, method, seed). Data is loaded and validated once per task, before anything is written."""
    store.open_store(out)
    outcomes: list[RunOutcome] = []
    for task_name in tasks:
        task = get_task(task_name)
        dataset = task.load()  # DatasetError here: nothing written for this task
        for method in methods:
            for seed in seeds:
                spec = RunSpec(task_name, method, seed, profile, overrides or {})
                outcomes.append(run_one(spec, task, dataset, out, device, reporter))
    return outcomes


def run_one(
    spec: RunSpec,
    task: Task,
    dataset: OfflineDataset,
    out: Path,
    device: torch.device,
    reporter: Reporter,
) -> RunOutcome:
    path = store.run_dir(out, spec.profile, spec.task, spec.method, spec.seed)
    harness = harness_settings(spec.profile, task.family)
    config, ctx = fit_context(task, spec.method, dataset, spec.seed, spec.profile, out, device, reporter,
                              spec.overrides, EvaluationSchedule(harness.evaluations_during_training,
                                                                 harness.eval_episodes),
                              run_id=str(path.relative_to(out)))
    resolved = config_dict(config)
    if store.is_finished(path, resolved, dict(ctx.keys)):
        reporter.print(f"[dim]skip {spec.task} {spec.method} seed {spec.seed}: finished ({path})[/dim]")
        return RunOutcome(spec, path, "skipped", store.read_json(path / "eval.json")["mean_normalized"])

    started = time.perf_counter()
    run: dict[str, Any] = {
        "schema_version": store.SCHEMA_VERSION,
        "status": "running",
        "task": spec.task, "suite": task.suite, "family": task.family, "score_scale": task.score_scale,
        "method": spec.method, "seed": spec.seed, "profile": spec.profile,
        "config": resolved, "overrides": spec.overrides.get(spec.method, {}), "stage_keys": dict(ctx.keys),
        "selection": getattr(config, "selection", "final"),
        "harness": {"eval_episodes": harness.eval_episodes, "eval_seeds": "1001..",
                    "evaluations_during_training": harness.evaluations_during_training},
        "dataset": {"name": dataset.name, "source": dataset.source, "transitions": len(dataset),
                    "fingerprint": dataset.fingerprint(),
                    "average_episode_return": float(dataset.episode_returns().mean()),
                    "average_normalized": dataset_score(task, dataset)},
        "device": device_description(device), "versions": store.library_versions(), "git_commit": store.git_commit(),
        "started": store.now(), "task_note": task.note,
    }
    store.atomic_write_json(path / "run.json", run)

    seed_everything(spec.seed)
    agent = get_method(spec.method)().fit(ctx, config)
    store.atomic_write_json(path / "curves.json", ctx.curves)
    fit_seconds = time.perf_counter() - started

    agent.seed(spec.seed)
    evaluation = evaluate(agent, task, harness.eval_episodes, reporter=reporter, dataset=dataset)
    store.atomic_write_json(path / "eval.json", evaluation_record(evaluation, ctx))

    store.atomic_write_json(path / "speed.json", timed_speed(spec, agent, dataset, resolved, device, harness))

    run.update(status="finished", finished=store.now(), stages=ctx.stage_log,
               seconds={"fit": fit_seconds, "eval": evaluation.seconds,
                        "total": time.perf_counter() - started})
    store.atomic_write_json(path / "run.json", run)
    reporter.print(
        f"[green]done[/green] {spec.task} {spec.method} seed {spec.seed}: "
        f"normalized {evaluation.mean_normalized:.1f}, fit {fit_seconds:.0f}s -> {path}"
    )
    return RunOutcome(spec, path, "finished", evaluation.mean_normalized)


def evaluation_record(final: EvalResult, ctx: FitContext) -> dict[str, Any]:
    """eval.json: the final policy's episodes (the reported score), the periodic evaluations made while the last
    stage trained, and the summaries a report may show: `final` (= the score), `mean_last3` over the curve's last
    three points (the final evaluation included), and `best_optimistic`, the maximum picked after the fact: an
    optimistic estimate (Diffusion-QL's README reports online best-of)."""
    last_stage = ctx.plan[-1].name
    logged = ctx.curves.get(last_stage) or [{"step": -1}]
    final_step = int(logged[-1]["step"]) + 1  # the last logged step is the stage's last
    curve = [point for point in ctx.evaluations if point["stage"] == last_stage]
    curve.append({"stage": last_stage, "step": final_step, "mean_normalized": final.mean_normalized,
                  "normalized": [float(x) for x in final.normalized], "final": True})
    scores = [point["mean_normalized"] for point in curve]
    record = final.to_dict()
    record["during_training"] = curve
    record["summaries"] = {"final": final.mean_normalized, "mean_last3": float(np.mean(scores[-3:])),
                           "best_optimistic": float(np.max(scores)), "points": len(scores)}
    return record


# Inference cost depends on the network shapes and the sampler, not on the training seed or weights: within one
# process the grid times each (task, method, config, device) once and every seed's speed.json records it, with
# the seed whose agent was timed. This keeps a 3-seed toy grid of the samplers (seconds per batch-256 call on a
# CPU) from spending most of its time in the timer.
_SPEED_CACHE: dict[str, dict[str, Any]] = {}


def timed_speed(spec: RunSpec, agent: Agent, dataset: OfflineDataset, resolved: dict[str, Any],
                device: torch.device, harness: Any) -> dict[str, Any]:
    key = json.dumps([spec.task, spec.method, str(device), resolved], sort_keys=True, default=str)
    if key not in _SPEED_CACHE:
        speed = measure_speed(agent, dataset.obs_dim, repeats=harness.speed_repeats,
                              max_seconds=harness.speed_max_seconds, observations=dataset.observations)
        _SPEED_CACHE[key] = {**speed.to_dict(), "timed_seed": spec.seed}
    return _SPEED_CACHE[key]


def dataset_score(task: Task, dataset: OfflineDataset) -> float:
    """The behavior data's own normalized score (mean episode return; mean reward on the one-step toys)."""
    return float(normalized_score(dataset.episode_returns().mean(), *task.reference_scores(dataset)))


def device_description(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_name(device), "torch": torch.__version__}
    return {"type": device.type, "threads": torch.get_num_threads(), "torch": torch.__version__}
