"""Executors: how the runs of a grid are spread over processes, and what happens to each run's result.

All three call `runner.execute` per run, so the claims, resume, failure records and files are the same:

* `serial`: one run after another in this process (the default; `--jobs 1`).
* `local`: `--jobs N` worker processes, each with `threads // N` torch threads so the cores are not
  oversubscribed; a worker that dies (OOM killer, SIGKILL) is replaced and its run retried.
* `ray`: one Ray task per (task, method, seed) with `--cpus-per-run` / `--gpus-per-run` (fractional GPUs pack
  several runs onto one GPU), Ray's own retry of a task whose worker died (`--max-retries`). Workers that see
  the results folder write into it; workers that do not (no shared filesystem) run into a scratch folder and
  return their files, which this driver writes.

When runs share a device (`--jobs` > 1, Ray), no run times itself: after the last training run the driver times
each run alone, one after another, in its own process (the timing phase), and records `exclusive`. Runs held by
another runner of the same results folder are waited for, and taken over if that runner dies.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

from rich.markup import escape  # a sweep run's label (`srpo[beta=0.1]`) is text, not a rich tag

from srpo_bench import store, vocabulary
from srpo_bench.atomic import atomic_write
from srpo_bench.locks import live_holder
from srpo_bench.progress import GridBar, Reporter
from srpo_bench.runner import RunOptions, RunOutcome, RunSpec, execute, load_checked, plan_grid
from srpo_bench.vocabulary import plural

EXECUTORS = tuple(vocabulary.EXECUTORS)  # local, ray
HELD_POLL_SECONDS = 2.0
TRAINED = ("finished", "evaluated")  # outcomes of a run trained (and scored) by this grid


def timed_execute(spec: RunSpec, options: RunOptions, reporter: Reporter | None = None
                  ) -> tuple[RunOutcome, float]:
    """`execute`, and the seconds it took (in the process that ran it: a pool's queueing is not counted)."""
    started = time.monotonic()
    outcome = execute(spec, options, reporter)
    return outcome, time.monotonic() - started


@dataclass(frozen=True)
class ExecutorSettings:
    kind: str = "local"  # "local" (serial when jobs == 1) | "ray"
    jobs: int = 1
    ray_address: str | None = None  # None: start a local Ray; "auto" or HOST:PORT: join a cluster
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    max_retries: int = 1

    @property
    def packed(self) -> bool:
        """Several runs at once on one machine: timing moves to the timing phase."""
        return self.kind == "ray" or self.jobs > 1


def run_specs(specs: Sequence[RunSpec], options: RunOptions, settings: ExecutorSettings,
              reporter: Reporter) -> list[RunOutcome]:
    """Every run of the grid, in grid order, each run once across all runners of the results folder."""
    options = replace(options, time_inline=not settings.packed)
    parallel = settings.jobs if settings.kind == "local" else 1  # Ray: set once the cluster is known
    with reporter.track_runs("grid", [spec.method for spec in specs], parallel=parallel) as bar:
        def done(outcome: RunOutcome, seconds: float | None = None) -> None:
            if outcome.status != "held":
                # only runs trained here tell how long a run of their method takes
                bar.done(outcome.spec.method, seconds if outcome.status in TRAINED else None)

        if settings.kind == "ray":
            outcomes = _ray(specs, options, settings, reporter, done, bar)
        elif settings.jobs > 1:
            outcomes = _local_pool(specs, options, settings, reporter, done)
        else:
            outcomes = []
            for spec in specs:
                outcome, seconds = timed_execute(spec, options, reporter)
                outcomes.append(outcome)
                done(outcome, seconds)
        outcomes = _wait_for_held(outcomes, options, reporter, done)
    if settings.packed:
        outcomes = timing_phase(outcomes, options, reporter)
    return outcomes


def run_grid(tasks: Sequence[str], methods: Sequence[str], seeds: Sequence[int], profile: str, out: Path,
             device: str, reporter: Reporter, overrides: dict[str, dict[str, str]] | None = None,
             settings: ExecutorSettings | None = None) -> list[RunOutcome]:
    """The `run` command from Python: validate the grid and its data, open the store, run every run."""
    specs = plan_grid(tasks, methods, seeds, profile, overrides)
    load_checked(tasks)
    store.open_store(out)
    return run_specs(specs, RunOptions(out=out, device=device), settings or ExecutorSettings(), reporter)


def _wait_for_held(outcomes: list[RunOutcome], options: RunOptions, reporter: Reporter,
                   done: Callable[[RunOutcome, float | None], None]) -> list[RunOutcome]:
    """Runs another runner was training: wait until it finishes them (their result is read, not redone), or
    take them over if it died. Runs in this process, one at a time."""
    held = [o for o in outcomes if o.status == "held"]
    if held:
        reporter.print(f"[dim]{plural(len(held), 'run')} {'is' if len(held) == 1 else 'are'} being trained by "
                       "other runners; waiting for them[/dim]")
    while held:
        waiting = []
        for outcome in held:
            result, seconds = outcome, None
            if live_holder(store.lock_path(outcome.path)) is None:
                # finished there: skipped here; died: resumed
                result, seconds = timed_execute(outcome.spec, options, reporter)
            if result.status == "held":
                waiting.append(outcome)
                continue
            outcomes[outcomes.index(outcome)] = result
            done(result, seconds)
        held = waiting
        if held:
            time.sleep(HELD_POLL_SECONDS)
    return outcomes


def timing_phase(outcomes: list[RunOutcome], options: RunOptions, reporter: Reporter) -> list[RunOutcome]:
    """Time every run trained by packed workers, alone, in this process, on this process's device."""
    pending = [o for o in outcomes if o.status == "evaluated"]
    if not pending:
        return outcomes
    reporter.print(f"timing {plural(len(pending), 'run')}, one at a time (nothing else of this grid runs "
                   "meanwhile)")
    timed = replace(options, time_inline=True)
    by_path = {o.path: execute(o.spec, timed, reporter) for o in pending}
    return [by_path.get(o.path, o) for o in outcomes]


# --- local worker processes ----------------------------------------------------------------------------
def threads_per_job(jobs: int, threads: int = 0) -> int:
    """Split the machine's cores (or `threads`) over the jobs: never fewer than one thread each."""
    return max(1, (threads or os.cpu_count() or 1) // jobs)


def _local_pool(specs: Sequence[RunSpec], options: RunOptions, settings: ExecutorSettings, reporter: Reporter,
                done: Callable[[RunOutcome, float | None], None]) -> list[RunOutcome]:
    options = replace(options, threads=threads_per_job(settings.jobs, options.threads), quiet=True)
    results: dict[int, RunOutcome] = {}
    attempts = dict.fromkeys(range(len(specs)), 0)
    pending = list(range(len(specs)))
    while pending:
        # spawn, not fork: torch's thread pools and locks do not survive a fork
        with ProcessPoolExecutor(max_workers=settings.jobs, mp_context=get_context("spawn")) as pool:
            futures: dict[Future[tuple[RunOutcome, float]], int] = {
                pool.submit(timed_execute, specs[i], options): i for i in pending}
            pending = []
            try:
                for future in as_completed(futures):
                    index = futures[future]
                    seconds: float | None = None
                    try:
                        outcome, seconds = future.result()
                    except BrokenProcessPool:  # a worker died: every run it may have had is retried
                        attempts[index] += 1
                        if attempts[index] <= settings.max_retries:
                            pending.append(index)
                            continue
                        path = specs[index].path(options.out)
                        outcome = RunOutcome(specs[index], path, "failed",
                                             reason=f"its worker process died {attempts[index]} times")
                    _report(outcome, reporter)
                    results[index] = outcome
                    done(outcome, seconds)
            except BaseException:
                _stop_now(pool)
                raise
    return [results[i] for i in range(len(specs))]


def _stop_now(pool: ProcessPoolExecutor) -> None:
    """An interrupt (or error) in the driver stops the grid now: queued runs are dropped and running ones ended.
    Leaving the pool's `with` block would otherwise wait for every queued run to finish: a SIGINT that reaches the
    driver alone (`kill -INT`, a batch scheduler) kept a 300-run grid going. A run ended mid-way resumes from its
    last finished stage (every write is atomic)."""
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in multiprocessing.active_children():  # the pool's workers: this driver starts no other processes
        worker.terminate()


def _report(outcome: RunOutcome, reporter: Reporter) -> None:
    if outcome.status == "failed":
        reporter.print(f"[red]failed[/red] {escape(outcome.spec.label())}: {escape(outcome.reason)}")
    elif outcome.status == "evaluated":
        reporter.print(f"[green]trained[/green] {escape(outcome.spec.label())}: normalized {outcome.normalized:.1f} "
                       "(timed after training)")


class ClusterError(RuntimeError):
    """Ray could not be started or joined: one line (the grid has not started)."""


# --- Ray --------------------------------------------------------------------------------------------------
def _ray(specs: Sequence[RunSpec], options: RunOptions, settings: ExecutorSettings, reporter: Reporter,
         done: Callable[[RunOutcome, float | None], None], bar: GridBar) -> list[RunOutcome]:
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=settings.ray_address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {key: value for key, value in os.environ.items()
                                               if key.startswith(("SRPO_BENCH_", "D4RL_", "MINARI_", "OGBENCH_"))}})
        except Exception as error:  # no cluster there, a version mismatch, ...: Ray's own message, in one line
            where = settings.ray_address or "a local Ray"
            reason = " ".join(str(error).split()) or type(error).__name__
            raise ClusterError(f"cannot start or join {where}: {reason}") from None
    probe = options.out / f".probe-{uuid.uuid4().hex}"
    probe.write_text("")
    try:
        remote = ray.remote(_ray_run).options(num_cpus=settings.cpus_per_run, num_gpus=settings.gpus_per_run,
                                              max_retries=settings.max_retries)
        threads = max(1, int(settings.cpus_per_run))
        bar.parallel = ray_slots(ray.cluster_resources(), settings)
        run_options = replace(options, threads=threads, quiet=True)
        refs = {remote.remote(spec, run_options, str(probe)): i for i, spec in enumerate(specs)}
        results: dict[int, RunOutcome] = {}
        remaining = list(refs)
        while remaining:
            ready, remaining = ray.wait(remaining, num_returns=1)
            index = refs[ready[0]]
            seconds: float | None = None
            try:
                outcome, seconds = ray.get(ready[0])
            except ray.exceptions.RayError as error:  # retries spent (worker died each time) or Ray failed
                spec = specs[index]
                path = spec.path(options.out)
                reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
                outcome = RunOutcome(spec, path, "failed", reason=f"Ray task failed: {reason}")
            if outcome.files is not None:
                write_returned(options.out, outcome.files)
                outcome = replace(outcome, files=None, path=outcome.spec.path(options.out))
            _report(outcome, reporter)
            results[index] = outcome
            done(outcome, seconds)
    finally:
        probe.unlink(missing_ok=True)
        if started_here:
            ray.shutdown()
    return [results[i] for i in range(len(specs))]


def import_ray():  # noqa: ANN201 - the ray module
    try:
        import ray
    except ImportError:
        raise store.StoreError("--executor ray needs Ray: pip install 'srpo-bench[ray]'") from None
    return ray


def ray_slots(resources: dict[str, float], settings: ExecutorSettings) -> int:
    """How many runs a Ray cluster with `resources` holds at once (for the grid's ETA)."""
    slots = resources.get("CPU", 1.0) / settings.cpus_per_run
    if settings.gpus_per_run > 0:
        slots = min(slots, resources.get("GPU", 0.0) / settings.gpus_per_run)
    return max(1, int(slots))


def _ray_run(spec: RunSpec, options: RunOptions, probe: str) -> tuple[RunOutcome, float]:
    """A Ray task: the run writes into the results folder if this worker sees it (shared filesystem), else into a
    scratch folder whose files go back to the driver. Returns the outcome and the seconds the run took."""
    if Path(probe).exists():
        return timed_execute(spec, options)
    with tempfile.TemporaryDirectory(prefix="srpo-bench-") as scratch:
        outcome, seconds = timed_execute(spec, replace(options, out=Path(scratch)))
        files = {str(path.relative_to(scratch)): path.read_bytes()
                 for path in Path(scratch).rglob("*") if path.is_file() and not path.name.startswith(".")}
    return replace(outcome, files=files), seconds


def write_returned(out: Path, files: dict[str, bytes]) -> None:
    """Write a worker's returned files into the results folder (stage artifacts only if not already there)."""
    for relative, content in sorted(files.items()):
        target = out / relative
        if relative.startswith("stages/") and target.exists():
            continue
        if relative == store.MARKER:
            continue
        atomic_write(target, lambda temporary, content=content: Path(temporary).write_bytes(content))


def summary(outcomes: Iterable[RunOutcome]) -> tuple[str, bool]:
    """The grid's one-line summary and whether every run ended well."""
    outcomes = list(outcomes)
    trained = sum(o.status == "finished" for o in outcomes)
    skipped = sum(o.status == "skipped" for o in outcomes)
    failed = [o for o in outcomes if o.status == "failed"]
    line = f"{trained} finished, {len(failed)} failed, {skipped} already finished"
    if failed:
        shown = "; ".join(f"{o.spec.label()} ({o.reason})" for o in failed[:5])
        line += f": {shown}" + (f"; and {len(failed) - 5} more" if len(failed) > 5 else "")
    return line, not failed
