"""Runtimes: every registered method's act exported to ONNX or compiled gives the eager act's actions for the same
observations and seed, drawing each act's noise from the agent's own generator; an agent without a pure act is
refused with the reason. That `run` really acts through a runtime is tests/test_runtime_wiring.py's."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from srpo_bench import runtimes
from srpo_bench.cli import app
from srpo_bench.core.agents import Agent, CandidateAgent, PolicyAgent, softmax_draw_selection
from srpo_bench.core.diffusion import DDPMSchedule, ddpm_sample_ancestral
from srpo_bench.core.nn import DeterministicPolicy, mlp
from srpo_bench.core.noise import Noise, draw_all
from srpo_bench.progress import Reporter
from srpo_bench.registry import available_methods, get_method
from srpo_bench.runner import fit_context
from srpo_bench.runtimes import RuntimeUnavailable, build_compiled, check_runtimes, prepare, record_draws, with_runtime
from srpo_bench.tasks import get_task

TOLERANCE = 1e-5


def eager_and(agent: Agent, runtime: str, observations: torch.Tensor, calls: int = 2) -> tuple[torch.Tensor, ...]:
    """`calls` actions in a row from the eager agent and from the runtime, both seeded alike."""
    acting = with_runtime(agent, runtime)
    results = []
    for actor in (agent, acting):
        actor.seed(7)
        with torch.inference_mode():
            results.append(torch.stack([actor.act(observations) for _ in range(calls)]))
    return tuple(results)


@pytest.fixture(scope="module")
def toy_agents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Agent, torch.Tensor]]:
    """Every registered method fitted on the smoke profile of a toy task (a few seconds each)."""
    out = tmp_path_factory.mktemp("runtimes")
    task = get_task("toy-two-moons")
    dataset = task.load()
    observations = torch.as_tensor(dataset.observations[:5], dtype=torch.float32)
    agents = {}
    for name in available_methods():
        config, ctx = fit_context(task, name, dataset, 0, "smoke", out, torch.device("cpu"), Reporter(quiet=True))
        agents[name] = (get_method(name)().fit(ctx, config), observations)
    return agents


# Methods whose act draws noise (candidates, flow or sampler noise); SRPO and BC act with one deterministic pass.
STOCHASTIC = {"diffusion-ql", "idql", "sfbc", "fql"}


@pytest.mark.parametrize("runtime", ["onnx", pytest.param("compiled", marks=pytest.mark.slow)])
@pytest.mark.parametrize("method", available_methods())
def test_runtime_act_matches_eager_for_every_method(toy_agents: dict, method: str, runtime: str) -> None:
    agent, observations = toy_agents[method]
    eager, replayed = eager_and(agent, runtime, observations)
    assert replayed.shape == eager.shape
    assert torch.allclose(replayed, eager, atol=TOLERANCE, rtol=0), float((replayed - eager).abs().max())


@pytest.mark.parametrize("method", available_methods())
def test_the_runtime_draws_each_acts_noise_from_the_agents_generator(toy_agents: dict, method: str) -> None:
    """The replay's noise inputs, call after call, are the draws the eager act takes from the same generator: fresh
    each call (a replay that froze its first draws would give equal buffers) and the same after a reseed."""
    agent, observations = toy_agents[method]
    draws = record_draws(agent, observations)
    assert bool(draws) == (method in STOCHASTIC)
    if not draws:
        return
    acting = with_runtime(agent, "onnx")
    acting.seed(7)
    seen = []
    with torch.inference_mode():
        for _ in range(2):
            acting.act(observations)
            seen.append([buffer.clone() for buffer in acting._replays[len(observations)].buffers])
    agent.seed(7)
    for inputs in seen:
        for given, expected in zip(inputs, draw_all(draws, agent.generator, agent.device), strict=True):
            torch.testing.assert_close(given, expected, rtol=0, atol=0)
    assert not all(torch.equal(first, second) for first, second in zip(*seen, strict=True))


def tiny_candidate_agent() -> CandidateAgent:
    """A 5-step ancestral DDPM sampler, 6 candidates, softmax draw: every kind of draw but uniform."""
    torch.manual_seed(0)
    denoiser = mlp(2 + 1 + 3, (16, 16), 2, activation=torch.nn.Mish).eval()
    critic = mlp(3 + 2, (16,), 1).eval()
    schedule = DDPMSchedule.vp(5)

    def sampler(states: torch.Tensor, noise: Noise) -> torch.Tensor:
        def eps(x: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return denoiser(torch.cat([x, t[:, None], s], dim=-1))

        return ddpm_sample_ancestral(eps, states, schedule.to("cpu"), 2, generator=noise)

    def scorer(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return critic(torch.cat([states, actions], dim=-1)).squeeze(-1)

    return CandidateAgent(sampler, scorer, softmax_draw_selection, 6, 2, {"denoiser": 30, "critic": 6}, "cpu")


@pytest.mark.parametrize("runtime", ["onnx", "compiled"])
@pytest.mark.parametrize("make_agent", [lambda: PolicyAgent(DeterministicPolicy(3, 2, hidden=16)),
                                        tiny_candidate_agent], ids=["policy", "candidates"])
def test_runtime_matches_eager_at_several_batch_sizes(runtime: str, make_agent) -> None:
    agent = make_agent()
    for size in (1, 4):
        observations = torch.randn(size, 3)
        eager, replayed = eager_and(agent, runtime, observations, calls=3)
        assert torch.allclose(replayed, eager, atol=TOLERANCE, rtol=0)


def test_recorded_draws_follow_the_batch() -> None:
    draws = record_draws(tiny_candidate_agent(), torch.zeros(3, 3))
    # x_T and 4 step noises over 3 x 6 candidate rows, then one exponential race per state over 6 candidates
    assert [(d.kind, d.shape) for d in draws] == [("normal", (18, 2))] * 5 + [("exponential", (3, 6))]


class EagerOnly(Agent):
    network_evaluations = {"policy": 1}

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def act(self, observations: torch.Tensor) -> torch.Tensor:
        return observations[:, :1]


def test_an_agent_without_a_pure_act_is_refused_with_the_reason() -> None:
    assert with_runtime(EagerOnly(), "eager").act(torch.ones(2, 3)).shape == (2, 1)
    with pytest.raises(RuntimeUnavailable) as refused:
        with_runtime(EagerOnly(), "onnx")
    assert str(refused.value) == "EagerOnly has no act_with_noise(observations, noise), only an eager act"


@pytest.mark.parametrize("message, reason", [
    ("no graph for this\nat line 2", "no graph for this"),  # the first line only
    ("", ""),
    ("x" * 300, "x" * 200),  # a speed-table cell, not a traceback
], ids=["first-line", "empty", "long"])
def test_a_build_failure_becomes_the_reason(message: str, reason: str) -> None:
    class Unexportable(PolicyAgent):
        def act_with_noise(self, observations: torch.Tensor, noise: Noise) -> torch.Tensor:
            raise TypeError(message)

    with pytest.raises(RuntimeUnavailable) as refused:
        prepare(Unexportable(DeterministicPolicy(3, 2, hidden=8)), "onnx", 3, (1,))
    assert str(refused.value) == f"onnx build failed: TypeError: {reason}"


@pytest.mark.parametrize("runtime", ["onnx", "compiled"])
def test_prepare_builds_every_batch_size_before_the_first_act(runtime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The export or compilation happens in `prepare`, never inside a timed act, and each batch size is built once."""
    built = []
    name = "build_onnx" if runtime == "onnx" else "build_compiled"
    build = getattr(runtimes, name)

    def counted(agent: Agent, observations: torch.Tensor, noise: list[torch.Tensor]):
        built.append(tuple(observations.shape))
        return build(agent, observations, noise)

    monkeypatch.setattr(runtimes, name, counted)
    acting = prepare(PolicyAgent(DeterministicPolicy(3, 2, hidden=8)), runtime, 3, (1, 5))
    assert built == [(1, 3), (5, 3)]
    with torch.inference_mode():
        acting.act(torch.zeros(5, 3))
        acting.act(torch.ones(1, 3))
    assert built == [(1, 3), (5, 3)]


class GraphReplay:
    """What a CUDA graph's replay does to its output: one static buffer, overwritten by the next replay."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module, self.output = module, None

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        result = self.module(*inputs)
        if self.output is None:
            self.output = result.clone()
        self.output.copy_(result)
        return self.output


@pytest.mark.parametrize("device, mode", [("cpu", None), ("cuda", "reduce-overhead")])
def test_compiled_acts_have_static_shapes_and_cuda_graphs_on_a_gpu(device: str, mode: str | None,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.compile gets `dynamic=False` (one graph per batch size, as timed) and, on CUDA, "reduce-overhead"
    (CUDA graphs), whose outputs are copied out before the next replay overwrites them. The agent only claims
    the device: the CUDA path's settings are checked on a CPU machine."""
    options = []

    def compile_as_graph(module: torch.nn.Module, **given: object) -> GraphReplay:
        options.append(given)
        return GraphReplay(module)

    class OnDevice(PolicyAgent):
        @property
        def device(self) -> torch.device:
            return torch.device(device)

    monkeypatch.setattr(torch, "compile", compile_as_graph)
    agent = OnDevice(DeterministicPolicy(3, 2, hidden=8))
    run = build_compiled(agent, torch.zeros(2, 3), [])
    assert options == [{"dynamic": False, "mode": mode}]
    with torch.inference_mode():
        first = run(torch.ones(2, 3))
        kept = first.clone()
        second = run(-torch.ones(2, 3))
    assert not torch.equal(second, kept)
    if device == "cuda":
        assert torch.equal(first, kept)  # copied out of the graph's buffer


@pytest.mark.parametrize("spec, message", [
    ("eager,bogus", "unknown runtime 'bogus' (choices: eager, compiled, onnx)"),
    ("eagr,onxx", "unknown runtime 'eagr,onxx'; did you mean 'eager'? (choices: eager, compiled, onnx)"),
    (" , ", "unknown runtime ' , ' (choices: eager, compiled, onnx)"),  # nothing named
])
def test_runtime_names_are_checked(spec: str, message: str) -> None:
    assert check_runtimes("eager, onnx,eager") == ["eager", "onnx"]
    with pytest.raises(ValueError) as refused:
        check_runtimes(spec)
    assert str(refused.value) == message


def test_speed_with_a_bogus_runtime_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["speed", "--runtime", "bogus", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown runtime 'bogus'" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "speed").exists()


@pytest.mark.parametrize("method", ["srpo", "diffusion-ql"])
def test_evaluation_through_the_onnx_runtime_scores_like_eager(toy_agents: dict, method: str) -> None:
    from srpo_bench.evaluate import evaluate

    agent, _ = toy_agents[method]
    task = get_task("toy-two-moons")
    scores = []
    for acting in (agent, with_runtime(agent, "onnx")):
        acting.seed(0)
        scores.append(evaluate(acting, task, 8).normalized)
    assert scores[0] == pytest.approx(scores[1], abs=1e-3)


def test_speed_prints_each_runtime_side_by_side(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["speed", "--methods", "srpo,bc", "--runtime", "eager,onnx", "--out",
                                      str(tmp_path), "--repeats", "3", "--max-seconds", "0.5", "--threads", "1"])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "speed" / "runtimes" / "toy-two-moons-cpu.json").read_text())
    assert set(written["results"]) == {"eager", "onnx"}
    rows = {(row["runtime"], row["method"]): row for row in written["table"]}
    assert set(rows) == {(rt, m) for rt in ("eager", "onnx") for m in ("srpo", "bc")}
    # SRPO's speedup is taken within a runtime: srpo-onnx over bc-onnx
    onnx = written["results"]["onnx"]
    expected = onnx["srpo"]["batches"]["1"]["actions_per_second"] / onnx["bc"]["batches"]["1"]["actions_per_second"]
    assert rows["onnx", "bc"]["srpo speedup b1"] == pytest.approx(expected)
    assert (tmp_path / "speed" / "toy-two-moons-cpu.json").exists()  # the eager file the report reads

    # a later call for fewer methods replaces their timings and keeps the others' (with their own times)
    again = CliRunner().invoke(app, ["speed", "--methods", "bc", "--runtime", "eager,onnx", "--out", str(tmp_path),
                                     "--repeats", "3", "--max-seconds", "0.5", "--threads", "1"])
    assert again.exit_code == 0, again.output
    merged = json.loads((tmp_path / "speed" / "runtimes" / "toy-two-moons-cpu.json").read_text())["results"]
    assert merged["onnx"]["srpo"] == written["results"]["onnx"]["srpo"] and "created" in merged["onnx"]["srpo"]
    assert merged["onnx"]["bc"] != written["results"]["onnx"]["bc"]  # timed again (repeats differ)
    assert merged["onnx"]["bc"]["created"] >= written["results"]["onnx"]["bc"]["created"]
    eager = json.loads((tmp_path / "speed" / "toy-two-moons-cpu.json").read_text())["results"]
    assert set(eager) == {"srpo", "bc"} and eager["srpo"]["batches"] == written["results"]["eager"]["srpo"]["batches"]


def test_run_evaluates_and_times_through_the_chosen_runtime(tmp_path: Path) -> None:
    """`run --runtime onnx`: the final policy's evaluation and timing go through ONNX Runtime, with the eager
    run's score (same noise, same actions within float tolerance)."""
    from typer.testing import CliRunner

    from srpo_bench.cli import app

    scores = {}
    for runtime in ("eager", "onnx"):
        out = tmp_path / runtime
        result = CliRunner().invoke(app, ["run", "--envs", "toy-two-moons", "--methods", "idql", "--seeds", "0",
                                          "--profile", "smoke", "--device", "cpu", "--quiet", "--out", str(out),
                                          "--runtime", runtime, "--set", "idql.num_candidates=4"])
        assert result.exit_code == 0, result.output
        run_dir = out / "runs" / "smoke" / "toy-two-moons" / "idql" / "seed0"
        assert json.loads((run_dir / "run.json").read_text())["runtime"] == runtime
        assert json.loads((run_dir / "speed.json").read_text())["runtime"] == runtime
        scores[runtime] = json.loads((run_dir / "eval.json").read_text())["normalized"]
    assert scores["onnx"] == pytest.approx(scores["eager"], abs=1e-2)  # 0.01 points: float32 action differences


def test_the_onnx_runtime_exports_a_static_graph_per_batch_size() -> None:
    """Like the compiled runtime (`dynamic=False`), the replayed ONNX model has fixed shapes: a symbolic batch axis
    is the deployment export's (`srpo-bench export`), never what `speed` times."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    agent = PolicyAgent(DeterministicPolicy(3, 2, hidden=8))
    blob = runtimes.onnx_model(agent, torch.zeros(4, 3), [])
    session = ort.InferenceSession(blob)
    assert [value.shape for value in session.get_inputs()] == [[4, 3]]
    assert [value.shape for value in session.get_outputs()] == [[4, 2]]
    # the opset the export promises (ONNX Runtime versions that load it are chosen by it)
    assert [entry.version for entry in onnx.load_from_string(blob).opset_import] == [runtimes.ONNX_OPSET]


def test_modules_of_finds_the_networks_behind_closures_bound_methods_and_cycles() -> None:
    """What `frozen` freezes while an act is traced: every network the agent reaches, once each, whether held in an
    attribute, a list, a dict, a closure (a CandidateAgent's sampler) or a bound method's object, through cycles."""
    held, listed, keyed, closed, bound, unused = (torch.nn.Linear(2, 2) for _ in range(6))

    class Scorer:
        def __init__(self) -> None:
            self.critic, self.itself = bound, self  # a cycle

        def score(self, states: torch.Tensor) -> torch.Tensor:
            return self.critic(states)

    def sample(states: torch.Tensor) -> torch.Tensor:
        return closed(states)

    agent = SimpleNamespace(policy=held, sample=sample, score=Scorer().score, networks=[listed, held],
                            by_name={"critic": keyed}, name="x", steps=3)
    networks = [held, listed, keyed, closed, bound]
    name = {id(net): label for net, label in zip([*networks, unused], ["held", "listed", "keyed", "closed", "bound",
                                                                       "unused"], strict=True)}
    found = runtimes.modules_of(agent)
    assert sorted(name[id(net)] for net in found) == ["bound", "closed", "held", "keyed", "listed"]
    with runtimes.frozen(found):
        assert not any(p.requires_grad for net in networks for p in net.parameters())
    assert all(p.requires_grad for net in [*networks, unused] for p in net.parameters())


def test_a_runtime_agent_keeps_its_agents_pure_act() -> None:
    """A ReplayAgent is still an Agent: given the same noise, its pure act is the wrapped agent's, draw for draw."""
    agent = tiny_candidate_agent()
    observations = torch.randn(3, 3)
    noise = draw_all(record_draws(agent, observations), torch.Generator().manual_seed(1), agent.device)
    acting = with_runtime(agent, "onnx")
    with torch.inference_mode():
        replayed = acting.act_with_noise(observations, Noise.given(noise))
        assert torch.equal(replayed, agent.act_with_noise(observations, Noise.given(noise)))
