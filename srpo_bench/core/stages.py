"""Stages as data: what a method trains, declared once, cached by a key derived from the whole declaration.

A `Stage` is a name, the frozen dataclass that configures it (its *definition*: every setting that can change
the trained weights, and nothing else) and the stages it depends on. Its cache key hashes

    definition name + revision, the whole stage config, the dataset fingerprint, the seed, upstream keys

so a setting cannot be forgotten in a key (the training code only ever sees the stage config), an acting-time
setting cannot enter one (it is not in any stage config), and two stages with identical definitions (SRPO's
IQL critic and IDQL's `critic_source="shared"` critic) have one key and share one artifact.

Artifacts live content-addressed in `<results>/stages/<Definition>-<key>.pt`: an interrupted run resumes from
its last finished stage, a rerun with only a policy setting changed reuses the behavior model and critic, and
nothing stale can be reused because anything that differs gives another key.

Numerical precision (`Precision`: TF32 matrix products, bf16 autocast) changes what a stage produces, so it enters
every stage's key, but only when it is not the default (both off): keys of runs trained at full float32, which is
all of them before these settings existed, stay what they were. The settings are named environment variables
(`SRPO_BENCH_TF32=1`, `SRPO_BENCH_MIXED_PRECISION=bf16`), read when keys are made and when a stage trains, so
worker processes (`--jobs`) inherit them; each run records them (`run.json` "precision").

Host points (`host_point`): where a stage's values are meant to reach the host (the logged curve points, the
periodic evaluations, the end-of-stage weight check, SfBC's planning between critic iterations). Everything else in
a step loop stays on the device; tests/test_host_sync.py counts the host-syncing calls outside these points and
checks that they do not grow with the number of steps.

Captured steps (`CAPTURE_STEPS`, opt-in, off by default; `srpo_bench.core.levers.OPT_IN`): each stage's per-step
loss computation (forward, and with it the backward graph) goes through `torch.compile`, with CUDA graphs on a GPU
(what `mode="reduce-overhead"` turns on) and torch's own random draws (`fallback_random`), so a captured step draws
the same numbers as an eager one. The optimizer step, the schedules and the target updates stay eager (fused
kernels already). Results equal the eager step's within float tolerance (tests/test_capture_lever.py);
`benchmarks/gpu_check.py` measures what it gains on a GPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args

import torch
from torch import nn

from srpo_bench.atomic import atomic_torch_save, remove_temporaries
from srpo_bench.core import nn as core_nn
from srpo_bench.core.agents import Agent
from srpo_bench.data.dataset import OfflineDataset
from srpo_bench.evaluate import NonFiniteActions, evaluate
from srpo_bench.locks import claimed, live_holder
from srpo_bench.progress import Bar, Reporter
from srpo_bench.tasks import Task

M = TypeVar("M", bound=nn.Module)


class StageConfig:
    """Base of every stage config (a frozen dataclass). Bump `revision` when a stage's training code changes
    what it produces for the same config: old artifacts then stop matching."""

    revision: ClassVar[int] = 1

    def training_steps(self, rows: int) -> int:
        """Optimizer steps this stage takes on data of `rows` rows (for estimates; a stage whose length follows
        the data size overrides this)."""
        return int(getattr(self, "steps"))  # noqa: B009 - every stage without its own rule has `steps`


@dataclass(frozen=True)
class Stage:
    name: str
    config: StageConfig
    depends_on: tuple[str, ...] = ()

    @property
    def definition(self) -> str:
        return f"{type(self.config).__name__}.r{type(self.config).revision}"


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


# --- numerical precision: named settings, off by default -----------------------------------------------------------
MixedPrecision = Literal["off", "bf16"]
TF32_VARIABLE, MIXED_PRECISION_VARIABLE = "SRPO_BENCH_TF32", "SRPO_BENCH_MIXED_PRECISION"


@dataclass(frozen=True)
class Precision:
    """How a stage's float32 arithmetic may be lowered. `tf32`: CUDA matrix products in TF32 (10-bit mantissa
    inputs, float32 accumulation; no effect on a CPU). `mixed_precision="bf16"`: the step loop under
    `torch.autocast(bfloat16)` (products and most elementwise ops in bf16, reductions and losses in float32, as
    autocast decides; the weights and the optimizer stay float32; bf16 needs no loss scaling). Both change the
    trained weights, so both are in the stage keys (when on)."""

    tf32: bool = False
    mixed_precision: MixedPrecision = "off"

    def __post_init__(self) -> None:
        if self.mixed_precision not in get_args(MixedPrecision):
            raise ValueError(f"{MIXED_PRECISION_VARIABLE}: expected one of {', '.join(get_args(MixedPrecision))}, "
                             f"got '{self.mixed_precision}'")

    @property
    def default(self) -> bool:
        return self == Precision()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def precision_settings() -> Precision:
    """The precision settings in force: `SRPO_BENCH_TF32` (1/true/yes: on) and `SRPO_BENCH_MIXED_PRECISION`
    (off | bf16); unset: both off."""
    tf32 = os.environ.get(TF32_VARIABLE, "0").strip().lower()
    if tf32 not in ("0", "1", "true", "false", "yes", "no", "on", "off", ""):
        raise ValueError(f"{TF32_VARIABLE}: expected 1 or 0, got '{tf32}'")
    mixed = os.environ.get(MIXED_PRECISION_VARIABLE, "off").strip().lower() or "off"
    return Precision(tf32=tf32 in ("1", "true", "yes", "on"), mixed_precision=mixed)  # type: ignore[arg-type]


@contextlib.contextmanager
def tf32_matmul(enabled: bool) -> Iterator[None]:
    """CUDA float32 matrix products in TF32 while inside (restored after). Only ever switched on: off leaves
    torch's defaults (float32 products) untouched."""
    if not enabled:
        yield
        return
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9; `allow_tf32` is its older spelling
        before = matmul.fp32_precision
        matmul.fp32_precision = "tf32"
        try:
            yield
        finally:
            matmul.fp32_precision = before
    else:
        before_flag = matmul.allow_tf32
        matmul.allow_tf32 = True
        try:
            yield
        finally:
            matmul.allow_tf32 = before_flag


@contextlib.contextmanager
def applied(precision: Precision, device: torch.device) -> Iterator[None]:
    """A stage's step loop under `precision` on `device`."""
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision.mixed_precision == "bf16"
                else contextlib.nullcontext())
    with tf32_matmul(precision.tf32), autocast:
        yield


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Autocast off (evaluations during a stage act as the policy acts outside training)."""
    with torch.autocast(device.type, enabled=False):
        yield


def stage_key(stage: Stage, data_fingerprint: str, seed: int, upstream_keys: Sequence[str],
              precision: Precision | None = None) -> str:
    """sha1 over the stage's whole declaration (and the precision settings when they are not the default);
    16 hex digits."""
    declaration: dict[str, Any] = {
        "definition": stage.definition, "config": _as_json(dataclasses.asdict(stage.config)),  # type: ignore[call-overload]
        "data": data_fingerprint, "seed": seed, "after": list(upstream_keys),
    }
    precision = precision_settings() if precision is None else precision
    if not precision.default:
        declaration["precision"] = precision.as_dict()
    blob = json.dumps(declaration, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


# --- host points ---------------------------------------------------------------------------------------------------
_host_point_depth = 0


@contextlib.contextmanager
def host_point() -> Iterator[None]:
    """Marks a declared place where training values reach the host (see the module docstring)."""
    global _host_point_depth
    _host_point_depth += 1
    try:
        yield
    finally:
        _host_point_depth -= 1


def at_host_point() -> bool:
    return _host_point_depth > 0


def host_to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A tensor made on the host (a CPU generator's draw: minibatch indices) on `device`, without making the
    host wait: on CUDA through pinned memory with a non-blocking copy (torch's pinned-memory allocator keeps the
    block until the copy has run), where a plain `.to(device)` waits for the device's stream on every call."""
    if tensor.device == device:
        return tensor
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


# --- captured steps (opt-in lever) ---------------------------------------------------------------------------------
CAPTURE_STEPS = False  # the lever (see the module docstring); `srpo_bench.core.levers.OPT_IN`
CAPTURE_BACKEND = "inductor"  # tests may trace with "aot_eager" (the same capture, without code generation)


def captured(function: Callable[..., Any], device: torch.device) -> Callable[..., Any]:
    """`function` (a step's loss computation) compiled once for the stage when `CAPTURE_STEPS` is on, else itself.
    Static shapes (a stage trains at fixed minibatch sizes); CUDA graphs on a GPU; torch's own random draws."""
    if not CAPTURE_STEPS:
        return function
    # the samplers' chains call `shared_times(float(i), ...)` with one constant per diffusion step: Dynamo compiles
    # a frame per value it meets (5 for DDPM, 15 for SfBC's solver), once; the default limit of 8 would fall back
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    options: dict[str, Any] = {"fallback_random": True}
    if CAPTURE_BACKEND == "inductor":
        options["triton.cudagraphs"] = device.type == "cuda"
        return torch.compile(function, backend="inductor", options=options, dynamic=False)
    return torch.compile(function, backend=CAPTURE_BACKEND, dynamic=False)


def plan_keys(stages: Sequence[Stage], data_fingerprint: str, seed: int, precision: Precision | None = None
              ) -> dict[str, str]:
    """Keys of a method's stage plan, in declaration order (a stage may depend only on earlier ones), under
    `precision` (default: the settings in force)."""
    precision = precision_settings() if precision is None else precision
    keys: dict[str, str] = {}
    for stage in stages:
        missing = [name for name in stage.depends_on if name not in keys]
        if missing:
            raise ValueError(f"stage '{stage.name}' depends on {missing}, not declared before it")
        if stage.name in keys:
            raise ValueError(f"stage '{stage.name}' declared twice")
        keys[stage.name] = stage_key(stage, data_fingerprint, seed, [keys[name] for name in stage.depends_on],
                                     precision)
    return keys


@dataclass(frozen=True)
class PlanContext:
    """What a method may read while declaring its stages: the task, the profile, and the stages of another
    method as that method declares them in the same grid (with its `--set` overrides), for a stage shared on
    purpose (IDQL's `critic_source="shared"` takes SRPO's critic stage, whole)."""

    task: Task
    profile: str
    stages_of: Callable[[str], tuple[Stage, ...]]

    def stage_of(self, method: str, name: str) -> Stage:
        for stage in self.stages_of(method):
            if stage.name == name:
                if stage.depends_on:
                    raise ValueError(f"{method}'s stage '{name}' depends on {stage.depends_on}: only stages "
                                     "without upstream stages can be shared")
                return stage
        raise ValueError(f"{method} declares no stage '{name}'")


class Diverged(RuntimeError):
    """Training produced a non-finite loss, weight or action: the run stops here and is recorded as failed.

    Checked where values reach the host anyway (the logged curve points, about `curve_points` per stage, and
    periodic evaluations) and once on the weights at the end of each stage, so a GPU never syncs per step."""

    def __init__(self, stage: str, step: int, reason: str, last_metrics: dict[str, float] | None = None) -> None:
        super().__init__(f"{reason} (stage {stage}, step {step})")
        self.stage, self.step, self.reason = stage, step, reason
        self.last_metrics = last_metrics or {}


@dataclass(frozen=True)
class EvaluationSchedule:
    """Periodic evaluation of the policy during the last stage (official codes evaluate as they train):
    `points` evaluations at evenly spaced steps before the end, `episodes` each. The final policy's
    evaluation by the harness is the run's score and the curve's last point."""

    points: int
    episodes: int

    def due(self, step: int, total: int) -> bool:
        if self.points <= 0 or total < self.points + 1:
            return False
        return any(step + 1 == (k * total) // (self.points + 1) for k in range(1, self.points + 1))


@dataclass(frozen=True)
class TrainingClock:
    """Seconds spent training: `cpu`, this process's CPU time (all its threads: on a CPU, the compute a run
    cost), and `wall`, elapsed time (on a GPU, device-seconds). Periodic evaluations are never counted."""

    cpu: float
    wall: float

    @staticmethod
    def now() -> TrainingClock:
        return TrainingClock(time.process_time(), time.perf_counter())

    def __add__(self, other: TrainingClock) -> TrainingClock:
        return TrainingClock(self.cpu + other.cpu, self.wall + other.wall)

    def __sub__(self, other: TrainingClock) -> TrainingClock:
        return TrainingClock(self.cpu - other.cpu, self.wall - other.wall)

    def as_dict(self) -> dict[str, float]:
        return {"cpu": self.cpu, "wall": self.wall}

    @staticmethod
    def of(entry: Mapping[str, Any]) -> TrainingClock | None:
        """A stage log entry's clock (None for an artifact saved before clocks were recorded)."""
        saved = entry.get("train_seconds")
        if not isinstance(saved, Mapping) or not all(isinstance(saved.get(k), (int, float)) for k in ("cpu", "wall")):
            return None
        return TrainingClock(float(saved["cpu"]), float(saved["wall"]))


@dataclass
class FitContext:
    """What a method's `fit` may use: data, device, seed, its declared stages and their cache, curves,
    periodic evaluation and progress bars."""

    task: Task
    dataset: OfflineDataset
    seed: int
    device: torch.device
    stage_dir: Path  # content-addressed artifacts, shared by every run of a results folder
    reporter: Reporter
    plan: Sequence[Stage]
    run_id: str = ""
    evaluation: EvaluationSchedule | None = None
    method: str = ""  # the registered method fitting (progress bars name it)
    curve_points: int = 100  # training-curve points logged per stage
    curves: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    stage_log: list[dict[str, Any]] = field(default_factory=list)
    #: per stage: (steps run, seconds in the step loop, periodic evaluations excluded): training steps/s
    step_timings: dict[str, tuple[int, float]] = field(default_factory=dict)
    #: where training is now (stage name, step), for a failure record
    position: tuple[str, int] = ("", 0)
    #: TF32 / bf16 autocast for every stage of this fit (in the keys when not the default)
    precision: Precision = field(default_factory=precision_settings)
    #: seconds spent in periodic evaluations so far, (process CPU, wall): left out of every training clock
    evaluating: TrainingClock = field(default_factory=lambda: TrainingClock(0.0, 0.0))
    _bar: Bar | None = field(default=None, repr=False)
    _stage_started: tuple[TrainingClock, TrainingClock] | None = field(default=None, repr=False)
    _keys: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._keys = plan_keys(self.plan, self.dataset.fingerprint(), self.seed, self.precision)
        self._stages = {stage.name: stage for stage in self.plan}

    @property
    def keys(self) -> Mapping[str, str]:
        return dict(self._keys)

    def config(self, name: str) -> Any:
        return self._stages[name].config

    def label(self, stage: str) -> str:
        """What a progress bar says: 'toy-two-moons srpo seed 0 behavior' (task, method, seed, stage)."""
        return " ".join(part for part in (self.task.name, self.method, f"seed {self.seed}", stage) if part)

    def fit(self, name: str, build: Callable[[], M], train: Callable[[M], None]) -> M:
        """The declared stage `name`: `build()` a fresh module and `train(module)` it in place (seeded with the
        run's seed), or load it from its artifact. Returns the module in eval mode, gradients off."""
        stage = self._stages.get(name)
        if stage is None:
            raise KeyError(f"stage '{name}' is not in the method's declared stages {list(self._stages)}")
        unfitted = [dep for dep in stage.depends_on if not any(e["stage"] == dep for e in self.stage_log)]
        if unfitted:
            raise RuntimeError(f"stage '{name}' fitted before the stages it depends on: {unfitted}")
        key = self._keys[name]
        path = self.stage_dir / f"{stage.definition}-{key}.pt"
        loaded = self._load(stage, key, path, build)
        if loaded is not None:
            return loaded
        lock = path.with_suffix(".lock")
        holder = live_holder(lock)
        if holder is not None:
            self.reporter.print(f"[dim]{self.label(name)}: waiting for the runner training this stage "
                                f"({holder})[/dim]")
        with claimed(lock):  # one runner trains a shared stage; the others wait, then load it
            loaded = self._load(stage, key, path, build)
            if loaded is not None:
                return loaded
            remove_temporaries(self.stage_dir, path.name)  # a killed writer's, now that nobody else can write
            started = time.perf_counter()
            self._stage_started = (TrainingClock.now(), self.evaluating)
            self.curves[name] = []
            evaluations_before = len(self.evaluations)
            self.position = (name, 0)
            try:
                torch.manual_seed(self.seed)  # initial weights and any global-RNG draws of the stage
                module = build()
                train(module)
                self._check_weights(name, module)
                clock = self._stage_clock()
            finally:
                self._stage_started = None
            seconds = time.perf_counter() - started
            atomic_torch_save({"key": key, "definition": stage.definition,
                               "config": _as_json(dataclasses.asdict(stage.config)),  # type: ignore[call-overload]
                               "state": module.state_dict(), "seconds": seconds, "train_seconds": clock.as_dict(),
                               "curve": self.curves[name], "evaluations": self.evaluations[evaluations_before:],
                               "run_id": self.run_id}, path)
        self.stage_log.append({"stage": name, "definition": stage.definition, "key": key, "origin": "trained",
                               "seconds": seconds, "train_seconds": clock.as_dict(), "trained_by": self.run_id})
        return module.eval().requires_grad_(False)

    def _load(self, stage: Stage, key: str, path: Path, build: Callable[[], M]) -> M | None:
        if not path.exists():
            return None
        saved = torch.load(path, map_location=self.device, weights_only=False)
        if saved.get("key") != key:
            return None
        module = build()
        module.load_state_dict(saved["state"])
        origin = "resumed" if saved.get("run_id") == self.run_id else "shared"
        self.curves[stage.name] = saved.get("curve", [])
        self.evaluations.extend(saved.get("evaluations", []))
        self.stage_log.append({"stage": stage.name, "definition": stage.definition, "key": key, "origin": origin,
                               "seconds": saved.get("seconds", 0.0),
                               **({"train_seconds": saved["train_seconds"]} if "train_seconds" in saved else {}),
                               "trained_by": saved.get("run_id")})
        return module.eval().requires_grad_(False)

    def _stage_clock(self) -> TrainingClock:
        """Training seconds of the stage being trained so far, its periodic evaluations left out."""
        assert self._stage_started is not None
        started, evaluating_before = self._stage_started
        return TrainingClock.now() - started - (self.evaluating - evaluating_before)

    def training_clock(self) -> TrainingClock | None:
        """Training seconds of the whole fit so far: every stage fitted (a loaded stage counts what it cost whoever
        trained it: a shared critic is part of each method's cost) plus the stage in progress. None when a loaded
        stage predates clocks. This is the x axis of the report's score-against-training-time view."""
        total = TrainingClock(0.0, 0.0)
        for entry in self.stage_log:
            clock = TrainingClock.of(entry)
            if clock is None:
                return None
            total = total + clock
        return total + self._stage_clock() if self._stage_started is not None else total

    def _check_weights(self, stage: str, module: nn.Module) -> None:
        """Once per stage, one host sync: a stage whose weights went non-finite is never saved."""
        tensors = [t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()]
        with host_point():
            finite = not tensors or bool(torch.stack([t.isfinite().all() for t in tensors]).all())
        if not finite:
            raise Diverged(stage, self.position[1], "non-finite weights at the end of the stage",
                           self.last_finite(stage))

    def last_finite(self, stage: str) -> dict[str, float]:
        for point in reversed(self.curves.get(stage, [])):
            metrics = {k: v for k, v in point.items() if k != "eval_normalized"}
            if all(math.isfinite(v) for v in metrics.values()):
                return metrics
        return {}

    def log_due(self, step: int, total: int) -> bool:
        """About `curve_points` evenly spaced points per stage, always the first and the last step."""
        every = max(1, total // max(self.curve_points, 1))
        return step % every == 0 or step == total - 1

    def log(self, stage: str, step: int, **metrics: float | torch.Tensor) -> None:
        """Append one point to a stage's training curve (saved with the stage and in curves.json). Pass tensors as
        they are (one-element, detached or not): they are read back here, a declared host point, so a step loop
        computes nothing on the host between its logged points."""
        with host_point(), torch.no_grad():
            point = {k: float(v) for k, v in metrics.items()}
        bad = [f"{k}={v}" for k, v in point.items() if not math.isfinite(v)]
        if bad:
            raise Diverged(stage, step, f"non-finite {', '.join(bad)}", self.last_finite(stage))
        self.curves.setdefault(stage, []).append({"step": step, **point})
        if self._bar is not None:
            self._bar.advance(0, **point)

    def steps(self, stage: str, total: int, agent: Callable[[], Agent] | None = None) -> Iterator[tuple[int, Bar]]:
        """`for step, bar in ctx.steps("critic", n):` with a progress bar (steps/s, ETA). Pass `agent` (a
        function making the current policy's agent) on the stage that produces the policy: it is then
        evaluated on the profile's schedule, and the points go to `evaluations` (the training curve of score)."""
        label = self.label(stage)
        # one profiler range per stage (not per step: free when no profiler runs), so
        # benchmarks/train_steps.py --profile can attribute operator time to the stage
        with (self.reporter.track(label, total) as bar, torch.profiler.record_function(f"stage:{stage}"),
              core_nn.training_stage(total),  # long stages use the compiled activations on every step
              applied(self.precision, self.device)):
            self._bar = bar
            started, evaluated_before, done = time.perf_counter(), self.evaluating, 0
            try:
                for step in range(total):
                    self.position = (stage, step)
                    yield step, bar
                    done = step + 1
                    bar.advance()
                    if agent is not None and self.evaluation is not None and self.evaluation.due(step, total):
                        # read the training clock, then start the evaluation's: the instant between is counted
                        # once, as training, in this point and in every later one alike
                        clock = self.training_clock()
                        before = TrainingClock.now()
                        self._evaluate(stage, step, agent, clock)
                        self.evaluating = self.evaluating + (TrainingClock.now() - before)
            finally:
                self._bar = None
                evaluating = (self.evaluating - evaluated_before).wall
                self.step_timings[stage] = (done, time.perf_counter() - started - evaluating)

    def _evaluate(self, stage: str, step: int, make_agent: Callable[[], Agent], clock: TrainingClock | None) -> None:
        """Evaluate the policy; `clock` is the training time read just before (never the evaluation's own)."""
        assert self.evaluation is not None
        try:
            # the policy acts as it does outside training: torch's own activations, float32
            with core_nn.training_stage(0), full_precision(self.device), host_point():
                agent = make_agent()
                agent.seed(self.seed)
                result = evaluate(agent, self.task, self.evaluation.episodes, dataset=self.dataset)
        except NonFiniteActions as error:
            raise Diverged(stage, step, "non-finite actions in an evaluation during training",
                           self.last_finite(stage)) from error
        self.evaluations.append({"stage": stage, "step": step + 1, "mean_normalized": result.mean_normalized,
                                 "normalized": [float(x) for x in result.normalized],
                                 **({"train_seconds": clock.as_dict()} if clock is not None else {})})
        self.log(stage, step, eval_normalized=result.mean_normalized)

    def captured(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """A stage's per-step loss computation, captured when the opt-in lever is on (see `captured`)."""
        return captured(function, self.device)

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.seed * 1000 + offset)


def train_mode(module: nn.Module) -> nn.Module:
    """A freshly built module in training mode with gradients on (dropout on, as the official codes train)."""
    return module.train().requires_grad_(True)
