"""No host synchronisation per training step: docs/faults.md's promise that "a GPU never syncs per step", checked on
the CPU.

A `TorchFunctionMode` sees every tensor call of a fit and counts the ones that, on a GPU, make the host wait for the
device: a value read back (`item`, `tolist`, `numpy`, `__bool__` / `__float__` / `__int__` / `__index__` of a
tensor, which `if tensor:`, `float(loss)` and `range(n)` call), a copy between devices (`cpu`, `cuda`, `to`/`copy_`
with a device: an unpinned copy waits for the stream), and the ops whose output size depends on values (`nonzero`,
`unique`, `masked_select`, boolean-mask indexing, `repeat_interleave` with tensor repeats). On the CPU these calls
are cheap, but they are the same calls a GPU run makes (the CPU-only levers, which a GPU never takes, are switched
off here, so the counted path is the GPU's).

Every method's every stage is trained twice, with N and 2N steps; what a stage may read back is fixed by its
declaration (about `curve_points` logged points, the periodic evaluations, SfBC's planning between critic
iterations: `FitContext.host_point`), so the count outside those points must be the same for N and 2N steps.
"""

from __future__ import annotations

import collections
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from srpo_bench.core import nn as core_nn
from srpo_bench.core import stages
from srpo_bench.core.stages import FitContext
from srpo_bench.progress import Reporter
from srpo_bench.registry import expand_methods, get_method
from srpo_bench.runner import fit_context
from srpo_bench.tasks import get_task

Tensor = torch.Tensor
# calls that read a value back or copy between devices: a host sync on a GPU
READS: set[Callable[..., Any]] = {Tensor.item, Tensor.tolist, Tensor.numpy, Tensor.__bool__, Tensor.__float__,
                                  Tensor.__int__, Tensor.__index__, Tensor.cpu, Tensor.cuda}
# ops whose output shape depends on the values: the device must finish before the host can size the output
DATA_DEPENDENT: set[Callable[..., Any]] = {torch.nonzero, Tensor.nonzero, torch.unique, Tensor.unique,
                                           torch.masked_select, Tensor.masked_select, torch.argwhere,
                                           torch.unique_consecutive}
MOVES: set[Callable[..., Any]] = {Tensor.to, Tensor.copy_}


def called_from_torch() -> bool:
    """Whether the Python code calling the tensor op is torch's own (the first frame outside this file)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    return frame is not None and f"{os.sep}torch{os.sep}" in frame.f_code.co_filename


def moves_between_devices(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """`to(device)` / `copy_(other)` in our code, unless asked for `non_blocking=True`. On the CPU every tensor is
    on one device, so the test cannot tell a host-to-device copy from a no-op: every `to` with a device that our
    code makes counts (a CPU generator's draw moved to the training device is the case that syncs). torch's own
    calls are left out: `clip_grad_norm_` and `Module.to` move tensors to the device they are already on."""
    if kwargs.get("non_blocking") or any(arg is True for arg in args[2:]):
        return False
    device_given = (func is Tensor.copy_ or "device" in kwargs
                    or any(isinstance(arg, (torch.device, str)) for arg in args[1:]))
    return device_given and not called_from_torch()


def is_sync(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if func in READS or func in DATA_DEPENDENT:
        return True
    if func in MOVES:
        return moves_between_devices(func, args, kwargs)
    if func is Tensor.__getitem__ and len(args) > 1:  # boolean-mask indexing sizes its output from the mask
        index = args[1] if isinstance(args[1], tuple) else (args[1],)
        return any(isinstance(part, Tensor) and part.dtype == torch.bool for part in index)
    if func in (torch.repeat_interleave, Tensor.repeat_interleave) and len(args) > 1:
        return isinstance(args[1], Tensor) and args[1].numel() > 1
    return False


class SyncCounter(TorchFunctionMode):
    """Counts host-syncing calls by (stage, call), outside the declared host points of `FitContext`."""

    def __init__(self) -> None:
        super().__init__()
        self.ctx: FitContext | None = None
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if not stages.at_host_point() and is_sync(func, args, kwargs):
            stage = self.ctx.position[0] if self.ctx is not None else "?"
            self.counts[(stage, getattr(func, "__name__", str(func)))] += 1
        return func(*args, **kwargs)


def step_overrides(method: str, steps: int) -> dict[str, str]:
    """Every stage of `method` at `steps` steps (SfBC: its critic's steps per epoch, so the number of planning
    iterations stays that of the smoke profile: one planning pass between two critic iterations)."""
    if method == "sfbc":
        return {"behavior_steps": str(steps), "critic_steps_per_epoch": str(max(1, steps // 4))}
    fields = get_method(method).Config.__dataclass_fields__
    return {name: str(steps) for name, field in fields.items()
            if name.endswith("steps") and name not in ("diffusion_steps", "flow_steps") and field.type in ("int", int)}


@contextmanager
def gpu_code_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CPU-only training levers (oneDNN products, compiled Mish, sigmoid GELU, distinct times, fast dropout)
    test `eager_cpu_float32` and never run on a GPU: turn that test off so the counted path is the one a GPU
    takes. (The distinct-times lever's `unique` is data-dependent and would sync on a GPU: it is CPU-only for
    that reason.)"""
    monkeypatch.setattr(core_nn, "eager_cpu_float32", lambda x: False)
    yield


def count_syncs(method: str, steps: int, out: Path) -> collections.Counter[tuple[str, str]]:
    task = get_task("toy-two-moons")
    counter = SyncCounter()
    overrides = {method: step_overrides(method, steps)}
    config, ctx = fit_context(task, method, task.load(), 0, "smoke", out, torch.device("cpu"), Reporter(quiet=True),
                              overrides, stages.EvaluationSchedule(points=2, episodes=2))
    ctx.curve_points = 3  # the logged points: fixed per stage, whatever its length
    counter.ctx = ctx
    with counter:
        get_method(method)().fit(ctx, config)
    return counter.counts


def per_stage(counts: collections.Counter[tuple[str, str]]) -> dict[str, collections.Counter[str]]:
    stages_seen: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for (stage, call), count in counts.items():
        stages_seen[stage][call] += count
    return dict(stages_seen)


@pytest.mark.parametrize("method", expand_methods("all"))
def test_no_host_sync_grows_with_the_number_of_training_steps(method: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with gpu_code_path(monkeypatch):
        short = per_stage(count_syncs(method, 8, tmp_path / "short"))
        long = per_stage(count_syncs(method, 24, tmp_path / "long"))
    grown = {stage: {call: (short.get(stage, {}).get(call, 0), count) for call, count in calls.items()
                     if count > short.get(stage, {}).get(call, 0)}
             for stage, calls in long.items()}
    grown = {stage: calls for stage, calls in grown.items() if calls}
    assert not grown, f"{method}: host syncs that grow with the steps (stage: call: (8 steps, 24 steps)): {grown}"


def test_the_counter_sees_each_kind_of_host_sync() -> None:
    """Each call that promise is about is counted (a counter that saw nothing would pass every method)."""
    x = torch.arange(4.0)
    counter = SyncCounter()
    with counter:
        _ = x.sum().item()
        _ = float(x[0])
        _ = bool(x[1] > 0)
        _ = int(x[2])
        _ = x.tolist()
        _ = x.cpu()
        _ = x.nonzero()
        _ = torch.unique(x)
        _ = x[x > 1]
        _ = x.to("cpu")
        _ = x.to("cpu", non_blocking=True)  # not counted: asked not to wait
        _ = x * 2 + x.mean()  # not counted: stays on the device
        with stages.host_point():
            _ = x.sum().item()  # not counted: a declared host point
    calls = collections.Counter(call for (_, call) in counter.counts.elements())
    assert calls == collections.Counter({"item": 1, "__float__": 1, "__bool__": 1, "__int__": 1, "tolist": 1,
                                         "cpu": 1, "nonzero": 1, "unique": 1, "__getitem__": 1, "to": 1})


def test_a_per_step_read_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loss read back on every step (the bug this test exists for) makes the count grow with the steps: here
    BC logs on every step, with its reads no longer declared as host points."""
    monkeypatch.setattr(FitContext, "log_due", lambda self, step, total: True)
    monkeypatch.setattr(stages, "at_host_point", lambda: False)
    with gpu_code_path(monkeypatch):
        short = per_stage(count_syncs("bc", 8, tmp_path / "short"))
        long = per_stage(count_syncs("bc", 24, tmp_path / "long"))
    assert long["policy"]["__float__"] - short["policy"]["__float__"] == 16  # one loss read per extra step
