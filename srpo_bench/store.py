"""Results store: one folder per (profile, task, method, seed) run, atomic JSON, a schema version, resume.

    <out>/srpo-bench.json                      store marker: schema version of whoever wrote it
    <out>/runs/<profile>/<task>/<method>/seed<k>/
        run.json     status, resolved config, versions, git commit, device, stage log and wall times
        curves.json  training curves per stage
        eval.json    evaluation returns (raw and normalized x100)
        speed.json   actions/s at batch 1 and 256, network evaluations per action
    <out>/stages/<Definition>-<key>.pt         stage artifacts, content-addressed by stage key (core/stages.py):
                                               an interrupted run resumes from its last finished stage, and any
                                               run whose stage has the same definition, config, data and seed
                                               reuses it

Every file is written to a temporary name and renamed into place, so a crash never leaves a torn file.
"""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from srpo_bench.atomic import atomic_write_json  # noqa: F401  (re-exported: store.atomic_write_json)

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


def open_store(out: Path) -> Path:
    """Check (and create) the store marker before anything is written: refuse a store of another schema
    (`report` reads stores through `report/frame.py`, which accepts older ones)."""
    marker = out / MARKER
    if marker.exists():
        schema = int(read_json(marker).get("schema_version", 0))
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
        atomic_write_json(marker, {"schema_version": SCHEMA_VERSION, "created": now()})
    return out


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_dir(out: Path, profile: str, task: str, method: str, seed: int) -> Path:
    safe_task = task.replace("/", "__").replace(":", "_")
    return out / "runs" / profile / safe_task / method / f"seed{seed}"


def stage_dir(out: Path) -> Path:
    return out / "stages"


def load_run(path: Path) -> dict[str, Any] | None:
    record = path / "run.json"
    if not record.exists():
        return None
    run = read_json(record)
    schema = int(run.get("schema_version", 0))
    if schema > SCHEMA_VERSION:
        raise StoreError(f"{record}: written by a newer srpo-bench (schema {schema} > {SCHEMA_VERSION})")
    return run


def is_finished(path: Path, config: dict[str, Any], stage_keys: dict[str, str]) -> bool:
    """A finished run with the same resolved config and the same stage keys is skipped; anything else is (re)run.

    Configs are compared in their stored JSON form: a tuple setting (e.g. hidden sizes) reads back as a list."""
    run = load_run(path)
    as_stored = json.loads(json.dumps(config))
    return bool(run and run.get("status") == "finished" and run.get("config") == as_stored
                and run.get("stage_keys") == stage_keys
                and (path / "eval.json").exists() and (path / "speed.json").exists())


# --- provenance ----------------------------------------------------------------------------------
LIBRARIES = ("srpo-bench", "torch", "numpy", "gymnasium", "mujoco", "h5py", "minari", "rliable", "pandas", "diffusers")


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
