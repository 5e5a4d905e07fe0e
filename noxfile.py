"""nox sessions: tests, lint, speed, bench, leaderboard, docs, gpu-check. Venvs are reused (`nox -R`): the CPU torch
wheel takes ~45 s."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

# The CPU wheel on disk; an unpinned torch pulls a multi-GB CUDA build.
TORCH = "torch==2.13.0"


@nox.session
def tests(session: nox.Session) -> None:
    session.install(TORCH)
    session.install("-e", ".[dev]")
    session.run("pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "srpo_bench", "baselines", "tests", "benchmarks", "noxfile.py")


@nox.session
def speed(session: nox.Session) -> None:
    """`srpo-bench speed --methods all` on the toy task (timings land in results/speed/); pass
    `-- --runtime eager,compiled,onnx` for the runtimes side by side."""
    session.install(TORCH)
    session.install("-e", ".[onnx]")
    session.run("srpo-bench", "speed", "--methods", "all", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """`srpo-bench report` over 2,000 generated run folders (budget: under 60 s on 2 cores, default reps), then
    training steps/s per stage and method, training levers off and on (benchmarks/train_steps.py)."""
    session.install(TORCH)
    session.install("-e", ".")
    session.run("python", "benchmarks/report_2000.py", *session.posargs)
    session.run("python", "benchmarks/train_steps.py")


@nox.session
def leaderboard(session: nox.Session) -> None:
    """Rebuild the published leaderboard (results/leaderboard) and README.md's generated result tables from the
    records in results/ (`srpo-bench results build --readme README.md`); `-- --check` compares instead of writing,
    as .ci/run does."""
    session.install(TORCH)
    session.install("-e", ".")
    session.run("srpo-bench", "results", "build", "--readme", "README.md", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs.yml, docs/) built with `mkdocs build --strict` into site/: a broken link, a
    page left out of the nav or a missing included file fails. Installs only the `docs` extra's pins (read from
    pyproject.toml), not the package: docs/hooks.py reads the sources as text."""
    extras = nox.project.load_toml("pyproject.toml")["project"]["optional-dependencies"]["docs"]
    session.install(*extras)
    # NO_MKDOCS_2_WARNING: mkdocs-material prints an end-of-life banner on every build otherwise
    session.run("mkdocs", "build", "--strict", *session.posargs, env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session(name="gpu-check")
def gpu_check(session: nox.Session) -> None:
    """benchmarks/gpu_check.py: the prepared GPU check (at most ~8 minutes on one GPU; install torch's CUDA build
    there); `-- --cpu-rehearsal` runs its parts on the CPU at tiny sizes."""
    if "--cpu-rehearsal" in session.posargs:
        session.install(TORCH)
    session.install("-e", ".[onnx]")
    session.run("python", "benchmarks/gpu_check.py", *session.posargs)


# The report's fast tests, for mutating report/ a module at a time (mutmut runs, per mutant, only those that reach
# the mutated function). Left out: the tests fed a real smoke grid (test_report_e2e, test_key_contract: ~30 s of
# set-up per mutant), the published leaderboard's rebuild and its byte-identical build (~30 s each), the tiny sweep
# (~25 s), the read-only folders (~15 s) and Ctrl-C at start-up (timed signals: once a SIGABRT under mutmut's stats
# run); they stay in the suite and in the whole-package `report` target.
REPORT_FAST_TESTS = [
    "tests/test_report.py", "tests/test_report_aggregate.py", "tests/test_report_tables.py",
    "tests/test_report_store.py", "tests/test_report_reference.py", "tests/test_tuning.py",
    "tests/test_timing_context.py", "tests/test_promised.py", "tests/test_sweeps.py", "tests/test_records.py",
    "tests/test_reading_results.py", "tests/test_training_clock.py", "tests/test_cli_words.py",
    "-k", "not tiny_sweep and not published_leaderboard_equals and not byte_identical and not read_only"
          " and not report_draws_score_against_training_time and not ctrl_c",
]

# `nox -s mutants -- NAME ...`: the modules where a silent mistake changes published numbers, each with the tests
# that guard it. mutmut runs in a scratch copy of the checkout (it never edits the working tree, so the grid and
# other developers keep running), only the tests that cover a mutated function run against it.
MUTANT_TARGETS = {
    "evaluate": ("srpo_bench/evaluate.py", "*", ["tests/test_evaluate.py"]),
    "runtimes": ("srpo_bench/runtimes.py", "*", ["tests/test_runtimes.py", "tests/test_runtime_wiring.py",
                                               "tests/test_export.py"]),
    "speed": ("srpo_bench/speed.py", "*", ["tests/test_speed.py", "tests/test_timing_context.py"]),
    # the summaries' own hand-derived test, then the clocks and the key contract; the e2e consumers (the report fed
    # a real smoke grid) stay in the suite but are left out here: mutmut spent over 15 minutes on their stats pass
    "summaries": ("srpo_bench/runner.py", "srpo_bench.runner.x_evaluation_record*",
                  ["tests/test_summaries.py", "tests/test_training_clock.py", "tests/test_key_contract.py",
                   "tests/test_failures_recorded.py"]),
    "data": ("srpo_bench/data/dataset.py", "*",
             ["tests/test_dataset_columns.py", "tests/test_bad_inputs.py", "tests/test_properties.py",
              "tests/test_validate_transitions.py"]),
    # the report's number-making pure functions, before the whole package (hours): intervals, aggregates, the
    # score-against-training-time curves
    "aggregate": ("srpo_bench/report/aggregate.py", "*",
                  ["tests/test_report_aggregate.py", "tests/test_properties.py", "tests/test_report.py"]),
    "training-time": ("srpo_bench/report/training_time.py", "*",
                      ["tests/test_training_clock.py", "tests/test_report_tables.py"]),
    # the rest of report/, a module at a time against the report's fast tests
    **{name: (f"srpo_bench/report/{name}.py", "*", REPORT_FAST_TESTS)
       for name in ("frame", "speedup", "tables", "reference", "tuning", "leaderboard", "build", "plots")},
    "report": ("srpo_bench/report/*", "*",
               ["tests/test_report.py", "tests/test_report_aggregate.py", "tests/test_report_tables.py",
                "tests/test_report_store.py", "tests/test_report_reference.py", "tests/test_report_e2e.py",
                "tests/test_properties.py", "tests/test_timing_context.py", "tests/test_key_contract.py",
                "tests/test_promised.py"]),
}


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing (mutmut) of report/, evaluate.py, runtimes.py, speed.py, the runner's summaries
    (runner.evaluation_record) and data validation. `-- evaluate speed` picks targets (default: all; slow: the
    report alone is hours on 2 cores; `aggregate`, `training-time`, `frame`, `speedup`, `tables`, `reference`,
    `tuning`, `leaderboard`, `build` and `plots` are its modules one at a time); `--max-children=1` leaves a core free.
    Survivors are listed per target; `mutmut show NAME` in the printed scratch folder shows one. Not in .ci/run."""
    import shutil
    import tempfile
    from pathlib import Path

    session.install(TORCH)
    session.install("-e", ".[dev]")
    session.install("mutmut>=3.3")
    # `--max-children=N` (mutmut's own option; default: every core) leaves cores to other work
    children = [arg for arg in session.posargs if arg.startswith("--max-children=")]
    names = [arg for arg in session.posargs if arg not in children] or list(MUTANT_TARGETS)
    unknown = [name for name in names if name not in MUTANT_TARGETS]
    if unknown:
        session.error(f"unknown target {', '.join(unknown)} (choices: {', '.join(MUTANT_TARGETS)})")
    root = Path(__file__).parent
    for name in names:
        module, pattern, tests = MUTANT_TARGETS[name]
        scratch = Path(tempfile.mkdtemp(prefix=f"srpo-bench-mutants-{name}-"))
        for item in ("srpo_bench", "baselines", "tests", "pyproject.toml"):
            source = root / item
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, scratch / item)
        tests = [test for test in tests if not test.startswith("tests/") or (scratch / test).exists()]
        (scratch / "setup.cfg").write_text(
            "[mutmut]\nsource_paths = srpo_bench\n"
            f"only_mutate = {module}\n"
            "pytest_add_cli_args_test_selection =\n" + "".join(f"    {test}\n" for test in tests))
        session.chdir(scratch)
        session.log(f"{name}: mutating {module} ({pattern}) against {', '.join(tests)} in {scratch}")
        session.run("mutmut", "run", *children, *([] if pattern == "*" else [pattern]), env={"OMP_NUM_THREADS": "1"},
                    success_codes=[0, 1])
        session.run("mutmut", "results")
        session.chdir(root)
