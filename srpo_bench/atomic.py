"""The one way srpo-bench writes a file: to a temporary name in the same folder, then renamed into place.

A crash (SIGKILL, full disk) never leaves a torn file under the real name: readers see the old file or the
new one. The temporary file is created with the user's umask (not `mkstemp`'s private 0600), so a group can
share a results folder. Temporary names start with `.<name>.` and end in `.tmp`: a writer killed mid-write
leaves one, which `remove_temporaries` deletes once no live runner can be writing it (see `store.clean`).

A write that fails for want of space or permission raises `WriteError` naming the file and the cause, in one
line (torch reports a full disk as `unexpected pos ...`; that is translated here).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"
#: below this many free bytes after a failed write, the failure is reported as a full disk
FULL_DISK_BYTES = 1 << 20


class WriteError(RuntimeError):
    """A results file could not be written (no space, no permission, a file where a folder belongs)."""


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(temporary_path)`, fsync, then rename onto `path`. On any error the temporary is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as error:
        raise WriteError(f"{path}: cannot write ({(error.strerror or str(error)).lower()})") from None
    os.close(fd)
    try:
        os.chmod(temporary, 0o666 & ~_umask())
        write(temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except (OSError, RuntimeError) as error:
        if isinstance(error, OSError) and error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS,
                                                               errno.EPERM):
            raise
        if not isinstance(error, OSError) and shutil.disk_usage(path.parent).free > FULL_DISK_BYTES:
            raise  # a RuntimeError that is not a full disk: a bug, keep its traceback
        cause = "no space left on device" if isinstance(error, RuntimeError) else os.strerror(error.errno).lower()
        raise WriteError(f"{path}: cannot write ({cause})") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def remove_temporaries(folder: Path, name: str = "") -> int:
    """Delete the temporaries a killed writer left in `folder` (of the file `name`, or all); how many.
    Only call it where no live writer can be at work (the caller holds the folder's claim)."""
    removed = 0
    for temporary in Path(folder).glob(f".{name}*{TEMP_SUFFIX}"):
        try:
            temporary.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    def write(temporary: str) -> None:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)

    atomic_write(path, write)


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str, allow_nan=True))


def atomic_torch_save(obj: Any, path: Path) -> None:
    import torch  # here, so the store and the report do not import torch just to write JSON

    atomic_write(path, lambda temporary: torch.save(obj, temporary))
