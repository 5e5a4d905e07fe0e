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
    "tests/test_report_records.py",
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
                      ["tests/test_training_clock.py", "tests/test_report_tables.py", "tests/test_report_records.py"]),
    # the rest of report/, a module at a time against the report's fast tests
    **{name: (f"srpo_bench/report/{name}.py", "*", REPORT_FAST_TESTS)
       for name in ("frame", "speedup", "tables", "reference", "tuning", "leaderboard", "build", "plots")},
    # report/ whole against its fast tests, the target for `--sample=N` (one stats pass for all its modules; a full run
    # is ~7,800 mutants, over 10 core-hours)
    "report-modules": ("srpo_bench/report/*", "*", REPORT_FAST_TESTS),
    "report": ("srpo_bench/report/*", "*",
               ["tests/test_report.py", "tests/test_report_aggregate.py", "tests/test_report_tables.py",
                "tests/test_report_store.py", "tests/test_report_reference.py", "tests/test_report_e2e.py",
                "tests/test_properties.py", "tests/test_timing_context.py", "tests/test_key_contract.py",
                "tests/test_promised.py"]),
}


# mutmut's own generator, run as `mutmut run` runs it, so that a sample can be drawn from the names it gives
# (internals of the pinned mutmut: another version may move them)
MUTMUT = "mutmut==3.8.1"
GENERATE_MUTANTS = """
from mutmut.__main__ import copy_also_copy_files, copy_src_dir, create_mutants, setup_source_paths
copy_src_dir(); copy_also_copy_files(); setup_source_paths(); create_mutants(1)
"""


def sampled_mutants(session: nox.Session, per_module: int, seed: int) -> list[str]:
    """`per_module` of each mutated file's mutants, drawn at random (mutant sampling: the survival rate of a uniform
    sample estimates the module's, within a binomial interval). Each file's draw is seeded by the seed and the file's
    path alone, and is the first `per_module` of one shuffle: a larger sample holds the smaller one."""
    import json
    import random
    from pathlib import Path

    session.run("python", "-c", GENERATE_MUTANTS, silent=True)
    names: list[str] = []
    for meta in sorted(Path("mutants").rglob("*.py.meta")):
        keys = sorted(json.loads(meta.read_text())["exit_code_by_key"])
        random.Random(f"{seed}:{meta.relative_to('mutants')}").shuffle(keys)
        names += sorted(keys[:per_module])
        module = meta.relative_to("mutants").with_suffix("")
        session.log(f"{module}: {min(per_module, len(keys))} of {len(keys)} mutants")
    return names


# per mutated file, the sample's verdicts as mutmut records them, and the caught share with its 95 % Wilson interval
# (timeouts count as caught, as mutmut counts them)
SUMMARIZE_SAMPLE = """
import collections, json, math, pathlib, sys
from mutmut.stats import status_by_exit_code
sample = set(pathlib.Path(sys.argv[1]).read_text().split())
for meta in sorted(pathlib.Path("mutants").rglob("*.py.meta")):
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    counts = collections.Counter(status_by_exit_code[code] for key, code in codes.items() if key in sample)
    n, caught = sum(counts.values()), counts["killed"] + counts["timeout"]
    if not n:
        continue
    z, p = 1.96, caught / n
    shrink = 1 + z * z / n
    centre, half = (p + z * z / (2 * n)) / shrink, z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / shrink
    verdicts = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    print(f"{meta.relative_to('mutants').with_suffix('')}: {n} of {len(codes)} mutants: {verdicts}; "
          f"caught {100 * p:.0f} % (95 % interval {100 * (centre - half):.0f}-{100 * (centre + half):.0f} %)")
"""


@nox.session
def mutants(session: nox.Session) -> None:
    """Mutation testing (mutmut) of report/, evaluate.py, runtimes.py, speed.py, the runner's summaries
    (runner.evaluation_record) and data validation. `-- evaluate speed` picks targets (default: all; slow: the
    report alone is hours on 2 cores; `aggregate`, `training-time`, `frame`, `speedup`, `tables`, `reference`,
    `tuning`, `leaderboard`, `build` and `plots` are its modules one at a time); `--max-children=1` leaves a core free.
    `--sample=N report-modules` runs N random mutants of each report/ file (`--sample-seed=S`), ~25 minutes for 50,
    and prints each file's caught share with its 95% interval.
    Survivors are listed per target; `mutmut show NAME` in the printed scratch folder shows one. Not in .ci/run."""
    import fnmatch
    import shutil
    import tempfile
    from pathlib import Path

    session.install(TORCH)
    session.install("-e", ".[dev]")
    session.install(MUTMUT)
    # `--max-children=N` (mutmut's own option; default: every core) leaves cores to other work
    children = [arg for arg in session.posargs if arg.startswith("--max-children=")]
    # `--sample=N`: N mutants of each mutated file, drawn at random (`--sample-seed=S`, default 0), instead of all
    options = {arg.split("=", 1)[0]: arg.split("=", 1)[1] for arg in session.posargs
               if arg.startswith(("--sample=", "--sample-seed="))}
    if not all(value.isdigit() for value in options.values()):
        session.error(f"--sample and --sample-seed take a whole number, got {' '.join(session.posargs)}")
    per_module, seed = int(options.get("--sample", 0)), int(options.get("--sample-seed", 0))
    names = [arg for arg in session.posargs if not arg.startswith("--")] or list(MUTANT_TARGETS)
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
        selection = sampled_mutants(session, per_module, seed) if per_module else [] if pattern == "*" else [pattern]
        if per_module and pattern != "*":
            selection = [mutant for mutant in selection if fnmatch.fnmatch(mutant, pattern)]
        session.run("mutmut", "run", *children, *selection, env={"OMP_NUM_THREADS": "1"}, success_codes=[0, 1])
        if per_module:
            (scratch / "sample.txt").write_text("\n".join(selection) + "\n")
            session.run("python", "-c", SUMMARIZE_SAMPLE, str(scratch / "sample.txt"))
        else:
            session.run("mutmut", "results")
        session.chdir(root)
