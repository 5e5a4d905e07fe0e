"""The one way srpo-bench writes a file: to a temporary name in the same folder, then renamed into place.

A crash (SIGKILL, full disk) never leaves a torn file under the real name: readers see the old file or the
new one. The temporary file is created with the user's umask (not `mkstemp`'s private 0600), so a group can
share a results folder. Temporary names start with `.<name>.` and end in `.tmp` (a killed writer can leave one;
cleaning them safely needs the run locks of the fault-tolerance issue, since another runner may be writing).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(temporary_path)`, fsync, then rename onto `path`. On any error the temporary is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        os.chmod(temporary, 0o666 & ~_umask())
        write(temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


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
