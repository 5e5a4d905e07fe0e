"""The one timing harness for every Agent: actions per second at fixed batch sizes, in one process.

For each batch size: warm-up calls (first-call allocation, lazy init, cuDNN autotuning), then `repeats`
timed measurements, each timing k back-to-back `agent.act` calls, with k chosen from the warm-up so a
measurement lasts at least `min_seconds` (a batch-1 SRPO call takes ~0.1 ms on CPU, far too short
to time alone). On CUDA the device is synchronized before each clock read, since kernels run
asynchronously. A time budget per batch size keeps slow agents (seconds per 256-batch call on a
CPU) from taking minutes: it shortens warm-up and cuts repeats, never below 3, and the result
records how many were made.

The paper's claim is a ratio ("more than 25 times" faster sampling, the SRPO paper's abstract), so compare
methods through `speedup_table` on results measured in the same process and machine.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from srpo_bench.core.agents import Agent

MIN_REPEATS = 3
WARMUP_SHARE = 0.25  # warm-up may use at most this share of the per-batch-size budget
#: Where a timing was taken (`SpeedResult.context`, speed.json's "context"). The report prefers "alone" and names
#: the context of every timing it shows; whether other runs of the results folder were training on the host while
#: a runner's timing was taken is a separate fact (speed.json's `exclusive`, `concurrent_runs`).
CONTEXTS = {
    "alone": "`srpo-bench speed`: a process of its own, nothing of a grid running",
    "in-run": "by the run's own process right after its evaluation (a serial grid)",
    "timing-phase": "after training, one run at a time (the timing phase of --jobs N or Ray, or a resumed run)",
}


@dataclass
class BatchTiming:
    """Timings at one batch size. Actions/s = batch * calls / seconds of one measurement."""

    batch_size: int
    actions_per_second: float  # median over measurements
    actions_per_second_p25: float
    actions_per_second_p75: float
    ms_per_call: float  # median over measurements
    calls_per_repeat: int  # k, calibrated in warm-up
    repeats: int  # measurements made
    repeats_requested: int
    calls_timed: int  # calls_per_repeat * repeats
    warmup_calls: int
    seconds_timed: float
    capped: bool  # the time budget cut warm-up or repeats
    # Actions/s of every measurement, in order: the report bootstraps speedup intervals over these.
    samples: list[float] = field(default_factory=list)


@dataclass
class SpeedResult:
    batches: dict[int, BatchTiming]
    network_evaluations: dict[str, int]
    nfe_per_action: int
    device_type: str
    device_name: str
    torch_version: str
    torch_threads: int
    # one of CONTEXTS: where it was timed. The report prefers "alone" timings and says which it used.
    context: str = "in-run"
    # os.getloadavg() before and after timing, CPU count and torch threads: whether the machine was busy.
    machine_load: dict[str, Any] = field(default_factory=dict)

    def actions_per_second(self, batch_size: int) -> float:
        return self.batches[batch_size].actions_per_second

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": {str(size): asdict(timing) for size, timing in self.batches.items()},
            "network_evaluations": {key: int(value) for key, value in self.network_evaluations.items()},
            "nfe_per_action": int(self.nfe_per_action),
            "device": {"type": self.device_type, "name": self.device_name},
            "torch_version": self.torch_version,
            "torch_threads": int(self.torch_threads),
            "context": self.context,
            "machine_load": dict(self.machine_load),
        }


def measure_speed(
    agent: Agent,
    obs_dim: int,
    batch_sizes: tuple[int, ...] = (1, 256),
    warmup: int = 10,
    repeats: int = 30,
    min_seconds: float = 0.02,
    observations: np.ndarray | None = None,
    max_seconds: float = 20.0,
    seed: int = 0,
    context: str = "in-run",
) -> SpeedResult:
    """Time `agent.act` at each batch size.

    Observations are rows drawn from `observations` (dataset states, so conditional samplers see
    realistic inputs) or, without it, N(0, 1). `min_seconds` is the least duration of one measurement;
    `max_seconds` the budget per batch size (warm-up plus measurements). `context` says where it was timed (one of
    CONTEXTS); the machine's load is recorded either way.
    """
    if context not in CONTEXTS:
        raise ValueError(f"unknown timing context '{context}' (choices: {', '.join(CONTEXTS)})")
    if not batch_sizes or any(int(size) < 1 for size in batch_sizes):
        raise ValueError(f"batch sizes must be positive integers, got {batch_sizes}")
    if warmup < 1 or repeats < MIN_REPEATS:
        raise ValueError(f"need warmup >= 1 and repeats >= {MIN_REPEATS}, got {warmup} and {repeats}")
    if observations is not None and (np.ndim(observations) != 2 or np.shape(observations)[1] != obs_dim):
        raise ValueError(f"observations must have shape [N, {obs_dim}], got {np.shape(observations)}")
    rng = np.random.default_rng(seed)
    load_before = _load_average()
    batches = {}
    for size in (int(s) for s in batch_sizes):
        batch = _observation_batch(size, obs_dim, observations, rng, agent.device)
        batches[size] = _time_batch(agent, batch, warmup, repeats, min_seconds, max_seconds)
    device_type, device_name = describe_device(agent.device)
    return SpeedResult(
        batches=batches, network_evaluations=dict(agent.network_evaluations),
        nfe_per_action=agent.nfe_per_action, device_type=device_type, device_name=device_name,
        torch_version=torch.__version__, torch_threads=torch.get_num_threads(), context=context,
        machine_load={"loadavg_before": load_before, "loadavg_after": _load_average(),
                      "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()},
    )


def _load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none, e.g. Windows)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _observation_batch(
    size: int, obs_dim: int, observations: np.ndarray | None, rng: np.random.Generator, device: torch.device
) -> torch.Tensor:
    if observations is None:
        rows = rng.standard_normal((size, obs_dim))
    else:
        rows = np.asarray(observations)[rng.integers(0, len(observations), size=size)]
    return torch.as_tensor(rows, dtype=torch.float32, device=device)


def _time_batch(
    agent: Agent, batch: torch.Tensor, warmup: int, repeats: int, min_seconds: float, max_seconds: float
) -> BatchTiming:
    size = int(batch.shape[0])
    with torch.inference_mode():
        warmup_times: list[float] = []
        while len(warmup_times) < warmup and (not warmup_times or sum(warmup_times) < WARMUP_SHARE * max_seconds):
            warmup_times.append(_timed_calls(agent, batch, 1))
        # The first call pays one-off costs; the later ones estimate a call's steady duration.
        per_call = max(1e-9, float(np.median(warmup_times[1:] if len(warmup_times) > 1 else warmup_times)))
        calls = max(1, math.ceil(min_seconds / per_call))
        left = max_seconds - sum(warmup_times)
        planned = max(MIN_REPEATS, min(repeats, int(left // (calls * per_call))))
        measured: list[float] = []
        while len(measured) < planned:
            measured.append(_timed_calls(agent, batch, calls))
            # A misestimated call time must not blow the budget either.
            if len(measured) >= MIN_REPEATS and sum(warmup_times) + sum(measured) > max_seconds:
                break
    seconds = np.array(measured)
    rates = size * calls / seconds
    return BatchTiming(
        batch_size=size, actions_per_second=float(np.median(rates)),
        actions_per_second_p25=float(np.percentile(rates, 25)),
        actions_per_second_p75=float(np.percentile(rates, 75)),
        ms_per_call=float(np.median(seconds / calls) * 1000.0), calls_per_repeat=calls, repeats=len(measured),
        repeats_requested=repeats, calls_timed=calls * len(measured), warmup_calls=len(warmup_times),
        seconds_timed=float(seconds.sum()), capped=len(measured) < repeats or len(warmup_times) < warmup,
        samples=[float(rate) for rate in rates],
    )


def _timed_calls(agent: Agent, batch: torch.Tensor, calls: int) -> float:
    """Seconds for `calls` back-to-back act calls, the device synchronized before both clock reads."""
    _synchronize(batch.device)
    start = time.perf_counter()
    for _ in range(calls):
        agent.act(batch)
    _synchronize(batch.device)
    return time.perf_counter() - start


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def describe_device(device: torch.device) -> tuple[str, str]:
    """(type, human name): the GPU's name on CUDA, else the CPU model from /proc/cpuinfo or platform."""
    device = torch.device(device)
    if device.type == "cuda":
        return "cuda", torch.cuda.get_device_name(device)
    return device.type, cpu_model()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def speedup_table(results: dict[str, SpeedResult], reference: str = "srpo") -> list[dict[str, Any]]:
    """One row per other method: the reference's actions/s over the method's, per batch size both timed.

    A ratio above 1 means the reference is faster. Only ratios of results measured in the same process
    mean anything (timings drift by ~25% between runs on shared machines).
    """
    if reference not in results:
        raise ValueError(f"speedup reference '{reference}' was not timed; timed: {', '.join(results) or 'none'}")
    base = results[reference]
    rows = []
    for name, result in results.items():
        if name == reference:
            continue
        row: dict[str, Any] = {"method": name, "nfe_per_action": result.nfe_per_action}
        for size, timing in base.batches.items():
            other = result.batches.get(size)
            row[f"speedup b{size}"] = (
                timing.actions_per_second / other.actions_per_second if other is not None else None
            )
        rows.append(row)
    return rows


def runtime_table(results: dict[str, dict[str, SpeedResult | str]], reference: str = "srpo") -> list[dict[str, Any]]:
    """One row per (runtime, method): network evaluations per action, actions/s and microseconds per action at
    each batch size, and the reference's speedup over the method *within the same runtime* (never one method's
    best runtime against another's eager). `results[runtime][method]` is a SpeedResult, or the reason (str) the
    runtime could not run the method, shown in place of the numbers."""
    rows: list[dict[str, Any]] = []
    for runtime, by_method in results.items():
        base = by_method.get(reference)
        for method, result in by_method.items():
            row: dict[str, Any] = {"runtime": runtime, "method": method}
            if isinstance(result, str):
                rows.append({**row, "unavailable": result})
                continue
            row["nfe_per_action"] = result.nfe_per_action
            for size, timing in result.batches.items():
                row[f"actions/s b{size}"] = timing.actions_per_second
                row[f"us/action b{size}"] = 1e6 / timing.actions_per_second
            for size, timing in result.batches.items():
                if isinstance(base, SpeedResult) and size in base.batches and method != reference:
                    ratio = base.batches[size].actions_per_second / timing.actions_per_second
                    row[f"{reference} speedup b{size}"] = ratio
            rows.append(row)
    return rows
