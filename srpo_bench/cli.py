"""The `srpo-bench` command line: thin wrappers that parse options and call the library.

User mistakes (unknown task or method, bad data, a newer results folder) end in one line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from tabulate import tabulate

from srpo_bench import __version__

app = typer.Typer(
    help="Benchmark SRPO against diffusion-based offline RL (Diffusion-QL, IDQL, SfBC): "
    "D4RL-normalized returns and actions per second, measured by one harness.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # an error stays one line, whatever the width

F = TypeVar("F", bound=Callable[..., Any])
EXIT_USAGE = 2


def friendly_errors(command: F) -> F:
    """Turn expected failures into one line and an exit code; keep tracebacks for real bugs."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from srpo_bench.config import ConfigError
        from srpo_bench.data.dataset import DatasetError
        from srpo_bench.registry import UnknownMethodError
        from srpo_bench.store import StoreError
        from srpo_bench.tasks import UnknownTaskError

        try:
            return command(*args, **kwargs)
        except (DatasetError, UnknownTaskError, UnknownMethodError, ConfigError, StoreError) as error:
            err_console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: finished stages are saved; rerun the same command to resume")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def parse_seeds(spec: str) -> list[int]:
    try:
        if "-" in spec and "," not in spec:
            low, high = (int(x) for x in spec.split("-"))
            return list(range(low, high + 1))
        return [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        err_console.print(f"[red]error:[/red] --seeds expects '0,1,2' or '0-4', got '{spec}'")
        raise typer.Exit(EXIT_USAGE) from None


def check_profile(profile: str) -> None:
    from srpo_bench.profiles import PROFILE_NAMES

    if profile not in PROFILE_NAMES:
        err_console.print(f"[red]error:[/red] unknown profile '{profile}' (choose {', '.join(PROFILE_NAMES)})")
        raise typer.Exit(EXIT_USAGE)


Profile = Annotated[str, typer.Option(help="smoke: seconds, for tests | quick: a laptop | paper: official step counts")]
Device = Annotated[str, typer.Option(help="auto (CUDA when available), cpu, cuda, cuda:1 ...")]
Out = Annotated[Path, typer.Option(help="results folder (one sub-folder per run; reruns resume)")]


@app.command()
@friendly_errors
def run(
    envs: Annotated[str, typer.Option(help="suites (toy, locomotion-lite, locomotion, antmaze) and/or task names, "
                                      "comma separated")] = "toy",
    methods: Annotated[str, typer.Option(help="comma separated method names, or 'all'")] = "srpo",
    seeds: Annotated[str, typer.Option(help="training seeds: '0,1,2' or '0-4'")] = "0,1,2",
    profile: Profile = "quick",
    device: Device = "auto",
    out: Out = Path("results"),
    set_: Annotated[list[str], typer.Option("--set", help="override a setting: KEY=VALUE or METHOD.KEY=VALUE "
                                            "(e.g. srpo.weighting=constant)")] = [],  # noqa: B006
    threads: Annotated[int, typer.Option(help="torch CPU threads (0: torch's default)")] = 0,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
) -> None:
    """Train, evaluate and time every (task, method, seed); write each run into the results folder."""
    import torch

    from srpo_bench.config import parse_overrides
    from srpo_bench.progress import Reporter
    from srpo_bench.registry import expand_methods
    from srpo_bench.runner import resolve_device, run_grid, validate_grid
    from srpo_bench.tasks import expand_tasks

    if threads > 0:
        torch.set_num_threads(threads)
    check_profile(profile)
    task_names = expand_tasks(envs)
    method_names = expand_methods(methods)
    seed_list = parse_seeds(seeds)
    try:
        torch_device = resolve_device(device)
    except (RuntimeError, ValueError) as error:
        err_console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(EXIT_USAGE) from None
    overrides = parse_overrides(set_, method_names)
    validate_grid(task_names, method_names, profile, overrides)
    reporter = Reporter(console=err_console, quiet=quiet)
    err_console.print(
        f"srpo-bench {__version__}: {len(task_names)} tasks x {len(method_names)} methods x {len(seed_list)} seeds, "
        f"profile {profile}, device {torch_device}"
    )
    outcomes = run_grid(task_names, method_names, seed_list, profile, out, torch_device, reporter,
                        overrides=overrides)
    # imported here: the report layer pulls in rliable/scipy (~1.5 s), which validating a grid does not need
    from srpo_bench.report.tables import for_display, runs_frame, task_summary

    frame = runs_frame(out)
    frame = frame[frame["task"].isin(task_names) & frame["base_method"].isin(method_names)
                  & (frame["profile"] == profile)]
    typer.echo(tabulate(for_display(task_summary(frame).drop(columns=["profile"])), headers="keys", showindex=False,
                        disable_numparse=True))
    console.print(f"{sum(o.status == 'finished' for o in outcomes)} runs trained, "
                  f"{sum(o.status == 'skipped' for o in outcomes)} already finished; results in {out}")


@app.command()
@friendly_errors
def collect(
    suite: Annotated[str, typer.Option(help="only 'locomotion-lite' is collected locally")] = "locomotion-lite",
    envs: Annotated[str, typer.Option(help="subset of hopper,halfcheetah,walker2d")] = "hopper,halfcheetah,walker2d",
    size: Annotated[str, typer.Option(help="full (<= 60 min on 2 cores) or small (tests, < 1 min)")] = "full",
    seed: int = 0,
    workers: Annotated[int, typer.Option(help="parallel processes, one env each")] = 2,
    force: Annotated[bool, typer.Option(help="recollect even if cached files match")] = False,
) -> None:
    """Make D4RL-format datasets offline from behavior policies trained here (the locomotion-lite suite)."""
    from srpo_bench.collect.lite import collect_suite
    from srpo_bench.data.lite import lite_dir
    from srpo_bench.progress import Reporter

    if suite != "locomotion-lite":
        err_console.print(f"[red]error:[/red] cannot collect suite '{suite}': only 'locomotion-lite' is made locally "
                          "(D4RL and Minari suites are downloaded)")
        raise typer.Exit(EXIT_USAGE)
    if size not in ("full", "small"):
        err_console.print(f"[red]error:[/red] --size must be full or small, got '{size}'")
        raise typer.Exit(EXIT_USAGE)
    env_list = [e.strip() for e in envs.split(",") if e.strip()]
    paths = collect_suite(env_list, size=size, seed=seed, workers=workers, reporter=Reporter(console=err_console),
                          force=force)
    console.print(f"{len(paths)} dataset files in {lite_dir()}")


@app.command()
@friendly_errors
def report(
    out: Annotated[list[Path], typer.Option(help="results folder; repeat to merge several (the same run found "
                                            "twice counts once)")] = [Path("results")],  # noqa: B006
    profile: Annotated[str | None, typer.Option(help="only runs of this profile")] = None,
    fmt: Annotated[str, typer.Option("--format", help="leaderboard formats, comma separated: md,html,csv,json")
                   ] = "md,html,csv,json",
    leaderboard: Annotated[Path | None, typer.Option(help="where the leaderboard goes (default: "
                                                     "<first --out>/leaderboard)")] = None,
    reps: Annotated[int, typer.Option(help="bootstrap replications (rliable); 50000 for numbers to publish")] = 2000,
    seed: Annotated[int, typer.Option(help="bootstrap seed: the same runs, reps and seed print the same numbers")] = 0,
) -> None:
    """Leaderboard from finished runs: per-task means with 95% intervals, rliable aggregates (IQM, mean, median,
    optimality gap), probability of improvement, speedups with intervals, published numbers beside ours; written
    as Markdown, HTML, CSV and JSON with figures."""
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
    result = build_report(list(out), profile=profile, reps=reps, seed=seed)
    if not result.runs.stores:  # nothing readable: the reasons, in one line
        reasons = [w.removeprefix("skipped store ") for w in result.warnings if w.startswith("skipped store ")]
        err_console.print(f"[red]error:[/red] {'; '.join(reasons)}", highlight=False)
        raise typer.Exit(EXIT_USAGE)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if result.runs.empty:
        where = ", ".join(map(str, out)) + (f" for profile '{profile}'" if profile else "")
        err_console.print(f"[red]error:[/red] no finished runs in {where}", highlight=False)
        raise typer.Exit(1)
    folder = leaderboard or out[0] / "leaderboard"
    try:
        written = write(result, folder, formats, warn=lambda line: err_console.print(
            f"[yellow]warning:[/yellow] {line}", highlight=False))
    except OutputError as error:
        err_console.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(1) from None
    for section in sections(result, {}):
        if not section.tables:
            continue
        typer.echo(f"\n== {section.title}")
        for note in section.notes:
            typer.echo(f"  note: {note}")
        for table in section.tables:
            typer.echo(f"\n{table.title}\n" + tabulate(table.plain_rows(), headers=table.columns, tablefmt="github",
                                                                disable_numparse=True))
    main = [p for p in written if p.suffix in (".md", ".html", ".json")]
    console.print(f"\nleaderboard: {len(written)} files in {folder} ({', '.join(p.name for p in main)})",
                  highlight=False)


@app.command()
@friendly_errors
def speed(
    methods: Annotated[str, typer.Option(help="comma separated, or 'all'")] = "all",
    task: Annotated[str, typer.Option(help="task whose shapes and states are used")] = "toy-two-moons",
    profile: Annotated[str, typer.Option(help="profile of the weights timed (timing does not depend on "
                                         "training length; stages are cached in --out)")] = "smoke",
    device: Device = "auto",
    out: Out = Path("results"),
    batch_sizes: Annotated[str, typer.Option(help="comma separated batch sizes")] = "1,256",
    repeats: int = 30,
    max_seconds: Annotated[float, typer.Option(help="time cap per method and batch size")] = 20.0,
    threads: Annotated[int, typer.Option(help="torch CPU threads (0: torch's default)")] = 0,
    runtime: Annotated[str, typer.Option(help="comma separated runtimes timed side by side: eager (PyTorch), "
                                         "compiled (torch.compile), onnx (ONNX Runtime)")] = "eager",
) -> None:
    """Actions/s at batch 1 and 256, network evaluations per action, and SRPO's speedup (per runtime), all in one
    process."""
    import torch

    from srpo_bench.progress import Reporter
    from srpo_bench.registry import expand_methods, get_method
    from srpo_bench.runner import fit_context, resolve_device, validate_grid
    from srpo_bench.runtimes import RuntimeUnavailable, check_runtimes, prepare
    from srpo_bench.speed import SpeedResult, measure_speed, runtime_table, speedup_table
    from srpo_bench.store import atomic_write_json, now, open_store
    from srpo_bench.tasks import get_task

    try:
        runtimes = check_runtimes(runtime)
    except ValueError as error:
        fail(f"--runtime: {error}")
    if threads > 0:
        torch.set_num_threads(threads)
    check_profile(profile)
    method_names = expand_methods(methods)
    validate_grid([task], method_names, profile)
    the_task = get_task(task)
    dataset = the_task.load()
    torch_device = resolve_device(device)
    open_store(out)
    reporter = Reporter(console=err_console)
    sizes = tuple(int(b) for b in batch_sizes.split(","))
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
    from srpo_bench.report.tables import count, rate, ratio

    safe_task = task.replace("/", "_").replace(":", "_")
    if runtimes != ["eager"]:
        table = runtime_table(timings, reference="srpo" if "srpo" in method_names else method_names[0])
        typer.echo(tabulate([{key: (ratio(value) if "speedup" in key else count(value) if key == "nfe_per_action"
                                    else rate(value) if "/" in key else value) for key, value in row.items()}
                             for row in table], headers="keys", disable_numparse=True, missingval="-"))
        report_path = out / "speed" / "runtimes" / f"{safe_task}-{torch_device.type}.json"
        atomic_write_json(report_path, {
            "created": now(), "task": task, "device": str(torch_device), "profile": profile, "table": table,
            "results": {rt: {m: (v.to_dict() if isinstance(v, SpeedResult) else {"unavailable": v})
                             for m, v in by_method.items()} for rt, by_method in timings.items()}})
        console.print(f"written {report_path}")
        if "eager" not in timings:
            return
        console.print("\neager runtime (the report reads these timings):")
    results = {name: result for name, result in timings["eager"].items() if isinstance(result, SpeedResult)}

    rows = []
    for name, result in results.items():
        info = result.to_dict()
        row = {"method": name, "NFE/action": count(info["nfe_per_action"])}
        for size in sizes:
            row[f"actions/s b{size}"] = rate(info["batches"][str(size)]["actions_per_second"])
            row[f"ms/call b{size}"] = rate(info["batches"][str(size)]["ms_per_call"])
        rows.append(row)
    typer.echo(tabulate(rows, headers="keys", disable_numparse=True))
    reference = "srpo" if "srpo" in results else method_names[0]
    speedups = speedup_table(results, reference=reference)
    if len(results) > 1:
        console.print(f"\nspeedup of {reference} (its actions/s over each method's, same process; "
                      "`srpo-bench report` adds 95% intervals):")
        shown = [{key: (ratio(value) if key.startswith("speedup") else count(value) if key == "nfe_per_action"
                        else value) for key, value in row.items()} for row in speedups]
        typer.echo(tabulate(shown, headers="keys", disable_numparse=True))
    report_path = out / "speed" / f"{safe_task}-{torch_device.type}.json"
    atomic_write_json(report_path, {"created": now(), "task": task, "device": str(torch_device), "profile": profile,
                                    "results": {k: v.to_dict() for k, v in results.items()}, "speedups": speedups})
    console.print(f"written {report_path}")


@app.command("export")
@friendly_errors
def export_policy(
    run_dir: Annotated[Path, typer.Argument(help="a finished run: <out>/runs/<profile>/<task>/<method>/seed<k>")],
    format: Annotated[str, typer.Option("--format", help="onnx (runs with onnxruntime alone) or torchscript")] = "onnx",
    output: Annotated[Path | None, typer.Option(help="policy file (default: RUN_DIR/export/policy.onnx|.pt)")] = None,
) -> None:
    """Write a finished run's policy (its whole act, noise as inputs) as one self-contained file with observation
    and action specs and provenance; rebuilt from the stored stages, never retrained."""
    from srpo_bench.export import ExportError, export_run

    try:
        written = export_run(run_dir, format, output)
    except ExportError as error:
        fail(str(error))
    for path in written:
        console.print(f"written {path}")


def fail(message: str) -> NoReturn:
    """One error line on stderr and the usage exit code."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


@app.command("list")
def list_things() -> None:
    """Suites, tasks and methods known to this installation."""
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


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())
