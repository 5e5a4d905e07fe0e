"""`srpo-bench export`: the exported policy loads and acts with onnxruntime and numpy alone (a subprocess that
cannot import torch or srpo_bench) and gives the trained agent's actions for the same observations and noise;
TorchScript likewise; broken inputs are one error line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from srpo_bench import store
from srpo_bench.cli import app
from srpo_bench.config import config_dict
from srpo_bench.core.noise import Noise, NoiseDraw, draw_all
from srpo_bench.progress import Reporter
from srpo_bench.registry import available_methods, get_method
from srpo_bench.runner import fit_context
from srpo_bench.tasks import get_task

TASK = "toy-two-moons"
# Runs the exported example with torch and srpo_bench made unimportable.
NO_TORCH = ("import runpy, sys; sys.modules.update(torch=None, srpo_bench=None); sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")


def finished_run(out: Path, method: str) -> tuple[Path, object]:
    """A run folder as the runner leaves it (run.json finished, stages stored), trained on the smoke profile."""
    store.open_store(out)
    task = get_task(TASK)
    dataset = task.load()
    path = store.run_dir(out, "smoke", TASK, method, 0)
    config, ctx = fit_context(task, method, dataset, 0, "smoke", out, torch.device("cpu"), Reporter(quiet=True),
                              run_id=str(path.relative_to(out)))
    agent = get_method(method)().fit(ctx, config)
    store.atomic_write_json(path / "run.json", {
        "schema_version": store.SCHEMA_VERSION, "status": "finished", "task": TASK, "method": method, "seed": 0,
        "profile": "smoke", "config": config_dict(config), "overrides": {}, "stage_keys": dict(ctx.keys),
        "git_commit": "test"})
    return path, agent


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[Path, object]]]:
    out = tmp_path_factory.mktemp("store")
    return out, {method: finished_run(out, method) for method in available_methods()}


def same_inputs(agent, obs_dim: int, spec: list[dict], batch: int = 3) -> tuple[np.ndarray, list[torch.Tensor]]:
    observations = np.random.default_rng(1).standard_normal((batch, obs_dim)).astype(np.float32)
    draws = [NoiseDraw(item["kind"], (batch * item["rows_per_state"], *item["shape"][1:])) for item in spec]
    return observations, draw_all(draws, torch.Generator().manual_seed(5), torch.device("cpu"))


@pytest.mark.parametrize("method", available_methods())
def test_onnx_export_acts_without_torch_and_matches_the_agent(runs, method: str, tmp_path: Path) -> None:
    _, by_method = runs
    run_dir, agent = by_method[method]
    result = CliRunner().invoke(app, ["export", str(run_dir), "--format", "onnx", "--output",
                                      str(tmp_path / "policy.onnx")])
    assert result.exit_code == 0, result.output
    import onnxruntime as ort

    spec = json.loads(ort.InferenceSession(str(tmp_path / "policy.onnx")).get_modelmeta()
                      .custom_metadata_map["srpo_bench"])
    assert spec["method"] == method and spec["task"] == TASK and spec["observation"]["dim"] == 2
    assert spec["action"]["dim"] == 2 and spec["provenance"]["stage_keys"] == json.loads(
        (run_dir / "run.json").read_text())["stage_keys"]
    observations, noise = same_inputs(agent, 2, spec["noise"])
    np.save(tmp_path / "obs.npy", observations)
    np.savez(tmp_path / "noise.npz", **{item["name"]: t.numpy() for item, t in zip(spec["noise"], noise, strict=True)})
    completed = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(tmp_path / "run_policy.py"), str(tmp_path / "policy.onnx"),
         str(tmp_path / "obs.npy"), str(tmp_path / "noise.npz"), str(tmp_path / "actions.npy")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert completed.returncode == 0, completed.stderr
    with torch.inference_mode():
        expected = agent.act_with_noise(torch.from_numpy(observations), Noise.given(noise)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "actions.npy"), expected, atol=1e-5, rtol=0)


def test_the_example_draws_its_own_noise(runs, tmp_path: Path) -> None:
    _, by_method = runs
    run_dir, _ = by_method["sfbc"]
    assert CliRunner().invoke(app, ["export", str(run_dir), "--output", str(tmp_path / "p.onnx")]).exit_code == 0
    completed = subprocess.run([sys.executable, "-c", NO_TORCH, str(tmp_path / "run_policy.py"),
                                str(tmp_path / "p.onnx")], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "sfbc on toy-two-moons (seed 0): 1 action(s) of dim 2" in completed.stdout


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
@pytest.mark.parametrize("method", ["srpo", "idql"])
def test_torchscript_export_matches_the_agent(runs, method: str, tmp_path: Path) -> None:
    _, by_method = runs
    run_dir, agent = by_method[method]
    assert CliRunner().invoke(app, ["export", str(run_dir), "--format", "torchscript"]).exit_code == 0
    extra = {"srpo_bench.json": ""}
    module = torch.jit.load(str(run_dir / "export" / "policy.pt"), _extra_files=extra)
    spec = json.loads(extra["srpo_bench.json"])
    observations, noise = same_inputs(agent, 2, spec["noise"], batch=4)
    with torch.inference_mode():
        expected = agent.act_with_noise(torch.from_numpy(observations), Noise.given(noise))
        got = module(torch.from_numpy(observations), *noise)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def one_error_line(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(app, ["export", *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_bad_exports_are_one_line(runs, tmp_path: Path) -> None:
    out, by_method = runs
    one_error_line([str(tmp_path / "nowhere")], "no such run folder")
    one_error_line([str(tmp_path)], "not a run folder (no run.json)")
    run_dir, _ = by_method["bc"]
    one_error_line([str(run_dir), "--format", "tflite"], "unknown format 'tflite' (choices: onnx, torchscript)")
    # an install without the [onnx] extra: one line saying what to install, nothing written (not the exporter's
    # traceback)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
        one_error_line([str(run_dir), "--output", str(tmp_path / "p.onnx")],
                       "--format onnx needs the onnx package: pip install 'srpo-bench[onnx]' (or --format torchscript)")
    assert not (tmp_path / "p.onnx").exists() and not (tmp_path / "run_policy.py").exists()
    # an unfinished run, and a finished run whose stage artifact is gone: refused, nothing retrained
    unfinished = store.run_dir(out, "smoke", TASK, "bc", 1)
    store.atomic_write_json(unfinished / "run.json", {**json.loads((run_dir / "run.json").read_text()),
                                                       "status": "running", "seed": 1})
    one_error_line([str(unfinished)], "run not finished (status 'running')")
    lost = store.run_dir(out, "smoke", TASK, "bc", 2)
    record = json.loads((run_dir / "run.json").read_text())
    config, ctx = fit_context(get_task(TASK), "bc", get_task(TASK).load(), 2, "smoke", out, torch.device("cpu"),
                              Reporter(quiet=True))
    store.atomic_write_json(lost / "run.json", {**record, "seed": 2, "stage_keys": dict(ctx.keys)})
    one_error_line([str(lost)], "artifact missing; export never retrains")
    assert not list((out / "stages").glob(f"*{ctx.keys['policy']}*"))
