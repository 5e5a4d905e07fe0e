"""Runtimes: how an agent's act is executed, the same for every method.

    eager     the agent's own `act` (PyTorch eager, today's path)
    compiled  `torch.compile` of the whole act (CUDA graphs on a GPU: mode "reduce-overhead")
    onnx      the whole act exported to ONNX once and replayed in ONNX Runtime with pre-bound input/output buffers

Method-blind: a runtime only needs the Agent contract's pure act, `act_with_noise(observations, noise)`
(`core/agents.py`). Per batch size it records, in one dry run, the random draws the act takes (kind, shape,
dtype: `core/noise.py`), then builds the replay: the act traced with observations and the noise tensors as its
inputs (for the diffusion methods the fixed sampler loop is unrolled over the fixed candidate batch). Each call
then draws the same noise from the agent's own generator (same values and order as the eager act draws them)
and runs the replay, so the three runtimes give the same actions for the same seed, within float tolerance
(tests/test_runtimes.py checks every method). An agent without `act_with_noise` runs eagerly only: the other
runtimes refuse it with the reason (`RuntimeUnavailable`), and `srpo-bench speed` prints that reason.

The ONNX graph is built by the TorchScript-based exporter (`torch.onnx.export(dynamo=False)`): it needs the
`onnx` package but not onnxscript, and exported SRPO's policy in 0.8 s against the dynamo exporter's 2.8 s; both
ran the policy about equally fast in ONNX Runtime (one measurement each, 2026-12-01). The onnx runtime needs
`onnxruntime` and `onnx` (`pip install 'srpo-bench[onnx]'`, part of `[dev]`); on a CUDA device
it needs the CUDA execution provider (`onnxruntime-gpu`), else the runtime is refused rather than silently run on
the CPU.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from srpo_bench import vocabulary
from srpo_bench.core.agents import Agent
from srpo_bench.core.noise import Noise, NoiseDraw, draw_all

RUNTIMES = tuple(vocabulary.RUNTIMES)  # eager, compiled, onnx: the names every help text and table uses
ONNX_OPSET = 17
RECOMPILE_LIMIT = 1024


class RuntimeUnavailable(RuntimeError):
    """This runtime cannot run this agent here; the message says why."""


def check_runtimes(spec: str) -> list[str]:
    """'eager,onnx' -> ['eager', 'onnx']; an unknown name is one ValueError line."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in RUNTIMES]
    if unknown or not names:
        hint = vocabulary.did_you_mean(unknown[0], RUNTIMES) if unknown else ""
        raise ValueError(f"unknown runtime '{','.join(unknown) or spec}'{hint} (choices: {', '.join(RUNTIMES)})")
    return list(dict.fromkeys(names))


def with_runtime(agent: Agent, runtime: str) -> Agent:
    """`agent` acting through `runtime` (the agent itself for eager). Raises RuntimeUnavailable with the reason."""
    check_runtimes(runtime)
    if runtime == "eager":
        return agent
    if not agent.pure:
        raise RuntimeUnavailable(f"{type(agent).__name__} has no act_with_noise(observations, noise), only an "
                                 "eager act")
    if runtime == "onnx":
        onnx_session_options(agent.device)  # refuse now, not at the first act
    return ReplayAgent(agent, runtime)


class PureAct(nn.Module):
    """The agent's act as a module of (observations, *noise): what is traced, exported and compiled."""

    def __init__(self, agent: Agent) -> None:
        super().__init__()
        self.__dict__["agent"] = agent  # not a submodule: the agent is no nn.Module

    def forward(self, observations: torch.Tensor, *noise: torch.Tensor) -> torch.Tensor:
        return self.agent.act_with_noise(observations, Noise.given(noise))


def record_draws(agent: Agent, observations: torch.Tensor) -> list[NoiseDraw]:
    """The random draws one act on `observations` takes, in order (a dry run on a throwaway generator)."""
    noise = Noise.recording(torch.Generator(device=agent.device).manual_seed(0))
    with torch.inference_mode():
        agent.act_with_noise(observations, noise)
    assert noise.record is not None
    return noise.record


@dataclass
class Replay:
    """One batch size's built act: fill `buffers` (the noise inputs), then `run(observations)`."""

    draws: list[NoiseDraw]
    buffers: list[torch.Tensor]
    run: Callable[[torch.Tensor], torch.Tensor]


class ReplayAgent(Agent):
    """An agent whose act is built once per batch size by a runtime and replayed with freshly drawn noise."""

    def __init__(self, agent: Agent, runtime: str) -> None:
        self.agent, self.runtime = agent, runtime
        self.network_evaluations = dict(agent.network_evaluations)
        self._replays: dict[int, Replay] = {}

    @property
    def device(self) -> torch.device:
        return self.agent.device

    @property
    def generator(self) -> torch.Generator:
        return self.agent.generator

    def seed(self, seed: int) -> None:
        self.agent.seed(seed)

    def act(self, observations: torch.Tensor) -> torch.Tensor:
        replay = self._replays.get(observations.shape[0])
        if replay is None:
            replay = self._replays[observations.shape[0]] = self._build(observations)
        if replay.draws:
            generator = self.agent.generator
            for draw, buffer in zip(replay.draws, replay.buffers, strict=True):
                draw.fill(buffer, generator)
        return replay.run(observations)

    def act_with_noise(self, observations: torch.Tensor, noise: Noise) -> torch.Tensor:
        return self.agent.act_with_noise(observations, noise)

    def _build(self, observations: torch.Tensor) -> Replay:
        draws = record_draws(self.agent, observations)
        buffers = draw_all(draws, None, self.device)  # placeholders: refilled from the generator per act
        build = build_compiled if self.runtime == "compiled" else build_onnx
        return Replay(draws, buffers, build(self.agent, observations, buffers))


# --- compiled ---------------------------------------------------------------------------------------
def build_compiled(agent: Agent, observations: torch.Tensor,
                   noise: Sequence[torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """torch.compile of the pure act for this batch size (static shapes); CUDA graphs on a GPU."""
    cuda = agent.device.type == "cuda"
    # Every agent and batch size compiles the same code object (PureAct.forward); past dynamo's recompile limit
    # (8) it would fall back to eager without a word, and the "compiled" timings would be eager ones.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    compiled = torch.compile(PureAct(agent), dynamic=False, mode="reduce-overhead" if cuda else None)
    inputs = list(noise)

    def run(batch: torch.Tensor) -> torch.Tensor:
        actions = compiled(batch, *inputs)
        return actions.clone() if cuda else actions  # CUDA-graph outputs are overwritten by the next replay

    with torch.inference_mode():
        run(observations)  # compile now, not inside the first timed call
    return run


# --- onnx -------------------------------------------------------------------------------------------
def onnx_model(agent: Agent, observations: torch.Tensor, noise: Sequence[torch.Tensor],
               dynamic_batch: bool = False) -> bytes:
    """The act as an ONNX model: inputs `observations` and `noise_0..`, output `actions`. With `dynamic_batch`
    the first axis of every input and of the output is symbolic (the deployment export)."""
    names = ["observations", *(f"noise_{i}" for i in range(len(noise)))]
    axes = {name: {0: f"{name}_rows"} for name in names} | {"actions": {0: "observations_rows"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad(), frozen(modules_of(agent)):
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(PureAct(agent), (observations, *noise), buffer, dynamo=False, input_names=names,
                          output_names=["actions"], opset_version=ONNX_OPSET,
                          dynamic_axes=axes if dynamic_batch else None)
    return buffer.getvalue()


def modules_of(root: object) -> list[nn.Module]:
    """The torch modules an agent reaches: its attributes, and the closures and bound methods of its callables
    (a CandidateAgent's sampler, scorer and selection close over the networks)."""
    found: dict[int, nn.Module] = {}
    seen: set[int] = set()
    stack = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, (str, bytes, int, float, bool, torch.Tensor, type)) or item is None:
            continue
        seen.add(id(item))
        if isinstance(item, nn.Module):
            found[id(item)] = item
            continue
        if isinstance(item, (list, tuple, set)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif callable(item) and hasattr(item, "__self__"):
            stack.append(item.__self__)
        if getattr(item, "__closure__", None):
            stack.extend(cell.cell_contents for cell in item.__closure__ if cell.cell_contents is not None)
        if hasattr(item, "__dict__") and not callable(item) or isinstance(item, Agent):
            stack.extend(vars(item).values())
    return list(found.values())


@contextmanager
def frozen(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Parameters without gradients while the act is traced (a traced constant must not require grad)."""
    parameters = [p for module in modules for p in module.parameters() if p.requires_grad]
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in parameters:
            parameter.requires_grad_(True)


def onnx_session_options(device: torch.device) -> tuple[object, list[str]]:
    """(SessionOptions, providers) for acting on `device`: as many intra-op threads as torch uses."""
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise RuntimeUnavailable("onnxruntime is not installed (pip install 'srpo-bench[onnx]')") from error
    try:
        import onnx  # noqa: F401  (the exporter writes through it)
    except ImportError as error:
        raise RuntimeUnavailable("onnx is not installed (pip install 'srpo-bench[onnx]')") from error
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeUnavailable("onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu)")
        return options, ["CUDAExecutionProvider"]
    if device.type != "cpu":
        raise RuntimeUnavailable(f"the onnx runtime runs on cpu or cuda, not {device.type}")
    return options, ["CPUExecutionProvider"]


def build_onnx(agent: Agent, observations: torch.Tensor,
               noise: Sequence[torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Export once at this batch size, open an ONNX Runtime session and bind every input and the output to
    buffers allocated once: a call copies the observations in, runs, and returns a copy of the actions."""
    import onnxruntime as ort

    options, providers = onnx_session_options(agent.device)
    session = ort.InferenceSession(onnx_model(agent, observations, noise), options, providers=providers)
    with torch.inference_mode():
        example = agent.act_with_noise(observations, Noise.given(list(noise)))
    states = torch.empty_like(observations).contiguous()
    actions = torch.empty(example.shape, dtype=example.dtype, device=example.device)
    binding = session.io_binding()
    for name, tensor in [("observations", states), *((f"noise_{i}", t) for i, t in enumerate(noise))]:
        _bind(binding, name, tensor, output=False)
    _bind(binding, "actions", actions, output=True)
    # the session's own call, without the Python wrapper's checks (measured: ~1 us of a ~9 us batch-1 act)
    run_bound, raw_binding, run_options = session._sess.run_with_iobinding, binding._iobinding, ort.RunOptions()
    if states.device.type == "cpu":  # numpy views of the bound buffers: cheaper copies than torch ops at batch 1
        states_array, actions_array = states.numpy(), actions.numpy()

        def run_cpu(batch: torch.Tensor) -> torch.Tensor:
            np.copyto(states_array, batch.numpy())
            run_bound(raw_binding, run_options)
            return torch.from_numpy(actions_array.copy())

        return run_cpu

    def run(batch: torch.Tensor) -> torch.Tensor:
        states.copy_(batch)
        run_bound(raw_binding, run_options)
        return actions.clone()

    return run


def _bind(binding: object, name: str, tensor: torch.Tensor, output: bool) -> None:
    """Bind `name` to the memory of `tensor` (kept alive by the caller): an OrtValue view of it on the CPU
    (the cheapest binding measured), its device pointer on CUDA."""
    import onnxruntime as ort

    if tensor.device.type == "cpu":
        value = ort.OrtValue.ortvalue_from_numpy(tensor.numpy())
        (binding.bind_ortvalue_output if output else binding.bind_ortvalue_input)(name, value)  # type: ignore[attr-defined]
        return
    bind = binding.bind_output if output else binding.bind_input  # type: ignore[attr-defined]
    bind(name, "cuda", tensor.device.index or 0, np.float32, list(tensor.shape), tensor.data_ptr())


def prepare(agent: Agent, runtime: str, obs_dim: int, batch_sizes: Sequence[int]) -> Agent:
    """`with_runtime`, then build the replay of every batch size now (export or compile before any timing).
    Whatever stops the build (an unsupported operator, a compiler error) becomes a RuntimeUnavailable whose
    first line says what it was."""
    wrapped = with_runtime(agent, runtime)
    if wrapped is agent:
        return agent
    try:
        with torch.inference_mode():
            for size in batch_sizes:
                wrapped.act(torch.zeros(int(size), obs_dim, device=agent.device))
    except RuntimeUnavailable:
        raise
    except Exception as error:  # the reason goes into the speed table instead of a traceback
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise RuntimeUnavailable(f"{runtime} build failed: {type(error).__name__}: {first}") from error
    return wrapped
