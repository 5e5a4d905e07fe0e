"""Actions/s per runtime in interleaved rounds (one process, one torch thread): every (method, runtime) is timed
once per round, rounds repeated, medians printed with every round's figure and the load before and after.

    taskset -c 0 python benchmarks/runtime_rounds.py [--task toy-two-moons] [--methods srpo,bc]
        [--runtimes eager,onnx] [--rounds 5] [--out results] [--profile smoke] [--off SHARED_TIMES]
        [--batch-sizes 1,256] [--max-seconds 3]

Weights come from the results folder's stage cache (trained first if missing); timing does not depend on them.
`srpo-bench speed --runtime ...` gives the same figures once per method; this script is for A/B ratios on a
shared machine, where one timing can be off by a factor of two. `--off FLAG` A/Bs an acting lever of
`srpo_bench.core.nn` (e.g. SHARED_TIMES): every (method, runtime) is also prepared (exported, compiled) and timed
with the flag off, in the same rounds, and the on/off ratio of the medians is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
from collections.abc import Iterator
from pathlib import Path

import torch

from srpo_bench.core import nn
from srpo_bench.progress import Reporter
from srpo_bench.registry import expand_methods, get_method
from srpo_bench.runner import fit_context
from srpo_bench.runtimes import RuntimeUnavailable, check_runtimes, prepare
from srpo_bench.speed import measure_speed
from srpo_bench.tasks import get_task


@contextlib.contextmanager
def lever(flag: str | None, on: bool) -> Iterator[None]:
    """`srpo_bench.core.nn.<flag>` set to `on` inside (nothing to set without a flag)."""
    if flag is None:
        yield
        return
    before = getattr(nn, flag)
    setattr(nn, flag, on)
    try:
        yield
    finally:
        setattr(nn, flag, before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="toy-two-moons")
    parser.add_argument("--methods", default="srpo,bc")
    parser.add_argument("--runtimes", default="eager,onnx")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--off", metavar="FLAG", help="also time with srpo_bench.core.nn.FLAG = False (an A/B)")
    parser.add_argument("--batch-sizes", default="1,256")
    parser.add_argument("--max-seconds", type=float, default=3.0, help="per timing (method, runtime, batch size)")
    args = parser.parse_args()
    try:
        sizes = tuple(int(size) for size in args.batch_sizes.split(","))
    except ValueError:
        parser.error(f"--batch-sizes: comma-separated integers, got {args.batch_sizes!r}")
    if args.off is not None and not isinstance(getattr(nn, args.off, None), bool):
        parser.error(f"--off: srpo_bench.core.nn has no switch named {args.off}")
    torch.set_num_threads(1)
    task = get_task(args.task)
    dataset = task.load()
    runtimes = check_runtimes(args.runtimes)
    settings = (True, False) if args.off else (True,)
    acting = {}
    for method in expand_methods(args.methods):
        config, ctx = fit_context(task, method, dataset, 0, args.profile, args.out, torch.device("cpu"),
                                  Reporter(quiet=True))
        agent = get_method(method)().fit(ctx, config)
        for runtime in runtimes:
            for on in settings:
                try:
                    with lever(args.off, on):
                        acting[method, runtime, on] = prepare(agent, runtime, dataset.obs_dim, sizes)
                except RuntimeUnavailable as error:
                    print(f"{method} {runtime}: {error}")
    print(f"load before: {os.getloadavg()}, affinity: {sorted(os.sched_getaffinity(0))}", flush=True)
    rates: dict[tuple[str, str, bool, int], list[float]] = {}
    for _ in range(args.rounds):
        for (method, runtime, on), agent in acting.items():
            agent.seed(0)
            with lever(args.off, on):
                result = measure_speed(agent, dataset.obs_dim, sizes, repeats=10, max_seconds=args.max_seconds,
                                       observations=dataset.observations)
            for size in sizes:
                rates.setdefault((method, runtime, on, size), []).append(result.actions_per_second(size))
    print(f"load after: {os.getloadavg()}")
    for (method, runtime, on, size), values in rates.items():
        median = statistics.median(values)
        label = runtime if args.off is None else f"{runtime} {args.off}={'on' if on else 'off'}"
        print(f"{method:13s} {label:9s} b{size:<4d} {median:12,.0f} actions/s {1e6 / median:9.2f} us/action"
              f"   rounds: {', '.join(f'{v:,.0f}' for v in values)}")
    if args.off:
        for (method, runtime, on, size), values in rates.items():
            if on and (method, runtime, False, size) in rates:
                ratio = statistics.median(values) / statistics.median(rates[method, runtime, False, size])
                print(f"{method:13s} {runtime:9s} b{size:<4d} {args.off} on/off: {ratio:.3f}x actions/s")


if __name__ == "__main__":
    main()
