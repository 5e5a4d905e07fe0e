"""Faults: a diverging run is a failed result and the grid goes on; runners share a results folder and train each
run once; a writer killed mid-checkpoint leaves no temporary behind the next start; claims of dead runners are
taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import invoke

from srpo_bench import locks
from srpo_bench.report.frame import load_runs

TOY = ("--envs", "toy-two-moons", "--profile", "smoke", "--device", "cpu", "--quiet")
CLI = [sys.executable, "-c", "from srpo_bench.cli import app; app()"]


def run_json(out: Path, method: str, seed: int = 0, task: str = "toy-two-moons") -> dict:
    return json.loads((out / "runs" / "smoke" / task / method / f"seed{seed}" / "run.json").read_text())


def test_a_diverging_run_is_recorded_as_failed_and_the_grid_goes_on(tmp_path: Path) -> None:
    """An IQL critic at lr 1e30 (the issue's IDQL with a huge critic lr) turns NaN on its second step."""
    out = tmp_path / "r"
    args = ("run", *TOY, "--methods", "srpo,bc", "--seeds", "0", "--out", str(out), "--set", "srpo.critic_lr=1e30")
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    assert "1 finished, 1 failed, 0 already finished: toy-two-moons srpo seed 0 (non-finite " in result.output
    failed = run_json(out, "srpo")
    assert failed["status"] == "failed"
    failure = failed["failure"]
    assert failure["kind"] == "diverged" and failure["stage"] == "critic" and failure["step"] >= 1
    assert "q_loss=nan" in failure["reason"]
    assert failure["last_metrics"]["step"] < failure["step"] and all(
        abs(value) < 1e6 for value in failure["last_metrics"].values())
    assert list((out / "stages").glob("VPSDEBehaviorStage*.pt"))  # stages before the failure stay cached
    assert not list((out / "stages").glob("IQLCriticStage*.pt"))  # a diverged stage is never cached
    assert run_json(out, "bc")["status"] == "finished"  # the grid went on

    runs = load_runs([out])
    assert list(runs.finished["base_method"]) == ["bc"]
    assert list(runs.failed["base_method"]) == ["srpo"] and "q_loss=nan" in runs.failed["reason"].iloc[0]
    report = invoke("report", "--out", str(out), "--format", "md")
    assert report.exit_code == 0 and "runs that did not finish" in report.output

    again = invoke(*args)  # a recorded failure is a result: not retrained without --retry-failed
    assert again.exit_code == 1 and "0 finished, 1 failed, 1 already finished" in again.output


def test_an_error_inside_a_method_is_a_failed_run_with_its_traceback(tmp_path: Path, monkeypatch) -> None:
    from baselines import bc

    def broken(*args, **kwargs):
        raise RuntimeError("probability tensor contains either inf, nan or element < 0")

    monkeypatch.setattr(bc, "PolicyAgent", broken)
    out = tmp_path / "r"
    result = invoke("run", *TOY, "--methods", "bc", "--seeds", "0,1", "--out", str(out))
    assert result.exit_code == 1 and "0 finished, 2 failed" in result.output
    failure = run_json(out, "bc", 1)["failure"]
    assert failure["kind"] == "error" and failure["reason"].startswith("RuntimeError: probability tensor")
    traceback = (out / "runs" / "smoke" / "toy-two-moons" / "bc" / "seed1" / "error.txt").read_text()
    assert "Traceback" in traceback and "broken" in traceback

    monkeypatch.undo()
    retried = invoke("run", *TOY, "--methods", "bc", "--seeds", "0,1", "--out", str(out), "--retry-failed")
    assert retried.exit_code == 0 and "2 finished, 0 failed" in retried.output
    assert not (out / "runs" / "smoke" / "toy-two-moons" / "bc" / "seed1" / "error.txt").exists()


def test_claims_exclude_live_holders_and_recover_dead_ones(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / ".lock"
    claim = locks.Claim.try_take(path)
    assert claim is not None and locks.read_holder(path).pid == os.getpid()
    assert locks.Claim.try_take(path) is None  # held, alive, fresh heartbeat
    claim.release()
    assert not path.exists()

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.write_text(json.dumps({"host": locks.HOST, "pid": dead.pid, "since": "then"}))
    taken = locks.Claim.try_take(path)  # same host, pid gone: a crash, recovered at once
    assert taken is not None and locks.read_holder(path).pid == os.getpid()
    taken.release()

    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "then"}))
    assert locks.Claim.try_take(path) is None  # another host, fresh heartbeat: alive
    old = time.time() - locks.STALE_SECONDS - 5
    os.utime(path, (old, old))
    stolen = locks.Claim.try_take(path)  # heartbeat too old: the holder died
    assert stolen is not None
    stolen.release()


def test_two_runners_on_one_folder_train_each_run_once(tmp_path: Path) -> None:
    out = tmp_path / "shared"
    args = [*CLI, "run", *TOY, "--methods", "bc,srpo", "--seeds", "0,1", "--out", str(out), "--threads", "1"]
    env = {**os.environ, "SRPO_BENCH_STALE_SECONDS": "60"}
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    time.sleep(1.0)
    second = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    trained = [int(o.split(" finished, ")[0].rsplit("\n", 1)[-1]) for o in outputs]
    assert sum(trained) == 4, outputs  # each of the 4 runs trained by exactly one runner
    stages = {}
    for method in ("bc", "srpo"):
        for seed in (0, 1):
            run = run_json(out, method, seed)
            assert run["status"] == "finished"
            for stage in run["stages"]:
                stages.setdefault(stage["key"], set()).add(stage["origin"])
    assert all(origins == {"trained"} for origins in stages.values())  # no stage trained twice or shared stale
    assert not list(out.rglob(".lock")) and not list(out.rglob("*.tmp"))


KILL_IN_CHECKPOINT = """
import os, signal, sys
from srpo_bench import atomic
real = atomic.atomic_write
def dying(path, write):
    if str(path).endswith('.pt') and 'IQLCriticStage' in str(path):
        def write_then_die(temporary):
            write(temporary)
            os.kill(os.getpid(), signal.SIGKILL)  # the temporary is on disk, the artifact is not
        return real(path, write_then_die)
    return real(path, write)
atomic.atomic_write = dying
from srpo_bench.cli import app
sys.argv = ['srpo-bench'] + sys.argv[1:]
app()
"""


def test_a_run_killed_during_a_checkpoint_write_leaves_no_temporary_after_the_rerun(tmp_path: Path) -> None:
    out = tmp_path / "r"
    args = ["run", *TOY, "--methods", "srpo", "--seeds", "0", "--out", str(out), "--threads", "1"]
    killed = subprocess.run([sys.executable, "-c", KILL_IN_CHECKPOINT, *args], capture_output=True, text=True,
                            timeout=600)
    assert killed.returncode == -9, killed.stderr
    assert list((out / "stages").glob(".IQLCriticStage*.tmp"))  # the killed write's temporary
    assert not list((out / "stages").glob("IQLCriticStage*.pt"))
    assert (out / "runs" / "smoke" / "toy-two-moons" / "srpo" / "seed0" / ".lock").exists()  # a dead claim

    rerun = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".lock"))
    run = run_json(out, "srpo")
    assert run["status"] == "finished"
    assert {s["stage"]: s["origin"] for s in run["stages"]} == {"behavior": "resumed", "critic": "trained",
                                                                "policy": "trained"}


def test_dry_run_prints_states_and_estimates_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert invoke("run", *TOY, "--methods", "bc", "--seeds", "0", "--out", str(out)).exit_code == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    result = invoke("run", *TOY, "--methods", "bc", "--seeds", "0-2", "--out", str(out), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "1 finished; 2 to run" in result.output and "policy 100 x" in result.output
    assert "3 runs: 1 finished, 2 to run. Estimated training compute left:" in result.output
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before

    fresh = tmp_path / "fresh"
    result = invoke("run", *TOY, "--methods", "bc", "--seeds", "0", "--out", str(fresh), "--dry-run")
    assert result.exit_code == 0 and not fresh.exists()


@pytest.mark.slow
def test_jobs_and_ray_give_the_scores_of_one_process_and_ray_retries_a_dead_worker(tmp_path: Path,
                                                                                   monkeypatch) -> None:
    """A toy grid three ways (one process at one thread; --jobs 2 and Ray on 2 CPUs, where one run's worker dies
    the first time): the same scores, every run finished, timings taken alone after training."""
    from test_adding_a_method import install

    site = tmp_path / "site"
    site.mkdir()
    (site / "flaky_method.py").write_text(FLAKY_METHOD)
    install(site, {"flaky": "flaky_method:Flaky"})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("FLAKY_MARKER", str(tmp_path / "died-once"))
    grid = ("--envs", "toy-two-moons,toy-checkerboard", "--methods", "bc,flaky", "--seeds", "0",
            "--profile", "smoke", "--device", "cpu", "--quiet")

    def scores(out: Path) -> dict[str, float]:
        return {str(p.parent.relative_to(out)): json.loads(p.read_text())["mean_normalized"]
                for p in sorted(out.glob("runs/*/*/*/*/eval.json"))}

    (tmp_path / "died-once").write_text("")  # the serial run does not die
    serial = invoke("run", *grid, "--out", str(tmp_path / "serial"), "--threads", "1")
    assert serial.exit_code == 0, serial.output
    (tmp_path / "died-once").unlink()
    jobs = invoke("run", *grid, "--out", str(tmp_path / "jobs"), "--jobs", "2", "--threads", "2")
    assert jobs.exit_code == 0, jobs.output
    assert (tmp_path / "died-once").exists()  # a worker process died once; the pool was replaced, the run retried
    (tmp_path / "died-once").unlink()
    ray = invoke("run", *grid, "--out", str(tmp_path / "ray"), "--executor", "ray", "--max-retries", "1")
    assert ray.exit_code == 0, ray.output
    assert (tmp_path / "died-once").exists()  # the first attempt of the flaky run died
    assert len(scores(tmp_path / "serial")) == 4
    assert scores(tmp_path / "serial") == scores(tmp_path / "jobs") == scores(tmp_path / "ray")
    for path in (tmp_path / "ray").glob("runs/*/*/*/*/speed.json"):
        assert json.loads(path.read_text())["exclusive"] is True


# A method whose fit kills its own process the first time it runs (a worker lost to the OOM killer, say).
FLAKY_METHOD = '''
import os
import signal
from pathlib import Path

from baselines.bc import BC


class Flaky(BC):
    name = "flaky"

    def fit(self, ctx, config):
        marker = Path(os.environ["FLAKY_MARKER"])
        if not marker.exists():
            marker.write_text("died")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().fit(ctx, config)
'''


def _workers(pid: int) -> list[int]:
    """The pool workers of driver `pid`: its children started by multiprocessing's spawn (read from /proc; its
    resource tracker, which leaves when the driver has gone, is not one)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid and b"spawn_main" in command:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads parent pids from /proc (Linux)")
def test_an_interrupt_of_the_driver_alone_stops_a_packed_grid_now(tmp_path: Path) -> None:
    """SIGINT to the driver only (`kill -INT`, a batch scheduler; a terminal's Ctrl-C reaches every worker too):
    the queued runs are dropped and the running ones ended, the interrupt line printed, exit 130. Before, leaving
    the process pool waited for every queued run (a 300-run sweep kept going)."""
    import contextlib
    import signal

    from srpo_bench.cli import INTERRUPTED

    out = tmp_path / "runs"
    driver = subprocess.Popen([str(Path(sys.executable).parent / "srpo-bench"), "run", "--envs", "toy-two-moons",
                               "--methods", "srpo", "--seeds", "0-7", "--profile", "quick", "--jobs", "2",
                               "--threads", "2", "--out", str(out), "--device", "cpu"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(_workers(driver.pid)) < 2 and time.monotonic() < deadline:  # the pool's two workers are up
        time.sleep(0.5)
    workers = _workers(driver.pid)
    try:
        assert len(workers) == 2
        time.sleep(3)  # inside their first runs
        driver.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, stderr = driver.communicate(timeout=60)
    finally:  # a failing test leaves no grid running behind it
        for pid in [driver.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert driver.returncode == 130, stderr
    assert time.monotonic() - started < 30  # eight quick SRPO runs take minutes on 2 cores
    assert stderr.strip().splitlines()[-1] == INTERRUPTED
    time.sleep(1)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "a worker outlived the driver"
