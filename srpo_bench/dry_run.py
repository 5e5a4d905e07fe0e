"""`run --dry-run`: the grid, what the results folder already holds of it, and what the rest will cost.

Reads only: no results folder, marker or stage is written. Data that is not here (a D4RL file not downloaded)
is said, and the estimate still works from the task's environment (see `estimate.py`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from rich.console import Console
from tabulate import tabulate

from srpo_bench import store
from srpo_bench.config import config_dict
from srpo_bench.data.dataset import DatasetError, OfflineDataset, local_files_only
from srpo_bench.estimate import Estimate, data_rows, describe_seconds, estimate_run, synthetic_dataset
from srpo_bench.executors import threads_per_job
from srpo_bench.progress import Reporter
from srpo_bench.runner import RunSpec, fit_context, run_context
from srpo_bench.tasks import Task, get_task
from srpo_bench.vocabulary import plural


def run_states(specs: Sequence[RunSpec], datasets: dict[str, OfflineDataset | None], out: Path) -> list[str]:
    """Each run's state in words: finished, failed, changed, evaluated (timing left), resumable (k/n stages
    cached), to run; runs of a task whose data is missing are 'to run'."""
    words = []
    quiet = Reporter(quiet=True)
    for spec in specs:
        dataset = datasets[spec.task]
        if dataset is None or not (out / store.MARKER).exists():
            words.append("to run")
            continue
        config, ctx, path = run_context(spec, get_task(spec.task), dataset, out, torch.device("cpu"), quiet)
        state = store.run_state(path, config_dict(config), dict(ctx.keys))
        cached = sum((store.stage_dir(out) / f"{stage.definition}-{ctx.keys[stage.name]}.pt").exists()
                     for stage in ctx.plan)
        if state.state == "new":
            words.append(f"to run ({cached}/{plural(len(ctx.plan), 'stage')} cached)" if cached else "to run")
        elif state.state == "resumable":
            words.append(f"resumable ({cached}/{plural(len(ctx.plan), 'stage')} cached)")
        elif state.state == "changed":
            words.append("finished with other settings (--force replaces): " + "; ".join(state.changes))
        elif state.state == "evaluated":
            words.append("timing left")
        else:
            words.append(state.state)
    return words


def print_plan(specs: Sequence[RunSpec], out: Path, device: torch.device, console: Console,
               err_console: Console, notes: Sequence[str] = (), jobs: int = 1) -> None:
    """The grid's table, one row per (task, method or sweep configuration), and the compute left. `notes`: lines
    printed first (a sweep's expansion). `jobs` local workers share the threads as the grid will (executors.py
    `threads_per_job`), so each step is timed at one worker's threads: a 2-job grid on 2 cores is timed at one
    thread per run, not two."""
    threads = torch.get_num_threads()
    per_run = threads_per_job(jobs, threads) if jobs > 1 else threads
    torch.set_num_threads(per_run)
    try:
        _print_plan(specs, out, device, console, err_console, notes, jobs, per_run)
    finally:
        torch.set_num_threads(threads)


def _print_plan(specs: Sequence[RunSpec], out: Path, device: torch.device, console: Console, err_console: Console,
                notes: Sequence[str], jobs: int, per_run: int) -> None:
    datasets: dict[str, OfflineDataset | None] = {}
    for name in dict.fromkeys(spec.task for spec in specs):
        task = get_task(name)
        try:
            with local_files_only():
                datasets[name] = task.load()
            task.check_data(datasets[name])  # type: ignore[arg-type]
        except DatasetError as error:
            datasets[name] = None
            err_console.print(f"[yellow]data:[/yellow] {error} (estimates use the environment's shapes)",
                              highlight=False)
    for note in notes:
        console.print(note, highlight=False, soft_wrap=True, markup=False)
    states = run_states(specs, datasets, out)
    estimates: dict[tuple[str, str], Estimate] = {}
    pairs = list(dict.fromkeys((spec.task, spec.variant()) for spec in specs))  # a sweep: one per configuration
    with Reporter(console=err_console).track("measuring seconds per training step", len(pairs)) as bar:
        for task_name, variant in pairs:
            spec = next(s for s in specs if (s.task, s.variant()) == (task_name, variant))
            task = get_task(task_name)
            config, ctx = fit_context(task, spec.method, _shape_only(datasets[task_name], task), 0, spec.profile,
                                      Path("/nonexistent"), device, Reporter(quiet=True), spec.overrides)
            estimates[(task_name, variant)] = estimate_run(spec.method, config, task, ctx.plan,
                                                           data_rows(task, datasets[task_name]), device)
            bar.advance()
    left = stage_seconds_left(specs, states, estimates, datasets, out, device)
    rows, per_state = [], Counter()
    for (task_name, variant), estimate in estimates.items():
        mine = [index for index, spec in enumerate(specs) if (spec.task, spec.variant()) == (task_name, variant)]
        words = [states[index] for index in mine]
        per_state.update(state.split(" (")[0] for state in words)
        rows.append({
            "task": task_name, "method": variant, "seeds": _seeds([specs[index].seed for index in mine]),
            "state": "; ".join(f"{count} {state}" for state, count in Counter(words).items()),
            "stages (steps x time/step)": "  ".join(
                f"{stage} {steps:,} x {_ms(estimate.seconds_per_step.get(stage))}"
                for stage, steps in estimate.steps.items()),
            "per run": describe_seconds(estimate.seconds), "left": describe_seconds(sum(left[i] for i in mine)),
        })
    remaining = sum(left)
    side_by_side = (f"; {plural(jobs, 'job')} side by side: at least {describe_seconds(remaining / jobs)} of wall time"
                    if jobs > 1 else ", one run at a time")
    # markup off: a sweep's labels (`srpo[beta=0.1]`) are text, not rich tags
    console.print(tabulate(rows, headers="keys", disable_numparse=True), highlight=False, soft_wrap=True,
                  markup=False)
    if any(spec.sweep for spec in specs):
        console.print("'left' counts a stage shared by several runs once (the same stage key: a sweep of a "
                      "policy setting trains the behavior model and critic once per task and seed), in the first "
                      "run that needs it; 'per run' is one run alone.", highlight=False, soft_wrap=True)
    console.print(
        f"{plural(len(specs), 'run')}: " + ", ".join(f"{count} {state}" for state, count in per_state.items())
        + f". Estimated training compute left: {describe_seconds(remaining)} on {device} with "
        f"{plural(per_run, 'thread')} per run{side_by_side} (time per step measured now on synthetic "
        "data of each task's shapes; evaluations, SfBC's planning and data loading not included). Nothing was written.",
        highlight=False, soft_wrap=True)


def stage_seconds_left(specs: Sequence[RunSpec], states: Sequence[str], estimates: dict[tuple[str, str], Estimate],
                       datasets: dict[str, OfflineDataset | None], out: Path, device: torch.device) -> list[float]:
    """Per run, the training seconds it will spend: each stage it declares that is neither cached in `out` nor
    trained by an earlier run of the grid (stages are shared by their keys), at its estimated steps x time/step.
    Finished and failed runs spend nothing."""
    shapes = {name: _shape_only(dataset, get_task(name)) for name, dataset in datasets.items()}
    seen: set[str] = set()
    seconds = []
    for spec, state in zip(specs, states, strict=True):
        if state.startswith(("finished", "failed")):
            seconds.append(0.0)
            continue
        estimate = estimates[(spec.task, spec.variant())]
        _, ctx = fit_context(get_task(spec.task), spec.method, shapes[spec.task], spec.seed, spec.profile,
                             Path("/nonexistent"), device, Reporter(quiet=True), spec.overrides)
        total = 0.0
        for stage in ctx.plan:
            artifact = f"{stage.definition}-{ctx.keys[stage.name]}"
            if artifact in seen or (store.stage_dir(out) / f"{artifact}.pt").exists():
                continue
            seen.add(artifact)
            total += estimate.steps.get(stage.name, 0) * estimate.seconds_per_step.get(stage.name, 0.0)
        seconds.append(total)
    return seconds


def _shape_only(dataset: OfflineDataset | None, task: Task) -> OfflineDataset:
    """A stage plan needs a dataset fingerprint; without the data, synthetic data of the same shapes stands in."""
    return dataset if dataset is not None else synthetic_dataset(task, rows=256)


def _seeds(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return json.dumps(seeds)[1:-1].replace(" ", "")


def _ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds * 1e3:,.1f} ms"
