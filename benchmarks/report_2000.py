"""Benchmark: `srpo-bench report` over 2,000 synthetic run folders (target: under 60 s on 2 cores, default reps).

    .venv/bin/python benchmarks/report_2000.py [--runs 2000] [--keep DIR] [--reps N] [--sweep 4]

Writes a store shaped like a real grid: 2 profiles x 21 tasks (toy, locomotion-lite, D4RL locomotion) x 5
methods, 9-10 seeds per cell (so seed counts are unequal), 1% failed runs; each finished run has run.json,
eval.json (per-episode scores), curves.json (3 stages x 50 points), speed.json (10 repeats per batch size) and
periodic evaluations. Then it times the CLI in a fresh process (imports included) and prints the wall time.

`--sweep K`: a sweep store instead. Every method but BC also runs K values of its main trade-off setting (SRPO beta,
Diffusion-QL eta, IDQL candidates, SfBC candidates) beside its paper's setting, in folders labelled by the overrides
with run.json "sweep" (as `srpo-bench run --set srpo.beta=...` writes them): 2 profiles x 21 tasks x (4 methods x
(K + 1) + BC) cells, 1-2 seeds each for 2,000 runs, so every group carries 4 K + 5 method labels and 4 tuning views.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASKS = {
    "toy": ["toy-two-moons", "toy-eight-gaussians", "toy-checkerboard"],
    "locomotion-lite": [f"lite-{env}-{tier}-v0" for tier in ("medium", "medium-replay", "medium-expert")
                        for env in ("hopper", "halfcheetah", "walker2d")],
    "locomotion": [f"{env}-{tier}-v2" for tier in ("medium", "medium-replay", "medium-expert")
                   for env in ("hopper", "halfcheetah", "walker2d")],
}
SCALE = {"toy": "toy", "locomotion-lite": "lite", "locomotion": "d4rl"}
METHODS = {"srpo": (1, 30000.0, 75.0), "diffusion-ql": (350, 450.0, 72.0), "idql": (448, 75.0, 74.0),
           "sfbc": (512, 50.0, 68.0), "bc": (1, 32000.0, 50.0)}  # NFE, actions/s at batch 1, typical score
# The setting each method sweeps with --sweep, its values, and what each value does to the typical score.
SWEEPS = {"srpo": ("beta", [0.01, 0.05, 0.2, 1.0, 5.0, 20.0]), "diffusion-ql": ("eta", [0.5, 1.0, 2.0, 2.5, 5.0, 10.0]),
          "idql": ("num_candidates", [1, 4, 16, 64, 128, 256]), "sfbc": ("candidates", [4, 8, 16, 32, 64, 128])}
STAGES = {"srpo": ["behavior", "critic", "policy"], "diffusion-ql": ["joint"], "idql": ["behavior", "critic"],
          "sfbc": ["behavior", "planning"], "bc": ["policy"]}


def configurations(method: str, sweep: int) -> list[dict[str, str]]:
    """The paper's setting ({}) and, with --sweep, the method's first `sweep` values of its SWEEPS setting."""
    if not sweep or method not in SWEEPS:
        return [{}]
    key, values = SWEEPS[method]
    return [{}, *({key: str(value)} for value in values[:sweep])]


def write_store(out: Path, runs: int, rng: random.Random, sweep: int = 0) -> int:
    out.mkdir(parents=True, exist_ok=True)
    (out / "srpo-bench.json").write_text(json.dumps({"schema_version": 2}))
    cells = [(profile, suite, task, method, overrides) for profile in ("quick", "paper")
             for suite, tasks in TASKS.items() for task in tasks for method in METHODS
             for overrides in configurations(method, sweep)]
    written = 0
    seed = 0
    while written < runs:
        for profile, suite, task, method, overrides in cells:
            if written >= runs:
                break
            write_run(out, profile, suite, task, method, seed, rng, failed=rng.random() < 0.01, overrides=overrides)
            written += 1
        seed += 1
    return written


def write_run(out: Path, profile: str, suite: str, task: str, method: str, seed: int, rng: random.Random,
              failed: bool, overrides: dict[str, str] | None = None) -> None:
    overrides = overrides or {}
    label = method + (f"[{','.join(f'{k}={v}' for k, v in sorted(overrides.items()))}]" if overrides else "")
    folder = out / "runs" / profile / task / label / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    nfe, speed, typical = METHODS[method]
    episodes = 256 if suite == "toy" else (5 if profile == "quick" else 20)
    stage_seconds = [{"stage": s, "kind": s, "key": f"{seed:016x}", "origin": "trained",
                      "seconds": rng.uniform(5, 300)} for s in STAGES[method]]
    run = {"schema_version": 2, "status": "failed" if failed else "finished", "task": task, "suite": suite,
           "family": "toy" if suite == "toy" else "locomotion", "score_scale": SCALE[suite], "method": method,
           "seed": seed, "profile": profile, "config": {"lr": 3e-4, "steps": 1000, **overrides},
           "overrides": overrides, **({"sweep": sorted(overrides)} if overrides else {}),
           "selection": "final", "harness": {"eval_episodes": episodes, "eval_seeds": "1001.."},
           "dataset": {"average_normalized": rng.uniform(5, 60)}, "device": {"type": "cpu", "threads": 1},
           "versions": {"torch": "2.13.0+cpu"}, "git_commit": "0" * 40, "started": "2026-12-01T00:00:00+00:00",
           "finished": "2026-12-01T01:00:00+00:00", "stages": stage_seconds,
           "seconds": {"fit": sum(s["seconds"] for s in stage_seconds), "eval": 3.0, "total": 400.0}}
    if failed:
        run["failure"] = {"stage": STAGES[method][-1], "step": 1200, "reason": "loss became NaN",
                          "last_metrics": {"loss": 1e12}}
    (folder / "run.json").write_text(json.dumps(run))
    if failed:
        return
    shift = 0.0
    if overrides:  # a swept value moves the typical score: a hump, the third value of the list scores best
        key, values = SWEEPS[method]
        shift = 6.0 - 4.0 * abs([str(v) for v in values].index(overrides[key]) - 2)
    mean = typical + shift + rng.gauss(0, 8)
    scores = [mean + rng.gauss(0, 10) for _ in range(episodes)]
    curve = [{"stage": STAGES[method][-1], "step": step, "mean_normalized": mean + rng.gauss(-10 + step / 500, 5),
              "normalized": []} for step in range(0, 5000, 500)]
    (folder / "eval.json").write_text(json.dumps({
        "episodes": episodes, "seeds": list(range(1001, 1001 + episodes)), "returns": scores, "normalized": scores,
        "lengths": [1000] * episodes, "mean_normalized": sum(scores) / episodes, "during_training": curve,
        "summaries": {"final": mean, "mean_last3": mean, "best_optimistic": mean + 3, "points": len(curve)}}))
    (folder / "curves.json").write_text(json.dumps({
        stage: [{"step": step, "loss": 1.0 / (1 + step / 100) + rng.random() * 0.05} for step in range(0, 5000, 100)]
        for stage in STAGES[method]}))
    batches = {}
    for size, scale in (("1", 1.0), ("256", 30.0 if nfe == 1 else 1.1)):
        samples = [speed * scale * rng.uniform(0.85, 1.15) for _ in range(10)]
        batches[size] = {"actions_per_second": sorted(samples)[5], "samples": samples, "repeats": 10}
    (folder / "speed.json").write_text(json.dumps({
        "batches": batches, "nfe_per_action": nfe, "device": {"type": "cpu", "name": "Synthetic CPU"},
        "torch_threads": 1, "context": "in-run",
        "machine_load": {"loadavg_before": [1.0, 1.0, 1.0], "cpu_count": 2, "torch_threads": 1}}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--keep", type=Path, help="write the store here and keep it (default: a temporary folder)")
    parser.add_argument("--reps", type=int, help="bootstrap reps (default: the CLI's default)")
    parser.add_argument("--sweep", type=int, default=0, choices=range(0, 7), metavar="K",
                        help="a sweep store: K values of each method's main setting beside its paper's setting (0-6)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        out = args.keep or Path(scratch) / "results"
        started = time.perf_counter()
        count = write_store(out, args.runs, random.Random(0), args.sweep)
        print(f"wrote {count} run folders in {time.perf_counter() - started:.1f} s: {out}")
        command = [str(Path(sys.executable).with_name("srpo-bench")), "report", "--out", str(out)]
        if args.reps:
            command += ["--reps", str(args.reps)]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(f"report failed ({result.returncode}):\n{result.stderr[-3000:]}")
        print(result.stdout.strip().splitlines()[-1])
        print(f"srpo-bench report over {count} run folders: {seconds:.1f} s wall")


if __name__ == "__main__":
    main()
