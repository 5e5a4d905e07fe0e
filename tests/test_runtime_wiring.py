"""`run --runtime onnx|compiled` acts through the runtime, not around it: every act of the final evaluation and of the
timing is a run of the ONNX Runtime session or a call of the compiled graph, and what that graph returns is what
the evaluation scores. The onnx runtime is refused on a CUDA device without ONNX Runtime's CUDA provider.

How: the traced act (`runtimes.PureAct`) is patched to return a fixed marker action whatever the policy says, so a
run whose scores are the marker's rewards acted through the built graph; ONNX Runtime's session is wrapped to count
its runs, and `torch.compile` is replaced by a counting stand-in (the real compiler's agreement with eager, for
every method, is tests/test_runtimes.py's). A runtime replaced by a no-op (the agent acting eagerly) gives the
policy's own actions and no calls, and fails both checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from srpo_bench import runner, runtimes
from srpo_bench.cli import app
from srpo_bench.core.agents import PolicyAgent
from srpo_bench.core.nn import DeterministicPolicy
from srpo_bench.core.noise import Noise
from srpo_bench.data.toy import ToyBanditEnv, reward
from srpo_bench.evaluate import OFFICIAL_EVAL_SEED_BASE
from srpo_bench.runtimes import ReplayAgent, RuntimeUnavailable, onnx_session_options, with_runtime

MARKER = (0.25, -0.5)  # inside the toy action box [-1, 1]^2, far from what a trained policy picks everywhere
TASK = "toy-two-moons"


def marker_forward(self: runtimes.PureAct, observations: torch.Tensor, *noise: torch.Tensor) -> torch.Tensor:
    """The traced act, returning MARKER for every row (the policy's output still flows in, times zero, so the graph
    keeps its inputs)."""
    actions = self.agent.act_with_noise(observations, Noise.given(noise))
    return actions * 0.0 + torch.tensor(MARKER, dtype=actions.dtype, device=actions.device)


def marker_returns(episodes: int) -> list[float]:
    """The toy rewards of MARKER in the evaluation's episodes (env i reset with seed 1001 + i)."""
    returns = []
    for i in range(episodes):
        context, _ = ToyBanditEnv(TASK).reset(seed=OFFICIAL_EVAL_SEED_BASE + i)
        returns.append(float(reward(context, np.asarray(MARKER))))
    return returns


class CountingCore:
    """ONNX Runtime's C session, counting the bound runs `build_onnx` makes."""

    def __init__(self, core: object, calls: list[str]) -> None:
        self.core, self.calls = core, calls

    def run_with_iobinding(self, binding: object, options: object) -> object:
        self.calls.append("onnx")
        return self.core.run_with_iobinding(binding, options)  # type: ignore[attr-defined]


def counting_session(calls: list[str]) -> type:
    import onnxruntime as ort

    real = ort.InferenceSession

    class CountingSession:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.session = real(*args, **kwargs)
            self._sess = CountingCore(self.session._sess, calls)

        def io_binding(self) -> object:
            return self.session.io_binding()

    return CountingSession


def run_bc(out: Path, runtime: str) -> tuple[dict, dict]:
    """A smoke run of BC on the toy task with `runtime`: (eval.json, speed.json)."""
    result = CliRunner().invoke(app, ["run", "--envs", TASK, "--methods", "bc", "--seeds", "0", "--profile", "smoke",
                                      "--device", "cpu", "--quiet", "--out", str(out), "--runtime", runtime],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    folder = out / "runs" / "smoke" / TASK / "bc" / "seed0"
    assert json.loads((folder / "run.json").read_text())["runtime"] == runtime
    return json.loads((folder / "eval.json").read_text()), json.loads((folder / "speed.json").read_text())


def acts_timed(speed: dict) -> int:
    """Act calls the timing made: warm-up and timed calls, per batch size."""
    return sum(batch["warmup_calls"] + batch["calls_timed"] for batch in speed["batches"].values())


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnx", "compiled"])
def test_run_acts_through_the_runtime(runtime: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(runner, "_SPEED_CACHE", {})  # time afresh (the cache is per process)
    eager, _ = run_bc(tmp_path / "eager", "eager")
    calls: list[str] = []
    monkeypatch.setattr(runtimes.PureAct, "forward", marker_forward)
    if runtime == "onnx":
        import onnxruntime as ort

        monkeypatch.setattr(ort, "InferenceSession", counting_session(calls))
    else:
        def compile_counting(module: torch.nn.Module, **options: object):  # noqa: ANN202 - the "compiled" callable
            def graph(*inputs: torch.Tensor) -> torch.Tensor:
                calls.append("compiled")
                return module(*inputs)

            return graph

        monkeypatch.setattr(torch, "compile", compile_counting)
    evaluation, speed = run_bc(tmp_path / runtime, runtime)

    expected = marker_returns(evaluation["episodes"])
    assert not np.allclose(eager["returns"], expected)  # the policy's own actions score otherwise
    np.testing.assert_allclose(evaluation["returns"], expected, rtol=0, atol=1e-5)
    # one call per act: the evaluation's (one batch: every toy episode is one step), the timing's, and for the
    # compiled graph the call that compiles it at each batch size (evaluation batch, 1 and 256)
    built = 1 + len(speed["batches"]) if runtime == "compiled" else 0
    assert len(calls) == 1 + acts_timed(speed) + built
    assert speed["runtime"] == runtime


class CudaPolicy(PolicyAgent):
    """A policy that says it lives on a CUDA device (nothing is run: the refusal comes before any build)."""

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", 0)


@pytest.mark.parametrize("providers", [["CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]])
def test_onnx_on_cuda_needs_the_cuda_provider(providers: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    ort = pytest.importorskip("onnxruntime")
    monkeypatch.setattr(ort, "get_available_providers", lambda: providers)
    agent = CudaPolicy(DeterministicPolicy(3, 2, hidden=8))
    if "CUDAExecutionProvider" not in providers:
        with pytest.raises(RuntimeUnavailable) as refused:
            with_runtime(agent, "onnx")
        assert str(refused.value) == "onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu)"
        return
    assert isinstance(with_runtime(agent, "onnx"), ReplayAgent)
    _, chosen = onnx_session_options(torch.device("cuda", 0))
    assert chosen == ["CUDAExecutionProvider"]  # never a silent fallback to the CPU provider
    assert onnx_session_options(torch.device("cpu"))[1] == ["CPUExecutionProvider"]


def test_the_onnx_session_uses_torchs_thread_count_and_the_chosen_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same optimizations for every runtime: ONNX Runtime gets as many intra-op threads as torch (its default is
    every core, which would time onnx on more cores than eager), one inter-op thread, every graph optimization."""
    ort = pytest.importorskip("onnxruntime")
    opened = []
    real_session = ort.InferenceSession

    def recorded(model: bytes, options: object = None, providers: object = None) -> object:
        opened.append((options, providers))
        return real_session(model, options, providers=providers)

    monkeypatch.setattr(ort, "InferenceSession", recorded)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        agent = with_runtime(PolicyAgent(DeterministicPolicy(3, 2, hidden=8)), "onnx")
        with torch.inference_mode():
            agent.act(torch.zeros(4, 3))
    finally:
        torch.set_num_threads(threads)
    ((options, providers),) = opened
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize("missing", ["onnxruntime", "onnx"])
def test_onnx_without_its_packages_is_refused_with_the_install_line(missing: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` raises ImportError
    with pytest.raises(RuntimeUnavailable) as refused:
        onnx_session_options(torch.device("cpu"))
    assert str(refused.value) == f"{missing} is not installed (pip install 'srpo-bench[onnx]')"


def test_onnx_runs_on_cpu_or_cuda_only() -> None:
    pytest.importorskip("onnxruntime")
    with pytest.raises(RuntimeUnavailable) as refused:
        onnx_session_options(torch.device("meta"))
    assert str(refused.value) == "the onnx runtime runs on cpu or cuda, not meta"
