"""The GPU check: one command that proves the CUDA path in a few minutes of GPU time, and its CPU rehearsal.

    python benchmarks/gpu_check.py --out gpu-check            # on a GPU machine: at most 8 minutes
    python benchmarks/gpu_check.py --cpu-rehearsal --out DIR   # the same parts on the CPU at tiny sizes (< 2 min)
    nox -s gpu-check [-- --cpu-rehearsal]
    options: --parts device,smoke,... (a subset, in this order)  --methods bc,srpo (default: every registered method)
             --cap-scale 2 (every cap doubled: a slower or busy machine)

Parts, in order, each in its own process (and process group) with its own time cap (`CAPS`). A part that fails or
runs out of time is recorded as such and the others go on; on its cap the part's whole process group is killed
(`os.killpg`: a packed grid's workers with it), and after every part whatever it left running. The exit code is 0
only when every part passed.

1. `device`    device, driver, torch and CUDA versions, free memory.
2. `smoke`     every method at the smoke profile on `toy-two-moons` (real data) and on an OGBench-shaped task
               (`cube-single-play-singletask-task1-v0`: synthetic transitions of its shapes, evaluated in its
               environment), through the runner, each run trained, evaluated and timed (batches 1 and 256).
3. `acting`    every method's act under every runtime there is: eager, compiled (CUDA graphs on a GPU), onnx when
               ONNX Runtime can run on the device (`onnxruntime-gpu` on CUDA), batches 1 and 256, in this process
               (`runtimes.prepare` + `speed.measure_speed`, what `srpo-bench speed --runtime` runs) on the smoke
               part's weights (its stage cache; trained here if absent).
4. `training`  training steps/s per stage of every method at the paper batch sizes: eager, then with the
               captured-step lever (`srpo_bench.core.stages.CAPTURE_STEPS`); TF32 off and on, with the drift of one
               stage's loss (SRPO's IQL critic) after N steps; the host syncs of those steps as CUDA counts them
               (`torch.cuda.set_sync_debug_mode("warn")`; not on a CPU).
5. `packing`   the same 4 smoke runs one after another and packed 4 at a time, through the executor of
               `srpo-bench run --jobs N`; the throughput ratio.

Where each figure lands (OUT is --out):
- OUT/results is an ordinary results folder: `srpo-bench report OUT/results` shows the smoke runs (scores, in-run
  timings: `runs/smoke/<task>/<method>/seed0/`) and the acting timings under every runtime
  (`speed/<task>-<device>.json`, eager; `speed/runtimes/<task>-<device>.json`, every runtime), named as the report
  names runs with changed settings (the rehearsal's `idql[actor_steps=3,...,num_candidates=2]`); from a clean checkout,
  `srpo-bench results add OUT/results --exploratory` contributes both like any other runs (smoke runs comply with no
  protocol: exploratory).
- OUT/gpu-check/<part>.json: each part's record (the profile it ran at, its figures, errors); training steps/s per
  method, stage and lever, the TF32 drift and the CUDA sync warnings in `training.json`; the packing walls and
  `throughput_ratio_packed_over_serial` in `packing.json`; the device in `device.json`.
- OUT/gpu-check/summary.json (machine) and summary.md (human): each part's status, seconds and cap, and the
  headline figures of every part in one page.

The rehearsal (`--cpu-rehearsal`) runs the same functions on the CPU at the `REHEARSAL` profile, and says so in every
record: every training stage cut to a few steps; cheap sampler settings for the diffusion and flow methods (fewer
denoising steps and candidates, in each run's `overrides`); OGBench evaluation episodes cut to a few steps (in each
such run's `task_note`); acting timed with a few repetitions; the compiled runtime and the captured steps through
torch.compile's `eager` backend: Dynamo's capture of our code (graph breaks, guards, recompile limits) without AOT
autograd and inductor's code generation (inductor's C++ compile takes ~25 s per graph on 2 cores; the tests run AOT
autograd for every method's captured step, tests/test_capture_lever.py, and inductor for every method's compiled act,
tests/test_runtimes.py); two packed runs at `--jobs 2`; no untimed warm-up fit; one torch thread per process.
What only a GPU shows: CUDA graphs (compiled acting and captured steps), inductor's code, onnxruntime-gpu, TF32 drift
(TF32 does not exist on a CPU, so the rehearsal's drift is 0 by construction), the CUDA sync counts, and every
figure worth reading.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib.util
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("device", "smoke", "acting", "training", "packing")
# Time caps per part, in wall seconds. The GPU column adds up to 8 minutes (the issue's budget of one GPU slot). The
# rehearsal takes about 65 s on the shared 2-core machine (2, 16.5, 18, 14.5 and 12 s, as much CPU time: summary.json);
# its caps are about 2.5 times that, because another developer's job on the same two cores doubles every wall time.
#        part          GPU  rehearsal
CAPS: dict[str, tuple[int, int]] = {
    "device":      (30,   10),
    "smoke":       (120,  40),
    "acting":      (120,  45),
    "training":    (150,  35),
    "packing":     (60,   30),
}
TOY_TASK = "toy-two-moons"
SHAPED_TASK = "cube-single-play-singletask-task1-v0"  # OGBench's shapes (28-d observations, 5-d actions)
BATCH_SIZES = (1, 256)


@dataclass(frozen=True)
class CheckProfile:
    """The sizes the check runs at; every part's record carries the one it ran at."""

    name: str
    rows: int  # synthetic transitions of the OGBench-shaped task
    run_steps: int | None  # every stage of a run cut to this many steps (None: the smoke profile's own schedule)
    episode_steps: int | None  # OGBench evaluation episodes cut to this many steps (None: the task's limit)
    sampler: dict[str, dict[str, str]]  # per method: sampler settings for a cheap act (empty: the official ones)
    timing: dict[str, Any]  # measure_speed's repeats, max_seconds (per batch size), warmup calls, min_seconds
    compile_backend: str  # torch.compile's backend for the compiled runtime and the captured steps
    training_profile: str  # the profile whose batch sizes the training part times
    training_steps: int
    warmup_fit: bool  # an untimed fit before the timed one (compiles the captured steps, warms the allocator)
    drift_steps: int
    packing_method: str
    packing_runs: int
    packing_jobs: int
    notes: list[str] = field(default_factory=list)


GPU = CheckProfile(
    name="gpu", rows=20_000, run_steps=None, episode_steps=None, sampler={},
    timing={"repeats": 10, "max_seconds": 2.0, "warmup": 10, "min_seconds": 0.02}, compile_backend="inductor",
    training_profile="paper", training_steps=30, warmup_fit=True, drift_steps=200, packing_method="srpo",
    packing_runs=4, packing_jobs=4)
REHEARSAL = CheckProfile(
    name="cpu-rehearsal", rows=2_000, run_steps=3, episode_steps=10,
    # a few denoising steps and candidates: the same sampler code (SfBC's 3 DPM-Solver steps take a second- and a
    # first-order segment), a fraction of the work of the official 5 x 50, 5 x 64, 15 x 32 and FQL's 10 Euler steps
    sampler={"diffusion-ql": {"diffusion_steps": "2", "action_candidates": "2"},
             "idql": {"diffusion_steps": "2", "num_candidates": "2"},
             "sfbc": {"diffusion_steps": "3", "candidates": "2", "select_per_state": "1", "planning_samples": "2",
                      "planning_states": "16"},
             "fql": {"flow_steps": "2"}},
    timing={"repeats": 3, "max_seconds": 0.05, "warmup": 1, "min_seconds": 0.002}, compile_backend="eager",
    training_profile="smoke", training_steps=2, warmup_fit=False, drift_steps=3, packing_method="bc",
    packing_runs=2, packing_jobs=2,
    notes=["CPU rehearsal: tiny sizes and cheap sampler settings; no figure here stands for a GPU's"])


@dataclass
class Part:
    """What a part function gets: where it runs, at which sizes, for which methods."""

    device: torch.device
    out: Path
    profile: CheckProfile
    methods: list[str]
    record: dict[str, Any] = field(default_factory=dict)  # what every write of the part's record starts with
    figures: dict[str, Any] = field(default_factory=dict)  # the last checkpoint's

    @property
    def results(self) -> Path:
        return self.out / "results"

    def checkpoint(self, name: str, **figures: Any) -> None:
        """The figures so far in OUT/gpu-check/<name>.json, marked partial: a part killed on its cap (a GPU slot
        runs out) still leaves what it measured. The part's end writes the whole record over it."""
        self.figures = figures
        write_json(self.out / "gpu-check" / f"{name}.json", {**self.record, **figures, "partial": True})

    def overrides(self, method: str) -> dict[str, str]:
        """A run's settings for `method` at this profile: stages cut to `run_steps`, the cheap sampler."""
        settings = tiny_steps(method, self.profile.run_steps) if self.profile.run_steps else {}
        return {**settings, **self.profile.sampler.get(method, {})}


def device_of(rehearsal: bool) -> torch.device:
    if rehearsal:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: torch sees no CUDA device (use --cpu-rehearsal to rehearse on the CPU)")
    return torch.device("cuda")


@contextlib.contextmanager
def compile_backend(backend: str) -> Iterator[None]:
    """torch.compile calls made inside use `backend` ("inductor": left alone). The rehearsal's "eager" runs Dynamo's
    capture of the same code and then the captured graphs as they are (modes and options are inductor's and are
    dropped with it)."""
    if backend == "inductor":
        yield
        return
    original = torch.compile

    def compile_with(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop("mode", None)
        kwargs.pop("options", None)
        return original(*args, **{**kwargs, "backend": backend})

    torch.compile = compile_with  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.compile = original


@contextlib.contextmanager
def short_episodes(steps: int | None) -> Iterator[None]:
    """The runner's tasks with evaluation episodes cut to `steps` steps, said in each run's `task_note`."""
    from srpo_bench import runner

    if steps is None:
        yield
        return
    original = runner.get_task

    def cut(name: str) -> Any:
        task = original(name)
        if task.max_episode_steps <= steps:
            return task
        return dataclasses.replace(task, max_episode_steps=steps, note=f"{task.note} [gpu_check --cpu-rehearsal: "
                                   f"evaluation episodes cut to {steps} of {task.max_episode_steps} steps]")

    runner.get_task = cut
    try:
        yield
    finally:
        runner.get_task = original


# --- 1. device -------------------------------------------------------------------------------------------------------
def part_device(part: Part) -> dict[str, Any]:
    device = part.device
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
                            "python": platform.python_version(), "host": platform.node(),
                            "cpu_threads": torch.get_num_threads(), "machine": platform.machine(),
                            "load_average": load_average()}
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        properties = torch.cuda.get_device_properties(device)
        info.update(name=torch.cuda.get_device_name(device), capability=list(torch.cuda.get_device_capability(device)),
                    free_memory_gib=free / 2**30, total_memory_gib=total / 2**30,
                    multiprocessors=properties.multi_processor_count, cudnn=torch.backends.cudnn.version())
        smi = shutil.which("nvidia-smi")
        if smi:
            query = subprocess.run([smi, "--query-gpu=driver_version,name,memory.used,memory.total,utilization.gpu",
                                    "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            info["nvidia_smi"] = query.stdout.strip() or query.stderr.strip()
    else:
        from srpo_bench.speed import cpu_model

        info["name"] = cpu_model()
        meminfo = Path("/proc/meminfo")
        if meminfo.exists():
            fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines() if ":" in line)
            info["free_memory_gib"] = int(fields["MemAvailable"].split()[0]) / 2**20
    for key, value in info.items():
        print(f"  {key}: {value}", flush=True)
    return info


# --- 2. smoke runs ---------------------------------------------------------------------------------------------------
def part_smoke(part: Part) -> dict[str, Any]:
    from srpo_bench import runner, store
    from srpo_bench.estimate import synthetic_dataset
    from srpo_bench.progress import Reporter
    from srpo_bench.tasks import get_task

    store.open_store(part.results)
    outcomes: dict[str, dict[str, Any]] = {}
    # the OGBench-shaped task trains on synthetic transitions of its shapes (no OGBench download needed)
    previous = runner._DATASETS.get(SHAPED_TASK)
    runner._DATASETS[SHAPED_TASK] = synthetic_dataset(get_task(SHAPED_TASK), rows=part.profile.rows)
    try:
        with short_episodes(part.profile.episode_steps):
            for task in (TOY_TASK, SHAPED_TASK):
                for method in part.methods:
                    outcomes[f"{task} {method}"] = smoke_run(part, task, method, runner, Reporter(quiet=True))
                    print(f"  {task} {method}: {outcomes[f'{task} {method}']['status']}", flush=True)
                    part.checkpoint("smoke", runs=outcomes)
    finally:
        if previous is None:
            runner._DATASETS.pop(SHAPED_TASK, None)
        else:
            runner._DATASETS[SHAPED_TASK] = previous
    failed = [name for name, outcome in outcomes.items() if outcome["status"] not in ("finished", "skipped")]
    return {"results": str(part.results), "runs": outcomes, "failed": failed, "ok": not failed}


def smoke_run(part: Part, task: str, method: str, runner: Any, reporter: Any) -> dict[str, Any]:
    """One run through the runner (trained, evaluated, timed): its status, score and wall time."""
    started = time.perf_counter()
    spec = runner.RunSpec(task, method, 0, "smoke", {method: part.overrides(method)})
    try:
        options = runner.RunOptions(out=part.results, device=str(part.device), quiet=True)
        outcome = runner.execute(spec, options, reporter)
        return {"status": outcome.status, "normalized": outcome.normalized, "reason": outcome.reason,
                "seconds": time.perf_counter() - started}
    except Exception as error:  # noqa: BLE001 - one method's failure is reported, the others go on
        traceback.print_exc()
        return {"status": "error", "reason": f"{type(error).__name__}: {error}",
                "seconds": time.perf_counter() - started}


def tiny_steps(method: str, steps: int) -> dict[str, str]:
    """Every stage of `method` at `steps` steps (the step settings of benchmarks/train_steps.py)."""
    overrides = train_steps_module().step_overrides(method, steps)
    overrides.update({"eval_every": str(steps), "eval_episodes": "1"} if method == "diffusion-ql" else {})
    return overrides


@functools.cache
def train_steps_module() -> Any:
    spec = importlib.util.spec_from_file_location("train_steps", ROOT / "benchmarks" / "train_steps.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- 3. acting under every runtime -------------------------------------------------------------------------------
def part_acting(part: Part) -> dict[str, Any]:
    from srpo_bench import store
    from srpo_bench.progress import Reporter
    from srpo_bench.registry import get_method
    from srpo_bench.report.frame import method_label
    from srpo_bench.runner import fit_context
    from srpo_bench.runtimes import RuntimeUnavailable, prepare
    from srpo_bench.speed import SpeedResult, measure_speed
    from srpo_bench.tasks import get_task

    onnx_note = onnx_available(part.device)
    # compiled last: its builds are the slow ones (inductor on a GPU)
    runtimes = ["eager", *(["onnx"] if onnx_note is None else []), "compiled"]
    task = get_task(TOY_TASK)
    dataset = task.load()
    store.open_store(part.results)
    timing = part.profile.timing
    timings: dict[str, dict[str, SpeedResult | str]] = {runtime: {} for runtime in runtimes}
    build_seconds: dict[str, dict[str, float]] = {}
    for method in part.methods:
        # named as the report names runs with these settings (the rehearsal's `idql[actor_steps=3,...]`), so
        # no timing of a cut-down sampler stands under the method's own name
        name = method_label(method, part.overrides(method))
        # the smoke part's weights for this task and settings (its stage cache), or trained now
        config, ctx = fit_context(task, method, dataset, 0, "smoke", part.results, part.device, Reporter(quiet=True),
                                  {method: part.overrides(method)})
        try:
            agent = get_method(method)().fit(ctx, config)
        except Exception as error:  # noqa: BLE001 - this method's failure is reported, the others go on
            traceback.print_exc()
            timings = {runtime: {**by_method, name: f"fit failed: {type(error).__name__}: {error}"}
                       for runtime, by_method in timings.items()}
            agent = None
        for runtime in runtimes if agent is not None else ():
            started = time.perf_counter()
            try:
                with compile_backend(part.profile.compile_backend):
                    acting = prepare(agent, runtime, dataset.obs_dim, BATCH_SIZES)
                build_seconds.setdefault(name, {})[runtime] = time.perf_counter() - started
                acting.seed(0)
                result = measure_speed(acting, dataset.obs_dim, batch_sizes=BATCH_SIZES, repeats=timing["repeats"],
                                       max_seconds=timing["max_seconds"], warmup=timing["warmup"],
                                       min_seconds=timing["min_seconds"], observations=dataset.observations,
                                       context="alone")
            except Exception as error:  # noqa: BLE001 - RuntimeUnavailable says why; anything else is reported too
                timings[runtime][name] = str(error) if isinstance(error, RuntimeUnavailable) \
                    else f"{type(error).__name__}: {error}"
                print(f"  {name} {runtime}: {timings[runtime][name]}", flush=True)
            else:
                timings[runtime][name] = result
                shown = ", ".join(f"b{size} {result.actions_per_second(size):,.0f}" for size in BATCH_SIZES)
                print(f"  {name} {runtime}: actions/s {shown}", flush=True)
            # after each runtime, so a part stopped on its cap (an inductor compile) keeps what it timed
            part.checkpoint("acting", runtimes=runtimes, build_seconds=build_seconds,
                            **acting_figures(timings, write_speed_records(part, timings)))
    figures = acting_figures(timings, write_speed_records(part, timings))
    return {"task": TOY_TASK, "runtimes": runtimes, "onnx": onnx_note or "available",
            "compile_backend": part.profile.compile_backend, "build_seconds": build_seconds, **figures,
            "ok": not figures["failed"]}


def acting_figures(timings: dict[str, dict[str, Any]], written: list[Path]) -> dict[str, Any]:
    """Actions/s per runtime, method and batch size; the runtimes that failed to build, with why; the files."""
    from srpo_bench.speed import SpeedResult

    return {"actions_per_second": {runtime: {method: {f"b{size}": result.actions_per_second(size)
                                                      for size in BATCH_SIZES}
                                             for method, result in by_method.items()
                                             if isinstance(result, SpeedResult)}
                                   for runtime, by_method in timings.items()},
            "failed": [f"{method} {runtime}: {result}" for runtime, by_method in timings.items()
                       for method, result in by_method.items() if isinstance(result, str)],
            "records": [str(path) for path in written]}


def write_speed_records(part: Part, timings: dict[str, dict[str, Any]]) -> list[Path]:
    """The files `srpo-bench speed --runtime ...` writes, in its format, where `srpo-bench report` reads them:
    speed/runtimes/<task>-<device>.json (every runtime, with the per-runtime table) and speed/<task>-<device>.json
    (eager, with SRPO's speedups). They say which profile of the check took them."""
    from srpo_bench.report.frame import method_label
    from srpo_bench.speed import SpeedResult, runtime_table, speedup_table
    from srpo_bench.store import atomic_write_json, now

    names = [method_label(method, part.overrides(method)) for method in part.methods]
    reference = names[part.methods.index("srpo")] if "srpo" in part.methods else names[0]
    common = {"created": now(), "task": TOY_TASK, "device": str(part.device), "profile": "smoke", **provenance(),
              "gpu_check": {"profile": part.profile.name, "notes": part.profile.notes,
                            "settings": {method: part.overrides(method) for method in part.methods}}}
    stamp = {"created": common["created"]}
    folder = part.results / "speed"
    runtimes_path = folder / "runtimes" / f"{TOY_TASK}-{part.device.type}.json"
    atomic_write_json(runtimes_path, {
        **common, "table": runtime_table(timings, reference=reference),
        "results": {runtime: {method: {**stamp, **(value.to_dict() if isinstance(value, SpeedResult)
                                                   else {"unavailable": value})}
                              for method, value in by_method.items()}
                    for runtime, by_method in timings.items()}})
    eager = {method: value for method, value in timings.get("eager", {}).items() if isinstance(value, SpeedResult)}
    eager_path = folder / f"{TOY_TASK}-{part.device.type}.json"
    atomic_write_json(eager_path, {
        **common, "results": {method: {**stamp, **value.to_dict()} for method, value in eager.items()},
        "speedups": speedup_table(eager, reference=reference) if reference in eager else []})
    return [runtimes_path, eager_path]


@functools.cache
def provenance() -> dict[str, Any]:
    """What a speed file says of the code that timed it (as `srpo-bench speed` writes it): read once per part."""
    from srpo_bench.store import git_commit, library_versions

    return {"git_commit": git_commit(), "versions": library_versions()}


def onnx_available(device: torch.device) -> str | None:
    """None when ONNX Runtime can act on `device`, else why not."""
    try:
        import onnxruntime
    except ImportError:
        return "onnxruntime is not installed"
    if device.type == "cuda" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
    return None


# --- 4. training steps ---------------------------------------------------------------------------------------------
def part_training(part: Part) -> dict[str, Any]:
    """The cheap eager figures first (TF32 drift, CUDA sync counts), then steps/s eager and captured per method, so
    that a cap reached while inductor compiles still leaves the drift and the first methods' rates."""
    from srpo_bench.core import nn as core_nn
    from srpo_bench.core import stages
    from srpo_bench.core.levers import set_opt_in_levers

    profile = part.profile
    stages.CAPTURE_BACKEND = profile.compile_backend
    core_nn.COMPILE_MIN_STEPS = 10**9  # CPU-only lever: the compiled Mish costs seconds to compile per size
    errors: dict[str, str] = {}
    drift: dict[str, Any] | str = "srpo not checked"
    if "srpo" in part.methods:
        try:
            drift = tf32_drift(part, profile.drift_steps)
        except Exception as error:  # noqa: BLE001 - reported with the rest
            errors["tf32 drift"] = f"{type(error).__name__}: {error}"
            traceback.print_exc()
        print(f"  TF32 drift of SRPO's critic loss: {drift}", flush=True)
    syncs: dict[str, int] | str = "CUDA only"
    if part.device.type == "cuda":
        try:
            syncs = cuda_sync_warnings(part, profile.training_steps)
        except Exception as error:  # noqa: BLE001 - reported with the rest
            errors["cuda sync warnings"] = syncs = f"{type(error).__name__}: {error}"
            traceback.print_exc()
    print(f"  CUDA sync warnings during {profile.training_steps} steps per stage: {syncs}", flush=True)
    figures: dict[str, Any] = {
        "steps": profile.training_steps, "batch_sizes": f"{profile.training_profile} profile",
        "timed_fit_includes_compilation": not profile.warmup_fit, "capture_backend": profile.compile_backend,
        "tf32_drift": drift, "cuda_sync_warnings": syncs, "errors": errors}
    rates: dict[str, dict[str, dict[str, float]]] = {}
    for method in part.methods:
        for label, capture in (("eager", False), ("captured", True)):
            set_opt_in_levers(capture)
            try:
                if profile.warmup_fit:  # compiles the captured steps and warms up, untimed
                    fit_paper(part, method, 3)
                ctx = fit_paper(part, method, profile.training_steps)
                for stage, (done, seconds) in ctx.step_timings.items():
                    if done:
                        rates.setdefault(method, {}).setdefault(stage, {})[label] = done / seconds
            except Exception as error:  # noqa: BLE001 - reported; the other methods go on
                errors[f"{method} {label}"] = f"{type(error).__name__}: {error}"
                traceback.print_exc()
            finally:
                set_opt_in_levers(False)
                torch._dynamo.reset()
            part.checkpoint("training", **figures, steps_per_second=rates)
        for stage, by_label in rates.get(method, {}).items():
            shown = ", ".join(f"{label} {rate:.1f}" for label, rate in by_label.items())
            print(f"  {method} {stage}: steps/s {shown}", flush=True)
    return {**figures, "steps_per_second": rates, "ok": not errors}


def fit_paper(part: Part, method: str, steps: int) -> Any:
    """`method` at the profile's training batch sizes and networks (GPU: the paper profile, official), every stage
    capped at `steps` steps, from scratch in a temporary stage folder without periodic evaluations; the FitContext
    (step timings, curves)."""
    from srpo_bench.config import resolve_config
    from srpo_bench.progress import Reporter
    from srpo_bench.registry import get_method
    from srpo_bench.runner import fit_context
    from srpo_bench.tasks import get_task

    task = get_task(TOY_TASK)
    overrides = {**train_steps_module().step_overrides(method, steps), **part.profile.sampler.get(method, {})}
    profile = part.profile.training_profile
    config = resolve_config(get_method(method), task, profile, overrides)
    with tempfile.TemporaryDirectory() as scratch:
        config, ctx = fit_context(task, method, task.load(), 0, profile, Path(scratch), part.device,
                                  Reporter(quiet=True), config=config)
        ctx.evaluation = None
        ctx.curve_points = steps  # every step's loss: the drift is read from the last one
        get_method(method)().fit(ctx, config)
    return ctx


def tf32_drift(part: Part, steps: int) -> dict[str, Any]:
    """SRPO's IQL critic trained `steps` steps with TF32 off and on, same seed: the last logged losses and their
    relative difference."""
    losses = {}
    for tf32 in ("0", "1"):
        os.environ["SRPO_BENCH_TF32"] = tf32
        try:
            ctx = fit_paper(part, "srpo", steps)
        finally:
            os.environ.pop("SRPO_BENCH_TF32", None)
        last = ctx.curves["critic"][-1]
        losses["on" if tf32 == "1" else "off"] = {"step": last["step"], "q_loss": last["q_loss"],
                                                  "v_loss": last["v_loss"]}
    off, on = losses["off"]["q_loss"], losses["on"]["q_loss"]
    return {**losses, "q_loss_relative_drift": abs(on - off) / max(abs(off), 1e-12), "steps": steps}


def cuda_sync_warnings(part: Part, steps: int) -> dict[str, int]:
    """Per method: the warnings CUDA's sync debug mode raises during a short paper-profile fit (every sync the
    driver sees, setup and the logged points included; tests/test_host_sync.py checks that none grow with steps)."""
    counts = {}
    for method in part.methods:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fit_paper(part, method, steps)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        counts[method] = sum("synchroniz" in str(w.message) for w in caught)
    return counts


# --- 5. packing -----------------------------------------------------------------------------------------------------
def part_packing(part: Part) -> dict[str, Any]:
    """The same grid of runs (seeds 0..n-1 of one method on the toy task) run one after another and packed, through
    the executor `srpo-bench run --jobs N` uses, each into a results folder of its own; both include the timing
    (inline when serial, the timing phase when packed), as a grid does."""
    from srpo_bench import store
    from srpo_bench.executors import ExecutorSettings, run_specs
    from srpo_bench.progress import Reporter
    from srpo_bench.runner import RunOptions, load_checked, plan_grid

    method, runs = part.profile.packing_method, part.profile.packing_runs
    settings = part.overrides(method)
    walls: dict[str, dict[str, Any]] = {}
    for label, jobs in (("serial", 1), ("packed", part.profile.packing_jobs)):
        out = part.out / f"packing-{label}"
        shutil.rmtree(out, ignore_errors=True)  # runs finished by an earlier check would be skipped, not timed
        specs = plan_grid([TOY_TASK], [method], list(range(runs)), "smoke", {method: settings})
        load_checked([TOY_TASK])
        store.open_store(out)
        # on a CPU one thread per job (split over the jobs by the executor), as in every part of the rehearsal
        options = RunOptions(out=out, device=part.device.type, quiet=True,
                             threads=jobs if part.device.type == "cpu" else 0)
        started = time.perf_counter()
        outcomes = run_specs(specs, options, ExecutorSettings(jobs=jobs), Reporter(quiet=True))
        walls[label] = {"jobs": jobs, "seconds": time.perf_counter() - started, "folder": str(out),
                        "statuses": [outcome.status for outcome in outcomes]}
        print(f"  {label} (--jobs {jobs}): {walls[label]['seconds']:.1f} s, {walls[label]['statuses']}", flush=True)
        part.checkpoint("packing", walls=walls)
    ok = all(status == "finished" for entry in walls.values() for status in entry["statuses"])
    return {"method": method, "runs": runs, "settings": settings, "walls": walls,
            "throughput_ratio_packed_over_serial": walls["serial"]["seconds"] / walls["packed"]["seconds"],
            "ok": ok}


PART_FUNCTIONS: dict[str, Callable[[Part], dict[str, Any]]] = {
    "device": part_device, "smoke": part_smoke, "acting": part_acting, "training": part_training,
    "packing": part_packing}


def run_part(part_name: str, out: Path, rehearsal: bool, methods: Sequence[str]) -> dict[str, Any]:
    """One part in this process: its record, also written to OUT/gpu-check/<part>.json."""
    device = device_of(rehearsal)
    profile = REHEARSAL if rehearsal else GPU
    record: dict[str, Any] = {"part": part_name, "device": str(device), "rehearsal": rehearsal,
                              "profile": dataclasses.asdict(profile), "methods": list(methods), "started": time.time()}
    part = Part(device, out, profile, list(methods), dict(record))
    try:
        record.update(PART_FUNCTIONS[part_name](part))
    except Exception as error:  # noqa: BLE001 - the driver records the failure and goes on
        record.update(part.figures, ok=False, error=f"{type(error).__name__}: {error}",
                      traceback=traceback.format_exc())
        traceback.print_exc()
    record["seconds"] = time.time() - record["started"]
    write_json(out / "gpu-check" / f"{part_name}.json", record)
    return record


def write_json(path: Path, value: Any) -> None:
    from srpo_bench.store import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, json.loads(json.dumps(value, default=str)))


# --- the driver ------------------------------------------------------------------------------------------------------
def run_capped(command: list[str], cap: float) -> str:
    """`command` in its own process group, at most `cap` seconds: "ok", "failed" (non-zero exit) or "timed out".
    The group is killed when the command ends or runs out of time, so nothing it started outlives it."""
    process = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
    try:
        status = "ok" if process.wait(timeout=cap) == 0 else "failed"
    except subprocess.TimeoutExpired:
        status = "timed out"
    finally:  # also on Ctrl-C: the part is in a session of its own, which the terminal's signal does not reach
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return status


def drive(parts: Sequence[str], caps: dict[str, float], command: Callable[[str], list[str]]) -> dict[str, Any]:
    """Each part's command under its cap, one after another whatever the others did: per part its status, wall and
    CPU seconds (the CPU time of the processes it waited for: on a shared machine the wall time says little)."""
    summary: dict[str, Any] = {}
    for part in parts:
        print(f"[{part}] (cap {caps[part]:g} s)", flush=True)
        started, cpu = time.perf_counter(), children_cpu_seconds()
        status = run_capped(command(part), caps[part])
        summary[part] = {"status": status, "seconds": round(time.perf_counter() - started, 1),
                         "cpu_seconds": round(children_cpu_seconds() - cpu, 1), "cap_seconds": caps[part],
                         "record": f"gpu-check/{part}.json"}
        print(f"[{part}] {status} in {summary[part]['seconds']} s ({summary[part]['cpu_seconds']} s CPU)", flush=True)
    return summary


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load_average() -> list[float] | None:
    return [round(load, 2) for load in os.getloadavg()] if hasattr(os, "getloadavg") else None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, help="output folder (created; default: gpu-check, the rehearsal: a new "
                        "temporary folder)")
    parser.add_argument("--cpu-rehearsal", action="store_true", help="every part on the CPU at tiny sizes (< 2 min)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma separated, of {', '.join(PARTS)}")
    parser.add_argument("--methods", default="all", help="comma separated registered methods, or 'all'")
    parser.add_argument("--cap-scale", type=float, default=1.0,
                        help="multiply every part's time cap (a slower or busy machine; default 1)")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)  # one part, in a child process
    args = parser.parse_args(argv)
    args.parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = [part for part in args.parts if part not in PARTS]
    if unknown or not args.parts:
        parser.error(f"--parts: unknown part {', '.join(unknown) or repr('')} (choose from {', '.join(PARTS)})")
    if not args.cap_scale > 0:
        parser.error(f"--cap-scale must be more than 0, got {args.cap_scale:g}")
    if args.part and args.methods != "all":  # the driver checked the names: a part imports only what it needs
        args.methods = args.methods.split(",")
        return args
    if not args.cpu_rehearsal and not torch.cuda.is_available():
        parser.exit(2, "gpu_check: torch sees no CUDA device (use --cpu-rehearsal to rehearse on the CPU)\n")
    from srpo_bench.registry import expand_methods

    try:
        # SRPO first (the reference of every ratio): if a GPU slot runs out, its figures are the ones kept
        args.methods = sorted(expand_methods(args.methods), key=lambda method: method != "srpo")
    except Exception as error:  # noqa: BLE001 - the registry's one-line reason
        parser.error(f"--methods: {error}")
    return args


def summary_markdown(summary: dict[str, Any], records: dict[str, dict[str, Any]]) -> str:
    """The check on one page for a human: each part's status, then the figures of each part's record."""
    lines = [f"# gpu_check ({'CPU rehearsal' if summary['rehearsal'] else 'GPU'}), {summary['seconds']} s",
             "", f"Load average before and after: {summary['load_average']}", "",
             "| part | status | seconds | CPU seconds | cap |", "|---|---|---|---|---|"]
    lines += [f"| {part} | {entry['status']} | {entry['seconds']} | {entry['cpu_seconds']} | {entry['cap_seconds']} |"
              for part, entry in summary["parts"].items()]
    device = records.get("device", {})
    if device.get("name"):
        lines += ["", f"Device: {device['name']} ({device.get('device')}), torch {device.get('torch')}, "
                  f"CUDA {device.get('cuda')}, free memory {device.get('free_memory_gib', 0):.1f} GiB"]
    smoke = records.get("smoke", {})
    if smoke.get("runs"):
        lines += ["", "## Smoke runs (OUT/results/runs/smoke)", "", "| run | status | normalized | seconds |",
                  "|---|---|---|---|"]
        lines += [f"| {name} | {run['status']} | {run.get('normalized')} | {run.get('seconds', 0):.1f} |"
                  for name, run in smoke["runs"].items()]
    acting = records.get("acting", {})
    if acting.get("actions_per_second"):
        lines += ["", f"## Acting, actions/s ({TOY_TASK}; OUT/results/speed)", "",
                  "| runtime | method | b1 | b256 |", "|---|---|---|---|"]
        lines += [f"| {runtime} | {method} | {rates['b1']:,.0f} | {rates['b256']:,.0f} |"
                  for runtime, by_method in acting["actions_per_second"].items()
                  for method, rates in by_method.items()]
    training = records.get("training", {})
    if training.get("steps_per_second"):
        lines += ["", f"## Training steps/s ({training.get('batch_sizes')}; gpu-check/training.json)", "",
                  "| method | stage | eager | captured |", "|---|---|---|---|"]
        lines += [f"| {method} | {stage} | {rates.get('eager', float('nan')):.1f} | "
                  f"{rates.get('captured', float('nan')):.1f} |"
                  for method, by_stage in training["steps_per_second"].items() for stage, rates in by_stage.items()]
        if training.get("timed_fit_includes_compilation"):
            lines += ["", "(no warm-up fit: the captured figures include compiling the steps)"]
        lines += ["", f"TF32 drift: {json.dumps(training.get('tf32_drift'))}",
                  f"CUDA sync warnings: {json.dumps(training.get('cuda_sync_warnings'))}"]
    packing = records.get("packing", {})
    if packing.get("throughput_ratio_packed_over_serial"):
        walls = packing["walls"]
        lines += ["", "## Packing (gpu-check/packing.json)", "",
                  f"{packing['method']}, {packing['runs']} runs: serial {walls['serial']['seconds']:.1f} s, "
                  f"packed (--jobs {walls['packed']['jobs']}) {walls['packed']['seconds']:.1f} s, throughput ratio "
                  f"{packing['throughput_ratio_packed_over_serial']:.2f}"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="gpu-check-rehearsal-")) if args.cpu_rehearsal else Path("gpu-check")
    out = args.out.resolve()
    column = 1 if args.cpu_rehearsal else 0
    caps = {part: float(CAPS[part][column]) * args.cap_scale for part in PARTS}
    if args.part:  # a child process of the driver
        if args.cpu_rehearsal:
            # one thread: on a shared CPU, oversubscribed OpenMP threads spin and made the tiny steps ~10x slower
            torch.set_num_threads(1)
        return 0 if run_part(args.part, out, args.cpu_rehearsal, args.methods).get("ok", True) else 1

    def command(part: str) -> list[str]:
        return [sys.executable, __file__, "--part", part, "--out", str(out), "--methods", ",".join(args.methods),
                "--cap-scale", str(args.cap_scale), *(["--cpu-rehearsal"] if args.cpu_rehearsal else [])]

    started, load_before = time.perf_counter(), load_average()
    parts = drive(args.parts, caps, command)
    summary = {"rehearsal": args.cpu_rehearsal, "methods": args.methods, "parts": parts,
               "seconds": round(time.perf_counter() - started, 1),
               "cpu_seconds": round(sum(entry["cpu_seconds"] for entry in parts.values()), 1),
               "load_average": {"before": load_before, "after": load_average(), "cpu_count": os.cpu_count()}}
    records = {}
    for part in parts:
        path = out / "gpu-check" / f"{part}.json"
        with contextlib.suppress(OSError, ValueError):
            records[part] = json.loads(path.read_text())
    write_json(out / "gpu-check" / "summary.json", summary)
    (out / "gpu-check" / "summary.md").write_text(summary_markdown(summary, records))
    bad = [part for part, entry in parts.items() if entry["status"] != "ok"]
    print(f"gpu_check: {len(parts) - len(bad)} of {len(parts)} parts ok in {summary['seconds']} s "
          f"({summary['cpu_seconds']} s CPU; load average {load_before} -> {summary['load_average']['after']})"
          + (f"; not ok: {', '.join(bad)}" if bad else "") + f" -> {out} (summary: {out}/gpu-check/summary.md)")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
