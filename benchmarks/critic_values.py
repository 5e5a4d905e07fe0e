"""Does a trained IQL critic tell the states near success from the rest? V(s) on an OGBench run's own data.

    python benchmarks/critic_values.py RESULTS/runs/ogbench-cpu/cube-single-play-singletask-task2-v0/srpo/seed0 ...

For each run folder of a method with an IQL critic stage named "critic" (SRPO, IDQL), the critic is loaded from the
results folder's stage artifact (nothing is trained) and V(s) is computed on every state of the task's dataset.
States are grouped by how many steps remain until the task's success in their own episode (OGBench's singletask
relabelling: `terminals` = success; rewards are -1 per step until then): 0 (success), 1-10, 11-50, and none within
50 steps. With OGBench's rewards and gamma 0.99, a critic that has learned the task gives V near 0 at success,
about -(1 - 0.99^d) / 0.01 at d steps before it, and much lower elsewhere; an untrained one gives the same V to all.
`P(near > far)` is the probability that a random state 1-10 steps before success has a higher V than a random state
with no success within 50 steps (0.5: no separation).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from srpo_bench import store
from srpo_bench.core.critics import IQLCritic
from srpo_bench.progress import Reporter
from srpo_bench.runner import fit_context
from srpo_bench.tasks import get_task

GROUPS = {"success (0)": (0, 0), "1-10 steps before": (1, 10), "11-50 steps before": (11, 50)}
FAR = 50


def steps_to_success(terminals: np.ndarray, episode_ends: np.ndarray) -> np.ndarray:
    """Per row, the steps until the next success row of its episode (0 on a success row); -1 when none follows."""
    out = np.full(len(terminals), -1, dtype=np.int64)
    following = -1
    for row in range(len(terminals) - 1, -1, -1):
        if episode_ends[row]:
            following = -1
        if terminals[row] > 0.5:
            following = row
        out[row] = following - row if following >= 0 else -1
    return out


def separation(near: np.ndarray, far: np.ndarray, pairs: int = 200_000, seed: int = 0) -> float:
    """P(V(near) > V(far)) over random pairs (ties count half)."""
    rng = np.random.default_rng(seed)
    a, b = rng.choice(near, pairs), rng.choice(far, pairs)
    return float(np.mean(a > b) + 0.5 * np.mean(a == b))


def run_values(run_dir: Path) -> dict[str, object]:
    run = json.loads((run_dir / "run.json").read_text())
    out = run_dir.parents[4]  # RESULTS/runs/PROFILE/TASK/METHOD/seedK
    task = get_task(run["task"])
    dataset = task.load()
    config, ctx = fit_context(task, run["method"], dataset, int(run["seed"]), run["profile"], out,
                              torch.device("cpu"), Reporter(quiet=True), {run["method"]: run.get("overrides") or {}})
    stage = next(stage for stage in ctx.plan if stage.name == "critic")
    artifact = store.stage_dir(out) / f"{stage.definition}-{ctx.keys['critic']}.pt"
    saved = torch.load(artifact, map_location="cpu", weights_only=False)
    critic = IQLCritic(dataset.obs_dim, dataset.act_dim, stage.config)
    critic.load_state_dict(saved["state"])
    with torch.no_grad():
        values = torch.cat([critic.v(chunk) for chunk in torch.as_tensor(dataset.observations).split(65536)]).numpy()
    distance = steps_to_success(np.asarray(dataset.terminals), np.asarray(dataset.episode_ends))
    far = values[(distance < 0) | (distance > FAR)]
    result: dict[str, object] = {"run": str(run_dir), "method": run["method"], "seed": run["seed"]}
    for name, (low, high) in GROUPS.items():
        chosen = values[(distance >= low) & (distance <= high)]
        result[name] = (float(chosen.mean()), len(chosen))
    result[f"none within {FAR}"] = (float(far.mean()), len(far))
    result["P(near > far)"] = separation(values[(distance >= 1) & (distance <= 10)], far)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (…/runs/PROFILE/TASK/METHOD/seedK)")
    args = parser.parse_args()
    for run_dir in args.runs:
        result = run_values(run_dir)
        print(f"{result['method']} seed {result['seed']}:")
        for name, value in result.items():
            if isinstance(value, tuple):
                print(f"  V {name:>22}: {value[0]:8.2f}  ({value[1]:,} states)")
        print(f"  P(near > far): {result['P(near > far)']:.3f}")


if __name__ == "__main__":
    main()
