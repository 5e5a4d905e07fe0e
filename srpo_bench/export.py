"""`srpo-bench export RUN_DIR`: a finished run's policy as one self-contained file for deployment.

The agent is rebuilt from the run's stored stage artifacts (`<out>/stages/<Definition>-<key>.pt`) through the
method's own `fit`: with every stage cached, `FitContext.fit` only loads, and a missing artifact is an error
before anything is built, so nothing is ever retrained here. The whole act (`act_with_noise`, the same graph the
onnx runtime replays) is exported with a dynamic batch axis:

    onnx         inputs `observations` [batch, obs_dim] and `noise_0..` (the act's random draws, rows = batch x
                 rows_per_state: axis `batch` or `batch_x<rows>`), output `actions` [batch, act_dim]; metadata
                 key `srpo_bench` (JSON): observation and action specs, the noise inputs, network evaluations
                 per action, provenance (method, task, seed, profile, config, stage keys, the run's and the
                 exporter's commits, versions). Runs with
                 onnxruntime and numpy alone: `run_policy.py`, written next to it (`srpo_bench/deploy_example.py`).
    torchscript  the traced act (`torch.jit.load(path)(observations, *noise)`), the same JSON as the extra file
                 `srpo_bench.json`.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from srpo_bench import store
from srpo_bench.atomic import atomic_write, atomic_write_text
from srpo_bench.config import config_dict
from srpo_bench.core.agents import Agent
from srpo_bench.core.noise import NoiseDraw, draw_all
from srpo_bench.progress import Reporter
from srpo_bench.registry import get_method
from srpo_bench.runner import fit_context
from srpo_bench.runtimes import PureAct, frozen, modules_of, onnx_model, record_draws
from srpo_bench.tasks import get_task
from srpo_bench.vocabulary import EXPORT_FORMATS, did_you_mean

FORMATS = tuple(EXPORT_FORMATS)  # onnx, torchscript
EXAMPLE = Path(__file__).with_name("deploy_example.py")


class ExportError(ValueError):
    """A run that cannot be exported (missing, unfinished, stages gone); the message names the file."""


@dataclass
class RebuiltRun:
    agent: Agent
    run: dict[str, Any]
    obs_dim: int
    act_dim: int
    action_low: float
    action_high: float


def rebuild(run_dir: Path, device: torch.device | None = None) -> RebuiltRun:
    """The trained agent of a finished run, loaded from its stage artifacts (never retrained)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir}: no such run folder")
    run = store.load_run(run_dir)
    if run is None:
        raise ExportError(f"{run_dir}: not a run folder (no run.json)")
    if run.get("status") != "finished":
        raise ExportError(f"{run_dir / 'run.json'}: run not finished (status '{run.get('status')}')")
    out = run_dir.parents[4] if len(run_dir.parents) > 4 else run_dir
    if not (out / store.MARKER).exists():
        raise ExportError(f"{run_dir}: not inside a results folder (no {store.MARKER} four levels up)")
    task = get_task(run["task"])
    dataset = task.load()
    method = run["method"]
    config, ctx = fit_context(task, method, dataset, int(run["seed"]), run["profile"], out,
                              device or torch.device("cpu"), Reporter(quiet=True),
                              {method: dict(run.get("overrides") or {})})
    if json.loads(json.dumps(config_dict(config))) != run.get("config"):
        raise ExportError(f"{run_dir / 'run.json'}: the stored config no longer resolves to the same settings "
                          "(another srpo-bench version?)")
    if dict(ctx.keys) != run.get("stage_keys"):
        raise ExportError(f"{run_dir / 'run.json'}: stage keys differ from the rebuilt plan (a stage shared with "
                          "another method's --set overrides, which run.json does not record)")
    for stage in ctx.plan:
        artifact = ctx.stage_dir / f"{stage.definition}-{ctx.keys[stage.name]}.pt"
        if not artifact.exists():
            raise ExportError(f"{artifact}: stage '{stage.name}' artifact missing; export never retrains")
    agent = get_method(method)().fit(ctx, config)
    assert all(entry["origin"] != "trained" for entry in ctx.stage_log), "export must not train"
    return RebuiltRun(agent, run, dataset.obs_dim, dataset.act_dim, float(dataset.action_low),
                      float(dataset.action_high))


def noise_inputs(agent: Agent, obs_dim: int) -> list[dict[str, Any]]:
    """The act's noise inputs: name, kind, shape at batch 1 and rows per state (checked at batch 1 and 3)."""
    one, three = (record_draws(agent, torch.zeros(n, obs_dim, device=agent.device)) for n in (1, 3))
    spec = []
    for index, (a, b) in enumerate(zip(one, three, strict=True)):
        if a.kind != b.kind or a.shape[1:] != b.shape[1:] or b.shape[0] != 3 * a.shape[0]:
            raise ExportError(f"the act's draw {index} does not scale with the batch ({a.shape} at 1, {b.shape} "
                              "at 3): export it at a fixed batch instead")
        spec.append({"name": f"noise_{index}", "kind": a.kind, "shape": list(a.shape), "rows_per_state": a.shape[0]})
    return spec


def metadata(rebuilt: RebuiltRun, noise: list[dict[str, Any]], policy_format: str) -> dict[str, Any]:
    run = rebuilt.run
    return {
        "format_version": 1, "format": policy_format, "method": run["method"], "task": run["task"],
        "seed": run["seed"], "profile": run["profile"],
        "observation": {"name": "observations", "dim": rebuilt.obs_dim, "dtype": "float32"},
        "action": {"name": "actions", "dim": rebuilt.act_dim, "dtype": "float32", "low": rebuilt.action_low,
                   "high": rebuilt.action_high},
        "noise": noise, "network_evaluations": dict(rebuilt.agent.network_evaluations),
        "provenance": {"config": run.get("config"), "overrides": run.get("overrides"),
                       "stage_keys": run.get("stage_keys"), "run_git_commit": run.get("git_commit"),
                       "run_finished": run.get("finished"), "dataset": run.get("dataset"),
                       "exported": store.now(), "exporter_git_commit": store.git_commit(),
                       "versions": store.library_versions()},
    }


def export_run(run_dir: Path, policy_format: str, output: Path | None = None) -> list[Path]:
    """Write the policy file (and, for onnx, `run_policy.py`); returns the paths written."""
    if policy_format not in FORMATS:
        raise ExportError(f"unknown format '{policy_format}'{did_you_mean(policy_format, FORMATS)} (choices: "
                          f"{', '.join(FORMATS)})")
    if policy_format == "onnx":
        try:  # before rebuilding the run: the exporter writes through the onnx package
            import onnx  # noqa: F401
        except ImportError:
            raise ExportError("--format onnx needs the onnx package: pip install 'srpo-bench[onnx]' "
                              "(or --format torchscript)") from None
    rebuilt = rebuild(run_dir)
    agent = rebuilt.agent
    suffix = ".onnx" if policy_format == "onnx" else ".pt"
    path = Path(output) if output is not None else Path(run_dir) / "export" / f"policy{suffix}"
    noise = noise_inputs(agent, rebuilt.obs_dim)
    info = metadata(rebuilt, noise, policy_format)
    example_obs = torch.zeros(2, rebuilt.obs_dim, device=agent.device)
    draws = [NoiseDraw(item["kind"], (2 * item["rows_per_state"], *item["shape"][1:])) for item in noise]
    example_noise = draw_all(draws, torch.Generator(device=agent.device).manual_seed(0), agent.device)
    if policy_format == "onnx":
        blob = onnx_with_metadata(onnx_model(agent, example_obs, example_noise, dynamic_batch=True), info)
        atomic_write(path, lambda temporary: Path(temporary).write_bytes(blob))
        example = path.with_name("run_policy.py")
        atomic_write_text(example, EXAMPLE.read_text(encoding="utf-8"))
        return [path, example]
    with warnings.catch_warnings(), torch.no_grad(), frozen(modules_of(agent)):
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(PureAct(agent), (example_obs, *example_noise), check_trace=False)
        buffer = io.BytesIO()  # torch.jit.save warns that TorchScript is deprecated: the onnx format is the default
        torch.jit.save(traced, buffer, _extra_files={"srpo_bench.json": json.dumps(info, default=str)})
    atomic_write(path, lambda temporary: Path(temporary).write_bytes(buffer.getvalue()))
    return [path]


BATCH_AXIS = "batch"


def axis_names(info: dict[str, Any]) -> dict[str, list[str | int]]:
    """Each input's and the output's dimensions as the exported graph declares them: `batch` for the dynamic axis
    (`batch_x8` for a noise input with 8 rows per state), fixed widths for the rest. The TorchScript exporter's own
    names ("observations_rows", and "Ifactions_dim_1" for an action width it could not infer through a branch)
    say nothing to a user."""
    names: dict[str, list[str | int]] = {
        info["observation"]["name"]: [BATCH_AXIS, int(info["observation"]["dim"])],
        info["action"]["name"]: [BATCH_AXIS, int(info["action"]["dim"])],
    }
    for item in info["noise"]:
        rows = int(item["rows_per_state"])
        names[item["name"]] = [BATCH_AXIS if rows == 1 else f"{BATCH_AXIS}_x{rows}", *map(int, item["shape"][1:])]
    return names


def onnx_with_metadata(model: bytes, info: dict[str, Any]) -> bytes:
    """The model with its axes named (`axis_names`) and `info` as the JSON metadata entry `srpo_bench` (read by
    `session.get_modelmeta()`)."""
    import onnx

    proto = onnx.load_from_string(model)
    wanted = axis_names(info)
    for value in [*proto.graph.input, *proto.graph.output]:
        if value.name not in wanted:
            continue
        dims = value.type.tensor_type.shape.dim
        if len(dims) != len(wanted[value.name]):
            raise ExportError(f"exported '{value.name}' has {len(dims)} axes, expected {len(wanted[value.name])}")
        for dim, name in zip(dims, wanted[value.name], strict=True):
            dim.Clear()
            if isinstance(name, str):
                dim.dim_param = name
            else:
                dim.dim_value = name
    entry = proto.metadata_props.add()
    entry.key, entry.value = "srpo_bench", json.dumps(info, default=str)
    proto.producer_name, proto.doc_string = "srpo-bench", f"{info['method']} policy for {info['task']}"
    return proto.SerializeToString()
