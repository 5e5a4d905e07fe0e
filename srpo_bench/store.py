"""Results store: one folder per (profile, task, method, seed) run, atomic JSON, a schema version, resume.

    <out>/srpo-bench.json                      store marker: schema version of whoever wrote it
    <out>/runs/<profile>/<task>/<method>/seed<k>/
        run.json     status, resolved config, versions, git commit, device, stage log and wall times
        curves.json  training curves per stage
        eval.json    evaluation returns (raw and normalized x100)
        speed.json   actions/s at batch 1 and 256, network evaluations per action
        error.txt    the traceback of a run that failed with an error (not written for a divergence)
        .lock        claim of the runner training it now (srpo_bench/locks.py): N runners share a folder
    <out>/stages/<Definition>-<key>.pt         stage artifacts, content-addressed by stage key (core/stages.py):
                                               an interrupted run resumes from its last finished stage, and any
                                               run whose stage has the same definition, config, data and seed
                                               reuses it (`<...>.lock`: the runner training it now)

Every file is written to a temporary name and renamed into place, so a crash never leaves a torn file; the
temporaries of a killed writer are removed by the next runner that starts (`clean`). Files and folders are
created with the user's umask, so a group can share a results folder.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from srpo_bench.atomic import (  # atomic_write_json/_text: re-exported as store.atomic_write_*
    TEMP_SUFFIX,
    WriteError,
    atomic_write_json,
    atomic_write_text,  # noqa: F401
    remove_temporaries,
)
from srpo_bench.locks import STALE_SECONDS, live_holder

# 2: stage keys derived from whole stage configs; artifacts content-addressed under <out>/stages/.
SCHEMA_VERSION = 2
MARKER = "srpo-bench.json"


class StoreError(RuntimeError):
    pass


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise StoreError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from error
    except UnicodeDecodeError:
        raise StoreError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except OSError as error:
        raise StoreError(f"{path}: cannot read ({(error.strerror or str(error)).lower()})") from None


def read_object(path: Path, required: dict[str, type | tuple[type, ...]] | None = None) -> dict[str, Any]:
    """A store file that must hold a JSON object, with `required` keys of the given types."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise StoreError(f"{path}: expected a JSON object, found {type(data).__name__}; the file is damaged")
    for key, kind in (required or {}).items():
        if key not in data:
            raise StoreError(f"{path}: missing key '{key}'; the file is damaged")
        if not isinstance(data[key], kind) or isinstance(data[key], bool) and kind is int:
            raise StoreError(f"{path}: '{key}' has the wrong type ({type(data[key]).__name__}); the file is damaged")
    return data


def check_destination(out: Path) -> None:
    """Refuse, before anything is written, an --out that cannot become a results folder: a file, a folder
    holding other things (never turned into a store silently), or one we may not write to."""
    if out.exists() and not out.is_dir():
        raise StoreError(f"{out}: is a file, not a folder; give --out a folder (new, empty, or a results folder)")
    if out.is_dir() and not (out / MARKER).exists():
        extra = sorted(entry.name for entry in out.iterdir())
        if extra:
            shown = ", ".join(extra[:3]) + (", ..." if len(extra) > 3 else "")
            raise StoreError(f"{out}: not empty ({shown}) and not an srpo-bench results folder (no {MARKER}); "
                             "give --out a new or empty folder")
    existing = next((parent for parent in (out, *out.parents) if parent.exists()), Path("."))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StoreError(f"{existing}: cannot write here (permission denied); give --out a writable folder")


def open_store(out: Path) -> Path:
    """Check (and create) the store marker before anything is written: refuse a store of another schema
    (`report` reads stores through `report/frame.py`, which accepts older ones), then remove what killed
    writers left behind."""
    check_destination(out)
    marker = out / MARKER
    if marker.exists():
        content = read_object(marker)
        if content.get("kind") == "records":  # records.py: published records, never a place to train
            raise StoreError(f"{out}: a published records folder (only `srpo-bench results add` writes there); give "
                             "--out another folder (default: runs)")
        schema = content.get("schema_version", 0)
        if not isinstance(schema, int):
            raise StoreError(f"{marker}: 'schema_version' must be an integer, found {schema!r}; the file is damaged")
        if schema > SCHEMA_VERSION:
            raise StoreError(
                f"{marker}: results written by a newer srpo-bench (schema {schema}, this version reads up to "
                f"{SCHEMA_VERSION}); upgrade srpo-bench or use another --out folder"
            )
        if schema < SCHEMA_VERSION:
            raise StoreError(
                f"{marker}: results written by an older srpo-bench (schema {schema}; schema {SCHEMA_VERSION} keys "
                "stages by their whole config, so old stage checkpoints cannot be trusted to match): use another "
                "--out folder (`srpo-bench report` still reads this one)"
            )
    else:
        try:
            atomic_write_json(marker, {"schema_version": SCHEMA_VERSION, "created": now()})
        except WriteError as error:
            raise StoreError(str(error)) from None
    clean(out)
    return out


def lock_path(run_path: Path) -> Path:
    return run_path / ".lock"


def clean(out: Path) -> int:
    """Remove the temporaries of killed writers wherever no live runner can be writing: run folders and stage
    artifacts nobody holds a live claim on, and top-level files older than a stale claim. How many."""
    removed = 0
    for folder in {path.parent for path in out.glob(f"runs/*/*/*/seed*/.*{TEMP_SUFFIX}")}:
        if live_holder(lock_path(folder)) is None:
            removed += remove_temporaries(folder)
    for temporary in (out / "stages").glob(f".*{TEMP_SUFFIX}"):
        artifact = temporary.name[1:].split(".pt.", 1)[0] + ".pt"
        if live_holder(out / "stages" / (artifact.removesuffix(".pt") + ".lock")) is None:
            removed += remove_temporaries(out / "stages", artifact)
    for folder in (out, out / "speed"):
        for temporary in folder.glob(f".*{TEMP_SUFFIX}"):
            if time.time() - temporary.stat().st_mtime > STALE_SECONDS:
                removed += remove_temporaries(folder, temporary.name[1:].removesuffix(TEMP_SUFFIX))
    return removed


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_dir(out: Path, profile: str, task: str, method: str, seed: int) -> Path:
    safe_task = task.replace("/", "__").replace(":", "_")
    return out / "runs" / profile / safe_task / method / f"seed{seed}"


def stage_dir(out: Path) -> Path:
    return out / "stages"


RUN_RECORD = {"schema_version": int, "status": str, "config": dict, "stage_keys": dict}


def load_run(path: Path) -> dict[str, Any] | None:
    record = path / "run.json"
    if not record.exists():
        return None
    run = read_object(record, RUN_RECORD)
    if run["schema_version"] > SCHEMA_VERSION:
        raise StoreError(f"{record}: written by a newer srpo-bench (schema {run['schema_version']} > "
                         f"{SCHEMA_VERSION})")
    return run


@dataclass(frozen=True)
class RunState:
    """What the store holds for one run of the grid, compared with the run about to be made.

    state: "new" (nothing yet) | "finished" | "failed" (a recorded failure with the same identity) |
    "evaluated" (trained and scored, timing not yet taken) | "resumable" (interrupted) | "changed" (finished
    with other settings or other stage keys: `changes` names them)."""

    state: str
    changes: tuple[str, ...] = ()
    run: dict[str, Any] | None = None


def run_state(path: Path, config: dict[str, Any], stage_keys: dict[str, str]) -> RunState:
    """Configs are compared in their stored JSON form: a tuple setting (hidden sizes) reads back as a list."""
    run = load_run(path)
    if run is None:
        return RunState("new")
    as_stored = json.loads(json.dumps(config))
    same = run["config"] == as_stored and run["stage_keys"] == stage_keys
    status = run["status"]
    if status == "finished" and same and (path / "eval.json").exists() and (path / "speed.json").exists():
        return RunState("finished", run=run)
    if status == "finished" and not same:
        return RunState("changed", identity_changes(run, as_stored, stage_keys), run)
    if status == "failed" and same:
        return RunState("failed", run=run)
    if status == "evaluated" and same and (path / "eval.json").exists():
        return RunState("evaluated", run=run)
    return RunState("resumable", run=run)


def identity_changes(run: dict[str, Any], config: dict[str, Any], stage_keys: dict[str, str]) -> tuple[str, ...]:
    """What makes a finished run differ from the one asked for: settings as `key old -> new`, or stage keys
    (same settings, other data or stage code)."""
    old = run["config"]
    changes = [f"{key} {old.get(key, '(unset)')!s} -> {config.get(key, '(unset)')!s}"
               for key in sorted(set(old) | set(config)) if old.get(key) != config.get(key)]
    if not changes:
        stages = sorted(name for name in set(run["stage_keys"]) | set(stage_keys)
                        if run["stage_keys"].get(name) != stage_keys.get(name))
        changes = [f"stage keys of {', '.join(stages)} (same settings: other data or stage code)"]
    return tuple(changes)


# --- provenance ----------------------------------------------------------------------------------
LIBRARIES = ("srpo-bench", "torch", "numpy", "gymnasium", "mujoco", "h5py", "minari", "ogbench", "rliable", "pandas",
             "scipy", "matplotlib", "diffusers", "onnxruntime")  # scipy, matplotlib: the report's statistics, figures


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if result.returncode != 0:
        return "unknown"
    return result.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
