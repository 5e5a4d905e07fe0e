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
from srpo_bench.progress import Reporter
from srpo_bench.runner import RunSpec, fit_context, run_context
from srpo_bench.tasks import Task, get_task


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
            words.append(f"to run ({cached}/{len(ctx.plan)} stages cached)" if cached else "to run")
        elif state.state == "resumable":
            words.append(f"resumable ({cached}/{len(ctx.plan)} stages cached)")
        elif state.state == "changed":
            words.append("finished with other settings (--force replaces): " + "; ".join(state.changes))
        elif state.state == "evaluated":
            words.append("timing left")
        else:
            words.append(state.state)
    return words


def print_plan(specs: Sequence[RunSpec], out: Path, device: torch.device, console: Console,
               err_console: Console) -> None:
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
    states = run_states(specs, datasets, out)
    estimates: dict[tuple[str, str], Estimate] = {}
    pairs = list(dict.fromkeys((spec.task, spec.method) for spec in specs))
    with Reporter(console=err_console).track("measuring seconds per training step", len(pairs)) as bar:
        for task_name, method in pairs:
            spec = next(s for s in specs if (s.task, s.method) == (task_name, method))
            task = get_task(task_name)
            config, ctx = fit_context(task, method, _shape_only(datasets[task_name], task), 0, spec.profile,
                                      Path("/nonexistent"), device, Reporter(quiet=True), spec.overrides)
            estimates[(task_name, method)] = estimate_run(method, config, task, ctx.plan,
                                                          data_rows(task, datasets[task_name]), device)
            bar.advance()
    rows, remaining, per_state = [], 0.0, Counter()
    for (task_name, method), estimate in estimates.items():
        words = [state for spec, state in zip(specs, states, strict=True)
                 if (spec.task, spec.method) == (task_name, method)]
        seeds = [spec.seed for spec in specs if (spec.task, spec.method) == (task_name, method)]
        to_do = sum(not state.startswith(("finished", "failed")) for state in words)
        per_state.update(state.split(" (")[0] for state in words)
        remaining += to_do * estimate.seconds
        rows.append({
            "task": task_name, "method": method, "seeds": _seeds(seeds),
            "state": "; ".join(f"{count} {state}" for state, count in Counter(words).items()),
            "stages (steps x time/step)": "  ".join(
                f"{stage} {steps:,} x {_ms(estimate.seconds_per_step.get(stage))}"
                for stage, steps in estimate.steps.items()),
            "per run": describe_seconds(estimate.seconds), "left": describe_seconds(to_do * estimate.seconds),
        })
    console.print(tabulate(rows, headers="keys", disable_numparse=True), highlight=False, soft_wrap=True)
    console.print(
        f"{len(specs)} runs: " + ", ".join(f"{count} {state}" for state, count in per_state.items())
        + f". Estimated training compute left: {describe_seconds(remaining)} on {device} with "
        f"{torch.get_num_threads()} threads, one run at a time (time per step measured now on synthetic data of "
        "each task's shapes; evaluations, SfBC's planning and data loading not included). Nothing was written.",
        highlight=False, soft_wrap=True)


def _shape_only(dataset: OfflineDataset | None, task: Task) -> OfflineDataset:
    """A stage plan needs a dataset fingerprint; without the data, synthetic data of the same shapes stands in."""
    return dataset if dataset is not None else synthetic_dataset(task, rows=256)


def _seeds(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return json.dumps(seeds)[1:-1].replace(" ", "")


def _ms(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds * 1e3:,.1f} ms"
