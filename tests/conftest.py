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


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory):
    """Files written by the real code, once per session, for the tests of what reads them (tests/test_key_contract.py
    and others): a smoke grid (toy-two-moons, srpo and bc, seeds 0 and 1) written by `run`, `srpo-bench speed` files
    (eager, and eager + onnx side by side) in the same results folder, those runs added as records by `results
    add --exploratory` into a records folder, and ONNX exports of a deterministic (SRPO) and a stochastic (FQL,
    trained in the same grid, seed 0) policy. The run's commit is given as a clean one (the working tree of a
    developer is usually dirty, and `results add` refuses dirty runs); nothing else is changed. Returns {"out",
    "records", "exports"}: paths."""
    from pathlib import Path

    from typer.testing import CliRunner

    from srpo_bench import store
    from srpo_bench.cli import app

    root = tmp_path_factory.mktemp("smoke-results")
    out, records = root / "results", root / "records"
    cli = CliRunner()

    def invoke(*args: str) -> None:
        result = cli.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, f"{' '.join(args)}: {result.output}"

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "git_commit", lambda *a, **k: "0123456789abcdef0123456789abcdef01234567")
        invoke("run", "--envs", "toy-two-moons", "--methods", "srpo,bc", "--seeds", "0,1", "--profile", "smoke",
               "--out", str(out), "--device", "cpu", "--quiet")
        invoke("run", "--envs", "toy-two-moons", "--methods", "fql", "--seeds", "0", "--profile", "smoke",
               "--out", str(out), "--device", "cpu", "--quiet")
        timing = ["--methods", "srpo,bc", "--out", str(out), "--repeats", "3", "--max-seconds", "0.3", "--threads",
                  str(torch.get_num_threads()), "--device", "cpu"]
        invoke("speed", *timing)
        invoke("speed", *timing, "--runtime", "eager,onnx")
        invoke("results", "add", str(out), "--to", str(records), "--exploratory")
        exports = [root / "export" / f"{method}.onnx" for method in ("srpo", "fql")]
        for path in exports:
            invoke("export", str(out / "runs" / "smoke" / "toy-two-moons" / path.stem / "seed0"), "--output",
                   str(path))
    return {"out": Path(out), "records": Path(records), "exports": exports}
