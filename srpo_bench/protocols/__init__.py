"""Protocols as data: one TOML file per protocol, shipped with the package (`srpo-bench list` shows them).

A protocol states everything a published number depends on, so that a reader can tell whether two numbers may
stand side by side:

    suite, tasks, methods       what is run
    seeds                       the least number of training seeds per (task, method); `run --protocol` runs 0..n-1
    profile, [budget]           the training schedule, every step count and batch size, per family and method
    [evaluation]                episodes per evaluation, evaluations during training, the checkpoint rule
                                ("final" policy, or "mean_last3": the mean of the last three evaluations) and what
                                the "+-" of a published table means
    [data]                      the dataset definition: full or small, the least number of transitions, pinned
                                fingerprints where the data is deterministic, OGBench's success timing
    [tuning]                    how hyperparameters were chosen, and the source paper's protocol

A run complies with a protocol when every check of `deviations` passes; a group of runs complies when each of
its runs does and every (task, method) has at least `seeds` seeds (`group_deviations`). The report pairs our
numbers with a published number only for a group that complies with the protocol the number was published under
(report/reference.py); anything else is *exploratory*. Compliance is a pure function of a run's record, so the
report and `srpo-bench results add` recompute it rather than trust what a record says of itself.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from srpo_bench.vocabulary import did_you_mean, plural

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PROTOCOL_DIR = Path(__file__).resolve().parent
CHECKPOINT_RULES = ("final", "mean_last3")


class ProtocolError(ValueError):
    """An unknown protocol name or a malformed protocol file; the message names which."""


@dataclass(frozen=True)
class DataRule:
    definition: str
    size: str  # "full" | "small"
    min_transitions: int
    fingerprints: dict[str, str] = field(default_factory=dict)  # task -> dataset fingerprint, where pinned
    success_timing: str | None = None  # OGBench: "post" (ogbench 1.1.0, FQL's table) or "pre"


@dataclass(frozen=True)
class Protocol:
    name: str
    title: str
    summary: str
    suite: str
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: int
    profile: str
    budget: dict[str, dict[str, dict[str, Any]]]  # family -> method -> schedule setting -> value
    episodes: int
    evaluations_during_training: int
    checkpoint: str
    plus_minus: str
    data: DataRule
    tuning: str
    source: str
    digest: str  # of the parsed content: a reworded comment keeps it, a changed number changes it

    def budget_for(self, family: str, method: str) -> dict[str, Any]:
        return self.budget.get(family, {}).get(method, {})

    def describe(self) -> dict[str, Any]:
        """The protocol as recorded in a run and written into the leaderboard's JSON."""
        return {"name": self.name, "digest": self.digest, "profile": self.profile, "seeds": self.seeds,
                "episodes": self.episodes, "checkpoint": self.checkpoint, "data": self.data.size}


def protocol_names() -> list[str]:
    return sorted(path.stem for path in PROTOCOL_DIR.glob("*.toml"))


@cache
def load_protocol(name: str) -> Protocol:
    path = PROTOCOL_DIR / f"{name}.toml"
    if not path.is_file():
        raise ProtocolError(f"unknown protocol '{name}'{did_you_mean(name, protocol_names())} (choose "
                            f"{', '.join(protocol_names())})")
    return parse_protocol(path)


def all_protocols() -> list[Protocol]:
    return [load_protocol(name) for name in protocol_names()]


def _need(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = table.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise ProtocolError(f"{path}: '{key}' is missing or not {getattr(kind, '__name__', kind)}")
    return value


def parse_protocol(path: Path) -> Protocol:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ProtocolError(f"{path}: not a readable TOML file ({error})") from None
    evaluation, data, tuning = (_need(raw, key, dict, path) for key in ("evaluation", "data", "tuning"))
    checkpoint = _need(evaluation, "checkpoint", str, path)
    if checkpoint not in CHECKPOINT_RULES:
        raise ProtocolError(f"{path}: checkpoint '{checkpoint}' (choose {', '.join(CHECKPOINT_RULES)})")
    size = _need(data, "size", str, path)
    if size not in ("full", "small"):
        raise ProtocolError(f"{path}: data size '{size}' (choose full, small)")
    name = _need(raw, "name", str, path)
    if name != path.stem:
        raise ProtocolError(f"{path}: name '{name}' differs from the file name")
    return Protocol(
        name=name, title=_need(raw, "title", str, path), summary=_need(raw, "summary", str, path).strip(),
        suite=_need(raw, "suite", str, path), tasks=tuple(_need(raw, "tasks", list, path)),
        methods=tuple(_need(raw, "methods", list, path)), seeds=_need(raw, "seeds", int, path),
        profile=_need(raw, "profile", str, path), budget=_need(raw, "budget", dict, path),
        episodes=_need(evaluation, "episodes", int, path),
        evaluations_during_training=_need(evaluation, "evaluations_during_training", int, path),
        checkpoint=checkpoint, plus_minus=_need(evaluation, "plus_minus", str, path).strip(),
        data=DataRule(definition=_need(data, "definition", str, path).strip(), size=size,
                      min_transitions=_need(data, "min_transitions", int, path),
                      fingerprints=dict(data.get("fingerprints", {})), success_timing=data.get("success_timing")),
        tuning=_need(tuning, "rule", str, path).strip(), source=_need(tuning, "source", str, path).strip(),
        digest=hashlib.sha1(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:12],
    )


# --- compliance ---------------------------------------------------------------------------------------------
def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def candidates(task: str, profile: str | None = None) -> list[Protocol]:
    """Protocols whose task list holds `task`: those of the same profile first, then those of the official
    schedules (a run that fits no protocol's schedule is measured against the papers', whose numbers a reader
    would compare it with, not against this project's own budgets such as ogbench-cpu)."""
    found = [p for p in all_protocols() if task in p.tasks]
    return sorted(found, key=lambda p: (p.profile != profile, p.profile != "paper", p.name))


def protocol_of(run: Mapping[str, Any]) -> Protocol | None:
    """The protocol a run is measured against: the one it names (run with `--protocol`, or recorded), else the
    first whose tasks hold its task (same profile first). None when no protocol covers the task."""
    named = run.get("protocol")
    name = named.get("name") if isinstance(named, Mapping) else None
    if isinstance(name, str) and name in protocol_names():
        return load_protocol(name)
    found = candidates(str(run.get("task")), str(run.get("profile")))
    return found[0] if found else None


def _success_timing(note: str) -> str | None:
    marker = "success_timing="
    if marker not in note:
        return None
    return note.split(marker, 1)[1].split(";")[0].split(",")[0].split(")")[0].strip()


def deviations(protocol: Protocol, run: Mapping[str, Any]) -> list[str]:
    """Every way a run's record departs from `protocol`, each as a short phrase ("profile smoke (protocol:
    paper)"); empty when the run complies. Reads only the record (run.json), so it applies to anyone's runs."""
    found: list[str] = []
    task, method = str(run.get("task")), str(run.get("method"))
    if task not in protocol.tasks:
        found.append(f"task {task} is not one of the protocol's")
    if method not in protocol.methods:
        found.append(f"method {method} is not one of the protocol's")
    profile = run.get("profile")
    if profile != protocol.profile:
        found.append(f"{profile} profile (protocol: {protocol.profile})")
    overrides = run.get("overrides") or {}
    if overrides:
        shown = ", ".join(f"{key}={value}" for key, value in sorted(overrides.items()))
        found.append(f"settings changed with --set ({shown}; protocol: official settings)")
    config = run.get("config") if isinstance(run.get("config"), Mapping) else {}
    budget = protocol.budget_for(str(run.get("family")), method)
    if method in protocol.methods and not budget:
        found.append(f"no {run.get('family')} budget for {method} in the protocol")
    changed = [f"{key} {_count(config.get(key))} (protocol: {_count(value)})" for key, value in budget.items()
               if config.get(key) != value]
    if changed and profile == protocol.profile:  # a wrong profile already says the schedule differs
        found.append("training budget " + ", ".join(changed))
    harness = run.get("harness") if isinstance(run.get("harness"), Mapping) else {}
    episodes = harness.get("eval_episodes")
    if episodes != protocol.episodes:
        found.append(f"{_count(episodes)} evaluation episode{'' if episodes == 1 else 's'} (protocol: "
                     f"{protocol.episodes})")
    during = harness.get("evaluations_during_training")
    if during != protocol.evaluations_during_training and protocol.checkpoint != "final":
        found.append(f"{_count(during)} evaluation{'' if during == 1 else 's'} during training (protocol: "
                     f"{protocol.evaluations_during_training}, for its {protocol.checkpoint} checkpoint)")
    dataset = run.get("dataset") if isinstance(run.get("dataset"), Mapping) else {}
    transitions = dataset.get("transitions")
    if not isinstance(transitions, int) or transitions < protocol.data.min_transitions:
        found.append(f"{_count(transitions)}-transition dataset (protocol: {protocol.data.size} data, at least "
                     f"{protocol.data.min_transitions:,})")
    pinned = protocol.data.fingerprints.get(task)
    if pinned and dataset.get("fingerprint") != pinned:
        found.append(f"dataset fingerprint {dataset.get('fingerprint')} (protocol: {pinned})")
    if protocol.data.success_timing is not None:
        timing = _success_timing(str(run.get("task_note") or ""))
        if timing != protocol.data.success_timing:
            found.append(f"OGBench success timing {timing or 'unrecorded'} (protocol: {protocol.data.success_timing})")
    return found


def compliance(run: Mapping[str, Any]) -> dict[str, Any]:
    """What a run records of its protocol: name and digest (None when no protocol covers its task), whether it
    complies, and why not."""
    protocol = protocol_of(run)
    if protocol is None:
        return {"name": None, "digest": None, "complies": False,
                "deviations": [f"no protocol covers task {run.get('task')}"]}
    found = deviations(protocol, run)
    return {"name": protocol.name, "digest": protocol.digest, "complies": not found, "deviations": found}


def group_deviations(protocol: Protocol, seeds: Mapping[tuple[str, str], int]) -> list[str]:
    """What keeps a group of individually compliant runs from complying: fewer seeds than the protocol asks for
    in some (task, method). `seeds`: (task, method) -> seeds finished."""
    short = sorted((n, task, method) for (task, method), n in seeds.items() if n < protocol.seeds)
    if not short:
        return []
    n, task, method = short[0]
    more = f" and {len(short) - 1} more" if len(short) > 1 else ""
    return [f"{plural(n, 'seed')} for {task} {method}{more} (protocol: at least {protocol.seeds})"]
