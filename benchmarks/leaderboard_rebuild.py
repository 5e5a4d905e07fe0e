"""Benchmark: rebuilding the published leaderboard from results/ (target: under 60 s on 2 cores).

    .venv/bin/python benchmarks/leaderboard_rebuild.py [--records results] [--rounds 3]

Each round runs `srpo-bench results build --check --readme README.md` in a fresh process (imports included), the
command .ci/run runs: a full rebuild into a temporary folder (every format and figure, PUBLISH_REPS bootstrap
replications) compared byte for byte with results/leaderboard and README.md's generated sections. Prints each
round's wall time, the median, and the machine's load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BUDGET_SECONDS = 60.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=Path("results"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # the console script installed beside this interpreter (the venv's), as a user and .ci/run call it
    command = [str(Path(sys.executable).parent / "srpo-bench"), "results", "build", "--check", "--records",
               str(args.records), "--readme", str(args.readme)]
    times = []
    for round_ in range(args.rounds):
        load = os.getloadavg()[0]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            print(result.stdout + result.stderr, file=sys.stderr)
            return result.returncode
        times.append(seconds)
        print(f"round {round_ + 1}: {seconds:.1f} s (1-minute load {load:.1f} before)")
    median = statistics.median(times)
    print(f"results build --check: median {median:.1f} s over {len(times)} rounds (min {min(times):.1f}, max "
          f"{max(times):.1f}); budget {BUDGET_SECONDS:.0f} s on 2 cores")
    return 0 if median < BUDGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
