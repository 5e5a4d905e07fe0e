"""D4RL's gym-MuJoCo hdf5 files, read directly (the `d4rl` package needs mujoco-py and MuJoCo 2.1).

We keep D4RL's task names, download addresses, file names and cache folder, so files a user already
downloaded with `d4rl` are found here, and files we write (`write_d4rl_hdf5`, used by `collect.py`) can be
read by any D4RL-based code. Transitions follow `d4rl.qlearning_dataset(env, terminate_on_end=False)`
exactly (D4RL's `d4rl/__init__.py`): that is what SRPO, IDQL, Diffusion-QL and SfBC all train on.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

import h5py
import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from srpo_bench.atomic import atomic_write
from srpo_bench.data.dataset import DatasetError, OfflineDataset, check_column, downloads_allowed
from srpo_bench.progress import Reporter
from srpo_bench.vocabulary import plural

# --- where D4RL keeps its files --------------------------------------------------------------------
_D4RL_GYM_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2"
_D4RL_ENVS = ("halfcheetah", "hopper", "walker2d")
_D4RL_TIERS = ("random", "medium", "medium-replay", "medium-expert", "expert")

# d4rl/gym_mujoco/__init__.py: task "hopper-medium-replay-v2" -> ".../hopper_medium_replay-v2.hdf5".
D4RL_URLS: dict[str, str] = {
    f"{env}-{tier}-v2": f"{_D4RL_GYM_URL}/{env}_{tier.replace('-', '_')}-v2.hdf5"
    for env in _D4RL_ENVS
    for tier in _D4RL_TIERS
}

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
OPTIONAL_KEYS = ("timeouts", "next_observations")
# d4rl's gym-MuJoCo envs are registered with max_episode_steps=1000; qlearning_dataset uses it only for
# old files without `timeouts`.
D4RL_MAX_EPISODE_STEPS = 1000
_DOWNLOAD_CHUNK_BYTES = 1 << 20
_DOWNLOAD_TIMEOUT_S = 30.0


def dataset_dir() -> Path:
    """`$D4RL_DATASET_DIR` if set, else `~/.d4rl/datasets` (d4rl/offline_env.py's defaults)."""
    configured = os.environ.get("D4RL_DATASET_DIR")
    return Path(configured).expanduser() if configured else Path("~/.d4rl/datasets").expanduser()


def _check_task(task_name: str) -> str:
    if task_name not in D4RL_URLS:
        raise ValueError(f"unknown D4RL task '{task_name}'; known: {', '.join(D4RL_URLS)}")
    return D4RL_URLS[task_name]


def dataset_path(task_name: str) -> Path:
    """D4RL stores each file under the basename of its URL (d4rl/offline_env.py: `filepath_from_url`)."""
    url = _check_task(task_name)
    return dataset_dir() / url.rsplit("/", 1)[-1]


# --- download ----------------------------------------------------------------------------------------
def download(task_name: str, reporter: Reporter | None = None) -> Path:
    """Fetch a task's file into `dataset_dir()`; it appears under its name only once it is complete."""
    url = _check_task(task_name)
    path = dataset_path(task_name)

    def fetch(partial: str) -> None:
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with _download_bar(reporter) as progress, open(partial, "wb") as out:
                task_id = progress.add_task(f"download {path.name}", total=total)
                while chunk := response.read(_DOWNLOAD_CHUNK_BYTES):
                    out.write(chunk)
                    progress.advance(task_id, len(chunk))
            written = os.path.getsize(partial)
            if total is not None and written != total:
                raise OSError(f"connection closed after {written} of {total} bytes")

    try:
        atomic_write(path, fetch)  # a failed or short download leaves nothing behind
    except (OSError, ValueError, http.client.HTTPException) as error:  # URLError is an OSError
        # URLError's str() wraps its reason in "<urlopen error ...>"; HTTPError's str() has the status.
        plain_url_error = isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError)
        reason = _one_line(error.reason if plain_url_error else error)
        raise DatasetError(
            path,
            f"not found and download from {url} failed ({reason}); place the file in {path.parent} "
            "or set D4RL_DATASET_DIR",
        ) from error
    return path


_download = download  # `load_d4rl`'s `download: bool` argument shadows this function inside it


def _download_bar(reporter: Reporter | None) -> Progress:
    """Bytes, transfer speed and ETA: the step-counting bars of `Reporter` would show 'steps/s'."""
    console = reporter.console if reporter is not None else Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        disable=reporter is not None and reporter.quiet,
    )


def _one_line(error: object) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# --- reading -----------------------------------------------------------------------------------------
def read_hdf5(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays `qlearning_dataset` needs (`infos/*` and `metadata/*` are left on disk)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "file not found")
    try:
        with h5py.File(path, "r") as file:
            missing = [key for key in REQUIRED_KEYS if not isinstance(file.get(key), h5py.Dataset)]
            if missing:
                raise DatasetError(
                    path, f"missing key(s) {', '.join(missing)}; a D4RL file needs {', '.join(REQUIRED_KEYS)}"
                )
            keys = REQUIRED_KEYS + tuple(k for k in OPTIONAL_KEYS if isinstance(file.get(k), h5py.Dataset))
            return {key: np.asarray(file[key][()]) for key in keys}
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise DatasetError(path, f"not a readable HDF5 file ({_one_line(error)})") from error


def read_metadata(path: str | Path) -> dict:
    """The `metadata/...` datasets of a D4RL-layout file: strings decoded, scalars as Python numbers.

    Nested groups (D4RL's `metadata/policy/fc0/weight`) come back under their '/'-joined key; file attrs
    fill in keys that have no `metadata/` dataset."""
    path = Path(path)
    metadata: dict = {}
    try:
        with h5py.File(path, "r") as file:
            group = file.get("metadata")
            if isinstance(group, h5py.Group):
                group.visititems(
                    lambda key, item: metadata.__setitem__(key, _python_value(item[()]))
                    if isinstance(item, h5py.Dataset)
                    else None
                )
            for key, value in file.attrs.items():
                metadata.setdefault(key, _python_value(value))
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise DatasetError(path, f"not a readable HDF5 file ({_one_line(error)})") from error
    return metadata


def _python_value(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return value
    if isinstance(value, np.generic | np.ndarray):
        return value.item()
    return value


# --- transitions, exactly as d4rl.qlearning_dataset(env, terminate_on_end=False) ---------------------
def qlearning_dataset(
    raw: dict[str, np.ndarray],
    source: str,
    name: str,
    metadata: dict | None = None,
    max_episode_steps: int = D4RL_MAX_EPISODE_STEPS,
) -> OfflineDataset:
    """Rows i < N-1 with next_obs = obs[i+1]; the final step of a timed-out trajectory is dropped.

    D4RL's loop: `final = timeouts[i]` (or an episode-step counter reaching max_episode_steps-1 for
    files without timeouts); a final step is skipped, never marked terminal; terminals come from
    `terminals` only; row N-1 is never used. Like d4rl, stored `next_observations` are ignored."""
    n = _check_raw(raw, source)
    terminals = np.asarray(raw["terminals"]).reshape(n).astype(bool)  # 0/1 or bool: checked above
    if "timeouts" in raw:
        final = np.asarray(raw["timeouts"]).reshape(n)[: n - 1].astype(bool)
    else:
        final = _counter_final_steps(terminals[: n - 1], max_episode_steps)
    kept = np.zeros(n, dtype=bool)
    kept[: n - 1] = ~final
    # A kept row ends its trajectory when it terminates or the next row is not kept (a dropped final
    # step, or the end of the file).
    ends = kept[:-1] & (terminals[: n - 1] | ~kept[1:])
    rows = np.flatnonzero(kept)
    observations = np.asarray(raw["observations"])
    return OfflineDataset(
        name=name,
        source=str(source),
        observations=observations[rows],
        actions=np.asarray(raw["actions"])[rows],
        rewards=np.asarray(raw["rewards"]).reshape(n)[rows],
        next_observations=observations[rows + 1],
        terminals=terminals[rows].astype(np.float32),
        episode_ends=ends[rows],
        metadata=dict(metadata or {}),
        raw_rows=_raw_rows(raw, n, terminals, final),
    )


def _raw_rows(raw: dict[str, np.ndarray], n: int, terminals: np.ndarray, final: np.ndarray) -> dict[str, np.ndarray]:
    """The file's rows as `env.get_dataset()` gives them (SfBC's `D4RL_dataset` trains on these): done = terminal
    or timeout; the last row ends its trajectory."""
    ends = terminals.copy()
    ends[: n - 1] |= final
    ends[n - 1] = True
    return {"observations": np.asarray(raw["observations"], dtype=np.float32),
            "actions": np.asarray(raw["actions"], dtype=np.float32),
            "rewards": np.asarray(raw["rewards"], dtype=np.float32).reshape(n), "ends": ends}


def _check_raw(raw: dict[str, np.ndarray], source: str) -> int:
    """Every column the loader reads, checked before any cast (`dataset.check_column`): numbers where numbers
    are meant, bool or 0/1 for terminals and timeouts, the shapes D4RL writes, one length, all finite."""
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise DatasetError(source, f"missing key(s) {', '.join(missing)}")
    observations = check_column(source, "observations", raw["observations"], "values", (2,))
    n = len(observations)
    check_column(source, "actions", raw["actions"], "values", (2,), rows=n)
    # D4RL writes rewards and terminals as [N]; some converters write [N, 1]: both read the same
    check_column(source, "rewards", raw["rewards"], "values", (1, 2), rows=n, width=1 if np.ndim(raw["rewards"]) == 2
                 else None)
    for key in ("terminals", "timeouts"):
        if key in raw:
            check_column(source, key, raw[key], "flags", (1, 2), rows=n, width=1 if np.ndim(raw[key]) == 2 else None)
    if "next_observations" in raw:  # read, then ignored like d4rl; a malformed one still means a broken file
        check_column(source, "next_observations", raw["next_observations"], "values", (2,), rows=n,
                     width=observations.shape[1])
    if n < 2:
        raise DatasetError(source, f"dataset is empty ({plural(n, 'row')}; qlearning_dataset needs at least 2)")
    return n


def _counter_final_steps(terminals: np.ndarray, max_episode_steps: int) -> np.ndarray:
    """Which rows d4rl's `episode_step == max_episode_steps - 1` rule marks final, without timeouts.

    d4rl's counter c restarts at 0 after a final (skipped) row but at 1 after a kept terminal row
    (it resets to 0, then `episode_step += 1` runs for that row). Between kept terminals c(r) grows by
    one per row modulo L = max_episode_steps, so finals form arithmetic runs; we loop over terminals,
    not rows. A terminal that falls on a final row is skipped and changes nothing."""
    length = max_episode_steps
    final = np.zeros(len(terminals), dtype=bool)
    start, counter_at_start = 0, 0
    for terminal_row in np.flatnonzero(terminals):
        if (counter_at_start + terminal_row - start) % length == length - 1:
            continue  # the terminal falls on a final row: skipped, and the counter runs on to 0
        final[start + (length - 1 - counter_at_start) % length : terminal_row : length] = True
        start, counter_at_start = terminal_row + 1, 1
    final[start + (length - 1 - counter_at_start) % length :: length] = True
    return final


# --- writing -----------------------------------------------------------------------------------------
def write_d4rl_hdf5(
    path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str | float | int]
) -> None:
    """Write `arrays` in D4RL's layout, atomically (`srpo_bench.atomic.atomic_write`).

    Keys: observations, actions, rewards, terminals (required), timeouts, next_observations, and
    'infos/<name>'. As in D4RL, observations/actions/rewards are float32 and terminals/timeouts bool;
    metadata goes to `metadata/<key>` datasets and, for convenience, to file attrs. No compression."""
    path = Path(path)
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise ValueError(f"write_d4rl_hdf5({path}): missing array(s) {', '.join(missing)}")
    unknown = [k for k in arrays if k not in REQUIRED_KEYS + OPTIONAL_KEYS and not k.startswith("infos/")]
    if unknown:
        raise ValueError(f"write_d4rl_hdf5({path}): unexpected array(s) {', '.join(unknown)}")
    n = len(arrays["observations"])
    ragged = [key for key, value in arrays.items() if len(value) != n]
    if ragged:
        raise ValueError(f"write_d4rl_hdf5({path}): {', '.join(ragged)} not {plural(n, 'row')} like observations")
    for key, value in metadata.items():
        if not isinstance(value, str | int | float | np.generic):
            raise ValueError(f"write_d4rl_hdf5({path}): metadata '{key}' must be str, int or float")

    def write(temporary: str) -> None:
        with h5py.File(temporary, "w") as file:
            for key, value in arrays.items():
                file.create_dataset(key, data=_d4rl_dtype(key, value))
            for key, value in metadata.items():
                file.create_dataset(f"metadata/{key}", data=value)
                file.attrs[key] = value

    atomic_write(path, write)


def _d4rl_dtype(key: str, value: np.ndarray) -> np.ndarray:
    if key in ("terminals", "timeouts"):
        return np.asarray(value).astype(bool)
    if key in ("observations", "actions", "rewards", "next_observations"):
        return np.asarray(value, dtype=np.float32)
    return np.asarray(value)


# --- one call for the task registry ------------------------------------------------------------------
def load_file(path: str | Path, name: str, metadata: dict | None = None) -> OfflineDataset:
    """A D4RL-layout file -> validated transitions; the file's scalar metadata rides along."""
    raw = read_hdf5(path)
    stored = {k: v for k, v in read_metadata(path).items() if not isinstance(v, np.ndarray)}
    return qlearning_dataset(raw, str(path), name, {**stored, **(metadata or {})})


def load_d4rl(task_name: str, download: bool = True) -> OfflineDataset:
    """A D4RL -v2 gym task by name: the cached file (downloaded first when missing and allowed)."""
    url = _check_task(task_name)
    path = dataset_path(task_name)
    if not path.is_file():
        if not (download and downloads_allowed()):
            raise DatasetError(
                path, f"not found; download it from {url} into {path.parent} or set D4RL_DATASET_DIR"
            )
        _download(task_name)
    return load_file(path, task_name, {"d4rl_task": task_name, "url": url})

