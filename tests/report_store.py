"""Write small results stores by hand for the report tests: the files the runner writes, with chosen scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from srpo_bench.protocols import load_protocol
from srpo_bench.store import MARKER, SCHEMA_VERSION

SUITES = {"toy": ("toy", "toy"), "lite": ("locomotion-lite", "lite"), "d4rl": ("locomotion", "d4rl"),
          "ogbench": ("ogbench", "ogbench")}


def make_store(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps({"schema_version": SCHEMA_VERSION}))
    return out


def write_run(out: Path, task: str, method: str, seed: int, episode_scores: list[float], profile: str = "quick",
              kind: str = "toy", status: str = "finished", speed: dict[str, Any] | None = None,
              overrides: dict[str, str] | None = None, failure: dict[str, Any] | None = None,
              config: dict[str, Any] | None = None, finished: str = "2026-12-01T00:00:00+00:00",
              family: str = "toy", harness: dict[str, Any] | None = None, dataset: dict[str, Any] | None = None,
              summaries: dict[str, Any] | None = None, task_note: str = "") -> Path:
    """One run folder; `episode_scores` are the normalized per-episode scores (their mean is the run's score)."""
    suite, scale = SUITES[kind]
    folder = out / "runs" / profile / task / method / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    run = {
        "schema_version": SCHEMA_VERSION, "status": status, "task": task, "suite": suite, "family": family,
        "score_scale": scale, "method": method, "seed": seed, "profile": profile, "config": config or {"lr": 3e-4},
        "overrides": overrides or {}, "selection": "final",
        "harness": harness or {"eval_episodes": len(episode_scores)},
        "dataset": dataset or {"average_normalized": 30.0}, "device": {"type": "cpu", "threads": 1, "torch": "2.13.0"},
        "versions": {"torch": "2.13.0"}, "git_commit": "abc123", "started": finished, "finished": finished,
        "stages": [{"stage": "policy", "seconds": 2.0 + seed}], "seconds": {"fit": 2.0 + seed}, "task_note": task_note,
    }
    if failure is not None:
        run["failure"] = failure
    (folder / "run.json").write_text(json.dumps(run))
    if status == "finished":
        mean = sum(episode_scores) / len(episode_scores)
        (folder / "eval.json").write_text(json.dumps({
            "episodes": len(episode_scores), "normalized": episode_scores, "returns": episode_scores,
            "mean_normalized": mean, **({"summaries": summaries} if summaries is not None else {})}))
        (folder / "curves.json").write_text(json.dumps({"policy": [{"step": s, "loss": 1.0 / (1 + s)}
                                                                   for s in range(0, 100, 10)]}))
        if speed is not None:
            (folder / "speed.json").write_text(json.dumps(speed))
    return folder


def good_store(root: Path, seeds: int = 3) -> Path:
    """Two toy tasks, SRPO and IDQL, `seeds` finished runs each with timings."""
    out = make_store(root)
    for seed in range(seeds):
        for task in ("toy-two-moons", "toy-checkerboard"):
            write_run(out, task, "srpo", seed, [80.0 + seed, 82.0 + seed],
                      speed=speed_record([1000.0, 1100.0, 900.0], [9e4, 1e5, 1.1e5]))
            write_run(out, task, "idql", seed, [70.0 + seed, 60.0],
                      speed=speed_record([10.0, 11.0, 9.0], [100.0, 110.0, 90.0], nfe=448))
    return out


def speed_record(samples_b1: list[float], samples_b256: list[float], nfe: int = 1, context: str = "in-run",
                 threads: int = 1) -> dict[str, Any]:
    """A speed.json body with per-repeat samples, as speed.measure_speed writes it."""
    def batch(samples: list[float]) -> dict[str, Any]:
        ordered = sorted(samples)
        return {"actions_per_second": ordered[len(ordered) // 2], "samples": samples}

    return {"batches": {"1": batch(samples_b1), "256": batch(samples_b256)}, "nfe_per_action": nfe,
            "device": {"type": "cpu", "name": "Test CPU"}, "torch_threads": threads, "context": context,
            "machine_load": {"loadavg_before": [0.5, 0.5, 0.5], "cpu_count": 2, "torch_threads": threads}}


def protocol_run(out: Path, protocol_name: str, task: str, method: str, seed: int, score: float, kind: str,
                 family: str, **changes: Any) -> Path:
    """A run folder whose record complies with a shipped protocol (its profile, schedule, episodes, evaluations
    and a full dataset), scoring `score` on every episode; `changes` replace any write_run argument (to break
    compliance on purpose)."""
    protocol = load_protocol(protocol_name)
    arguments: dict[str, Any] = dict(
        profile=protocol.profile, kind=kind, family=family, config=dict(protocol.budget_for(family, method)),
        harness={"eval_episodes": protocol.episodes,
                 "evaluations_during_training": protocol.evaluations_during_training},
        dataset={"transitions": protocol.data.min_transitions,
                 "fingerprint": protocol.data.fingerprints.get(task, "f" * 16), "average_normalized": 30.0},
        summaries={"final": score, "mean_last3": score, "best_optimistic": score, "points": 10},
        task_note="success_timing=post" if protocol.data.success_timing else "")
    arguments.update(changes)
    return write_run(out, task, method, seed, [score] * protocol.episodes, **arguments)
