"""Progress people can read: a bar per long loop (training stage, evaluation, collection) and one for the grid.

A loop's bar counts its unit ("1,200/5,000 steps") with the rate and rich's ETA. The grid's bar counts runs
("12/54 runs") and estimates what is left from runs that finished: each pending run is expected to take the mean
duration of the finished runs of its method (or, before any of its method finished, of all finished runs),
divided over the runs going at once. That estimate changes only when a run finishes and counts down in between,
so it does not swing with the step rate of whichever stage happens to be running (SfBC's planning and BC's policy
steps differ a hundredfold).

Losses are written at a fixed width (the line does not jitter as they change) and every column wraps rather than
cutting its text with "...": a narrow terminal still shows every digit.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Column
from rich.text import Text

from srpo_bench.vocabulary import plural

METRIC_WIDTH = 10  # characters of a value: '%.4g' is at most 10 ('-1.235e+05'), so values never shift or get cut


def format_metrics(metrics: Mapping[str, float]) -> str:
    """'loss=0.1234     q=12.5      ': every value padded to METRIC_WIDTH, so the line keeps its layout."""
    return "  ".join(f"{key}={value:<{METRIC_WIDTH}.4g}" for key, value in metrics.items())


def clock(seconds: float | None) -> str:
    """'0:05:12'; '-:--:--' when unknown."""
    if seconds is None:
        return "-:--:--"
    whole = max(0, int(round(seconds)))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def runs_eta(pending: Iterable[str], durations: Mapping[str, Sequence[float]], parallel: int = 1) -> float | None:
    """Seconds left for the `pending` runs (one method name per run): each takes the mean duration of the
    finished runs of its method in `durations`, or the mean of all finished runs when its method has none yet;
    None before any run finished. Divided by `parallel`, the runs going at once."""
    every = [seconds for finished in durations.values() for seconds in finished]
    if not every:
        return None
    overall = sum(every) / len(every)
    total = sum(sum(durations[m]) / len(durations[m]) if durations.get(m) else overall for m in pending)
    return total / max(1, parallel)


def _folding() -> Column:
    """A progress column that wraps its text (long words folded) instead of cutting it with an ellipsis."""
    return Column(no_wrap=False, overflow="fold")


class CountColumn(ProgressColumn):
    """'12/54 runs', '1,200/5,000 steps'."""

    def render(self, task: Task) -> Text:
        total = int(task.total or 0)
        return Text(f"{int(task.completed):,}/{plural(total, task.fields.get('unit', 'step'))}",
                    style="progress.download")


class RateColumn(ProgressColumn):
    """'81.3 steps/s' for step loops; nothing for the grid (a rate of runs per second means little)."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("show_rate", True):
            return Text("")
        unit = task.fields.get("unit", "step")
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f} {unit}s/s" if speed else f"- {unit}s/s", style="progress.data.speed")


class EtaColumn(ProgressColumn):
    """'ETA 0:05:12': the grid's estimate from finished runs (counting down since it was made), else rich's."""

    def render(self, task: Task) -> Text:
        if "eta" in task.fields:
            estimate, made = task.fields["eta"], task.fields.get("eta_made", time.monotonic())
            left = None if estimate is None else max(0.0, estimate - (time.monotonic() - made))
        else:
            left = task.time_remaining
        return Text(f"ETA {clock(left)}", style="progress.remaining")


class MetricsColumn(ProgressColumn):
    """The latest logged losses, folded onto another line when the terminal is narrow, never cut."""

    def __init__(self) -> None:
        super().__init__(table_column=_folding())

    def render(self, task: Task) -> Text:
        return Text(task.fields.get("metrics", ""), overflow="fold")


class Reporter:
    """Owns one rich `Progress`; `track` opens a bar for one loop, `track_runs` the grid's. `quiet=True` draws
    nothing."""

    def __init__(self, console: Console | None = None, quiet: bool = False) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self._progress = Progress(  # every column folds: a narrow terminal wraps a bar's line, never cuts it
            TextColumn("{task.description}", markup=False, table_column=_folding()),  # names as they are
            BarColumn(bar_width=20, table_column=_folding()),
            CountColumn(table_column=_folding()),
            RateColumn(table_column=_folding()),
            TimeElapsedColumn(table_column=_folding()),
            EtaColumn(table_column=_folding()),
            MetricsColumn(),
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
    def track(self, description: str, total: int, unit: str = "step") -> Iterator[Bar]:
        with self._bar(description, total, unit=unit, show_rate=True) as bar:
            yield bar

    @contextmanager
    def track_runs(self, description: str, methods: Sequence[str], parallel: int = 1) -> Iterator[GridBar]:
        """The grid's bar: one run per entry of `methods` (its method's name), counted as they end."""
        with self._bar(description, len(methods), unit="run", show_rate=False, eta=None,
                       eta_made=time.monotonic()) as bar:
            yield GridBar(bar, methods, parallel)

    @contextmanager
    def _bar(self, description: str, total: int, unit: str, **fields: object) -> Iterator[Bar]:
        with self:
            task_id = self._progress.add_task(description, total=total, metrics="", unit=unit, **fields)
            bar = Bar(self._progress, task_id)
            start = time.monotonic()
            try:
                yield bar
            finally:
                # A finished loop leaves one summary line, not a bar: a long grid's display stays short.
                self._progress.remove_task(task_id)
                seconds = time.monotonic() - start
                if not self.quiet:
                    rate = (f" ({bar.completed / seconds:,.1f} {unit}s/s)" if fields.get("show_rate") and seconds > 0
                            else "")
                    self._progress.console.print(
                        f"[dim]{escape(description)}: {bar.completed:,}/{plural(total, unit)} in {seconds:,.1f} s"
                        f"{rate}{'  ' + bar.metrics if bar.metrics else ''}[/dim]", highlight=False)

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
            if metrics:
                self.metrics = format_metrics(metrics)
                self._progress.update(self._task_id, completed=self.completed, metrics=self.metrics)
            else:
                self._progress.update(self._task_id, completed=self.completed)
            self._last_draw = now

    def set_fields(self, **fields: object) -> None:
        self._progress.update(self._task_id, **fields)


class GridBar:
    """The grid's bar: `done(method, seconds)` as each run ends; the ETA follows `runs_eta`."""

    def __init__(self, bar: Bar, methods: Sequence[str], parallel: int = 1) -> None:
        self._bar = bar
        self.pending = Counter(methods)
        self.durations: dict[str, list[float]] = defaultdict(list)
        self.parallel = parallel

    @property
    def completed(self) -> int:
        return self._bar.completed

    def eta(self) -> float | None:
        return runs_eta(self.pending.elements(), self.durations, self.parallel)

    def done(self, method: str, seconds: float | None = None) -> None:
        """One run of `method` ended; `seconds`: how long it trained (None for runs that did not train here:
        finished earlier, failed, or trained by another runner), kept out of the estimate."""
        if self.pending[method] > 0:
            self.pending[method] -= 1
        if seconds is not None:
            self.durations[method].append(seconds)
        self._bar.completed += 1  # every run's end is drawn (Bar.advance throttles redraws for step loops)
        self._bar.set_fields(completed=self._bar.completed, eta=self.eta(), eta_made=time.monotonic())
