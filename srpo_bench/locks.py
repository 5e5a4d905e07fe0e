"""Claim files: one runner at a time trains a run (or a shared stage) of a results folder.

A claim is a file created with O_CREAT | O_EXCL (atomic on local filesystems and on NFS v3+), holding who
claimed it (host, pid, when). While the holder works, a heartbeat thread touches the file every
`HEARTBEAT_SECONDS`. A claim is stale, and may be taken over, when

* its holder is on this host and its pid is gone (a crash or SIGKILL: recovered at once), or
* its heartbeat is older than `STALE_SECONDS` (a holder on another host that died; `$SRPO_BENCH_STALE_SECONDS`).

Taking over a stale claim is itself guarded by a second O_EXCL file (`<claim>.takeover`), so two runners that
find the same stale claim cannot both win: one removes the stale claim and creates its own, the other sees a
live claim. A takeover guard left by a runner killed mid-takeover expires after `STALE_SECONDS` like a claim.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = float(os.environ.get("SRPO_BENCH_STALE_SECONDS", "120"))
HOST = socket.gethostname()


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    since: str
    heartbeat_age: float  # seconds since the holder's last heartbeat

    def __str__(self) -> str:
        return f"{self.host}:{self.pid} since {self.since}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def read_holder(path: Path) -> Holder | None:
    """Who holds the claim at `path`, or None when there is none (or it vanished while reading)."""
    try:
        text = path.read_text()
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        info: dict[str, Any] = json.loads(text)
        return Holder(str(info["host"]), int(info["pid"]), str(info.get("since", "?")), age)
    except (ValueError, KeyError, TypeError):  # a holder killed between create and write: only its age counts
        return Holder("?", -1, "?", age)


def is_stale(holder: Holder) -> bool:
    if holder.host == HOST and holder.pid > 0 and not pid_alive(holder.pid):
        return True
    return holder.heartbeat_age > STALE_SECONDS


def live_holder(path: Path) -> Holder | None:
    """The live holder of a claim, or None if the claim is free or stale."""
    holder = read_holder(path)
    return None if holder is None or is_stale(holder) else holder


class Claim:
    """An exclusive claim on `path`, with a heartbeat while held. Use `Claim.try_take(path)`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {path.name}", daemon=True)

    @classmethod
    def try_take(cls, path: Path) -> Claim | None:
        """The claim if this process got it, None if a live holder has it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if not _create(path):
            holder = read_holder(path)
            if holder is not None and not is_stale(holder):
                return None
            if not _take_over(path, holder):
                return None
        claim = cls(path)
        claim._thread.start()
        return claim

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        self._stop.set()
        holder = read_holder(self.path)
        if holder is not None and (holder.host, holder.pid) == (HOST, os.getpid()):  # never another's claim
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _create(path: Path) -> bool:
    """Create the claim file atomically with this process as holder; False if it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # the umask applies
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump({"host": HOST, "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, handle)
    return True


def _take_over(path: Path, stale: Holder | None) -> bool:
    guard = path.with_name(path.name + ".takeover")
    if not _create(guard):
        holder = read_holder(guard)
        if holder is None or not is_stale(holder):
            return False  # another runner is taking over right now
        with contextlib.suppress(FileNotFoundError):
            guard.unlink()
        if not _create(guard):
            return False
    try:
        current = read_holder(path)
        if current is not None and not is_stale(current):
            return False  # someone took it over and is alive
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return _create(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            guard.unlink()


@contextlib.contextmanager
def claimed(path: Path, poll_seconds: float = 2.0) -> Iterator[Claim]:
    """Wait for the claim at `path`, hold it for the block (a shared stage: one runner trains it, the others
    wait, then load what it saved)."""
    while (claim := Claim.try_take(path)) is None:
        time.sleep(poll_seconds)
    try:
        yield claim
    finally:
        claim.release()
