"""Read one or several results stores into pandas frames: finished runs, runs that did not finish, timings.

The report never trusts a store: folders may be damaged by hand, copied half-way, or written by another
version. Each problem becomes one warning line naming the file (`Problem`), the run is left out, and reading
goes on. Only "no readable store at all" is fatal, and that is the caller's decision.

Merging: the same run found twice (a store passed twice, or copied into a second store) is counted once. A run
is identified by (profile, task, method label, seed, config hash); two different configs under the same
(profile, task, method, seed) are different experiments, so the newest finished one is kept and that is said.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from srpo_bench.protocols import compliance, group_deviations, load_protocol
from srpo_bench.store import MARKER, SCHEMA_VERSION

RECORDS_KIND = "records"  # the store marker's "kind" of a published records folder (records.py)
RECORD_SCHEMA = 1  # a record's layout (records.py); a newer one is refused like a newer store
# Keys a run folder must have for its run to be counted; anything else is optional and shows as missing.
RUN_KEYS = ("task", "method", "seed", "profile", "status")
EXPLORATORY = "exploratory"  # the protocol status of a run that complies with no protocol


class Damaged(ValueError):
    """A file the report cannot use; the message names the file and the problem."""


@dataclass
class Runs:
    """Everything the report reads: `finished` has one row per finished run (the only scores used), `failed`
    one row per run that did not finish, `timings` one row per speed measurement (in-run or `srpo-bench speed`).
    """

    finished: pd.DataFrame
    failed: pd.DataFrame
    timings: pd.DataFrame
    stores: list[Path]
    warnings: list[str] = field(default_factory=list)
    damaged: int = 0  # run folders skipped
    #: finished runs of sweeps (run.json "sweep"), after `split_sweeps`: the configurations of the tuning view
    #: (report/tuning.py), kept out of `finished` so the leaderboard never ranks a configuration picked after the fact
    sweeps: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def empty(self) -> bool:
        return self.finished.empty and self.sweeps.empty


# --- tolerant JSON ------------------------------------------------------------------------------------
def read_object(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or `Damaged` saying why not (unreadable, invalid JSON, not an object)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise Damaged(f"{path}: cannot read ({error.__class__.__name__}: {error})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise Damaged(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(data, dict):
        raise Damaged(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _number(data: dict[str, Any], key: str, path: Path) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Damaged(f"{path}: missing or non-numeric '{key}' ({value!r})")
    return float(value)


def _numbers(data: dict[str, Any], key: str, path: Path, required: bool = True) -> list[float] | None:
    values = data.get(key)
    if values is None and not required:
        return None
    if not isinstance(values, list) or not values or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise Damaged(f"{path}: '{key}' must be a non-empty list of finite numbers")
    return [float(v) for v in values]


def _dict(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


# --- labels --------------------------------------------------------------------------------------------
def method_label(method: str, overrides: Any) -> str:
    """The method as the report names it: overrides make a variant (`srpo[beta=0.01]`), never pooled with
    the default settings."""
    if not isinstance(overrides, dict) or not overrides:
        return method
    return f"{method}[{','.join(f'{key}={overrides[key]}' for key in sorted(overrides))}]"


def config_hash(config: Any) -> str:
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def device_label(device: dict[str, Any]) -> str:
    """Where a run trained: 'cpu, 2 threads' or 'cuda NVIDIA H100'."""
    kind = str(device.get("type", "unknown"))
    if device.get("name"):
        return f"{kind} {device['name']}"
    if device.get("threads"):
        return f"{kind}, {_threads(device['threads'])}"
    return kind


def _threads(count: Any) -> str:
    return f"{count} thread{'' if count == 1 else 's'}"


GROUP_KEYS = ("protocol_status", "suite", "profile", "eval_episodes", "score_scale", "selection", "checkpoint")


def group_label(key: dict[str, Any]) -> str:
    """A protocol group as one line: numbers from different groups are never pooled. It opens with the protocol
    its runs comply with, or "exploratory"."""
    episodes = key["eval_episodes"]
    episodes_text = "? episodes" if episodes is None or pd.isna(episodes) else f"{int(episodes)} episode" + (
        "" if int(episodes) == 1 else "s")
    status = key["protocol_status"]
    opening = "EXPLORATORY" if status == EXPLORATORY else f"protocol {status}"
    checkpoint = "" if key["checkpoint"] == "final" else f" · {key['checkpoint']} checkpoint"
    return (f"{opening} · {key['suite']} · profile {key['profile']} · {episodes_text} · {key['score_scale']} score · "
            f"{key['selection']} policy{checkpoint}")


# --- one run folder or record ---------------------------------------------------------------------------
def read_run(folder: Path, store: Path) -> tuple[str, dict[str, Any]]:
    """('finished' | 'failed', row) for one run folder of a results folder, or `Damaged`."""
    run_path = folder / "run.json"
    run = read_object(run_path)
    evaluation = speed = speed_problem = None
    eval_path = folder / "eval.json"
    if run.get("status") == "finished":
        if not eval_path.exists():
            raise Damaged(f"{eval_path}: missing (run.json says finished)")
        evaluation = read_object(eval_path)
        speed_path = folder / "speed.json"
        if speed_path.exists():
            try:  # a damaged timing costs the run its speed row, not its score
                speed = read_object(speed_path)
            except Damaged as error:
                speed_problem = str(error)
    return run_row(run, evaluation, speed, folder, store, run_path, eval_path, speed_problem,
                   speed_source=folder / "speed.json")


def read_record(path: Path, store: Path) -> tuple[str, dict[str, Any]]:
    """('finished', row) for one published record (records.py: run.json, the evaluation and the timing of one run
    in one file), or `Damaged`."""
    record = read_object(path)
    layout = record.get("record_schema")
    if not isinstance(layout, int) or layout > RECORD_SCHEMA:
        raise Damaged(f"{path}: record schema {layout!r} (this version reads up to {RECORD_SCHEMA}); upgrade "
                      "srpo-bench")
    run, evaluation, speed = record.get("run"), record.get("evaluation"), record.get("speed")
    if not isinstance(run, dict) or not isinstance(evaluation, dict):
        raise Damaged(f"{path}: not a run record (no 'run' and 'evaluation' objects)")
    if run.get("status") != "finished":
        raise Damaged(f"{path}: a record of a run that did not finish (status {run.get('status')!r})")
    shown = shown_path(path, store)  # records are published: paths from the records folder, the same anywhere
    return run_row(run, evaluation, speed if isinstance(speed, dict) else None, shown, Path(store.name), path, path,
                   None, speed_source=shown)


def shown_path(path: Path, store: Path) -> Path:
    """A file of a records folder as `<folder name>/<path inside it>`: no machine's absolute path in a leaderboard
    rebuilt from records."""
    return Path(store.name) / path.relative_to(store)


def run_row(run: dict[str, Any], evaluation: dict[str, Any] | None, speed: dict[str, Any] | None, folder: Path,
            store: Path, run_path: Path, eval_path: Path, speed_problem: str | None,
            speed_source: Path) -> tuple[str, dict[str, Any]]:
    """The report's row of one run, from what the runner wrote (run.json, eval.json, speed.json); `*_path` name the
    files in messages. The protocol the run is measured against, and whether it complies, are recomputed here from
    the record (protocols.compliance), never taken from what the record says of itself."""
    schema = run.get("schema_version", 0)
    if isinstance(schema, int) and schema > SCHEMA_VERSION:
        raise Damaged(f"{run_path}: written by a newer srpo-bench (schema {schema}, this version reads up to "
                      f"{SCHEMA_VERSION})")
    missing = [key for key in RUN_KEYS if key not in run]
    if missing:
        raise Damaged(f"{run_path}: missing {', '.join(repr(k) for k in missing)}")
    if not isinstance(run["seed"], int) or isinstance(run["seed"], bool):
        raise Damaged(f"{run_path}: 'seed' must be an integer, found {run['seed']!r}")
    device, harness = _dict(run, "device"), _dict(run, "harness")
    episodes = harness.get("eval_episodes")
    status = compliance(run)
    row: dict[str, Any] = {
        "store": str(store), "path": str(folder),
        "profile": str(run["profile"]), "suite": str(run.get("suite") or "unknown"),
        "score_scale": str(run.get("score_scale") or "unknown"),
        "task": str(run["task"]), "base_method": str(run["method"]),
        "method": method_label(str(run["method"]), run.get("overrides")), "seed": int(run["seed"]),
        # a sweep run (sweeps.py) names the settings its grid swept; the rest of its overrides are the sweep's fixed
        # ones, which the report's tuning view matches with the runs at the paper's setting (report/tuning.py)
        "overrides": _settings(run.get("overrides")), "sweep": _swept(run.get("sweep")),
        "selection": str(run.get("selection") or "final"),
        "eval_episodes": int(episodes) if isinstance(episodes, int) else None,
        "config_hash": config_hash(run.get("config")), "status": str(run["status"]),
        "device": device_label(device), "device_type": str(device.get("type", "unknown")),
        "git_commit": str(run.get("git_commit") or "unknown"), "versions": _dict(run, "versions"),
        "finished_at": str(run.get("finished") or run.get("started") or ""),
        "dataset_score": _optional_number(_dict(run, "dataset").get("average_normalized")),
        "protocol": status["name"], "complies": bool(status["complies"]), "deviations": list(status["deviations"]),
        "protocol_status": status["name"] if status["complies"] else EXPLORATORY,
    }
    if run["status"] != "finished":
        failure = _dict(run, "failure")
        if run["status"] == "failed":
            where = " ".join(str(x) for x in (failure.get("stage"), failure.get("step") is not None
                                               and f"step {failure.get('step')}") if x)
            reason = str(failure.get("reason") or "no reason recorded")
            row["reason"] = f"{reason} ({where})" if where else reason
        else:
            row["reason"] = f"status '{run['status']}': still running, or interrupted before it finished"
        row["last_metrics"] = failure.get("last_metrics")
        return "failed", row

    if evaluation is None:
        raise Damaged(f"{eval_path}: missing (run.json says finished)")
    row["final_score"] = _number(evaluation, "mean_normalized", eval_path)
    row["episode_scores"] = _numbers(evaluation, "normalized", eval_path)
    row["episode_returns"] = _numbers(evaluation, "returns", eval_path, required=False)
    row["summaries"] = evaluation.get("summaries") if isinstance(evaluation.get("summaries"), dict) else None
    during = evaluation.get("during_training")
    row["during_training"] = during if isinstance(during, list) else None
    # The score the report ranks by follows the checkpoint rule of the run's protocol (FQL's OGBench protocol:
    # the mean of the last three evaluations); a run without those evaluations is scored by its final policy,
    # and its group says so (the checkpoint is a group key).
    protocol = load_protocol(status["name"]) if status["name"] else None
    rule = protocol.checkpoint if protocol is not None else "final"
    summary = _optional_number((row["summaries"] or {}).get(rule)) if rule != "final" else None
    row["checkpoint"] = rule if summary is not None else "final"
    row["score"] = summary if summary is not None else row["final_score"]
    stages = run.get("stages") if isinstance(run.get("stages"), list) else []
    row["stage_seconds"] = {str(s["stage"]): float(s["seconds"]) for s in stages
                            if isinstance(s, dict) and "stage" in s and _optional_number(s.get("seconds")) is not None}
    row["fit_seconds"] = training_seconds(run)
    row["speed"], row["speed_problem"], row["speed_source"] = speed, speed_problem, str(speed_source)
    return "finished", row


def _optional_count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _settings(overrides: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in overrides.items()} if isinstance(overrides, dict) else {}


def _swept(keys: Any) -> tuple[str, ...]:
    return tuple(sorted(str(k) for k in keys)) if isinstance(keys, list) else ()


def _optional_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def training_seconds(run: dict[str, Any]) -> float | None:
    """What the run's stages cost to train, wherever they were trained: a stage resumed from an interrupted
    run or reused from another method counts the seconds recorded when it was trained, not the load time."""
    stages = run.get("stages") or []
    if stages and all(isinstance(stage, dict) and "seconds" in stage for stage in stages):
        return float(sum(stage["seconds"] for stage in stages))
    seconds = run.get("seconds")
    return seconds.get("fit") if isinstance(seconds, dict) else None


# --- stores --------------------------------------------------------------------------------------------
def check_store(out: Path) -> str | None:
    """None if `out` is a store this version can read, else the one-line reason."""
    marker = out / MARKER
    if not out.is_dir():
        return f"{out}: no results folder here"
    if not marker.exists():
        return f"{marker}: missing (not an srpo-bench results folder)"
    try:
        schema = read_object(marker).get("schema_version", 0)
    except Damaged as error:
        return str(error)
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        return (f"{marker}: results written by a newer srpo-bench (schema {schema}, this version reads up to "
                f"{SCHEMA_VERSION}); upgrade srpo-bench")
    return None


def is_records(out: Path) -> bool:
    """Whether `out` is a published records folder (records.py) rather than a results folder of runs."""
    try:
        return read_object(out / MARKER).get("kind") == RECORDS_KIND
    except Damaged:
        return False


def run_folders(out: Path) -> Iterator[Path]:
    """Every folder that looks like a run (runs/<profile>/<task>/<method>/seed<k>/run.json), sorted."""
    yield from (path.parent for path in sorted((out / "runs").glob("*/*/*/seed*/run.json")))


def record_files(out: Path) -> Iterator[Path]:
    """Every run record of a records folder (runs/<profile>/<task>/<method>/seed<k>.json), sorted."""
    yield from sorted((out / "runs").glob("*/*/*/seed*.json"))


def speed_files(out: Path) -> Iterator[Path]:
    """`srpo-bench speed` reports: `speed/*.json` (eager) and `speed/runtimes/*.json` (--runtime, every runtime)."""
    yield from sorted((out / "speed").glob("*.json"))
    yield from sorted((out / "speed" / "runtimes").glob("*.json"))


def load_runs(stores: Iterable[Path], profile: str | None = None) -> Runs:
    """Read every store; skip damaged folders with a warning; merge duplicates; keep one profile if asked."""
    warnings: list[str] = []
    readable: list[Path] = []
    finished: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    timing_rows: list[dict[str, Any]] = []
    damaged = 0
    for out in stores:
        problem = check_store(out)
        if problem:
            warnings.append(f"skipped store {problem}")
            continue
        readable.append(out)
        records = is_records(out)
        for folder in (record_files(out) if records else run_folders(out)):
            try:
                kind, row = read_record(folder, out) if records else read_run(folder, out)
            except Damaged as error:
                warnings.append(f"skipped run {error}")
                damaged += 1
                continue
            if profile is None or row["profile"] == profile:
                (finished if kind == "finished" else failed).append(row)
                if row.get("speed_problem"):
                    warnings.append(f"timing left out: {row['speed_problem']}")
        for path in speed_files(out):
            try:
                timing_rows.extend(read_speed_file(path, shown_path(path, out) if records else path))
            except Damaged as error:
                warnings.append(f"skipped timing {error}")
    frame = _deduplicate(pd.DataFrame(finished), warnings)
    failed_frame = pd.DataFrame(failed)
    if not failed_frame.empty:
        failed_frame = failed_frame.drop_duplicates(subset=["profile", "task", "method", "seed", "config_hash"])
        if not frame.empty:  # failed in one store, finished in another (a rerun): the finished run counts
            done = set(zip(frame["profile"], frame["task"], frame["method"], frame["seed"], strict=False))
            keep = [key not in done for key in zip(failed_frame["profile"], failed_frame["task"],
                                                   failed_frame["method"], failed_frame["seed"], strict=False)]
            failed_frame = failed_frame[keep].reset_index(drop=True)
    timing_rows.extend(_in_run_timings(frame, warnings))
    timings = pd.DataFrame(timing_rows)
    if not frame.empty:
        frame = _check_seed_counts(frame)
        frame["group"] = [group_label(key) for key in frame[list(GROUP_KEYS)].to_dict("records")]
    return Runs(frame, failed_frame, timings, readable, warnings, damaged)


def split_sweeps(runs: Runs) -> Runs:
    """`runs` with its sweep runs moved from `finished` to `sweeps`, their in-run timings left out of `timings`
    (each configuration's speed is not a method's): the report ranks the paper's settings (and plain --set
    variants) and shows the sweeps as what they are, a tuning budget. The same Runs when there is no sweep."""
    finished = runs.finished
    if finished.empty or "sweep" not in finished.columns:
        return runs
    swept = finished["sweep"].map(len) > 0
    if not swept.any():
        return runs
    sweeps = finished[swept].reset_index(drop=True)
    timings = runs.timings
    if not timings.empty and "source" in timings.columns:
        timings = timings[~timings["source"].isin(set(sweeps["speed_source"]))].reset_index(drop=True)
    return replace(runs, finished=finished[~swept].reset_index(drop=True), timings=timings, sweeps=sweeps)


def _check_seed_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs that comply with a protocol one by one make a compliant group only with the protocol's seed count in
    every (task, method) of the group; otherwise the whole group is exploratory, and each run says why."""
    frame = frame.copy()
    keys = [key for key in GROUP_KEYS if key != "protocol_status"]
    compliant = frame[frame["protocol_status"] != EXPLORATORY]
    for (name, *_), rows in compliant.groupby(["protocol_status", *keys], sort=True, dropna=False):
        seeds = rows.groupby(["task", "method"])["seed"].nunique()
        short = group_deviations(load_protocol(name), {key: int(n) for key, n in seeds.items()})
        if short:
            frame.loc[rows.index, "protocol_status"] = EXPLORATORY
            frame.loc[rows.index, "complies"] = False
            frame.loc[rows.index, "deviations"] = pd.Series([short] * len(rows), index=rows.index, dtype=object)
    return frame


def _deduplicate(frame: pd.DataFrame, warnings: list[str]) -> pd.DataFrame:
    if frame.empty:
        return frame
    frame = frame.sort_values(["finished_at", "path"]).drop_duplicates(
        subset=["profile", "task", "method", "seed", "config_hash"], keep="last")
    identity = ["profile", "task", "method", "seed"]
    clashes = frame[frame.duplicated(subset=identity, keep=False)]
    for key, rows in clashes.groupby(identity, sort=True):
        kept = rows.iloc[-1]["path"]
        warnings.append(f"{len(rows)} finished versions of {'/'.join(str(k) for k in key)} with different configs; "
                        f"kept the newest ({kept})")
    frame = frame.drop_duplicates(subset=identity, keep="last")
    return frame.sort_values(["profile", "suite", "task", "method", "seed"]).reset_index(drop=True)


# --- timings -------------------------------------------------------------------------------------------
def results_by_runtime(report: dict[str, Any]) -> dict[str, Any]:
    """A `srpo-bench speed` file's results as {runtime: {method: timing}}: a --runtime file (it has a "table")
    nests them so already; the eager file holds {method: timing}. A method a runtime could not run holds
    {"unavailable": why}."""
    results = report.get("results")
    return results if "table" in report else {"eager": results}


def read_speed_file(path: Path, shown: Path | None = None) -> list[dict[str, Any]]:
    """Rows of a `srpo-bench speed` report: one per method. Such timings had the process to themselves. `shown`:
    the path the rows name as their source (default `path`)."""
    report = read_object(path)
    results = report.get("results")
    if not isinstance(results, dict) or "task" not in report:
        raise Damaged(f"{path}: missing 'task' or 'results'")
    rows = []
    for runtime, by_method in results_by_runtime(report).items():
        if not isinstance(by_method, dict):
            raise Damaged(f"{path}: results['{runtime}'] is not an object")
        for method, speed in by_method.items():
            if not isinstance(speed, dict):
                raise Damaged(f"{path}: results['{method}'] is not an object")
            if "unavailable" in speed:
                continue
            # each method's own time: a file merges the methods of several `speed` calls
            taken = str(speed.get("created") or report.get("created", ""))
            rows.append(timing_row(speed, task=str(report["task"]), method=str(method), source=str(shown or path),
                                   context=str(speed.get("context") or "alone"), taken=taken, runtime=str(runtime)))
    return rows


def _in_run_timings(frame: pd.DataFrame, warnings: list[str]) -> list[dict[str, Any]]:
    """One row per distinct in-run timing: seeds timed in one process share one measurement (runner cache),
    so identical speed.json contents are counted once."""
    rows, seen = [], set()
    if frame.empty:
        return rows
    for record in frame[frame["speed"].notna()].itertuples():
        speed = record.speed
        digest = hashlib.sha1(json.dumps(speed, sort_keys=True, default=str).encode()).hexdigest()
        key = (record.task, record.method, digest)
        if key in seen:
            continue
        seen.add(key)
        rows.append(timing_row(speed, task=record.task, method=record.method, source=record.speed_source,
                               context=runner_context(speed), taken=record.finished_at,
                               profile=record.profile, runtime=str(speed.get("runtime") or "eager")))
    return rows


def runner_context(speed: dict[str, Any]) -> str:
    """Where a runner's speed.json was timed (speed.CONTEXTS: "in-run" or "timing-phase"), with ", shared" when
    other runs of the results folder were training on the host meanwhile (`exclusive` false): the report's label
    never calls a timing alone that was not."""
    context = str(speed.get("context") or "in-run")
    return f"{context}, shared" if speed.get("exclusive") is False else context


def timing_row(speed: dict[str, Any], task: str, method: str, source: str, context: str, taken: str,
               profile: str | None = None, runtime: str = "eager") -> dict[str, Any]:
    device = _dict(speed, "device")
    threads = speed.get("torch_threads")
    kind = str(device.get("type", "unknown"))
    name = str(device.get("name") or "")
    # Ratios are only taken within one device: same kind, same model and (on CPUs) the same thread count.
    device_key = f"{kind} {name}".strip() + (f", {_threads(threads)}" if kind == "cpu" and threads else "")
    load = _dict(speed, "machine_load")
    row: dict[str, Any] = {
        "device": device_key, "runtime": runtime, "task": task, "method": method, "context": context,
        "source": source,
        "threads": threads if isinstance(threads, int) and not isinstance(threads, bool) else None,  # load_label
        "taken": taken, "profile": profile, "nfe_per_action": _optional_number(speed.get("nfe_per_action")),
        "loadavg": (load.get("loadavg_before") or [None])[0] if isinstance(load.get("loadavg_before"), list)
        else None, "cpu_count": load.get("cpu_count"),
        # a runner's timing (runner.timed_speed): whether no other run of the results folder trained on the host
        # meanwhile, how many did, and which seed's agent was timed (seeds of one config share one timing)
        "exclusive": speed.get("exclusive") if isinstance(speed.get("exclusive"), bool) else None,
        "concurrent_runs": _optional_count(speed.get("concurrent_runs")),
        "timed_seed": _optional_count(speed.get("timed_seed")),
    }
    batches = _dict(speed, "batches")
    for size in ("1", "256"):
        timing = batches.get(size) if isinstance(batches.get(size), dict) else {}
        row[f"aps_b{size}"] = _optional_number(timing.get("actions_per_second"))
        samples = timing.get("samples")
        row[f"samples_b{size}"] = ([float(s) for s in samples if _optional_number(s) is not None]
                                   if isinstance(samples, list) else [])
    return row
