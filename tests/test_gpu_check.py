"""benchmarks/gpu_check.py, the prepared GPU check: its arguments, its driver (caps, process groups, exit code), and
the records its CPU rehearsal writes, read back the way `srpo-bench report` reads them. (.ci/run runs the whole
rehearsal; here one method goes through the smoke and acting parts in this process.) Also the EpochSampler's
per-epoch move to the device, which the GPU path needs non-blocking."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from srpo_bench.data import sampler
from srpo_bench.data.sampler import EpochSampler
from srpo_bench.report.frame import load_runs
from srpo_bench.store import read_object

ROOT = Path(__file__).resolve().parents[1]


def load_gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module


gpu_check = load_gpu_check()


@pytest.mark.parametrize(("argv", "named"), [(["--parts", "smoke,nope"], "nope"), (["--parts", ","], "--parts"),
                                             (["--methods", "srpo,nosuch"], "nosuch")])
def test_a_bad_argument_is_one_line_and_exit_2(argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
                                                ) -> None:
    with pytest.raises(SystemExit) as stopped:
        gpu_check.parse_args(["--cpu-rehearsal", *argv])
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert named in error[-1] and not any("Traceback" in line for line in error)


def test_the_rehearsal_arguments() -> None:
    args = gpu_check.parse_args(["--cpu-rehearsal", "--parts", "smoke, acting", "--methods", "bc,srpo"])
    # SRPO first: the figures a GPU slot that runs out keeps are the reference method's
    assert (args.cpu_rehearsal, args.parts, args.methods) == (True, ["smoke", "acting"], ["srpo", "bc"])
    assert gpu_check.parse_args(["--cpu-rehearsal"]).parts == list(gpu_check.PARTS)


def test_the_caps_add_up_to_each_budget() -> None:
    """A part can take no longer than its cap, so the caps bound the whole run: the 8 minutes of a GPU slot, and
    3 minutes for the rehearsal (about 65 s on the shared 2-core machine, its caps allow for a busy one)."""
    assert set(gpu_check.CAPS) == set(gpu_check.PARTS)
    assert sum(gpu for gpu, _ in gpu_check.CAPS.values()) <= 8 * 60
    assert sum(cpu for _, cpu in gpu_check.CAPS.values()) <= 3 * 60


def state_of(pid: int) -> str | None:
    """A process's state letter (Z: a zombie, dead but not yet reaped), None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def test_a_part_over_its_cap_is_killed_with_what_it_started_and_the_others_go_on(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    # a part that starts a process of its own (a packed grid's worker) and then hangs
    hang = ("import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', 'import time; "
            f"time.sleep(60)']); open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(60)")
    commands = {"device": [sys.executable, "-c", hang], "smoke": [sys.executable, "-c", "raise SystemExit(3)"],
                "acting": [sys.executable, "-c", "pass"]}
    started = time.monotonic()
    summary = gpu_check.drive(["device", "smoke", "acting"], {"device": 3.0, "smoke": 30.0, "acting": 30.0},
                              commands.__getitem__)
    assert time.monotonic() - started < 20
    assert {part: entry["status"] for part, entry in summary.items()} == {
        "device": "timed out", "smoke": "failed", "acting": "ok"}
    assert summary["device"]["seconds"] < 10
    grandchild = int(pid_file.read_text())
    for _ in range(50):  # SIGKILL is delivered at once; the reaper may take a moment
        if state_of(grandchild) in (None, "Z"):
            break
        time.sleep(0.1)
    assert state_of(grandchild) in (None, "Z"), "the part's own child outlived the part"


def test_the_exit_code_says_whether_every_part_passed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """main() runs every part asked for, whatever each did, writes the summary, and exits 1 when any part failed."""
    cases = (({"device": "ok", "smoke": "ok"}, 0), ({"device": "timed out", "smoke": "ok"}, 1),
             ({"device": "ok", "smoke": "failed"}, 1))
    for case, (statuses, code) in enumerate(cases):
        ran: list[str] = []

        def fake(command: list[str], cap: float, statuses: dict[str, str] = statuses, ran: list[str] = ran) -> str:
            part = command[command.index("--part") + 1]
            ran.append(part)
            return statuses[part]

        monkeypatch.setattr(gpu_check, "run_capped", fake)
        out = tmp_path / f"case{case}"
        assert gpu_check.main(["--cpu-rehearsal", "--parts", "device,smoke", "--out", str(out)]) == code
        assert ran == ["device", "smoke"]
        summary = json.loads((out / "gpu-check" / "summary.json").read_text())
        assert {part: entry["status"] for part, entry in summary["parts"].items()} == statuses
        assert "| device |" in (out / "gpu-check" / "summary.md").read_text()


def test_a_failing_part_keeps_what_it_measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A part that fails after measuring something records the failure with the figures of its last checkpoint
    (a GPU slot's minutes are not thrown away with the part)."""
    def measures_then_fails(part: Any) -> dict[str, Any]:
        part.checkpoint("device", steps_per_second={"bc": {"policy": {"eager": 123.0}}})
        raise RuntimeError("CUDA error: an illegal memory access")

    monkeypatch.setitem(gpu_check.PART_FUNCTIONS, "device", measures_then_fails)
    record = gpu_check.run_part("device", tmp_path, True, ["bc"])
    written = json.loads((tmp_path / "gpu-check" / "device.json").read_text())
    assert written == json.loads(json.dumps(record))
    assert written["ok"] is False and "illegal memory access" in written["error"]
    assert written["steps_per_second"] == {"bc": {"policy": {"eager": 123.0}}}
    assert written["profile"]["name"] == "cpu-rehearsal"


@pytest.mark.slow
def test_the_rehearsal_records_are_what_report_reads(tmp_path: Path) -> None:
    """The smoke and acting parts of the rehearsal, for BC, in this process: the report reads the smoke runs as
    finished runs with their in-run timings, and the acting timings of every runtime, all labelled."""
    try:
        records = {part: gpu_check.run_part(part, tmp_path, True, ["bc"]) for part in ("smoke", "acting")}
    finally:
        torch._dynamo.reset()
    assert all(record["ok"] for record in records.values()), records
    assert all(record["profile"]["name"] == "cpu-rehearsal" for record in records.values())
    assert json.loads((tmp_path / "gpu-check" / "acting.json").read_text())["ok"] is True

    runs = load_runs([tmp_path / "results"])
    assert not runs.warnings and runs.failed.empty
    finished = runs.finished
    assert sorted(zip(finished["task"], finished["base_method"], strict=True)) == sorted(
        [(gpu_check.SHAPED_TASK, "bc"), (gpu_check.TOY_TASK, "bc")])
    assert set(finished["method"]) == {"bc[steps=3]"}  # the report names the rehearsal's settings
    assert finished["speed"].notna().all()
    for task in (gpu_check.TOY_TASK, gpu_check.SHAPED_TASK):
        run = read_object(tmp_path / "results" / "runs" / "smoke" / task / "bc" / "seed0" / "run.json")
        assert run["overrides"] == {"steps": "3"}  # the rehearsal's settings, in the run's own record
    shaped = tmp_path / "results" / "runs" / "smoke" / gpu_check.SHAPED_TASK / "bc" / "seed0"
    assert "cut to 10" in read_object(shaped / "run.json")["task_note"]
    assert read_object(shaped / "eval.json")["lengths"] == [10]

    timings = runs.timings
    alone = timings[timings["context"] == "alone"]
    expected = {"eager", "compiled"} | ({"onnx"} if gpu_check.onnx_available(torch.device("cpu")) is None else set())
    # the rehearsal's weights and sampler are not the method's own: its timings carry the settings in their name
    assert set(alone["runtime"]) == expected and set(alone["method"]) == {"bc[steps=3]"}
    speed = read_object(tmp_path / "results" / "speed" / "runtimes" / f"{gpu_check.TOY_TASK}-cpu.json")
    assert speed["gpu_check"]["profile"] == "cpu-rehearsal"
    assert set(speed["results"]) == expected


def test_the_epoch_samplers_permutation_moves_without_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each epoch's permutation (drawn on the CPU) reaches the device through `host_to_device` (pinned and
    non-blocking on CUDA; the draw itself on the CPU), in the same order as before."""
    moved: list[tuple[torch.Tensor, torch.device]] = []
    real = sampler.host_to_device

    def spy(tensor: torch.Tensor, device: torch.device) -> Any:
        moved.append((tensor, device))
        return real(tensor, device)

    monkeypatch.setattr(sampler, "host_to_device", spy)
    tensors = {"x": torch.arange(10.0)}
    draws = EpochSampler(tensors, 4, seed=3)
    rows = torch.cat([next(draws)["x"] for _ in range(5)])  # 2 batches per epoch: 3 epochs
    assert len(moved) == 3 and all(device == torch.device("cpu") for _, device in moved)
    generator = torch.Generator().manual_seed(3)
    expected = torch.cat([torch.randperm(10, generator=generator)[:8] for _ in range(3)])[:20]
    assert torch.equal(rows, expected.float())


def test_the_script_runs_as_a_command() -> None:
    """`python benchmarks/gpu_check.py --help` (no torch work), and without a GPU the GPU run is one line."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--help"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--cpu-rehearsal" in done.stdout
    if not torch.cuda.is_available():
        done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", "unused"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "CUDA" in done.stderr
