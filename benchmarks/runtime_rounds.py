"""Actions/s per runtime in interleaved rounds (one process, one torch thread): every (method, runtime) is timed
once per round, rounds repeated, medians printed with every round's figure and the load before and after.

    taskset -c 0 python benchmarks/runtime_rounds.py [--task toy-two-moons] [--methods srpo,bc]
        [--runtimes eager,onnx] [--rounds 5] [--out results] [--profile smoke]

Weights come from the results folder's stage cache (trained first if missing); timing does not depend on them.
`srpo-bench speed --runtime ...` gives the same figures once per method; this script is for A/B ratios on a
shared machine, where one timing can be off by a factor of two.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import torch

from srpo_bench.progress import Reporter
from srpo_bench.registry import expand_methods, get_method
from srpo_bench.runner import fit_context
from srpo_bench.runtimes import RuntimeUnavailable, check_runtimes, prepare
from srpo_bench.speed import measure_speed
from srpo_bench.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="toy-two-moons")
    parser.add_argument("--methods", default="srpo,bc")
    parser.add_argument("--runtimes", default="eager,onnx")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--profile", default="smoke")
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = get_task(args.task)
    dataset = task.load()
    runtimes = check_runtimes(args.runtimes)
    acting = {}
    for method in expand_methods(args.methods):
        config, ctx = fit_context(task, method, dataset, 0, args.profile, args.out, torch.device("cpu"),
                                  Reporter(quiet=True))
        agent = get_method(method)().fit(ctx, config)
        for runtime in runtimes:
            try:
                acting[method, runtime] = prepare(agent, runtime, dataset.obs_dim, (1, 256))
            except RuntimeUnavailable as error:
                print(f"{method} {runtime}: {error}")
    print(f"load before: {os.getloadavg()}, affinity: {sorted(os.sched_getaffinity(0))}", flush=True)
    rates: dict[tuple[str, str, int], list[float]] = {}
    for _ in range(args.rounds):
        for (method, runtime), agent in acting.items():
            agent.seed(0)
            result = measure_speed(agent, dataset.obs_dim, (1, 256), repeats=10, max_seconds=3.0,
                                   observations=dataset.observations)
            for size in (1, 256):
                rates.setdefault((method, runtime, size), []).append(result.actions_per_second(size))
    print(f"load after: {os.getloadavg()}")
    for (method, runtime, size), values in rates.items():
        median = statistics.median(values)
        print(f"{method:13s} {runtime:9s} b{size:<4d} {median:12,.0f} actions/s {1e6 / median:9.2f} us/action"
              f"   rounds: {', '.join(f'{v:,.0f}' for v in values)}")


if __name__ == "__main__":
    main()
