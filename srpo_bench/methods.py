"""The two types every method meets the rest of the system through, and the method registry.

- `Method.fit(ctx, config) -> Agent`: trains a method's named stages. Each stage's output is a checkpoint
  keyed by a hash of (stage kind, stage config, dataset fingerprint, seed), so an interrupted run resumes
  from its last finished stage and, with `--share-stages`, two methods whose stage definitions are
  identical reuse one artifact.
- `Agent.act(observations) -> actions`: the method's exact evaluation-time action selection.
  `network_evaluations` says how many network evaluations one action costs, by network.

A new method is one file (a `Method` subclass) plus one entry point in pyproject.toml.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

import torch

from srpo_bench.data.dataset import OfflineDataset
from srpo_bench.profiles import PROFILE_NAMES
from srpo_bench.progress import Bar, Reporter
from srpo_bench.tasks import Task


class Agent(ABC):
    """A trained policy as evaluation and timing see it."""

    #: network evaluations per action, by network ({"policy": 1}; {"denoiser": 250, "critic": 50}).
    network_evaluations: dict[str, int]

    @abstractmethod
    def act(self, observations: torch.Tensor) -> torch.Tensor:
        """[B, obs_dim] float32 on `self.device` -> [B, act_dim] actions in the action box."""

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @property
    def nfe_per_action(self) -> int:
        return int(sum(self.network_evaluations.values()))

    def seed(self, seed: int) -> None:
        """Reseed the agent's own sampling noise (stochastic agents override)."""


class Method(ABC):
    """One offline-RL method: official defaults in `Config`, shorter schedules in `profiles`."""

    name: ClassVar[str]
    Config: ClassVar[type]  # a dataclass whose defaults are the official settings
    #: profile -> family ("toy" | "locomotion" | "antmaze") -> field overrides. "paper" is the official
    #: schedule and overrides nothing.
    profiles: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    stages: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def task_settings(cls, task: Task) -> dict[str, Any]:
        """Per-task official settings (temperatures, expectiles...) as field overrides."""
        return {}

    @abstractmethod
    def fit(self, ctx: FitContext, config: Any) -> Agent: ...


class ConfigError(ValueError):
    pass


def resolve_config(
    method: type[Method], task: Task, profile: str, overrides: dict[str, str] | None = None
) -> Any:
    """Official defaults <- per-task official settings <- profile schedule <- user overrides."""
    if profile not in PROFILE_NAMES:
        raise ConfigError(f"unknown profile '{profile}' (choose {', '.join(PROFILE_NAMES)})")
    values: dict[str, Any] = {}
    values.update(method.task_settings(task))
    values.update(method.profiles.get(profile, {}).get(task.family, {}))
    known = {f.name: f for f in dataclasses.fields(method.Config)}
    for key, raw in (overrides or {}).items():
        if key not in known:
            raise ConfigError(
                f"{method.name} has no setting '{key}'; settings: {', '.join(sorted(known))}"
            )
        values[key] = _parse_value(raw, known[key], method.Config)
    return method.Config(**values)


def _parse_value(raw: str, spec: dataclasses.Field, config_type: type) -> Any:
    default = getattr(config_type(), spec.name)
    if not isinstance(raw, str):
        return raw
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            return tuple(type(default[0])(x) for x in raw.split(",")) if default else tuple(raw.split(","))
    except ValueError as error:
        raise ConfigError(f"setting '{spec.name}' expects {type(default).__name__}, got '{raw}'") from error
    return raw


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


# --- fitting ---------------------------------------------------------------------------------------
def atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def stage_key(kind: str, stage_config: dict[str, Any], dataset_fingerprint: str, seed: int) -> str:
    blob = json.dumps(
        {"kind": kind, "config": stage_config, "data": dataset_fingerprint, "seed": seed},
        sort_keys=True, default=str,
    )
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


@dataclass
class FitContext:
    """What a method's `fit` may use: data, device, seed, the stage cache, curves and progress bars."""

    task: Task
    dataset: OfflineDataset
    seed: int
    device: torch.device
    run_dir: Path
    reporter: Reporter
    profile: str = "paper"
    shared_stage_dir: Path | None = None  # set by --share-stages
    curves: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    stage_log: list[dict[str, Any]] = field(default_factory=list)
    _bar: Bar | None = field(default=None, repr=False)

    def stage(
        self,
        name: str,
        kind: str,
        stage_config: dict[str, Any],
        train: Callable[[], dict[str, Any]],
    ) -> dict[str, Any]:
        """Return the stage's state (a dict of state_dicts/tensors), trained now or loaded from cache.

        `kind` names the stage's definition ("vpsde-behavior/ln-resnet", "iql-critic"): two methods
        share an artifact under --share-stages only if kind, config, data and seed all match.
        """
        key = stage_key(kind, stage_config, self.dataset.fingerprint(), self.seed)
        path = self.run_dir / "stages" / f"{name}.pt"
        shared = self.shared_stage_dir / f"{kind.replace('/', '_')}-{key}.pt" if self.shared_stage_dir else None
        for candidate, origin in ((path, "resumed"), (shared, "shared")):
            if candidate is not None and candidate.exists():
                saved = torch.load(candidate, map_location=self.device, weights_only=False)
                if saved.get("key") == key:
                    self.stage_log.append({"stage": name, "kind": kind, "key": key, "origin": origin,
                                           "seconds": saved.get("seconds", 0.0)})
                    self.curves.setdefault(name, saved.get("curve", []))
                    if origin == "shared":
                        atomic_torch_save(saved, path)
                    return saved["state"]
        start = time.perf_counter()
        self.curves[name] = []
        state = train()
        seconds = time.perf_counter() - start
        payload = {"key": key, "kind": kind, "config": stage_config, "state": state,
                   "seconds": seconds, "curve": self.curves[name]}
        atomic_torch_save(payload, path)
        if shared is not None:
            atomic_torch_save(payload, shared)
        self.stage_log.append({"stage": name, "kind": kind, "key": key, "origin": "trained", "seconds": seconds})
        return state

    def stage_key_of(self, name: str) -> str:
        """The cache key of a stage already fitted in this context (chains later stages to earlier ones)."""
        for entry in reversed(self.stage_log):
            if entry["stage"] == name:
                return entry["key"]
        raise KeyError(f"stage '{name}' has not been fitted yet")

    def log(self, stage: str, step: int, **metrics: float) -> None:
        """Append one point to a stage's training curve (saved with the stage and in curves.json)."""
        point = {k: float(v) for k, v in metrics.items()}
        self.curves.setdefault(stage, []).append({"step": step, **point})
        if self._bar is not None:
            self._bar.advance(0, **point)

    def steps(self, stage: str, total: int) -> Iterator[tuple[int, Bar]]:
        """`for step, bar in ctx.steps("critic", n):` with a progress bar (steps/s, ETA); points logged with
        `ctx.log` meanwhile also show on the bar."""
        label = f"{self.task.name} seed {self.seed} {stage}"
        with self.reporter.track(label, total) as bar:
            self._bar = bar
            try:
                for step in range(total):
                    yield step, bar
                    bar.advance()
            finally:
                self._bar = None

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.seed * 1000 + offset)


# --- registry --------------------------------------------------------------------------------------
BUILTIN_METHODS = {
    "srpo": "srpo_bench.srpo:SRPO",
    "diffusion-ql": "baselines.diffusion_ql:DiffusionQL",
    "idql": "baselines.idql:IDQL",
    "sfbc": "baselines.sfbc:SfBC",
    "bc": "baselines.bc:BC",
}


class UnknownMethodError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def _method_targets() -> dict[str, str]:
    targets = dict(BUILTIN_METHODS)
    for ep in entry_points(group="srpo_bench.methods"):
        targets[ep.name] = ep.value
    return targets


def available_methods() -> list[str]:
    available = []
    for name, target in _method_targets().items():
        module = target.split(":")[0]
        try:
            import_module(module)
        except ModuleNotFoundError:
            continue
        available.append(name)
    return available


def get_method(name: str) -> type[Method]:
    targets = _method_targets()
    if name not in targets:
        raise UnknownMethodError(f"unknown method '{name}'; available: {', '.join(available_methods())}")
    module, attr = targets[name].split(":")
    return getattr(import_module(module), attr)


def expand_methods(spec: str) -> list[str]:
    names = available_methods() if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    for name in names:
        get_method(name)
    if not names:
        raise UnknownMethodError("no method given")
    return names
