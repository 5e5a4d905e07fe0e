"""This repository's published results: compact records of finished runs and timings, checked on the way in.

    results/
      srpo-bench.json                                  {"schema_version", "kind": "records", "record_schema"}
      runs/<profile>/<task>/<method>/seed<k>.json      one record per finished run (below)
      speed/[runtimes/]<task>-<device>-<digest>.json   `srpo-bench speed` files as written, with their provenance
      leaderboard/                                     rebuilt from the records by `srpo-bench results build`
      README.md                                        how to rebuild and how to contribute

A record holds what a reader needs to check a number and nothing to run it: the run's run.json as the runner
wrote it (resolved config, protocol, versions, commit, device, stage log), its evaluation (every final episode's
return and normalized score, the summaries, the evaluations during training without their per-episode lists) and
its speed.json. Never weights: stage artifacts stay in the results folder they were trained in.

`add` (the CLI's `srpo-bench results add FOLDER`) brings another results folder's finished runs in. It checks
everything before it writes anything, and refuses in one line naming the file: a folder that is not a results
folder, a newer schema, a damaged file, a run without provenance (commit, versions, device) or from uncommitted
code, a run that does not comply with its protocol (unless published as exploratory), and a duplicate of a
record already there.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srpo_bench.atomic import WriteError, atomic_write_json
from srpo_bench.protocols import compliance
from srpo_bench.report.frame import (
    RECORD_SCHEMA,
    RECORDS_KIND,
    Damaged,
    check_store,
    config_hash,
    is_records,
    method_label,
    read_object,
    read_record,
    read_run,
    read_speed_file,
    record_files,
    run_folders,
    speed_files,
)
from srpo_bench.store import MARKER, SCHEMA_VERSION, StoreError, now

PROVENANCE_LIBRARIES = ("torch",)  # a record without these versions cannot say what computed it


class RecordError(StoreError):
    """A folder, run or timing that cannot enter the records; the message names the file and why."""


@dataclass
class Addition:
    """What `add` writes: (destination, content) of each record and timing file, and what it left out."""

    records: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    timings: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    not_finished: int = 0
    exploratory: int = 0


def identity(run: dict[str, Any]) -> tuple[str, str, str, int]:
    """What makes two runs the same run: profile, task, method with its overrides, seed."""
    return (str(run.get("profile")), str(run.get("task")), method_label(str(run.get("method")), run.get("overrides")),
            int(run.get("seed", -1)))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=,-]+", "_", name).strip("_")


def record_path(records: Path, run: dict[str, Any]) -> Path:
    profile, task, method, seed = identity(run)
    return records / "runs" / _safe(profile) / _safe(task) / _safe(method) / f"seed{seed}.json"


def compact_evaluation(evaluation: dict[str, Any]) -> dict[str, Any]:
    """eval.json without the per-episode lists of the evaluations during training (their means stay): the final
    policy's episodes are the reported score and stay whole."""
    during = evaluation.get("during_training")
    if isinstance(during, list):
        evaluation = {**evaluation, "during_training": [
            {key: value for key, value in point.items() if key != "normalized"} if isinstance(point, dict) else point
            for point in during]}
    return evaluation


def _provenance_problem(run: dict[str, Any]) -> str | None:
    commit = str(run.get("git_commit") or "unknown")
    if commit == "unknown":
        return "no git commit recorded (run from a checkout whose commit could not be read)"
    if commit.endswith("-dirty"):
        return (f"run from uncommitted code ({commit}): commit the change and rerun, so the record names code anyone "
                "can check out")
    versions = run.get("versions") if isinstance(run.get("versions"), dict) else {}
    missing = [name for name in PROVENANCE_LIBRARIES if name not in versions]
    if missing:
        return f"no {', '.join(missing)} version recorded"
    device = run.get("device")
    if not isinstance(device, dict) or not device.get("type"):
        return "no device recorded"
    return None


def existing_records(records: Path) -> dict[tuple[str, str, str, int], Path]:
    """The records already there, by identity (a damaged one is an error: the records must stay readable)."""
    found = {}
    for path in record_files(records) if records.is_dir() else []:
        try:
            run = read_object(path).get("run")
        except Damaged as error:
            raise RecordError(f"{error}; mend or remove it before adding") from None
        if isinstance(run, dict):
            found[identity(run)] = path
    return found


def _digest(content: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(content, sort_keys=True).encode()).hexdigest()[:10]


def plan_addition(source: Path, records: Path, exploratory: bool = False) -> Addition:
    """Everything `add` would write, checked; nothing written. RecordError names the first problem."""
    problem = check_store(source)
    if problem:
        raise RecordError(f"{problem}; nothing was added")
    if source.resolve() == records.resolve():
        raise RecordError(f"{source}: is the records folder itself; give the results folder to add")
    if (records / MARKER).exists() and not is_records(records):
        raise RecordError(f"{records}: a results folder of runs, not a records folder; give --to a records folder")
    known = existing_records(records)
    addition = Addition()
    from_records = is_records(source)
    for path in (record_files(source) if from_records else run_folders(source)):
        try:
            kind, _ = read_record(path, source) if from_records else read_run(path, source)
        except Damaged as error:
            raise RecordError(f"{error}; nothing was added") from None
        if kind != "finished":
            addition.not_finished += 1
            continue
        named = path if from_records else path / "run.json"
        if from_records:
            content = read_object(path)
            run = content["run"]
        else:
            run = read_object(path / "run.json")
            speed = read_object(path / "speed.json") if (path / "speed.json").exists() else None
            content = {"record_schema": RECORD_SCHEMA, "run": run,
                       "evaluation": compact_evaluation(read_object(path / "eval.json")), "speed": speed}
        why = _provenance_problem(run)
        if why:
            raise RecordError(f"{named}: {why}; nothing was added")
        status = compliance(run)
        if not status["complies"]:
            if not exploratory:
                reasons = "; ".join(status["deviations"][:2]) + ("; ..." if len(status["deviations"]) > 2 else "")
                against = f"protocol {status['name']}" if status["name"] else "any protocol"
                raise RecordError(f"{named}: does not comply with {against} ({reasons}); nothing was added (add "
                                  "--exploratory to publish such runs, labelled exploratory)")
            addition.exploratory += 1
        key = identity(run)
        if key in known:
            raise RecordError(f"{named}: duplicate of {known[key]} (same profile, task, method and seed); nothing "
                              "was added")
        destination = record_path(records, run)
        known[key] = destination
        content = {**content, "added": {"at": now(), "from": source.name, "config_hash": config_hash(run["config"])}}
        addition.records.append((destination, content))
    existing_timings = {_digest(read_object(p)) for p in speed_files(records)} if records.is_dir() else set()
    for path in speed_files(source):
        try:
            read_speed_file(path)
            timing = read_object(path)
        except Damaged as error:
            raise RecordError(f"{error}; nothing was added") from None
        why = _provenance_problem({**timing, "device": {"type": str(timing.get("device", ""))}})
        if why:
            raise RecordError(f"{path}: {why}; nothing was added")
        digest = _digest(timing)
        if digest in existing_timings:
            raise RecordError(f"{path}: duplicate of a timing already in {records} (same content); nothing was "
                              "added")
        existing_timings.add(digest)
        inside = path.parent.relative_to(source)
        addition.timings.append((records / inside / f"{path.stem}-{digest}.json", timing))
    if not addition.records and not addition.timings:
        raise RecordError(f"{source}: no finished runs or timings to add")
    return addition


def add(source: Path, records: Path, exploratory: bool = False) -> Addition:
    """Check every run and timing of `source`, then write their records into `records` (atomic files)."""
    addition = plan_addition(source, records, exploratory)
    try:
        if not (records / MARKER).exists():
            atomic_write_json(records / MARKER, {"schema_version": SCHEMA_VERSION, "kind": RECORDS_KIND,
                                                 "record_schema": RECORD_SCHEMA})
        for destination, content in [*addition.records, *addition.timings]:
            atomic_write_json(destination, content)
    except WriteError as error:
        raise RecordError(str(error)) from None
    return addition
