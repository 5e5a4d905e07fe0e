"""Training steps per second, per stage and method, with the training levers off ("before": torch's default
Adam/AdamW, every dataset array gathered per minibatch, MKL products, torch's activations) and on ("after": fused
Adam/AdamW, arrays gathered when read, oneDNN for large products on AMD CPUs, sigmoid-form GELU, compiled
sigmoid-form Mish: see srpo_bench/core/nn.py), interleaved in rounds in one process; medians over rounds.

    taskset -c 0 python benchmarks/train_steps.py [--task toy-two-moons] [--methods all] [--steps 40] [--rounds 3]
        [--profile] [--off ONEDNN_LINEAR]

`--off FLAG` A/Bs one lever instead (a switch in `srpo_bench.core.levers.SWITCHES`): the "before" column is every
lever on but that one, the "after" column all of them on.

`--profile` adds, after the rounds, one profiled pass per method with the levers on: per stage, the milliseconds
per step and the share spent in matrix products (addmm/mm/bmm forward and backward, self time). The products
are the floor no framework can cut on the same BLAS, so `1 / share` bounds what removing everything else
(optimizer, activations, sampling, Python) could gain for that stage.

Each method trains its official configuration (`paper` profile: official batch sizes and networks) with every
stage's step count capped at --steps, from scratch in a temporary stage folder (nothing cached), at one torch
thread. Steps/s is the stage's step loop alone (`FitContext.step_timings`: setup and periodic evaluations left
out; SfBC's critic plans on 256 states).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from types import ModuleType

import torch

from srpo_bench.config import resolve_config
from srpo_bench.core import nn
from srpo_bench.core.agents import Agent
from srpo_bench.core.levers import SWITCHES, set_training_levers
from srpo_bench.core.stages import FitContext
from srpo_bench.progress import Reporter
from srpo_bench.registry import expand_methods, get_method
from srpo_bench.runner import fit_context
from srpo_bench.tasks import get_task

# the settings that count a stage's steps, per method (any other method: every int field named *steps but the
# samplers' step counts, which set the work per step: diffusion_steps, FQL's Euler flow_steps)
# (SfBC's critic plans on 256 states instead of all: the planning pass is setup, not steps, and takes minutes)
SAMPLER_STEPS = {"diffusion_steps", "flow_steps"}
STEP_SETTINGS = {"sfbc": {"behavior_steps": None, "critic_steps_per_epoch": None, "critic_epochs_per_iteration": 1,
                          "planning_states": 256}}


def step_overrides(method: str, steps: int) -> dict[str, str]:
    if method in STEP_SETTINGS:
        return {key: str(steps if value is None else value) for key, value in STEP_SETTINGS[method].items()}
    fields = get_method(method).Config.__dataclass_fields__
    return {name: str(steps) for name, field in fields.items()
            if name.endswith("steps") and name not in SAMPLER_STEPS and field.type in ("int", int)}


# the matrix products of a step on CPU (forward and backward of Linear and the batched ensembles)
MATRIX_PRODUCTS = {"aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::addbmm", "mkldnn::_linear_pointwise"}


def train(task_name: str, method: str, steps: int, levers: bool, overrides: dict[str, str] | None = None,
          off: str | None = None) -> FitContext:
    """Fit `method` from scratch with every stage capped at `steps` (or the given step settings), the levers on or
    off (`off`: all on but that switch); the context holds the step timings."""
    any_on = levers or off is not None
    set_training_levers(any_on)
    if off is not None:
        setattr(lever_module(off), off, False)
    if any_on:
        # stages of >= nn.COMPILE_MIN_STEPS steps run the compiled Mish; these short timed stages stand for long
        # ones, so they do too (`main` compiles the kernels for each stage's sizes in a warm-up fit, untimed)
        nn.COMPILE_MIN_STEPS = 0
    ctx, _ = fit_paper(task_name, method, step_overrides(method, steps) if overrides is None else overrides)
    return ctx


def lever_module(switch: str) -> ModuleType:
    """The module holding the training lever `switch` (ValueError: no such lever)."""
    for module, name in SWITCHES:
        if name == switch:
            return module
    raise ValueError(f"no training lever named {switch}; the levers: {', '.join(name for _, name in SWITCHES)}")


def fit_paper(task_name: str, method: str, overrides: dict[str, str]) -> tuple[FitContext, Agent]:
    """`method`'s paper configuration with these settings, fitted from scratch in a temporary stage folder without
    periodic evaluations: the context (step timings, dataset) and the agent."""
    task = get_task(task_name)
    config = resolve_config(get_method(method), task, "paper", overrides)
    with tempfile.TemporaryDirectory() as out:
        config, ctx = fit_context(task, method, task.load(), 0, "paper", Path(out), torch.device("cpu"),
                                  Reporter(quiet=True), config=config)
        ctx.evaluation = None  # periodic evaluations are not training steps
        agent = get_method(method)().fit(ctx, config)
    return ctx, agent


def stage_rates(task_name: str, method: str, steps: int, levers: bool, off: str | None = None
                ) -> dict[str, float]:
    ctx = train(task_name, method, steps, levers, off=off)
    return {stage: done / seconds for stage, (done, seconds) in ctx.step_timings.items() if done}


def matrix_product_shares(task_name: str, method: str, steps: int) -> dict[str, tuple[float, float]]:
    """Per stage: (ms per step, share of the stage's wall time in matrix products), from one profiled fit."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        ctx = train(task_name, method, steps, levers=True)
    events = list(profile.events())
    shares = {}
    for stage_range in (event for event in events if event.name.startswith("stage:")):
        stage = stage_range.name.removeprefix("stage:")
        start, end = stage_range.time_range.start, stage_range.time_range.end
        products = sum(event.self_cpu_time_total for event in events if event.name in MATRIX_PRODUCTS
                       and start <= event.time_range.start and event.time_range.end <= end)
        done = ctx.step_timings[stage][0]
        if done:
            shares[stage] = ((end - start) / 1e3 / done, products / (end - start))
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="toy-two-moons")
    parser.add_argument("--methods", default="all")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="matrix-product share per stage (levers on)")
    parser.add_argument("--off", metavar="LEVER", help="A/B one lever: 'before' is every lever on but this one")
    args = parser.parse_args()
    if args.off is not None:
        try:
            lever_module(args.off)
        except ValueError as error:
            parser.error(f"--off: {error}")
    before = "levers off" if args.off is None else f"{args.off} off"
    torch.set_num_threads(1)
    rates: dict[tuple[str, str, bool], list[float]] = {}
    for method in expand_methods(args.methods):  # compiles the Mish kernels for every size the stages use
        train(args.task, method, 2, levers=True)
    print(f"load before: {os.getloadavg()}, affinity: {sorted(os.sched_getaffinity(0))}", flush=True)
    for round_index in range(args.rounds):
        for method in expand_methods(args.methods):
            for levers in (False, True):
                off = None if levers else args.off
                for stage, rate in stage_rates(args.task, method, args.steps, levers, off).items():
                    rates.setdefault((method, stage, levers), []).append(rate)
                    print(f"round {round_index} {method} {stage} {'levers on' if levers else before}: "
                          f"{rate:.2f} steps/s", flush=True)
    print(f"load after: {os.getloadavg()}")
    print(f"before: {before}; after: levers on")
    print(f"{'method':13s} {'stage':10s} {'before steps/s':>15s} {'after steps/s':>14s} {'after/before':>13s}")
    for (method, stage, levers), values in rates.items():
        if levers:
            continue
        before, after = statistics.median(values), statistics.median(rates[(method, stage, True)])
        print(f"{method:13s} {stage:10s} {before:15.1f} {after:14.1f} {after / before:12.2f}x")
    if args.profile:
        print(f"{'method':13s} {'stage':10s} {'ms/step (profiled)':>19s} {'matrix products':>16s} {'bound':>7s}")
        for method in expand_methods(args.methods):
            for stage, (milliseconds, share) in matrix_product_shares(args.task, method, args.steps).items():
                print(f"{method:13s} {stage:10s} {milliseconds:19.2f} {share:15.0%} {1 / share:6.2f}x")


if __name__ == "__main__":
    main()
