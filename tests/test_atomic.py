"""The one atomic-write helper: files get the user's umask (a group can share a results folder), and a
failing writer leaves the old file whole and no temporary behind."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from srpo_bench.atomic import atomic_write, atomic_write_json


def test_files_are_created_with_the_users_umask(tmp_path: Path) -> None:
    previous = os.umask(0o002)
    try:
        atomic_write_json(tmp_path / "run.json", {"a": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "run.json").stat().st_mode) == 0o664  # mkstemp alone gives 0o600


def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "eval.json"
    atomic_write_json(path, {"score": 1.0})

    def broken(temporary: str) -> None:
        Path(temporary).write_text("{half")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"score": 1.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.json"]
