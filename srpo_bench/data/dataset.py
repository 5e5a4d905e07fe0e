"""The one in-memory form every data source produces: validated transition arrays.

Sources (D4RL hdf5, Minari, our collected lite suite, the toy bandits) all end in `OfflineDataset`.
Validation happens once, here, so a method never sees NaNs, ragged arrays or out-of-range actions.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from srpo_bench.vocabulary import plural

_DOWNLOADS = {"allowed": True}


@contextlib.contextmanager
def local_files_only() -> Iterator[None]:
    """Inside this block, sources that download a missing file (D4RL, Minari) report it missing instead
    (`run --dry-run` looks at what is here; it never starts a multi-GB download)."""
    before = _DOWNLOADS["allowed"]
    _DOWNLOADS["allowed"] = False
    try:
        yield
    finally:
        _DOWNLOADS["allowed"] = before


def downloads_allowed() -> bool:
    return _DOWNLOADS["allowed"]


class DatasetError(ValueError):
    """A dataset file is unusable. The message is one line: the file, then what is wrong."""

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{source}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # picklable across worker processes
        return (type(self), (self.source, self.problem))


#: "values": numbers (observations, actions, rewards): integer or floating dtype, every entry finite.
#: "flags": terminals, timeouts, masks, Minari's terminations/truncations: bool, or numbers that are all 0 or 1.
ColumnKind = Literal["values", "flags"]


def check_column(source: str | Path, name: str, value: object, kind: ColumnKind, ndims: tuple[int, ...],
                 rows: int | None = None, width: int | None = None, rows_of: str = "observations") -> np.ndarray:
    """One column of a file as a loader read it, refused with a one-line `DatasetError` naming the file and the
    column at its first fault: dtype (strings, bytes, objects, complex, and bool where numbers are meant),
    shape (number of dimensions in `ndims`; `width` columns when given), length (`rows`, those of column
    `rows_of`), finiteness (NaN/inf), and for flags the values 0/1. Checked before any cast: `astype(bool)`
    makes every non-empty byte string True, and `astype(float32)` turns b"1" into 1.0, so a cast would hide
    the fault."""
    if value is None:
        raise DatasetError(source, f"missing column '{name}'")
    array = np.asarray(value)
    dtype = array.dtype
    numeric = np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
    if not (numeric or (kind == "flags" and dtype == np.bool_)):
        allowed = "bool or numbers 0/1" if kind == "flags" else "integer or floating numbers"
        raise DatasetError(source, f"column '{name}' has dtype {dtype}; expected {allowed}")
    if array.ndim not in ndims or (width is not None and array.shape[1:2] != (width,)):
        expected = " or ".join({1: "[N]", 2: "[N, dim]" if width is None else f"[N, {width}]"}.get(d, f"{d}-D")
                               for d in ndims)
        raise DatasetError(source, f"column '{name}' has shape {array.shape}; expected {expected}")
    if rows is not None and len(array) != rows:
        raise DatasetError(source, f"'{name}' has {plural(len(array), 'row')} but '{rows_of}' has {rows}")
    if np.issubdtype(dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            row = int(np.argwhere(~finite)[0][0])
            raise DatasetError(source, f"'{name}' contains NaN or inf (first at row {row})")
    if kind == "flags" and dtype != np.bool_:
        bad = (array != 0) & (array != 1)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise DatasetError(source, f"column '{name}' must hold only 0/1 or bool, found {array[row].tolist()} "
                               f"at row {row}")
    return array


@dataclass
class OfflineDataset:
    """Transitions in `d4rl.qlearning_dataset` form plus trajectory boundaries.

    `terminals[i]` is 1.0 only for a true environment termination (timeouts are not terminal).
    `episode_ends[i]` is True where a trajectory stops after transition i (termination, timeout or the
    end of the file); methods that compute returns-to-go (SfBC) and reward scaling need it.
    """

    name: str
    source: str
    observations: np.ndarray  # [N, obs_dim] float32
    actions: np.ndarray  # [N, act_dim] float32
    rewards: np.ndarray  # [N] float32
    next_observations: np.ndarray  # [N, obs_dim] float32
    terminals: np.ndarray  # [N] float32 in {0, 1}
    episode_ends: np.ndarray  # [N] bool
    action_low: float = -1.0
    action_high: float = 1.0
    metadata: dict = field(default_factory=dict)
    #: The file's rows before `qlearning_dataset` dropped the final step of every timed-out trajectory:
    #: observations, actions, rewards and `ends` (terminal or timeout), for methods whose official code trains
    #: on the raw rows (SfBC). None when the source has no such distinction (toy, Minari).
    raw_rows: dict[str, np.ndarray] | None = field(default=None, repr=False)
    _fingerprint: str = field(default="", repr=False, compare=False)
    _on_device: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_transitions(self)

    # --- shape facts -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.observations.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    # --- derived quantities ----------------------------------------------------------------------
    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every trajectory (split on `episode_ends`)."""
        ends = np.flatnonzero(self.episode_ends)
        if len(ends) == 0 or ends[-1] != len(self) - 1:
            ends = np.append(ends, len(self) - 1)
        cumulative = np.concatenate([[0.0], np.cumsum(self.rewards, dtype=np.float64)])
        starts = np.concatenate([[0], ends[:-1] + 1])
        return (cumulative[ends + 1] - cumulative[starts]).astype(np.float64)

    def fingerprint(self) -> str:
        """A content hash: stage checkpoints are keyed by it, so changed data never reuses a stage.
        Computed once (the arrays are treated as read-only after validation)."""
        if self._fingerprint:
            return self._fingerprint
        digest = hashlib.sha1()
        raw = [self.raw_rows[key] for key in sorted(self.raw_rows)] if self.raw_rows is not None else []
        for array in (self.observations, self.actions, self.rewards, self.next_observations,
                      self.terminals, self.episode_ends, *raw):
            digest.update(np.ascontiguousarray(array).tobytes())
        self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def tensors(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The whole dataset on `device` (the official code keeps it on the GPU too). Uploaded once per device
        and shared by every stage and run on this dataset (the arrays are read-only after validation); each call
        returns a fresh dict, so a stage may replace an entry (e.g. its transformed rewards)."""
        key = str(torch.device(device))
        if key not in self._on_device:
            self._on_device[key] = {
                name: torch.as_tensor(getattr(self, name), device=device)
                for name in ("observations", "actions", "rewards", "next_observations", "terminals")
            }
        return dict(self._on_device[key])


def validate_transitions(dataset: OfflineDataset) -> None:
    """Raise `DatasetError` naming the file and the first problem found; cast arrays to float32."""
    src = dataset.source
    arrays = {
        "observations": dataset.observations,
        "actions": dataset.actions,
        "rewards": dataset.rewards,
        "next_observations": dataset.next_observations,
        "terminals": dataset.terminals,
        "episode_ends": dataset.episode_ends,
    }
    for key, value in arrays.items():
        if value is None:
            raise DatasetError(src, f"missing key '{key}'")
    n = len(dataset.observations)
    if n == 0:
        raise DatasetError(src, "dataset is empty (0 transitions)")
    obs_dim = np.shape(dataset.observations)[1] if np.ndim(dataset.observations) == 2 else None
    for key in ("observations", "actions", "rewards", "next_observations", "terminals", "episode_ends"):
        check_column(src, key, arrays[key], "flags" if key in ("terminals", "episode_ends") else "values",
                     (2,) if key in ("observations", "actions", "next_observations") else (1,), rows=n,
                     width=obs_dim if key == "next_observations" else None)
    tolerance = 1e-4
    out_of_range = (dataset.actions < dataset.action_low - tolerance) | (
        dataset.actions > dataset.action_high + tolerance
    )
    if out_of_range.any():
        row = int(np.argwhere(out_of_range)[0][0])
        raise DatasetError(
            src,
            f"'actions' outside the action space [{dataset.action_low}, {dataset.action_high}] "
            f"(first at row {row}: {dataset.actions[row].tolist()})",
        )
    dataset.observations = np.asarray(dataset.observations, dtype=np.float32)
    dataset.actions = np.asarray(dataset.actions, dtype=np.float32)
    dataset.rewards = np.asarray(dataset.rewards, dtype=np.float32)
    dataset.next_observations = np.asarray(dataset.next_observations, dtype=np.float32)
    dataset.terminals = np.asarray(dataset.terminals, dtype=np.float32)
    dataset.episode_ends = np.asarray(dataset.episode_ends, dtype=bool)
