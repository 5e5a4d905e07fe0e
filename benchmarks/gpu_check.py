"""The GPU check: one command that proves the CUDA path in a few minutes of GPU time, and its CPU rehearsal.

    python benchmarks/gpu_check.py --out gpu-check            # on a GPU machine: at most ~8 minutes
    python benchmarks/gpu_check.py --cpu-rehearsal --out DIR   # the same parts on the CPU at tiny sizes (< 2 min)
    nox -s gpu-check [-- --cpu-rehearsal]

Parts, in order, each in its own process with its own time cap (a part that fails or runs out of time is recorded
as such and the others go on; the exit code is 1 when any part failed):

1. `device`    device, driver, torch and CUDA versions, free memory.
2. `smoke`     every registered method at the smoke profile on `toy-two-moons` (real data) and on an OGBench-shaped
               task (`cube-single-play-singletask-task1-v0`: synthetic transitions of its shapes, evaluated in its
               environment), through the runner: a normal results folder (`OUT/results`).
3. `acting`    `srpo-bench speed` for every method under every runtime there is: eager, compiled (CUDA graphs on a
               GPU), onnx when ONNX Runtime can run on the device (`onnxruntime-gpu` on CUDA), batches 1 and 256;
               the records land in `OUT/results/speed/`, where `srpo-bench report` reads them.
4. `training`  training steps/s per stage of every method at the paper batch sizes: eager, then with the captured-step
               lever (`srpo_bench.core.stages.CAPTURE_STEPS`); TF32 off and on, with the drift of one stage's loss
               (SRPO's IQL critic) after N steps. Also the host syncs of those steps as CUDA counts them
               (`torch.cuda.set_sync_debug_mode("warn")`; CPU: not available). -> `OUT/gpu-check/training.json`.
5. `packing`   the same 4 smoke runs packed with `--jobs 4` and one after another; the throughput ratio.

Every part writes `OUT/gpu-check/<part>.json`; `OUT/gpu-check/summary.json` holds each part's status and wall time.
The runs of parts 2, 3 and 5 are ordinary results folders (`srpo-bench report --out OUT/results`). The rehearsal runs
every part on the CPU with tiny step counts and the smoke profile's sizes, short timings, the capture lever through the
`aot_eager` backend (inductor's C++ compile of every stage does not fit two minutes of two cores), the compiled runtime
for SRPO and BC only, and the smoke runs untimed.
What only a GPU shows: CUDA graphs (compiled acting and captured steps), onnxruntime-gpu, TF32 drift (TF32 does not
exist on a CPU, so the rehearsal's drift is 0 by construction), the CUDA sync counts, and every figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("device", "smoke", "acting", "training", "packing")
# seconds per part: the GPU caps add up to 8 minutes; the rehearsal's to under 2
CAPS = {"gpu": {"device": 30, "smoke": 120, "acting": 120, "training": 150, "packing": 60},
        "cpu": {"device": 10, "smoke": 30, "acting": 25, "training": 35, "packing": 20}}
TOY_TASK = "toy-two-moons"
SHAPED_TASK = "cube-single-play-singletask-task1-v0"  # OGBench's shapes (28-d observations, 5-d actions)


def device_of(rehearsal: bool) -> torch.device:
    if rehearsal:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: torch sees no CUDA device (use --cpu-rehearsal to rehearse on the CPU)")
    return torch.device("cuda")


def cli(*args: str) -> list[str]:
    """The srpo-bench command of this interpreter (the venv that runs this script)."""
    return [sys.executable, "-c", "from srpo_bench.cli import app; app()", *args]


def run_cli(args: list[str], timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return {"command": "srpo-bench " + " ".join(args[3:]), "returncode": done.returncode,
            "seconds": time.perf_counter() - started, "output_tail": (done.stdout + done.stderr)[-2000:]}


# --- 1. device -------------------------------------------------------------------------------------------------------
def part_device(device: torch.device, out: Path, rehearsal: bool) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
                            "python": platform.python_version(), "host": platform.node(),
                            "cpu_threads": torch.get_num_threads(), "machine": platform.machine()}
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
def part_smoke(device: torch.device, out: Path, rehearsal: bool) -> dict[str, Any]:
    from srpo_bench import runner, store
    from srpo_bench.estimate import synthetic_dataset
    from srpo_bench.progress import Reporter
    from srpo_bench.registry import expand_methods
    from srpo_bench.tasks import get_task

    results = out / "results"
    store.open_store(results)
    methods = expand_methods("all")
    shaped = get_task(SHAPED_TASK)
    runner._DATASETS[SHAPED_TASK] = synthetic_dataset(shaped, rows=2_000 if rehearsal else 20_000)
    outcomes: dict[str, dict[str, Any]] = {}
    for task in (TOY_TASK, SHAPED_TASK):
        # the rehearsal's smoke runs go through the same runner with every stage cut to a few steps
        overrides = {method: tiny_steps(method) for method in methods} if rehearsal else {}
        for method in methods:
            started = time.perf_counter()
            spec = runner.RunSpec(task, method, 0, "smoke", overrides)
            try:
                # the rehearsal leaves the timing out (a sampler's batch-256 act takes seconds on a CPU): its runs
                # end "evaluated"; on a GPU every run is timed and "finished"
                options = runner.RunOptions(out=results, device=str(device), quiet=True, time_inline=not rehearsal)
                outcome = runner.execute(spec, options, Reporter(quiet=True))
                outcomes[f"{task} {method}"] = {"status": outcome.status, "normalized": outcome.normalized,
                                                "reason": outcome.reason, "seconds": time.perf_counter() - started}
            except Exception as error:  # noqa: BLE001 - one method's failure is reported, the others go on
                outcomes[f"{task} {method}"] = {"status": "error", "reason": f"{type(error).__name__}: {error}"}
            print(f"  {task} {method}: {outcomes[f'{task} {method}']['status']}", flush=True)
    good = ("finished", "skipped", "evaluated") if rehearsal else ("finished", "skipped")
    failed = [name for name, outcome in outcomes.items() if outcome["status"] not in good]
    return {"results": str(results), "runs": outcomes, "failed": failed, "ok": not failed}


def tiny_steps(method: str) -> dict[str, str]:
    """Every stage of `method` at 3 steps (the rehearsal): the step settings of benchmarks/train_steps.py."""
    overrides = train_steps_module().step_overrides(method, 3)
    overrides.update({"eval_every": "3", "eval_episodes": "1"} if method == "diffusion-ql" else {})
    return overrides


def train_steps_module() -> Any:
    spec = importlib.util.spec_from_file_location("train_steps", ROOT / "benchmarks" / "train_steps.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- 3. acting under every runtime -------------------------------------------------------------------------------
def part_acting(device: torch.device, out: Path, rehearsal: bool) -> dict[str, Any]:
    runtimes = ["eager", "compiled"]
    onnx_note = onnx_available(device)
    if onnx_note is None:
        runtimes.append("onnx")
    timings = "--repeats 3 --max-seconds 0.3" if rehearsal else "--repeats 10 --max-seconds 2"
    # the rehearsal compiles the one-pass policies only: compiling the samplers' unrolled acts takes minutes on a CPU
    uncompiled = [runtime for runtime in runtimes if runtime != "compiled"]
    groups = ([("all", runtimes)] if not rehearsal
              else [("srpo,bc", runtimes), ("diffusion-ql,idql,sfbc,fql", uncompiled)])
    calls = []
    for methods, group in groups:
        calls.append(run_cli(cli("speed", "--methods", methods, "--task", TOY_TASK, "--device", device.type,
                                 "--out", str(out / "results"), "--batch-sizes", "1,256", "--runtime", ",".join(group),
                                 *timings.split()), timeout=CAPS["cpu" if rehearsal else "gpu"]["acting"]))
        print(f"  speed --methods {methods} --runtime {','.join(group)}: exit {calls[-1]['returncode']}", flush=True)
    return {"runtimes": runtimes, "onnx": onnx_note or "available", "calls": calls,
            "records": str(out / "results" / "speed"), "ok": all(call["returncode"] == 0 for call in calls)}


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
def part_training(device: torch.device, out: Path, rehearsal: bool) -> dict[str, Any]:
    from srpo_bench.core import nn as core_nn
    from srpo_bench.core import stages
    from srpo_bench.core.levers import set_opt_in_levers
    from srpo_bench.registry import expand_methods

    steps = 2 if rehearsal else 30
    if rehearsal:
        stages.CAPTURE_BACKEND = "aot_eager"
    core_nn.COMPILE_MIN_STEPS = 10**9  # CPU-only lever: the compiled Mish costs seconds to compile per size
    rates: dict[str, dict[str, dict[str, float]]] = {}
    errors: dict[str, str] = {}
    for method in expand_methods("all"):
        for label, capture in (("eager", False), ("captured", True)):
            set_opt_in_levers(capture)
            try:
                # one untimed fit compiles (captured) and warms up; the second is timed
                fit_paper(method, device, 1 if rehearsal else 3, rehearsal)
                ctx = fit_paper(method, device, steps, rehearsal)
                for stage, (done, seconds) in ctx.step_timings.items():
                    if done:
                        rates.setdefault(method, {}).setdefault(stage, {})[label] = done / seconds
            except Exception as error:  # noqa: BLE001 - reported; the other methods go on
                errors[f"{method} {label}"] = f"{type(error).__name__}: {error}"
                traceback.print_exc()
            finally:
                set_opt_in_levers(False)
                torch._dynamo.reset()
        for stage, by_label in rates.get(method, {}).items():
            shown = ", ".join(f"{label} {rate:.1f}" for label, rate in by_label.items())
            print(f"  {method} {stage}: steps/s {shown}", flush=True)
    drift = tf32_drift(device, 5 if rehearsal else 200, rehearsal)
    print(f"  TF32 drift of SRPO's critic loss: {drift}", flush=True)
    syncs = cuda_sync_warnings(device, steps) if device.type == "cuda" else "CUDA only"
    print(f"  CUDA sync warnings during {steps} steps per stage: {syncs}", flush=True)
    return {"steps": steps, "batch_sizes": "smoke profile (rehearsal)" if rehearsal else "paper profile",
            "steps_per_second": rates, "errors": errors,
            "tf32_drift": drift, "cuda_sync_warnings": syncs, "ok": not errors}


def fit_paper(method: str, device: torch.device, steps: int, rehearsal: bool = False) -> Any:
    """`method` at the paper profile (official batch sizes and networks; the rehearsal: the smoke profile's),
    every stage capped at `steps` steps, from scratch in a temporary stage folder without periodic evaluations; the
    FitContext (step timings, curves)."""
    from srpo_bench.config import resolve_config
    from srpo_bench.progress import Reporter
    from srpo_bench.registry import get_method
    from srpo_bench.runner import fit_context
    from srpo_bench.tasks import get_task

    task = get_task(TOY_TASK)
    overrides = train_steps_module().step_overrides(method, steps)
    profile = "smoke" if rehearsal else "paper"
    config = resolve_config(get_method(method), task, profile, overrides)
    with tempfile.TemporaryDirectory() as scratch:
        config, ctx = fit_context(task, method, task.load(), 0, profile, Path(scratch), device, Reporter(quiet=True),
                                  config=config)
        ctx.evaluation = None
        ctx.curve_points = steps  # every step's loss: the drift is read from the last one
        get_method(method)().fit(ctx, config)
    return ctx


def tf32_drift(device: torch.device, steps: int, rehearsal: bool) -> dict[str, Any]:
    """SRPO's IQL critic trained `steps` steps with TF32 off and on, same seed: the last logged losses and their
    relative difference."""
    losses = {}
    for tf32 in ("0", "1"):
        os.environ["SRPO_BENCH_TF32"] = tf32
        try:
            ctx = fit_paper("srpo", device, steps, rehearsal)
        finally:
            os.environ.pop("SRPO_BENCH_TF32", None)
        last = ctx.curves["critic"][-1]
        losses["on" if tf32 == "1" else "off"] = {"step": last["step"], "q_loss": last["q_loss"],
                                                  "v_loss": last["v_loss"]}
    off, on = losses["off"]["q_loss"], losses["on"]["q_loss"]
    return {**losses, "q_loss_relative_drift": abs(on - off) / max(abs(off), 1e-12), "steps": steps}


def cuda_sync_warnings(device: torch.device, steps: int) -> dict[str, int]:
    """Per method: the warnings CUDA's sync debug mode raises during a short paper-profile fit (every sync the
    driver sees, setup and the logged points included; tests/test_host_sync.py checks that none grow with steps)."""
    counts = {}
    from srpo_bench.registry import expand_methods

    for method in expand_methods("all"):
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fit_paper(method, device, steps)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        counts[method] = sum("synchroniz" in str(w.message) for w in caught)
    return counts


# --- 5. packing -----------------------------------------------------------------------------------------------------
def part_packing(device: torch.device, out: Path, rehearsal: bool) -> dict[str, Any]:
    method = "bc" if rehearsal else "srpo"
    extra = [f"--set={key}={value}" for key, value in tiny_steps(method).items()] if rehearsal else []
    walls = {}
    for label, jobs in (("serial", "1"), ("packed", "4")):
        call = run_cli(cli("run", "--envs", TOY_TASK, "--methods", method, "--seeds", "0-3", "--profile", "smoke",
                           "--device", device.type, "--jobs", jobs, "--out", str(out / f"packing-{label}"), "--quiet",
                           *extra), timeout=CAPS["cpu" if rehearsal else "gpu"]["packing"] / 2)
        walls[label] = call
        print(f"  {label} (--jobs {jobs}): {call['seconds']:.1f} s, exit {call['returncode']}", flush=True)
    ratio = walls["serial"]["seconds"] / walls["packed"]["seconds"]
    return {"method": method, "runs": 4, "walls": walls, "throughput_ratio_packed_over_serial": ratio,
            "ok": all(call["returncode"] == 0 for call in walls.values())}


PART_FUNCTIONS: dict[str, Callable[[torch.device, Path, bool], dict[str, Any]]] = {
    "device": part_device, "smoke": part_smoke, "acting": part_acting, "training": part_training,
    "packing": part_packing}


def run_part(part: str, out: Path, rehearsal: bool) -> int:
    """One part in this process: its record in OUT/gpu-check/<part>.json."""
    device = device_of(rehearsal)
    if rehearsal:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    record = {"part": part, "device": str(device), "rehearsal": rehearsal, "started": time.time()}
    try:
        record.update(PART_FUNCTIONS[part](device, out, rehearsal))
    except Exception as error:  # noqa: BLE001 - the driver records the failure and goes on
        record.update(ok=False, error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
        traceback.print_exc()
    write_json(out / "gpu-check" / f"{part}.json", record)
    return 0 if record.get("ok", True) else 1


def write_json(path: Path, value: Any) -> None:
    from srpo_bench.store import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, json.loads(json.dumps(value, default=str)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check"), help="results folder (created)")
    parser.add_argument("--cpu-rehearsal", action="store_true", help="every part on the CPU at tiny sizes (< 2 min)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma separated, of {', '.join(PARTS)}")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # one part, in a child process of the driver
    args = parser.parse_args()
    out = args.out.resolve()
    if args.part:
        raise SystemExit(run_part(args.part, out, args.cpu_rehearsal))
    device_of(args.cpu_rehearsal)  # no GPU: one line, before anything runs
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = [part for part in parts if part not in PARTS]
    if unknown:
        parser.error(f"--parts: unknown {', '.join(unknown)} (choose from {', '.join(PARTS)})")
    caps = CAPS["cpu" if args.cpu_rehearsal else "gpu"]
    summary: dict[str, Any] = {"rehearsal": args.cpu_rehearsal, "parts": {}}
    started = time.perf_counter()
    for part in parts:
        print(f"[{part}] (cap {caps[part]} s)", flush=True)
        command = [sys.executable, __file__, "--part", part, "--out", str(out)]
        command += ["--cpu-rehearsal"] if args.cpu_rehearsal else []
        part_started = time.perf_counter()
        try:
            status = "ok" if subprocess.run(command, timeout=caps[part], cwd=ROOT).returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            status = "timed out"
        summary["parts"][part] = {"status": status, "seconds": round(time.perf_counter() - part_started, 1),
                                  "cap_seconds": caps[part], "record": f"gpu-check/{part}.json"}
        print(f"[{part}] {status} in {summary['parts'][part]['seconds']} s", flush=True)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    write_json(out / "gpu-check" / "summary.json", summary)
    bad = [part for part, entry in summary["parts"].items() if entry["status"] != "ok"]
    print(f"gpu_check: {len(parts) - len(bad)} of {len(parts)} parts ok in {summary['seconds']} s"
          + (f"; not ok: {', '.join(bad)}" if bad else "") + f" -> {out}")
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
