"""nox sessions: tests, lint, speed, bench, leaderboard, gpu-check. Venvs are reused (`nox -R`): the CPU torch
wheel takes ~45 s."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

# The CPU wheel on disk; an unpinned torch pulls a multi-GB CUDA build (STACK.md).
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


@nox.session(name="gpu-check")
def gpu_check(session: nox.Session) -> None:
    """benchmarks/gpu_check.py: the prepared GPU check (at most ~8 minutes on one GPU; install torch's CUDA build
    there); `-- --cpu-rehearsal` runs its parts on the CPU at tiny sizes."""
    if "--cpu-rehearsal" in session.posargs:
        session.install(TORCH)
    session.install("-e", ".[onnx]")
    session.run("python", "benchmarks/gpu_check.py", *session.posargs)
