"""Rich progress bars with steps/s and ETA for every long loop (training stages, evaluation, collection)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class StepsPerSecondColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f} steps/s" if speed else "- steps/s", style="progress.data.speed")


class Reporter:
    """Owns one rich `Progress`; `track` opens a bar for one loop. `quiet=True` draws nothing."""

    def __init__(self, console: Console | None = None, quiet: bool = False) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            StepsPerSecondColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self.console,
            disable=quiet,
            transient=False,
        )
        self._depth = 0

    def __enter__(self) -> Reporter:
        if self._depth == 0:
            self._progress.start()
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._progress.stop()

    @contextmanager
    def track(self, description: str, total: int) -> Iterator[Bar]:
        with self:
            task_id = self._progress.add_task(description, total=total, metrics="")
            bar = Bar(self._progress, task_id)
            start = time.monotonic()
            try:
                yield bar
            finally:
                # A finished loop leaves one summary line, not a bar: a long grid's display stays short.
                self._progress.remove_task(task_id)
                seconds = time.monotonic() - start
                rate = bar.completed / seconds if seconds > 0 else 0.0
                if not self.quiet:
                    self._progress.console.print(
                        f"[dim]{description}: {bar.completed:,}/{total:,} in {seconds:,.1f} s ({rate:,.1f} steps/s)"
                        f"{'  ' + bar.metrics if bar.metrics else ''}[/dim]", highlight=False)

    def print(self, message: str) -> None:
        self.console.print(message)


class Bar:
    """Advance cheaply; redraws are throttled to a few per second so the hot loop pays nothing."""

    def __init__(self, progress: Progress, task_id: int) -> None:
        self._progress = progress
        self._task_id = task_id
        self.completed = 0
        self.metrics = ""
        self._last_draw = 0.0

    def advance(self, steps: int = 1, **metrics: float) -> None:
        self.completed += steps
        now = time.monotonic()
        if metrics or now - self._last_draw > 0.2:
            shown = "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            if metrics:
                self.metrics = shown
                self._progress.update(self._task_id, completed=self.completed, metrics=shown)
            else:
                self._progress.update(self._task_id, completed=self.completed)
            self._last_draw = now
