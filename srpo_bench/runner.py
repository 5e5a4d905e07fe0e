"""Run the grid of (task, method, seed): fit, evaluate, time, and write each run into the store.

Each run is resumable: stage checkpoints survive an interruption, a finished run with the same resolved
config is skipped, and nothing is written for a task whose data fails validation.
"""

from __future__ import annotations

import json
import os
import random
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.markup import escape

from srpo_bench import store
from srpo_bench.atomic import WriteError, remove_temporaries
from srpo_bench.config import check_choices, config_dict, plan_stages, resolve_config
from srpo_bench.core.agents import Agent
from srpo_bench.core.stages import Diverged, EvaluationSchedule, FitContext
from srpo_bench.data.dataset import OfflineDataset
from srpo_bench.evaluate import EvalResult, NonFiniteActions, evaluate
from srpo_bench.locks import HOST, Claim, live_holder, read_holder
from srpo_bench.profiles import harness_settings
from srpo_bench.progress import Reporter
from srpo_bench.protocols import compliance
from srpo_bench.registry import get_method
from srpo_bench.runtimes import with_runtime
from srpo_bench.speed import measure_speed
from srpo_bench.tasks import Task, get_task, normalized_score
from srpo_bench.vocabulary import folder_name


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
    protocol: str | None = None  # `run --protocol NAME`: the protocol the run is measured against (else inferred)
    #: the settings of this run's method that its grid sweeps (sweeps.py): such a run has a folder of its own,
    #: named by its overrides, and records the keys so the report can tell a sweep from the paper's setting
    sweep: tuple[str, ...] = ()

    def label(self) -> str:
        return f"{self.task} {self.variant()} seed {self.seed}"

    def variant(self) -> str:
        """The method, or for a sweep run the method with its overrides (`srpo[beta=0.01]`)."""
        return folder_name(self.method, self.overrides.get(self.method, {})) if self.sweep else self.method

    def path(self, out: Path) -> Path:
        """This run's folder in the results folder `out`."""
        return store.run_dir(out, self.profile, self.task, self.variant(), self.seed)


@dataclass
class RunOutcome:
    spec: RunSpec
    path: Path
    #: "finished" | "failed" | "skipped" (finished earlier) | "evaluated" (scored; timed in the grid's timing
    #: phase) | "held" (another runner is training it)
    status: str
    normalized: float | None = None
    reason: str = ""
    #: the run's files, relative to the results folder, for a driver that writes what a worker without the
    #: shared filesystem made (Ray); None when the worker wrote into the results folder itself
    files: dict[str, bytes] | None = None


@dataclass(frozen=True)
class RunOptions:
    """How each run of a grid is executed (picklable: it travels to worker processes and Ray tasks)."""

    out: Path
    device: str = "auto"
    threads: int = 0  # torch CPU threads in this run's process (0: leave as set)
    time_inline: bool = True  # False: leave the timing to the grid's timing phase (runs packed on one device)
    retry_failed: bool = False  # rerun runs recorded as failed with the same settings
    force: bool = False  # replace finished runs whose settings changed
    quiet: bool = False
    #: how the final policy acts in the run's evaluation and timing: eager | compiled | onnx (runtimes.py; the
    #: periodic evaluations during training act eagerly)
    runtime: str = "eager"


def validate_grid(tasks: Sequence[str], methods: Sequence[str], profile: str,
                  overrides: dict[str, dict[str, str]] | None = None) -> None:
    """Resolve every (task, method) config and stage plan up front: a bad --set fails before anything runs."""
    for task_name in tasks:
        task = get_task(task_name)
        for method in methods:
            plan_stages(method, task, profile, overrides)


def plan_grid(tasks: Sequence[str], methods: Sequence[str], seeds: Sequence[int], profile: str,
              overrides: dict[str, dict[str, str]] | None = None, protocol: str | None = None) -> list[RunSpec]:
    validate_grid(tasks, methods, profile, overrides)
    return [RunSpec(task, method, seed, profile, overrides or {}, protocol) for task in tasks for method in methods
            for seed in seeds]


# Loaded datasets of this process, by task: a process loads each task's data once for all its runs.
_DATASETS: dict[str, OfflineDataset] = {}


def load_checked(task_names: Sequence[str]) -> dict[str, OfflineDataset]:
    """Every task's data, validated and checked against its environment, before anything is written."""
    _DATASETS.clear()  # a new grid reads its files afresh
    for name in dict.fromkeys(task_names):
        task = get_task(name)
        dataset = task.load()
        task.check_data(dataset)
        _DATASETS[name] = dataset
    return {name: _DATASETS[name] for name in task_names}


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
                     run_id=run_id, evaluation=evaluation, method=method)
    return config, ctx


def run_context(spec: RunSpec, task: Task, dataset: OfflineDataset, out: Path, device: torch.device,
                reporter: Reporter) -> tuple[Any, FitContext, Path]:
    """A grid run's config, FitContext (with the profile's evaluation schedule) and run folder."""
    path = spec.path(out)
    harness = harness_settings(spec.profile, task.family)
    config, ctx = fit_context(task, spec.method, dataset, spec.seed, spec.profile, out, device, reporter,
                              spec.overrides, EvaluationSchedule(harness.evaluations_during_training,
                                                                 harness.eval_episodes),
                              run_id=str(path.relative_to(out)))
    return config, ctx, path


def survey(specs: Sequence[RunSpec], datasets: dict[str, OfflineDataset], out: Path
           ) -> list[tuple[RunSpec, store.RunState]]:
    """What the results folder holds for each run of the grid (reads only)."""
    quiet = Reporter(quiet=True)
    states = []
    for spec in specs:
        config, ctx, path = run_context(spec, get_task(spec.task), datasets[spec.task], out, torch.device("cpu"),
                                        quiet)
        states.append((spec, store.run_state(path, config_dict(config), dict(ctx.keys))))
    return states


def changed_settings(path: Path, state: store.RunState, more: int = 0) -> store.StoreError:
    """The one-line refusal to replace a finished run silently: the settings that differ, and the way out."""
    others = f" (and {more} more runs)" if more else ""
    return store.StoreError(f"{path}: finished with other settings ({'; '.join(state.changes)}){others}; "
                            "rerun with --force to replace, or give another --out")


def refuse_changed(states: Sequence[tuple[RunSpec, store.RunState]], out: Path) -> None:
    """A finished run is never replaced silently by one with other settings: one line naming them."""
    changed = [(spec, state) for spec, state in states if state.state == "changed"]
    if changed:
        spec, state = changed[0]
        raise changed_settings(spec.path(out), state, more=len(changed) - 1)


def execute(spec: RunSpec, options: RunOptions, reporter: Reporter | None = None) -> RunOutcome:
    """One run, claimed so that no other runner of the results folder trains it at the same time. This is
    what every executor calls (in-process, in a worker process, in a Ray task)."""
    if options.threads > 0:
        torch.set_num_threads(options.threads)
    reporter = reporter or Reporter(quiet=options.quiet)
    task = get_task(spec.task)
    if spec.task not in _DATASETS:
        _DATASETS[spec.task] = task.load()
    path = spec.path(options.out)
    claim = Claim.try_take(store.lock_path(path))
    if claim is None:
        holder = read_holder(store.lock_path(path))
        return RunOutcome(spec, path, "held", reason=f"claimed by {holder}")
    with claim:
        remove_temporaries(path)  # a killed writer's; nobody else can be writing here now
        return run_one(spec, task, _DATASETS[spec.task], options, resolve_device(options.device), reporter)


def run_one(spec: RunSpec, task: Task, dataset: OfflineDataset, options: RunOptions, device: torch.device,
            reporter: Reporter) -> RunOutcome:
    config, ctx, path = run_context(spec, task, dataset, options.out, device, reporter)
    harness = harness_settings(spec.profile, task.family)
    resolved = config_dict(config)
    state = store.run_state(path, resolved, dict(ctx.keys))
    if state.state == "finished":
        reporter.print(f"[dim]skip {escape(spec.label())}: finished ({escape(str(path))})[/dim]")
        return RunOutcome(spec, path, "skipped", store.read_object(path / "eval.json")["mean_normalized"])
    if state.state == "failed" and not options.retry_failed:
        reason = str((state.run or {}).get("failure", {}).get("reason", "no reason recorded"))
        reporter.print(f"[dim]skip {escape(spec.label())}: failed earlier ({escape(reason)}); --retry-failed reruns "
                       "it[/dim]")
        return RunOutcome(spec, path, "failed", reason=f"{reason} (recorded earlier)")
    if state.state == "changed" and not options.force:
        raise changed_settings(path, state)

    # Where the timing below is taken: right after this process trained and scored the run, or later, one run at a
    # time (the packed grid's timing phase, or a resumed run), never described as timed inside training.
    timing_context = "timing-phase" if state.state == "evaluated" else "in-run"
    if state.state == "evaluated":  # trained and scored by an earlier process: only the timing is left
        run = dict(state.run or {})
        agent = get_method(spec.method)().fit(ctx, config)  # every stage is cached: this only loads
        agent.seed(spec.seed)
        acting = with_runtime(agent, options.runtime)
        score = float(store.read_object(path / "eval.json")["mean_normalized"])
    else:
        started = time.perf_counter()
        run = run_record(spec, task, dataset, config, ctx, device, harness)
        run["runtime"] = options.runtime
        for name in ("eval.json", "speed.json", "error.txt"):  # a replaced run's results must not linger
            (path / name).unlink(missing_ok=True)
        store.atomic_write_json(path / "run.json", run)
        try:
            seed_everything(spec.seed)
            agent = get_method(spec.method)().fit(ctx, config)
            store.atomic_write_json(path / "curves.json", ctx.curves)
            fit_seconds = time.perf_counter() - started
            agent.seed(spec.seed)
            ctx.position = ("evaluation", 0)
            acting = with_runtime(agent, options.runtime)  # the replay shares the agent's generator
            try:
                evaluation = evaluate(acting, task, harness.eval_episodes, reporter=reporter, dataset=dataset)
            except NonFiniteActions as error:
                raise Diverged("evaluation", 0, "non-finite actions in the final evaluation") from error
        except (KeyboardInterrupt, WriteError):
            raise  # an interruption resumes; a full disk stops the grid (every later run would fail the same way)
        except Exception as error:  # noqa: BLE001 - a run's failure is a result; the grid goes on
            return record_failure(spec, path, run, ctx, error, reporter)
        store.atomic_write_json(path / "eval.json", evaluation_record(evaluation, ctx))
        score = evaluation.mean_normalized
        run.update(status="evaluated", stages=ctx.stage_log,
                   seconds={"fit": fit_seconds, "eval": evaluation.seconds, "total": time.perf_counter() - started})
        store.atomic_write_json(path / "run.json", run)

    if not options.time_inline:
        return RunOutcome(spec, path, "evaluated", score)
    store.atomic_write_json(path / "speed.json", timed_speed(spec, acting, dataset, resolved, device, harness,
                                                            options.out, options.runtime, timing_context))
    run.update(status="finished", finished=store.now())
    store.atomic_write_json(path / "run.json", run)
    reporter.print(f"[green]done[/green] {escape(spec.label())}: normalized {score:.1f} -> {escape(str(path))}")
    return RunOutcome(spec, path, "finished", score)


def run_record(spec: RunSpec, task: Task, dataset: OfflineDataset, config: Any, ctx: FitContext,
               device: torch.device, harness: Any) -> dict[str, Any]:
    """run.json as written when a run starts, with the protocol it is measured against and whether it complies
    (protocols/: recomputed by whoever reads the record, so a record never vouches for itself)."""
    record = {
        "schema_version": store.SCHEMA_VERSION,
        "status": "running",
        "task": spec.task, "suite": task.suite, "family": task.family, "score_scale": task.score_scale,
        "method": spec.method, "seed": spec.seed, "profile": spec.profile,
        "config": config_dict(config), "overrides": spec.overrides.get(spec.method, {}),
        **({"sweep": list(spec.sweep)} if spec.sweep else {}),
        "stage_keys": dict(ctx.keys),
        # TF32 / bf16 autocast the stages trained under (core/stages.py `Precision`; in the stage keys when on)
        "precision": ctx.precision.as_dict(),
        "selection": getattr(config, "selection", "final"),
        "harness": {"eval_episodes": harness.eval_episodes, "eval_seeds": "1001..",
                    "evaluations_during_training": harness.evaluations_during_training},
        "dataset": {"name": dataset.name, "source": dataset.source, "transitions": len(dataset),
                    "fingerprint": dataset.fingerprint(),
                    "average_episode_return": float(dataset.episode_returns().mean()),
                    "average_normalized": dataset_score(task, dataset)},
        "device": device_description(device), "versions": store.library_versions(), "git_commit": store.git_commit(),
        "host": HOST, "started": store.now(), "task_note": task.note,
    }
    record["protocol"] = compliance({**record, "protocol": {"name": spec.protocol}})
    return record


def record_failure(spec: RunSpec, path: Path, run: dict[str, Any], ctx: FitContext, error: Exception,
                   reporter: Reporter) -> RunOutcome:
    """run.json says `failed`, with the stage, step, reason and the last finite metrics; an error that is not a
    divergence keeps its traceback in error.txt. Stages finished before the failure stay cached."""
    if isinstance(error, Diverged):
        failure = {"kind": "diverged", "stage": error.stage, "step": error.step, "reason": error.reason,
                   "last_metrics": error.last_metrics}
    else:
        stage, step = ctx.position
        message = (str(error).strip().splitlines() or [""])[0][:300]
        failure = {"kind": "error", "stage": stage, "step": step, "reason": f"{type(error).__name__}: {message}",
                   "last_metrics": ctx.last_finite(stage), "error_file": "error.txt"}
        store.atomic_write_text(path / "error.txt", "".join(traceback.format_exception(error)))
    run.update(status="failed", failure=failure, finished=store.now(), stages=ctx.stage_log)
    store.atomic_write_json(path / "run.json", run)
    where = f"{failure['stage']} step {failure['step']}" if failure["stage"] else "before training"
    reporter.print(f"[red]failed[/red] {escape(spec.label())}: {escape(failure['reason'])} ({where}) -> "
                   f"{escape(str(path))}")
    return RunOutcome(spec, path, "failed", reason=f"{failure['reason']} ({where})")


def evaluation_record(final: EvalResult, ctx: FitContext) -> dict[str, Any]:
    """eval.json: the final policy's episodes (the reported score), the periodic evaluations made while the last
    stage trained, and the summaries a report may show: `final` (= the score), `mean_last3` over the curve's last
    three points (the final evaluation included), and `best_optimistic`, the maximum picked after the fact: an
    optimistic estimate (Diffusion-QL's README reports online best-of)."""
    last_stage = ctx.plan[-1].name
    logged = ctx.curves.get(last_stage) or [{"step": -1}]
    final_step = int(logged[-1]["step"]) + 1  # the last logged step is the stage's last
    curve = [point for point in ctx.evaluations if point["stage"] == last_stage]
    clock = ctx.training_clock()  # every stage fitted: the whole fit's training seconds
    curve.append({"stage": last_stage, "step": final_step, "mean_normalized": final.mean_normalized,
                  "normalized": [float(x) for x in final.normalized], "final": True,
                  **({"train_seconds": clock.as_dict()} if clock is not None else {})})
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
                device: torch.device, harness: Any, out: Path, runtime: str = "eager", context: str = "in-run"
                ) -> dict[str, Any]:
    """Timing is taken only while this process runs nothing else (packed runs are timed in the grid's timing
    phase, `context` "timing-phase"); `exclusive` also says whether another runner of the results folder was
    training on this host while it was taken (their claims are checked before and after)."""
    key = json.dumps([spec.task, spec.method, str(device), resolved, runtime], sort_keys=True, default=str)
    if key not in _SPEED_CACHE:
        before = concurrent_runs(out)
        speed = measure_speed(agent, dataset.obs_dim, repeats=harness.speed_repeats,
                              max_seconds=harness.speed_max_seconds, observations=dataset.observations,
                              context=context)
        others = max(before, concurrent_runs(out))
        _SPEED_CACHE[key] = {**speed.to_dict(), "timed_seed": spec.seed, "runtime": runtime, "exclusive": others == 0,
                             "concurrent_runs": others}
    return _SPEED_CACHE[key]


def concurrent_runs(out: Path) -> int:
    """Runs of the results folder being trained on this host by other processes right now."""
    count = 0
    for lock in out.glob("runs/*/*/*/seed*/.lock"):
        holder = live_holder(lock)
        count += holder is not None and holder.host == HOST and holder.pid != os.getpid()
    return count


def dataset_score(task: Task, dataset: OfflineDataset) -> float | None:
    """The behavior data's own normalized score (mean episode return; mean reward on the one-step toys). None for
    success-rate tasks (OGBench): its play data are 1,001-step plays, not attempts at the task, so no success
    rate of the data compares with a policy's."""
    if task.score_scale == "ogbench":
        return None
    return float(normalized_score(dataset.episode_returns().mean(), *task.reference_scores(dataset)))


def device_description(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_name(device), "torch": torch.__version__}
    return {"type": device.type, "threads": torch.get_num_threads(), "torch": torch.__version__}
