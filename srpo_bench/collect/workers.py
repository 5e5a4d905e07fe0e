"""Collection jobs in worker processes, and their progress bars in the parent.

Each job (one env of the lite suite) runs in its own spawned process with one torch thread (see
`one_torch_thread` for why). A job reports progress as events through a queue; the parent turns them into
`Reporter` bars. This module knows nothing of what a job does: the job function is passed in, so the
collection plan can import it without an import cycle.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

from srpo_bench.progress import Reporter

Event = tuple  # progress events sent from a collection job to the bars in the parent
Job = TypeVar("Job")
Result = TypeVar("Result")


class CollectionError(RuntimeError):
    """A collection job failed. `str()` is one line (the job and the error); the worker's traceback, when there is
    one, is kept in `details` for whoever wants it (`srpo-bench collect` writes it to a file and names it)."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(" ".join(message.split()))
        self.details = details


# --- progress across processes ----------------------------------------------------------------------
class StageProgress:
    """One env's progress, stage by stage, as events for the parent's bars (throttled: a queue is cheap,
    but not free at thousands of steps per second)."""

    def __init__(self, env: str, send: Callable[[Event], None], interval_s: float = 0.25) -> None:
        self.env = env
        self.send = send
        self.interval_s = interval_s

    @contextmanager
    def stage(self, name: str, total: int) -> Iterator[Callable[..., None]]:
        self.send(("start", self.env, name, total))
        pending = {"steps": 0, "time": time.monotonic(), "metrics": {}}

        def flush() -> None:
            if pending["steps"] or pending["metrics"]:
                self.send(("advance", self.env, name, pending["steps"], pending["metrics"]))
            pending.update(steps=0, time=time.monotonic(), metrics={})

        def advance(steps: int = 1, **metrics: float) -> None:
            pending["steps"] += steps
            pending["metrics"].update(metrics)
            if time.monotonic() - pending["time"] >= self.interval_s:
                flush()

        try:
            yield advance
        finally:
            flush()
            self.send(("end", self.env, name))


class BarBoard:
    """The parent's side: one `Reporter` bar per (env, stage) while that stage runs."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.open: dict[tuple[str, str], tuple[Any, Any]] = {}

    def handle(self, event: Event) -> None:
        kind = event[0]
        if kind == "start":
            _, env, stage, total = event
            context = self.reporter.track(f"{env} {stage}", total)
            self.open[(env, stage)] = (context, context.__enter__())
        elif kind == "advance":
            _, env, stage, steps, metrics = event
            self.open[(env, stage)][1].advance(steps, **metrics)
        elif kind == "end":
            context, _ = self.open.pop((event[1], event[2]))
            context.__exit__(None, None, None)

    def close(self) -> None:
        for context, _ in self.open.values():
            context.__exit__(None, None, None)
        self.open.clear()


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Collection always runs on one thread: parallelism comes from processes (1.4x on 2 cores, measured 2026-11-24),
    and the same thread count in and out of workers keeps the floating point, hence the files, identical."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# --- worker processes ---------------------------------------------------------------------------------
def _worker_main(target: Callable[[Any, StageProgress], Any], name: str, job: Any, events: Any) -> None:
    """One job in a spawned process; everything, the result included, goes back through `events`."""
    torch.set_num_threads(1)
    try:
        result = target(job, StageProgress(name, events.put))
        events.put(("result", name, result))
    except BaseException as error:  # the parent re-raises it; a worker must not die silently
        events.put(("error", name, f"{type(error).__name__}: {error}", traceback.format_exc()))


def run_in_workers(
    target: Callable[[Job, StageProgress], Result],
    jobs: dict[str, Job],
    workers: int,
    board: BarBoard,
    on_result: Callable[[Result], None],
) -> dict[str, Result]:
    """`target(job, progress)` for every named job, at most `workers` spawned processes at a time (fork after
    torch has started threads can deadlock). `target` must be a module-level function (spawn pickles it by
    name). `on_result` sees each result as it arrives; results come back in the order of `jobs`."""
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    waiting = list(jobs)
    running: dict[str, Any] = {}
    results: dict[str, Result] = {}
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                name = waiting.pop(0)
                process = context.Process(target=_worker_main, args=(target, name, jobs[name], events), daemon=True)
                process.start()
                running[name] = process
            try:
                event = events.get(timeout=0.2)
            except queue.Empty:
                for name, process in running.items():
                    if process.exitcode is not None:  # died without a word: killed (memory?) or crashed
                        raise CollectionError(
                            f"collecting {name} failed: its worker exited with code {process.exitcode}"
                        ) from None
                continue
            if event[0] == "result":
                results[event[1]] = event[2]
                running.pop(event[1]).join()
                on_result(event[2])
            elif event[0] == "error":
                raise CollectionError(f"collecting {event[1]} failed: {event[2]}", event[3])
            else:
                board.handle(event)
    finally:
        for process in running.values():
            process.terminate()
            process.join()
    return {name: results[name] for name in jobs}
