"""The `srpo-bench` command line: thin wrappers that parse options and call the library.

User mistakes (unknown task or method, bad data, a newer results folder) end in one line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

INTERRUPTED = "interrupted: finished stages are saved; rerun the same command to resume"


def _interrupted_while_starting(signum: int, frame: Any) -> None:
    """Ctrl-C while this module's own imports run (typer, rich): nothing has been written yet, so leave at once
    with the one line every interrupt prints, instead of an import traceback."""
    sys.stderr.write(INTERRUPTED + "\n")
    os._exit(130)


_previous_handler = signal.signal(signal.SIGINT, _interrupted_while_starting)

import typer  # noqa: E402  (after the handler: an interrupt during these imports is one line)
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from tabulate import tabulate  # noqa: E402

from srpo_bench import __version__  # noqa: E402
from srpo_bench.profiles import PROFILE_NAMES  # noqa: E402  (help texts: names from the registries)
from srpo_bench.protocols import protocol_names  # noqa: E402
from srpo_bench.registry import available_methods  # noqa: E402
from srpo_bench.vocabulary import (  # noqa: E402
    COLLECTABLE_SUITES,
    EXECUTORS,
    EXPORT_FORMATS,
    LEADERBOARD_FORMATS,
    NFE_COLUMN,
    PROFILE_PURPOSES,
    RUNTIMES,
    SUITES,
    did_you_mean,
    display_name,
    listing,
    plural,
)

signal.signal(signal.SIGINT, _previous_handler)

if TYPE_CHECKING:
    import torch


def _described(names: dict[str, str], sep: str = " | ") -> str:
    """'eager: PyTorch | compiled: torch.compile | ...' for a help text."""
    return sep.join(f"{name}: {what}" for name, what in names.items())


_METHODS = available_methods()  # every registered method, as the entry points list them
_PROFILES = {name: PROFILE_PURPOSES.get(name, "") for name in PROFILE_NAMES}

class OneLineErrors(typer.core.TyperGroup):
    """Option values click itself refuses (`--threads x`: not an integer) are one line and exit 2, like every
    value our own code refuses, instead of click's usage box; help, `--help` and no arguments stay as they are."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        # typer ships its own copy of click: its exceptions, wherever typer keeps them
        click = sys.modules[typer.BadParameter.__module__.rsplit(".", 1)[0]]

        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as error:
            error.show()
            sys.exit(error.exit_code)
        except click.exceptions.UsageError as error:
            err_console.print(f"[red]error:[/red] {escape(' '.join(error.format_message().split()))}",
                              highlight=False, soft_wrap=True)
            sys.exit(error.exit_code)
        except click.exceptions.Exit as done:  # an interrupt inside click's own parsing arrives as Exit(130)
            sys.exit(done.exit_code)
        except click.exceptions.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except click.exceptions.Abort:
            err_console.print("Aborted!")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)  # an Exit raised inside a command returns its code here


app = typer.Typer(
    cls=OneLineErrors,
    help=f"Benchmark SRPO against offline RL baselines: normalized returns and actions per second, measured by one "
    f"harness. Methods: {listing(_METHODS)}. Suites: {listing(SUITES)}.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # an error stays one line, whatever the width

F = TypeVar("F", bound=Callable[..., Any])
EXIT_USAGE = 2


class UsageError(ValueError):
    """A bad option value: one line, exit 2."""


def friendly_errors(command: F) -> F:
    """Turn expected failures into one line and an exit code; keep tracebacks for real bugs."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:  # also while the command still imports torch: one line there too, never silence
            say_interrupted()
            raise typer.Exit(130) from None
        except Exception as error:
            if _sigint_seen:  # an interrupt inside a C extension's import (mujoco) surfaces as its ImportError
                say_interrupted()
                raise typer.Exit(130) from None
            if not isinstance(error, expected_errors()):
                raise
            err_console.print(f"[red]error:[/red] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from None

    return wrapper  # type: ignore[return-value]


_interrupt_said: list[bool] = []  # whether the one line was printed (typer turns an interrupt it sees into exit 130)
_sigint_seen: list[bool] = []  # Ctrl-C arrived (the console script's handler): whatever error follows is its echo


def _on_sigint(signum: int, frame: Any) -> None:
    _sigint_seen.append(True)
    raise KeyboardInterrupt


def say_interrupted() -> None:
    if not _interrupt_said:
        err_console.print(INTERRUPTED)
        _interrupt_said.append(True)


def expected_errors() -> tuple[type[Exception], ...]:
    """The failures a user can cause (bad input, data, results folders): one line each. Imported only when an
    error is raised, so an interrupt during a command's own imports still reaches the handler above."""
    from srpo_bench.atomic import WriteError
    from srpo_bench.config import ConfigError
    from srpo_bench.data.dataset import DatasetError
    from srpo_bench.executors import ClusterError
    from srpo_bench.protocols import ProtocolError
    from srpo_bench.registry import UnknownMethodError
    from srpo_bench.store import StoreError
    from srpo_bench.tasks import UnknownTaskError

    return (DatasetError, UnknownTaskError, UnknownMethodError, ConfigError, StoreError, UsageError, WriteError,
            ProtocolError, ClusterError)


MAX_SEED = 2**31 - 1


def check_ray_address(address: str | None) -> None:
    """`--ray-address`: None (start a local Ray), `auto`, or [ray://]HOST:PORT, checked before Ray is imported
    (Ray's own ValueError comes only after the results folder is opened, with a traceback)."""
    if address is None or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and not any(c.isspace() for c in host) and port.isdigit() and 0 < int(port) < 65536:
        return
    raise UsageError(f"--ray-address expects auto or HOST:PORT (e.g. 10.0.0.5:6379; ray://HOST:10001 for Ray "
                     f"Client), got '{address}'")


#: seeds one grid may name: far above any protocol's (10), low enough that a typo such as '0-2147483647' is an
#: error line, not a grid of two billion runs
MAX_SEEDS = 10_000


def parse_seeds(spec: str) -> list[int]:
    """'0,1,2' or '0-4' (inclusive): distinct integers in [0, 2^31 - 1], in the order given."""
    usage = f"--seeds expects '0,1,2' or '0-4' (integers 0 to {MAX_SEED:,}), got '{spec}'"
    try:
        parts = [part.strip() for part in spec.split(",")]
        if len(parts) == 1 and "-" in parts[0].lstrip("-"):
            low, high = (int(x) for x in parts[0].split("-", 1))
            if high < low:
                raise UsageError(f"--seeds range '{spec}' is empty ({high} < {low})")
            for end in (low, high):  # checked before the range is listed: '0-2147483647' must not fill memory
                if not 0 <= end <= MAX_SEED:
                    raise UsageError(f"--seeds: {end} is out of range (0 to {MAX_SEED:,})")
            if high - low + 1 > MAX_SEEDS:
                raise UsageError(f"--seeds range '{spec}' names {plural(high - low + 1, 'seed')}; at most "
                                 f"{MAX_SEEDS:,} in one grid")
            seeds = list(range(low, high + 1))
        else:
            seeds = [int(part) for part in parts if part]
    except ValueError as error:
        raise (error if isinstance(error, UsageError) else UsageError(usage)) from None
    if not seeds:
        raise UsageError(usage)
    bad = [seed for seed in seeds if not 0 <= seed <= MAX_SEED]
    if bad:
        raise UsageError(f"--seeds: {bad[0]} is out of range (0 to {MAX_SEED:,})")
    return list(dict.fromkeys(seeds))


def parse_batch_sizes(spec: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in spec.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--batch-sizes expects positive integers like '1,256', got '{spec}'") from None
    if not sizes or min(sizes) < 1:
        raise UsageError(f"--batch-sizes expects positive integers like '1,256', got '{spec}'")
    return sizes


def at_least(name: str, value: float, low: float) -> None:
    if not value >= low:  # also refuses NaN
        raise UsageError(f"{name} must be at least {low:g}, got {value:g}")


def parse_device(name: str) -> torch.device:
    """--device: 'auto', 'cpu', 'cuda', 'cuda:1' ...; a bad name or a missing CUDA device is a usage error."""
    from srpo_bench.runner import resolve_device

    try:
        return resolve_device(name)
    except (RuntimeError, ValueError) as error:
        raise UsageError(str(error)) from None


def check_profile(profile: str) -> None:
    if profile not in PROFILE_NAMES:
        raise UsageError(f"unknown profile '{profile}'{did_you_mean(profile, PROFILE_NAMES)} (choose "
                         f"{', '.join(PROFILE_NAMES)})")


def check_choice(option: str, value: str, choices: Sequence[str]) -> None:
    """An option with a fixed set of values: one line naming them, and the closest one."""
    if value not in choices:
        raise UsageError(f"unknown {option} '{value}'{did_you_mean(value, choices)} (choose {', '.join(choices)})")


GRID_DEFAULTS = {"envs": "toy", "methods": "srpo", "seeds": "0,1,2", "profile": "quick"}


def grid_options(protocol: str | None, envs: str | None, methods: str | None, seeds: str | None,
                 profile: str | None) -> tuple[str, str, str, str]:
    """`run`'s grid: the options given, the rest from `--protocol` (or the plain defaults). Every option that
    refines a protocol is said in one line, with what the protocol would have run, so nobody mistakes a refined
    grid for the protocol's."""
    given = {"envs": envs, "methods": methods, "seeds": seeds, "profile": profile}
    if protocol is None:
        return tuple(given[key] or GRID_DEFAULTS[key] for key in GRID_DEFAULTS)  # type: ignore[return-value]
    from srpo_bench.protocols import ProtocolError, load_protocol

    try:
        chosen = load_protocol(protocol)
    except ProtocolError as error:
        raise UsageError(str(error)) from None
    own = {"envs": ",".join(chosen.tasks), "methods": ",".join(chosen.methods), "seeds": f"0-{chosen.seeds - 1}",
           "profile": chosen.profile}
    refined = [f"--{key} {value} (protocol: {own[key] if key != 'envs' else plural(len(chosen.tasks), 'task')})"
               for key, value in given.items() if value is not None and value != own[key]]
    if refined:
        err_console.print(f"protocol {chosen.name} refined by {'; '.join(refined)}: runs outside the protocol's "
                          "grid or schedule are reported as exploratory", highlight=False)
    return tuple(value if value is not None else own[key] for key, value in given.items())  # type: ignore


Device = Annotated[str, typer.Option(help="auto (CUDA when available), cpu, cuda, cuda:1 ...")]
Out = Annotated[Path, typer.Option(help="results folder (one sub-folder per run; reruns resume); the "
                                   "repository's published results/ is a records folder, written only by "
                                   "`srpo-bench results add`")]


@app.command()
@friendly_errors
def run(
    envs: Annotated[str | None, typer.Option(help=f"suites ({listing(SUITES)}) and/or task names (`srpo-bench "
                                             "list`), comma separated \\[default: toy, or the protocol's]")] = None,
    methods: Annotated[str | None, typer.Option(help=f"comma separated methods ({listing(_METHODS)}), or 'all' "
                                                "\\[default: srpo, or the protocol's]")] = None,
    seeds: Annotated[str | None, typer.Option(help="training seeds: '0,1,2' or '0-4' \\[default: 0,1,2, or the "
                                              "protocol's 0..n-1]")] = None,
    profile: Annotated[str | None, typer.Option(help=f"{_described(_PROFILES)} \\[default: quick, or the "
                                                "protocol's]")] = None,
    protocol: Annotated[str | None, typer.Option(help=f"run a protocol's grid ({listing(protocol_names())}; "
                                                 "`srpo-bench list` describes them); --envs/--methods/--seeds/"
                                                 "--profile refine it, visibly")] = None,
    device: Device = "auto",
    out: Out = Path("runs"),
    set_: Annotated[list[str], typer.Option("--set", help="override a setting: KEY=VALUE or METHOD.KEY=VALUE "
                                            "(e.g. srpo.weighting=constant); a comma list sweeps it "
                                            "(srpo.beta=0.01,0.05,0.2)")] = [],  # noqa: B006
    sweep: Annotated[Path | None, typer.Option(help="sweep settings from a TOML file: one table per method, each "
                                               "key a list of values (\\[srpo] beta = \\[0.01, 0.05])")] = None,
    threads: Annotated[int, typer.Option(help="torch CPU threads (0: torch's default; split over --jobs)")] = 0,
    jobs: Annotated[int, typer.Option(help="runs at once on this machine (local worker processes)")] = 1,
    executor: Annotated[str, typer.Option(help=escape(_described(EXECUTORS)))] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster: auto or HOST:PORT (default: start a local "
                                                    "Ray)")] = None,
    cpus_per_run: Annotated[float, typer.Option(help="Ray: CPUs reserved per run")] = 1.0,
    gpus_per_run: Annotated[float, typer.Option(help="Ray: GPUs per run; 0.25 packs four runs on one GPU")] = 0.0,
    max_retries: Annotated[int, typer.Option(help="retries of a run whose worker process died")] = 1,
    dry_run: Annotated[bool, typer.Option(help="print the grid, what is finished, resumable or to run, and each "
                                          "run's estimated compute; train nothing, write nothing")] = False,
    force: Annotated[bool, typer.Option(help="replace finished runs whose settings changed")] = False,
    retry_failed: Annotated[bool, typer.Option(help="rerun runs recorded as failed")] = False,
    runtime: Annotated[str, typer.Option(help="how the final policy acts in the evaluation and timing: "
                                         f"{_described(RUNTIMES)}")] = "eager",
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Train, evaluate and time every (task, method, seed); write each run into the results folder.

    A run that diverges or fails is recorded as failed and the grid goes on; the command then exits with 1."""
    import torch

    from srpo_bench.executors import ExecutorSettings, import_ray, run_specs, summary, threads_per_job
    from srpo_bench.progress import Reporter
    from srpo_bench.registry import expand_methods
    from srpo_bench.runner import RunOptions, load_checked, refuse_changed, survey
    from srpo_bench.store import MARKER, check_destination, open_store
    from srpo_bench.tasks import expand_tasks

    envs, methods, seeds, profile = grid_options(protocol, envs, methods, seeds, profile)
    check_profile(profile)
    at_least("--threads", threads, 0)
    at_least("--jobs", jobs, 1)
    at_least("--max-retries", max_retries, 0)
    at_least("--cpus-per-run", cpus_per_run, 0.01)
    at_least("--gpus-per-run", gpus_per_run, 0)
    check_choice("--executor", executor, list(EXECUTORS))
    check_choice("--runtime", runtime, list(RUNTIMES))
    check_ray_address(ray_address)
    if executor == "ray" and not dry_run:
        import_ray()  # the one-line install hint, before anything else
    if threads > 0:
        torch.set_num_threads(threads)
    task_names = expand_tasks(envs)
    method_names = expand_methods(methods)
    seed_list = parse_seeds(seeds)
    torch_device = parse_device(device)
    if not dry_run:  # a dry run only reads: a read-only results folder is fine
        check_destination(out)
    from srpo_bench.sweeps import describe, parse_grid, plan_sweep

    grid = parse_grid(set_, method_names, sweep)  # comma lists and --sweep: every value checked for every task
    specs = plan_sweep(task_names, method_names, seed_list, profile, grid, protocol)
    if dry_run:
        from srpo_bench.dry_run import print_plan

        print_plan(specs, out, torch_device, console=console, err_console=err_console,
                   notes=describe(grid, method_names), jobs=jobs if executor == "local" else 1)
        return
    datasets = load_checked(task_names)  # every task's data checked before anything is written
    if (out / MARKER).exists():
        states = survey(specs, datasets, out)
        if not force:
            refuse_changed(states, out)
    settings = ExecutorSettings(executor, jobs, ray_address, cpus_per_run, gpus_per_run, max_retries)
    reporter = Reporter(console=err_console, quiet=quiet)
    err_console.print(
        f"srpo-bench {__version__}: {plural(len(task_names), 'task')} x {plural(len(method_names), 'method')} x "
        f"{plural(len(seed_list), 'seed')}, profile {profile}, device {torch_device}"
        + (f", {plural(jobs, 'job')} x {plural(threads_per_job(jobs, threads), 'thread')}"
           if jobs > 1 and executor == "local" else "")
        + (f", Ray ({ray_address or 'local'})" if executor == "ray" else "")
    )
    open_store(out)
    options = RunOptions(out=out, device=device, threads=threads, retry_failed=retry_failed, force=force,
                         quiet=quiet, runtime=runtime)
    outcomes = run_specs(specs, options, settings, reporter)
    # imported here: the report layer pulls in rliable/scipy (~1.5 s), which validating a grid does not need
    from srpo_bench.report.tables import for_display, runs_frame, task_summary

    frame = runs_frame(out)
    if not frame.empty:
        frame = frame[frame["task"].isin(task_names) & frame["base_method"].isin(method_names)
                      & (frame["profile"] == profile)]
        typer.echo(tabulate(for_display(task_summary(frame).drop(columns=["profile"])), headers="keys",
                            showindex=False, disable_numparse=True))
    line, all_well = summary(outcomes)
    (console if all_well else err_console).print(escape(f"{line}; results in {out}"), highlight=False)
    if not all_well:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def collect(
    suite: Annotated[str, typer.Option(help=_described(COLLECTABLE_SUITES))] = "locomotion-lite",
    envs: Annotated[str | None, typer.Option(help="locomotion-lite: subset of hopper,halfcheetah,walker2d; "
                                             "ogbench: subset of cube-single,cube-double,scene,puzzle-3x3 "
                                             "(default: all of the suite)")] = None,
    size: Annotated[str, typer.Option(help="full (lite <= 60 min on 2 cores; ogbench cube-single 36-40 min of one "
                                      "free core, 1.1M steps) or small (tests, < 1 min)")] = "full",
    # seed and workers are parsed here, not by click: a click type error is a multi-line usage box
    seed: Annotated[str, typer.Option(help="integer from 0 to 2^31 - 1")] = "0",
    workers: Annotated[str, typer.Option(help="parallel processes, one env each (locomotion-lite)")] = "2",
    force: Annotated[bool, typer.Option(help="recollect even if cached files match (ogbench: also replaces files "
                                        "not made here)")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="the data folder: locomotion-lite writes DIR/lite, ogbench "
                                                  "writes DIR \\[default: $SRPO_BENCH_DATA_DIR or ~/.srpo-bench; "
                                                  "$OGBENCH_DATA_DIR or ~/.ogbench/data]; `run` reads the same "
                                                  "variables")] = None,
) -> None:
    """Make datasets offline: locomotion-lite (D4RL-format hdf5 from behavior policies trained here) or ogbench
    (OGBench's own .npz files from its plan oracles, in $OGBENCH_DATA_DIR or ~/.ogbench/data).

    Every option is checked before anything is made; a bad one, an unwritable data folder or a failed job is one
    line (a worker's traceback goes to a file named in that line)."""
    from srpo_bench.collect.workers import CollectionError

    if suite not in COLLECTABLE_SUITES:
        raise UsageError(f"cannot collect suite '{suite}'{did_you_mean(suite, COLLECTABLE_SUITES)}: only "
                         f"{' and '.join(map(repr, COLLECTABLE_SUITES))} are made locally (the other suites are "
                         "downloaded)")
    if size not in ("full", "small"):
        raise UsageError(f"--size must be full or small, got '{size}'")
    seed_value = parse_int("--seed", seed, 0, MAX_SEED)
    workers_value = parse_int("--workers", workers, 1, 1024)
    if data_dir is not None and data_dir.exists() and not data_dir.is_dir():
        raise UsageError(f"--data-dir {data_dir}: not a folder")
    variable = "OGBENCH_DATA_DIR" if suite == "ogbench" else "SRPO_BENCH_DATA_DIR"
    try:
        with environment(variable, None if data_dir is None else str(data_dir.expanduser().absolute())):
            _collect(suite, envs, size, seed_value, workers_value, force)
    except CollectionError as error:  # a job failed in a worker: one line, its traceback kept in a file
        note = ""
        if error.details:
            import tempfile

            with tempfile.NamedTemporaryFile("w", prefix="srpo-bench-collect-", suffix=".txt", delete=False) as log:
                log.write(error.details)
            note = f" (worker traceback in {log.name})"
        err_console.print(f"[red]error:[/red] {escape(str(error))}{escape(note)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as error:  # the data folder cannot be made or written (permissions, disk full)
        where = f"{error.filename}: " if error.filename else ""
        raise UsageError(f"{where}cannot write the dataset ({error.strerror or error})") from None


def _collect(suite: str, envs: str | None, size: str, seed: int, workers: int, force: bool) -> None:
    """`collect` once its options are checked and its data folder set."""
    from srpo_bench.progress import Reporter

    if suite == "ogbench":
        from srpo_bench.collect.ogbench import check_envs
        from srpo_bench.collect.ogbench import collect_suite as collect_ogbench
        from srpo_bench.data.ogbench import OGBENCH_ENVS, ogbench_dir

        env_list = check_envs([e.strip() for e in (envs or ",".join(OGBENCH_ENVS)).split(",") if e.strip()])
        outcomes = collect_ogbench(env_list, size=size, seed=seed, reporter=Reporter(console=err_console),
                                   force=force)
        console.print(f"{plural(len(outcomes), 'OGBench dataset')} in {ogbench_dir()}", highlight=False)
        return
    from srpo_bench.collect.lite import collect_suite
    from srpo_bench.data.lite import LITE_ENVS, lite_dir

    env_list = [e.strip() for e in (envs or ",".join(LITE_ENVS)).split(",") if e.strip()]
    paths = collect_suite(env_list, size=size, seed=seed, workers=workers, reporter=Reporter(console=err_console),
                          force=force)
    console.print(f"{plural(len(paths), 'dataset file')} in {lite_dir()}", highlight=False)


@contextlib.contextmanager
def environment(variable: str, value: str | None) -> Iterator[None]:
    """`variable` set to `value` for the block (None: left as it is), then restored: worker processes started
    inside inherit it, and a test that calls the CLI in-process leaves no trace."""
    if value is None:
        yield
        return
    before = os.environ.get(variable)
    os.environ[variable] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = before


def parse_int(name: str, text: str, low: int, high: int) -> int:
    """An integer option parsed here, so that a bad one is the same one line as any other bad value."""
    try:
        value = int(text.strip())
    except ValueError:
        raise UsageError(f"{name} must be an integer from {low:,} to {high:,}, got '{text}'") from None
    if not low <= value <= high:
        raise UsageError(f"{name} must be an integer from {low:,} to {high:,}, got {value}")
    return value


@app.command()
@friendly_errors
def report(
    results: Annotated[list[Path] | None, typer.Argument(help="results folders (`run --out`); several merge (the "
                                                         "same run found twice counts once) \\[default: runs]",
                                                         show_default=False, metavar="RESULTS")] = None,
    out: Annotated[list[Path] | None, typer.Option(help="deprecated: pass the results folders as arguments "
                                                   "(`srpo-bench report RESULTS...`)")] = None,
    profile: Annotated[str | None, typer.Option(help=f"only runs of this profile ({listing(PROFILE_NAMES)})")
                       ] = None,
    fmt: Annotated[str, typer.Option("--format", help="leaderboard formats, comma separated: "
                                     f"{','.join(LEADERBOARD_FORMATS)}")] = ",".join(LEADERBOARD_FORMATS),
    leaderboard: Annotated[Path | None, typer.Option(help="where the leaderboard goes (default: "
                                                     "<first RESULTS>/leaderboard)")] = None,
    reps: Annotated[int, typer.Option(help="bootstrap replications (rliable); 50000 for numbers to publish")] = 2000,
    seed: Annotated[int, typer.Option(help="bootstrap seed: the same runs, reps and seed print the same numbers")] = 0,
) -> None:
    """Leaderboard from finished runs: per-task means with 95% intervals, rliable aggregates (IQM, mean, median,
    optimality gap), probability of improvement, speedups with intervals, published numbers beside ours; written
    as Markdown, HTML, CSV and JSON with figures."""
    from srpo_bench.report import tables
    from srpo_bench.report.build import build_report
    from srpo_bench.report.leaderboard import OutputError, parse_formats, sections, write

    try:
        formats = parse_formats(fmt)
    except ValueError as error:
        err_console.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    if reps < 1:
        err_console.print(f"[red]error:[/red] --reps must be at least 1, got {reps}")
        raise typer.Exit(EXIT_USAGE)
    deprecated = REPORT_OUT_DEPRECATED if out else ""
    out = [*(results or []), *(out or [])] or [Path("runs")]
    result = build_report(out, profile=profile, reps=reps, seed=seed)
    if not result.runs.stores:  # nothing readable: the reasons, in one line
        reasons = [w.removeprefix("skipped store ") for w in result.warnings if w.startswith("skipped store ")]
        err_console.print(f"[red]error:[/red] {'; '.join(reasons)}", highlight=False)
        raise typer.Exit(EXIT_USAGE)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if result.runs.empty and result.timings.empty:  # `srpo-bench speed` timings alone still make a speed report
        where = ", ".join(map(str, out)) + (f" for profile '{profile}'" if profile else "")
        if not result.runs.failed.empty:  # a colleague's crashed grid: which runs failed, and why
            print_table(tables.failed(result.runs.failed, "failed"))
            err_console.print(f"[red]error:[/red] no finished runs in {where}: "
                              f"{plural(len(result.runs.failed), 'run')} did not finish (above)", highlight=False)
        else:
            err_console.print(f"[red]error:[/red] no finished runs or timings in {where}", highlight=False)
        raise typer.Exit(1)
    # The terminal report first: reading never needs write access, so it is printed whatever happens below.
    for section in sections(result, {}):
        if not section.tables:
            continue
        typer.echo(f"\n== {section.title}")
        for note in section.notes:
            typer.echo(f"  note: {note}")
        for table in section.tables:
            print_table(table)
    folder = leaderboard or out[0] / "leaderboard"
    try:
        written = write(result, folder, formats, warn=lambda line: err_console.print(
            f"[yellow]warning:[/yellow] {line}", highlight=False))
    except OutputError as error:
        if leaderboard is not None:  # asked for: its failure is the command's
            err_console.print(f"[red]error:[/red] {error}", highlight=False)
            raise typer.Exit(1) from None
        err_console.print(f"[yellow]warning:[/yellow] {error}: the leaderboard files were not written (the report "
                          "above is complete); pass --leaderboard DIR to write them elsewhere", highlight=False)
    else:
        main = [p for p in written if p.suffix in (".md", ".html", ".json")]
        console.print(f"\nleaderboard: {plural(len(written), 'file')} in {folder} ({', '.join(p.name for p in main)})",
                      highlight=False)
    if deprecated:  # last, on stderr: the tables above stay as they are, and a failing command stays one line
        err_console.print(f"[yellow]warning:[/yellow] {deprecated}", highlight=False)


REPORT_OUT_DEPRECATED = ("`report --out DIR` is deprecated and goes in the next release: pass results folders as "
                         "arguments (`srpo-bench report DIR...`)")


def print_table(table: Any) -> None:
    """One report table in the terminal (GitHub Markdown layout)."""
    typer.echo(f"\n{table.title}\n" + tabulate(table.plain_rows(), headers=table.columns, tablefmt="github",
                                                disable_numparse=True))


def previous_speed_results(path: Path) -> dict[str, dict[str, Any]]:
    """The timings an earlier `srpo-bench speed` left in `path`, by runtime ({"eager": {method: ...}} for the
    eager file): a later call for fewer methods keeps them instead of erasing them. Unreadable: nothing kept."""
    from srpo_bench.report.frame import results_by_runtime
    from srpo_bench.store import StoreError, read_object

    try:
        report = read_object(path) if path.exists() else {}
    except StoreError:
        return {}
    if not isinstance(report.get("results"), dict):
        return {}
    by_runtime = results_by_runtime(report)
    created = str(report.get("created", ""))
    return {runtime: {method: {"created": created, **speed} for method, speed in by_method.items()
                      if isinstance(speed, dict)}
            for runtime, by_method in by_runtime.items() if isinstance(by_method, dict)}


def provenance() -> dict[str, Any]:
    """What a `speed` file says of the code that timed it, so its figures can be published (`results add`)."""
    from srpo_bench.store import git_commit, library_versions

    return {"git_commit": git_commit(), "versions": library_versions()}


def stamped(speed: dict[str, Any]) -> dict[str, Any]:
    """A method's timing with the time it was taken (files merge timings of several `speed` calls)."""
    from srpo_bench.store import now

    return {"created": now(), **speed}


@app.command()
@friendly_errors
def speed(
    methods: Annotated[str, typer.Option(help=f"comma separated methods ({listing(_METHODS)}), or 'all'")] = "all",
    task: Annotated[str, typer.Option(help="task whose shapes and states are used")] = "toy-two-moons",
    profile: Annotated[str, typer.Option(help="profile of the weights timed (timing does not depend on "
                                         "training length; stages are cached in --out)")] = "smoke",
    device: Device = "auto",
    out: Out = Path("runs"),
    batch_sizes: Annotated[str, typer.Option(help="comma separated batch sizes")] = "1,256",
    repeats: int = 30,
    max_seconds: Annotated[float, typer.Option(help="time cap per method and batch size")] = 20.0,
    threads: Annotated[int, typer.Option(help="torch CPU threads (0: torch's default)")] = 0,
    runtime: Annotated[str, typer.Option(help="comma separated runtimes timed side by side: "
                                         f"{_described(RUNTIMES)}")] = "eager",
) -> None:
    """Actions/s at batch 1 and 256, network evaluations per action, and SRPO's speedup (per runtime), all in one
    process."""
    import torch

    from srpo_bench.progress import Reporter
    from srpo_bench.registry import expand_methods, get_method
    from srpo_bench.runner import fit_context, validate_grid
    from srpo_bench.runtimes import RuntimeUnavailable, check_runtimes, prepare
    from srpo_bench.speed import MIN_REPEATS, SpeedResult, measure_speed, runtime_table, speedup_table
    from srpo_bench.store import atomic_write_json, check_destination, now, open_store
    from srpo_bench.tasks import get_task

    # every option is checked before anything trains
    try:
        runtimes = check_runtimes(runtime)
    except ValueError as error:  # its line names the closest runtime
        raise UsageError(f"--runtime: {error}") from None
    sizes = parse_batch_sizes(batch_sizes)
    at_least("--repeats", repeats, MIN_REPEATS)
    at_least("--threads", threads, 0)
    if not max_seconds > 0:
        raise UsageError(f"--max-seconds must be more than 0, got {max_seconds:g}")
    if threads > 0:
        torch.set_num_threads(threads)
    check_profile(profile)
    method_names = expand_methods(methods)
    validate_grid([task], method_names, profile)
    the_task = get_task(task)
    torch_device = parse_device(device)
    check_destination(out)
    dataset = the_task.load()
    the_task.check_data(dataset)
    open_store(out)
    reporter = Reporter(console=err_console)
    timings: dict[str, dict[str, SpeedResult | str]] = {name: {} for name in runtimes}
    for name in method_names:
        config, ctx = fit_context(the_task, name, dataset, 0, profile, out, torch_device, reporter)
        agent = get_method(name)().fit(ctx, config)
        for runtime_name in runtimes:
            try:
                acting = prepare(agent, runtime_name, dataset.obs_dim, sizes)
            except RuntimeUnavailable as error:
                timings[runtime_name][name] = str(error)
                continue
            acting.seed(0)
            timings[runtime_name][name] = measure_speed(
                acting, dataset.obs_dim, batch_sizes=sizes, repeats=repeats, max_seconds=max_seconds,
                observations=dataset.observations, context="alone")
    safe_task = task.replace("/", "_").replace(":", "_")
    if runtimes != ["eager"]:
        table = runtime_table(timings, reference="srpo" if "srpo" in method_names else method_names[0])
        typer.echo(tabulate([speed_row(row, reference=None) for row in table], headers="keys",
                            disable_numparse=True, missingval="-"))
        report_path = out / "speed" / "runtimes" / f"{safe_task}-{torch_device.type}.json"
        merged = previous_speed_results(report_path)  # earlier calls' methods stay; this call's replace theirs
        for runtime_name, by_method in timings.items():
            merged.setdefault(runtime_name, {}).update({
                name: stamped(value.to_dict() if isinstance(value, SpeedResult) else {"unavailable": value})
                for name, value in by_method.items()})
        atomic_write_json(report_path, {"created": now(), "task": task, "device": str(torch_device),
                                        "profile": profile, **provenance(), "table": table, "results": merged})
        console.print(f"written {report_path}")
        if "eager" not in timings:
            return
        console.print("\neager runtime (the report reads these timings):")
    results = {name: result for name, result in timings["eager"].items() if isinstance(result, SpeedResult)}

    rows = []
    for name, result in results.items():
        info = result.to_dict()
        row = {"method": name, "nfe_per_action": info["nfe_per_action"]}
        for size in sizes:
            row[f"actions_per_second_b{size}"] = info["batches"][str(size)]["actions_per_second"]
            row[f"ms_per_call_b{size}"] = info["batches"][str(size)]["ms_per_call"]
        rows.append(speed_row(row, reference=None))
    typer.echo(tabulate(rows, headers="keys", disable_numparse=True))
    reference = "srpo" if "srpo" in results else method_names[0]
    speedups = speedup_table(results, reference=reference)
    if len(results) > 1:
        console.print(f"\nspeedup of {reference} (its actions/s over each method's, same process; "
                      "`srpo-bench report` adds 95% intervals):")
        typer.echo(tabulate([speed_row(row, reference) for row in speedups], headers="keys",
                            disable_numparse=True))
    report_path = out / "speed" / f"{safe_task}-{torch_device.type}.json"
    earlier = previous_speed_results(report_path).get("eager", {})
    fresh = {k: stamped(v.to_dict()) for k, v in results.items()}
    # in the file, field names ("speedup_b1", as the leaderboard's speed CSV and JSON name them)
    speedups = [{key.replace(" ", "_"): value for key, value in row.items()} for row in speedups]
    atomic_write_json(report_path, {"created": now(), "task": task, "device": str(torch_device), "profile": profile,
                                    **provenance(), "results": {**earlier, **fresh}, "speedups": speedups})
    console.print(f"written {report_path}")


def speed_row(row: dict[str, Any], reference: str | None) -> dict[str, Any]:
    """A row of `speed`'s tables for people: display names (vocabulary.display_name: 'NFE/action', 'actions/s b1',
    '<reference> speedup b1', as the report's speed table names them) and numbers formatted to read."""
    from srpo_bench.report.tables import count, rate, ratio

    shown: dict[str, Any] = {}
    for key, value in row.items():
        name = display_name(key.replace(" ", "_") if key.startswith("speedup ") else key)
        if reference is not None and name.startswith("speedup "):
            name = f"{reference} {name}"
        is_number = value is None or isinstance(value, int | float) and not isinstance(value, bool)  # None: "—"
        if is_number and "speedup" in name:
            value = ratio(value)
        elif is_number and name == NFE_COLUMN:
            value = count(value)
        elif is_number and "/" in name:
            value = rate(value)
        shown[name] = value
    return shown


@app.command("export")
@friendly_errors
def export_policy(
    run_dir: Annotated[Path, typer.Argument(help="a finished run: <out>/runs/<profile>/<task>/<method>/seed<k>")],
    format: Annotated[str, typer.Option("--format", help=_described(EXPORT_FORMATS))] = "onnx",
    output: Annotated[Path | None, typer.Option(help="policy file (default: RUN_DIR/export/policy.onnx|.pt)")] = None,
) -> None:
    """Write a finished run's policy (its whole act, noise as inputs) as one self-contained file with observation
    and action specs and provenance; rebuilt from the stored stages, never retrained."""
    from srpo_bench.export import ExportError, export_run

    try:
        written = export_run(run_dir, format, output)
    except ExportError as error:
        raise UsageError(str(error)) from None
    for path in written:
        console.print(f"written {path}")


results_app = typer.Typer(help="This repository's published results (results/): add another machine's runs, rebuild "
                           "the leaderboard from the records.", no_args_is_help=True)
app.add_typer(results_app, name="results")


@results_app.command("add")
@friendly_errors
def results_add(
    folder: Annotated[Path, typer.Argument(help="a results folder (`srpo-bench run --out FOLDER`) or another records "
                                           "folder")],
    to: Annotated[Path, typer.Option(help="the records folder")] = Path("results"),
    exploratory: Annotated[bool, typer.Option(help="also publish runs that comply with no protocol (the leaderboard "
                                              "labels them exploratory)")] = False,
) -> None:
    """Check another machine's finished runs (schema, protocol compliance, provenance, duplicates) and copy their
    records (never weights) into the records folder; refuse the whole folder in one line if one run fails a check."""
    from srpo_bench.records import add

    addition = add(folder, to, exploratory=exploratory)
    left = (f"; {plural(addition.not_finished, 'run')} that did not finish left out" if addition.not_finished
            else "")
    marked = f" ({addition.exploratory} exploratory)" if addition.exploratory else ""
    console.print(f"added {plural(len(addition.records), 'run record')}{marked} and "
                  f"{plural(len(addition.timings), 'timing file')} to {to}{left}; rebuild the leaderboard with "
                  "`srpo-bench results build`", highlight=False, soft_wrap=True)


@results_app.command("build")
@friendly_errors
def results_build(
    records: Annotated[Path, typer.Option(help="the records folder")] = Path("results"),
    readme: Annotated[Path | None, typer.Option(help="a README whose generated sections are rebuilt too")] = None,
    check: Annotated[bool, typer.Option(help="rebuild into a temporary folder and fail on any difference with "
                                        "RECORDS/leaderboard (and the README's sections)")] = False,
) -> None:
    """Rebuild RECORDS/leaderboard (Markdown, HTML, CSV, JSON, figures) from the records, byte for byte the same
    for the same records: fixed bootstrap seed, no clock or machine in the files."""
    from srpo_bench.publish import check as check_published
    from srpo_bench.publish import publish

    folder = records / "leaderboard"

    def warn(line: str) -> None:
        err_console.print(f"[yellow]warning:[/yellow] {escape(line)}", highlight=False)

    if check:
        compared = check_published(records, folder, readme, warn)
        console.print(f"{folder}: the same as a rebuild from {records} ({plural(compared, 'file')} compared)",
                      highlight=False, soft_wrap=True)
        return
    written = publish(records, folder, readme, warn)
    console.print(f"rebuilt {plural(len(written), 'file')} from {records} into {folder}"
                  + (f" and {readme}" if readme in written else ""), highlight=False, soft_wrap=True)


@app.command("list")
def list_things() -> None:
    """Suites, tasks, methods and protocols known to this installation."""
    from srpo_bench.registry import registered
    from srpo_bench.tasks import SUITES, all_task_names

    methods = registered()
    console.print("[bold]methods[/bold]: " + ", ".join(name for name, entry in methods.items() if entry.error is None))
    for name, entry in methods.items():
        if entry.error is not None:
            console.print(f"[red]cannot load[/red] {name} ({entry.target}): {entry.error}", highlight=False)
    for suite, names in SUITES.items():
        console.print(f"[bold]{suite}[/bold]: " + ", ".join(names))
    extra = [n for n in all_task_names() if not any(n in names for names in SUITES.values())]
    console.print("[bold]other tasks[/bold]: " + ", ".join(extra) + ", minari:<dataset id>")
    from srpo_bench.protocols import all_protocols

    console.print("[bold]protocols[/bold] (`srpo-bench run --protocol NAME`):")
    for protocol in all_protocols():
        console.print(f"  {protocol.name}: {protocol.title} ({plural(len(protocol.tasks), 'task')} x "
                      f"{plural(len(protocol.methods), 'method')} x {plural(protocol.seeds, 'seed')}, "
                      f"{protocol.profile} profile)", highlight=False)


def main() -> None:
    """The console script: an interrupt before a command's own handler runs (option parsing) is the same one line
    and exit 130."""
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        app()
    except KeyboardInterrupt:
        say_interrupted()
        sys.exit(130)
    except SystemExit as done:  # typer's own exit 130 for an interrupt outside a command's handler: silent there
        if done.code == 130:
            say_interrupted()
        raise


if __name__ == "__main__":  # pragma: no cover - `python -m srpo_bench.cli`
    main()
