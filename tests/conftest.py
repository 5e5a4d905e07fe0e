"""Test-wide settings: one torch thread (small networks gain little from two, and on a shared 2-core machine
oversubscribed threads made training steps ~10x slower), and no progress bars in captured output."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def single_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def read_only(tmp_path_factory):
    """`read_only(folder) -> Path`: a read-only view of `folder` that holds for root too. As root: a read-only
    bind mount (undone after the test); as another user: the files and folders lose their write bits. Skips,
    saying why, only where neither is possible (root in a container that may not mount)."""
    import os
    import stat
    import subprocess
    from pathlib import Path

    mounted: list[Path] = []
    locked: list[Path] = []

    def make(folder: Path) -> Path:
        if os.geteuid() != 0:
            for path in [folder, *folder.rglob("*")]:
                path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
                locked.append(path)
            return folder
        view = tmp_path_factory.mktemp("read-only")
        done = subprocess.run(["mount", "--bind", str(folder), str(view)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"running as root and cannot bind-mount here ({done.stderr.strip()}): no read-only folder")
        mounted.append(view)
        done = subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"running as root and cannot remount read-only here ({done.stderr.strip()})")
        return view

    yield make
    for view in mounted:
        subprocess.run(["umount", str(view)], check=False)
    for path in locked:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
