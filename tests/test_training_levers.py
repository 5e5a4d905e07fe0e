"""Training levers keep results equal: fused Adam/AdamW gives the default implementation's weights to float
tolerance, a minibatch gathered on access holds the same rows, the oneDNN `Linear` gives the plain layer's
outputs and gradients to float tolerance (and is the plain layer exactly wherever it does not apply), the
sigmoid-form GELU is tanh-GELU to float rounding, the compiled sigmoid-form Mish is torch's `mish` to float rounding
(and only long training stages use it, on every step), a discrete-time denoiser's time path run once per distinct
time is the per-row function to float rounding (its weight gradients included), the fast dropout mask is torch's
bit for bit, the foreach Polyak update is the per-tensor one bit for bit, and whole stages trained with the levers
on and off end at the same weights (so stage keys, which pin the trained result, stay as they are). Also: the step
benchmark keeps each sampler's official step count."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from srpo_bench.core import nn as core_nn
from srpo_bench.core import optim, stages
from srpo_bench.core.levers import SWITCHES, set_training_levers
from srpo_bench.core.nn import GELUTanh, LearnableFourierFeatures, Linear, LNResNet, Mish, NoisePredictor, polyak_update
from srpo_bench.data import sampler
from srpo_bench.data.sampler import EpochSampler
from srpo_bench.progress import Reporter
from srpo_bench.registry import get_method
from srpo_bench.runner import fit_context
from srpo_bench.runtimes import modules_of
from srpo_bench.tasks import get_task


def trained(make_optimizer, fused: bool, steps: int = 200) -> list[torch.Tensor]:
    optim.FUSED = fused
    try:
        torch.manual_seed(0)
        model = LNResNet(6, 3, width=32, blocks=2, dropout=0.0)
        optimizer = make_optimizer(model.parameters())
        assert optimizer.defaults.get("fused") is (True if fused else None)
        data = torch.Generator().manual_seed(1)
        for _ in range(steps):
            x = torch.randn(64, 6, generator=data)
            loss = ((model(x) - x[:, :3].sin()) ** 2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return [p.detach().clone() for p in model.parameters()]
    finally:
        optim.FUSED = True


@pytest.mark.parametrize("make_optimizer", [lambda p: optim.adam(p, lr=3e-4),
                                            lambda p: optim.adamw(p, lr=3e-4, weight_decay=0.01)],
                         ids=["adam", "adamw"])
def test_fused_optimizers_give_the_default_weights(make_optimizer) -> None:
    fused, default = trained(make_optimizer, True), trained(make_optimizer, False)
    assert max(float((a - b).abs().max()) for a, b in zip(fused, default, strict=True)) < 1e-6
    # and training moved the weights far more than that
    torch.manual_seed(0)
    initial = [p.detach() for p in LNResNet(6, 3, width=32, blocks=2, dropout=0.0).parameters()]
    assert max(float((a - b).abs().max()) for a, b in zip(fused, initial, strict=True)) > 1e-2


def test_a_batch_gathers_only_what_is_read_and_the_same_rows() -> None:
    tensors = {"observations": torch.arange(20.0).reshape(10, 2), "actions": torch.arange(10.0)[:, None],
               "rewards": torch.arange(10.0)}
    lazy, eager = EpochSampler(tensors, 4, seed=3), EpochSampler(tensors, 4, seed=3)
    sampler.GATHER_ON_ACCESS = False
    try:
        eager_batches = [dict(next(eager)) for _ in range(7)]  # crosses two reshuffles
    finally:
        sampler.GATHER_ON_ACCESS = True
    for expected in eager_batches:
        batch = next(lazy)
        assert torch.equal(batch["actions"], expected["actions"])
        assert set(batch._gathered) == {"actions"}
        assert all(torch.equal(batch[key], expected[key]) for key in tensors)


onednn = pytest.mark.skipif(core_nn._onednn_linear is None, reason="this torch build has no oneDNN")


def forward_backward(layer: torch.nn.Linear, inputs: torch.Tensor, upstream: torch.Tensor
                     ) -> tuple[torch.Tensor, ...]:
    inputs = inputs.clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    outputs = layer(inputs)
    (outputs * upstream).sum().backward()
    return outputs.detach(), inputs.grad, layer.weight.grad, layer.bias.grad


@onednn
def test_onednn_linear_gives_the_plain_layers_outputs_and_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_nn, "ONEDNN_CPU", True)  # an AMD CPU (the rule's own machine), whatever runs the test
    torch.manual_seed(0)
    layer = Linear(256, 1024)  # IDQL's block width: 512 x 256 x 1024 multiply-adds, oneDNN's side of the rule
    inputs, upstream = torch.randn(512, 256), torch.randn(512, 1024)
    assert core_nn.onednn_pays(512, 256, 1024) and core_nn.onednn_pays(512, 1024, 256)
    outputs = layer(inputs.requires_grad_(True))
    assert type(outputs.grad_fn).__name__ == "_OneDNNLinearBackward"  # the oneDNN path was taken
    inputs = inputs.detach()
    fast = forward_backward(layer, inputs, upstream)
    reference = torch.nn.Linear(256, 1024)
    reference.load_state_dict(layer.state_dict())
    plain = forward_backward(reference, inputs, upstream)
    for got, expected in zip(fast, plain, strict=True):
        scale = float(expected.abs().max())
        assert float((got - expected).abs().max()) <= 1e-5 * scale
    # and close to the float64 truth
    exact = inputs.double() @ layer.weight.detach().double().T + layer.bias.detach().double()
    assert float((fast[0].double() - exact).abs().max()) < 1e-4


@onednn
def test_onednn_linear_leaves_small_products_tracing_and_other_dtypes_to_the_plain_layer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_nn, "ONEDNN_CPU", True)
    torch.manual_seed(0)
    small, large = Linear(11, 256), Linear(256, 1024)
    cases = [(small, torch.randn(512, 11, requires_grad=True)),  # an 11-d input: a side under 64
             (Linear(256, 256), torch.randn(64, 256, requires_grad=True))]  # 4.2M multiply-adds
    for layer, inputs in cases:
        assert torch.equal(layer(inputs), torch.nn.functional.linear(inputs, layer.weight, layer.bias))
        assert type(layer(inputs).grad_fn).__name__ == "AddmmBackward0"
    inputs = torch.randn(512, 256)
    calls = []
    onednn_linear = core_nn._onednn_linear
    monkeypatch.setattr(core_nn, "_onednn_linear", lambda *args: calls.append(1) or onednn_linear(*args))
    with torch.no_grad():
        plain = torch.nn.functional.linear(inputs, large.weight, large.bias)
        # a training-mode module's grad-free product (a target network, FQL's Euler targets): oneDNN, close
        assert float((large(inputs) - plain).abs().max()) <= 1e-5 * float(plain.abs().max()) and len(calls) == 1
        # an eval-mode module without grad (a large eager act): oneDNN too, close
        assert float((large.eval()(inputs) - plain).abs().max()) <= 1e-5 * float(plain.abs().max())
        assert len(calls) == 2
        # tracing (ONNX and TorchScript export) records the plain linear
        assert "mkldnn" not in str(torch.jit.trace(large, inputs, check_trace=False).graph) and len(calls) == 2
    large.train()
    double = Linear(256, 1024).double()
    assert type(double(inputs.double().requires_grad_(True)).grad_fn).__name__ == "AddmmBackward0"
    core_nn.ONEDNN_LINEAR = False
    try:
        assert type(large(inputs.requires_grad_(True)).grad_fn).__name__ == "AddmmBackward0"
    finally:
        core_nn.ONEDNN_LINEAR = True


@pytest.mark.parametrize(("cpuinfo", "vendor"), [
    ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n", "AuthenticAMD"),
    ("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R)\n", "GenuineIntel"),
    ("processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n", ""),  # ARM: no vendor line
])
def test_the_cpu_vendor_is_read_from_cpuinfo(cpuinfo: str, vendor: str, tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    assert core_nn.cpu_vendor(str(tmp_path / "cpuinfo")) == vendor
    assert core_nn.cpu_vendor(str(tmp_path / "absent")) == ""  # macOS, Windows


def test_only_an_amd_cpu_sends_large_products_to_onednn(monkeypatch: pytest.MonkeyPatch) -> None:
    # measured: oneDNN faster on AMD EPYC, never faster on Intel Xeon (core/nn.py); unmeasured CPUs keep F.linear
    monkeypatch.setattr(core_nn, "ONEDNN_CPU", False)
    layer, inputs = Linear(256, 1024), torch.randn(512, 256, requires_grad=True)
    assert not core_nn.onednn_pays(512, 256, 1024)
    assert type(layer(inputs).grad_fn).__name__ == "AddmmBackward0"
    monkeypatch.setattr(core_nn, "ONEDNN_CPU", True)
    assert core_nn.onednn_pays(512, 256, 1024) == (core_nn._onednn_linear is not None)


def test_a_torch_without_onednn_gets_the_plain_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_nn, "ONEDNN_CPU", True)
    monkeypatch.setattr(core_nn, "_onednn_linear", None)  # a build without mkldnn, or a release without the op
    layer, inputs = Linear(256, 1024), torch.randn(512, 256, requires_grad=True)
    outputs = layer(inputs)
    assert type(outputs.grad_fn).__name__ == "AddmmBackward0"
    assert torch.equal(outputs, torch.nn.functional.linear(inputs, layer.weight, layer.bias))


def test_the_sigmoid_form_gelu_is_tanh_gelu_to_float_rounding_with_and_without_grad() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 512) * 3.0  # both tails and the bend
    upstream = torch.randn(256, 512)
    exact_x = x.double().requires_grad_(True)
    exact = torch.nn.functional.gelu(exact_x, approximate="tanh")
    (exact_grad,) = torch.autograd.grad(exact, exact_x, upstream.double())
    torch_x = x.clone().requires_grad_(True)
    torch_y = torch.nn.functional.gelu(torch_x, approximate="tanh")
    (torch_grad,) = torch.autograd.grad(torch_y, torch_x, upstream)
    gelu = GELUTanh()
    ours_x = x.clone().requires_grad_(True)
    ours_y = gelu(ours_x)
    assert type(ours_y.grad_fn).__name__ == "_GELUTanhBackward"
    (ours_grad,) = torch.autograd.grad(ours_y, ours_x, upstream)
    # within a few float32 roundings of the float64 truth, like torch's own kernel
    exact = exact.detach()
    assert float((ours_y.detach().double() - exact).abs().max()) < 4 * float(
        (torch_y.detach().double() - exact).abs().max()) + 1e-6
    assert float((ours_grad.double() - exact_grad).abs().max()) < 1e-5 * float(exact_grad.abs().max())
    assert float((torch_grad.double() - exact_grad).abs().max()) < 1e-5 * float(exact_grad.abs().max())
    with torch.no_grad():
        assert float((gelu(x).double() - exact).abs().max()) < 1e-5
        assert torch.equal(gelu.eval()(x), torch.nn.functional.gelu(x, approximate="tanh"))  # acting: exact


@pytest.fixture
def fresh_compiled_activations(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled activations' process state as in a new process (nothing compiled, no stage training)."""
    monkeypatch.setattr(core_nn.MISH, "kernels", {})
    monkeypatch.setattr(core_nn.MISH, "failed", False)
    monkeypatch.setattr(core_nn, "_compiled_stage", False)


def test_the_compiled_sigmoid_form_mish_is_torchs_mish_to_float_rounding(fresh_compiled_activations: None,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_nn, "_compiled_stage", True)  # as in a long training stage
    torch.manual_seed(0)
    # the bulk, both tails, around 20 (where the earlier e^x form clamped) and far past it, zeros and huge magnitudes
    edges = torch.tensor([-1e6, -200.0, -88.0, -30.0, -20.0, -5.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 5.0, 19.99, 20.0,
                          20.01, 30.0, 88.0, 200.0, 1e6])
    x = torch.cat([torch.randn(128 * 256) * 4.0, edges]).reshape(-1, 1)  # [32787, 1]: not a round shape
    upstream = torch.randn_like(x)
    exact_x = x.double().requires_grad_(True)
    exact = torch.nn.functional.mish(exact_x)
    (exact_grad,) = torch.autograd.grad(exact, exact_x, upstream.double())
    torch_x = x.clone().requires_grad_(True)
    torch_y = torch.nn.functional.mish(torch_x)
    (torch_grad,) = torch.autograd.grad(torch_y, torch_x, upstream)
    mish = Mish()
    ours_x = x.clone().requires_grad_(True)
    ours_y = mish(ours_x)
    assert type(ours_y.grad_fn).__name__ == "_CompiledActivationFunctionBackward" and ours_y.shape == x.shape
    (ours_grad,) = torch.autograd.grad(ours_y, ours_x, upstream)
    exact = exact.detach()
    scale = exact.abs().clamp(min=1.0)  # relative error for large values, absolute near zero
    assert float(((ours_y.detach().double() - exact) / scale).abs().max()) < 4 * float(
        ((torch_y.detach().double() - exact) / scale).abs().max()) + 1e-6
    grad_scale = exact_grad.abs().clamp(min=1.0)
    assert float(((ours_grad.double() - exact_grad) / grad_scale).abs().max()) < 1e-5
    assert float(((torch_grad.double() - exact_grad) / grad_scale).abs().max()) < 1e-5
    assert torch.isnan(mish(torch.tensor([float("nan")] * 9000))).all()  # NaN stays NaN, as in torch's
    # relative accuracy in the negative tail, where mish(x) ~ x e^x is tiny: t = s (1 + u) / (1 + u^2) has no
    # cancellation (the naive (1 - u^2) / (1 + u^2) loses most digits there: 5e-4 relative at x = -10)
    tail = torch.linspace(-80.0, -1.0, 9000)
    tail_exact = tail.double() * torch.tanh(torch.nn.functional.softplus(tail.double()))
    with torch.no_grad():
        assert float(((mish(tail).double() - tail_exact) / tail_exact.abs()).abs().max()) < 1e-6
        assert float(((mish(x).double() - exact) / scale).abs().max()) < 1e-6  # no grad
        monkeypatch.setattr(core_nn, "_compiled_stage", False)  # acting, outside any stage: torch's own, exactly
        assert torch.equal(mish.eval()(x), torch.nn.functional.mish(x))


def test_only_long_training_stages_use_the_compiled_mish_and_they_use_it_on_every_step(
        fresh_compiled_activations: None) -> None:
    x = torch.randn(64, 256, requires_grad=True)  # 16384 elements
    mish = Mish()
    compiled, eager = "_CompiledActivationFunctionBackward", "MishBackward0"
    assert type(mish(x).grad_fn).__name__ == eager  # outside any stage
    with core_nn.training_stage(core_nn.COMPILE_MIN_STEPS - 1):
        assert type(mish(x).grad_fn).__name__ == eager
    with core_nn.training_stage(core_nn.COMPILE_MIN_STEPS):
        assert [type(mish(x).grad_fn).__name__ for _ in range(3)] == [compiled] * 3
        with core_nn.training_stage(10):  # a short stage nested in a long one: eager, then the long one resumes
            assert type(mish(x).grad_fn).__name__ == eager
        assert type(mish(x).grad_fn).__name__ == compiled
        small = torch.randn(8, 256, requires_grad=True)  # under COMPILED_MIN_ELEMENTS: torch's
        assert type(mish(small).grad_fn).__name__ == eager
        with torch.no_grad():  # a frozen model in eval mode inside the stage (SRPO's behavior model): compiled
            frozen = mish.eval()(x)
        assert torch.allclose(frozen, torch.nn.functional.mish(x), rtol=1e-5, atol=1e-6)
        assert not torch.equal(frozen, torch.nn.functional.mish(x))  # not torch's kernel: within rounding
    with torch.no_grad():  # outside any stage (acting): torch's own, exactly
        assert torch.equal(mish.eval()(x), torch.nn.functional.mish(x))
    assert type(mish.train()(x).grad_fn).__name__ == eager  # after the stage


def test_a_fit_context_stage_sets_the_compiled_activations_by_its_length_and_evaluates_without_them(
        tmp_path: Path, fresh_compiled_activations: None, monkeypatch: pytest.MonkeyPatch) -> None:
    task = get_task("toy-two-moons")
    _, ctx = fit_context(task, "bc", task.load(), 0, "smoke", tmp_path, torch.device("cpu"), Reporter(quiet=True))
    during_evaluations = []

    def fake_evaluate(*args: object, **kwargs: object) -> SimpleNamespace:
        during_evaluations.append(core_nn._compiled_stage)
        return SimpleNamespace(mean_normalized=0.0, normalized=[0.0])

    monkeypatch.setattr(stages, "evaluate", fake_evaluate)
    ctx.evaluation = stages.EvaluationSchedule(points=2, episodes=1)
    agent = SimpleNamespace(seed=lambda seed: None)
    seen = [core_nn._compiled_stage for _ in ctx.steps("long", core_nn.COMPILE_MIN_STEPS, agent=lambda: agent)]
    assert set(seen) == {True} and during_evaluations and set(during_evaluations) == {False}
    assert {core_nn._compiled_stage for _ in ctx.steps("short", 3)} == {False}
    assert core_nn._compiled_stage is False


def test_a_failed_mish_compile_keeps_torchs_mish_with_one_warning(fresh_compiled_activations: None,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def no_compiler(*args: object, **kwargs: object) -> object:
        raise RuntimeError("no C++ compiler found\n(details)")

    monkeypatch.setattr(core_nn, "compile_kernel", no_compiler)
    monkeypatch.setattr(core_nn, "_compiled_stage", True)
    x = torch.randn(64, 256, requires_grad=True)
    expected = r"Mish lever off, the eager form kept: compiling failed \(RuntimeError: no C\+\+ compiler found\)$"
    with pytest.warns(RuntimeWarning, match=expected):
        y = Mish()(x)
    assert type(y.grad_fn).__name__ == "MishBackward0"
    assert torch.equal(y, torch.nn.functional.mish(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the failure is remembered: no second compile, no second warning
        Mish()(x)


def test_a_compile_failing_at_a_later_size_turns_the_lever_off_for_every_size(
        fresh_compiled_activations: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_nn, "_compiled_stage", True)
    first, later = torch.randn(64, 256, requires_grad=True), torch.randn(32, 512 + 1, requires_grad=True)
    assert type(Mish()(first).grad_fn).__name__ == "_CompiledActivationFunctionBackward"

    def no_compiler(*args: object, **kwargs: object) -> object:
        raise RuntimeError("inductor error")

    monkeypatch.setattr(core_nn, "compile_kernel", no_compiler)
    with pytest.warns(RuntimeWarning, match="Mish lever off"):
        assert type(Mish()(later).grad_fn).__name__ == "MishBackward0"
    # the size compiled before the failure is eager now too, as in a process that met the sizes the other way round
    assert type(Mish()(first).grad_fn).__name__ == "MishBackward0"


def test_the_foreach_polyak_update_is_the_per_tensor_lerp_bit_for_bit() -> None:
    torch.manual_seed(0)
    source, target = LNResNet(6, 3, width=32, blocks=2), LNResNet(6, 3, width=32, blocks=2)
    expected = [t.detach().clone().lerp_(s.detach(), 0.005) for t, s in zip(target.parameters(), source.parameters(),
                                                                            strict=True)]
    polyak_update(target, source, 0.005)
    assert all(torch.equal(t, e) for t, e in zip(target.parameters(), expected, strict=True))
    with pytest.raises(ValueError, match="target parameters"):
        polyak_update(LNResNet(6, 3, width=32, blocks=1), source, 0.005)


def idql_denoiser(dropout: float = 0.0) -> NoisePredictor:
    """IDQL's denoiser at small widths: learnable Fourier time features, swish, LN-ResNet."""
    torch.manual_seed(0)
    return NoisePredictor(5, 3, LearnableFourierFeatures(16), 16, cond_dims=(32, 32), width=32, blocks=2,
                          dropout=dropout, activation=torch.nn.SiLU)


def outputs_and_gradients(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], distinct_times: bool
                          ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    core_nn.DISTINCT_TIMES = distinct_times
    try:
        model.zero_grad(set_to_none=True)
        out = model(*inputs)
        (out * torch.linspace(-1.0, 1.0, out.numel()).reshape(out.shape)).sum().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]
    finally:
        core_nn.DISTINCT_TIMES = True


def test_the_time_path_once_per_distinct_time_is_the_per_row_function(monkeypatch: pytest.MonkeyPatch) -> None:
    model = idql_denoiser().train()
    calls = []
    per_time = NoisePredictor._forward_per_distinct_time
    monkeypatch.setattr(NoisePredictor, "_forward_per_distinct_time",
                        lambda self, *args: calls.append(args[1].numel()) or per_time(self, *args))
    data = torch.Generator().manual_seed(1)
    inputs = (torch.randn(64, 3, generator=data), torch.randint(0, 5, (64,), generator=data).float(),
              torch.randn(64, 5, generator=data))
    once, once_grads = outputs_and_gradients(model, inputs, True)
    assert calls == [5]  # the DDPM's 5 times, not 64 rows
    per_row, per_row_grads = outputs_and_gradients(model, inputs, False)
    assert calls == [5]
    assert torch.allclose(once, per_row, rtol=1e-5, atol=1e-6)
    for a, b in zip(once_grads, per_row_grads, strict=True):  # the time path's weights included
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    assert all(float(g.abs().max()) > 0 for g in once_grads)


def test_continuous_times_and_per_row_times_outside_training_keep_the_per_row_time_path(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """(The samplers' calls, one time for every row, take their own path: tests/test_shared_times.py.)"""
    monkeypatch.setattr(NoisePredictor, "_forward_per_distinct_time",
                        lambda *args: pytest.fail("the per-distinct-time path ran"))
    model = idql_denoiser().train()
    data = torch.Generator().manual_seed(2)
    actions, states = torch.randn(64, 3, generator=data), torch.randn(64, 5, generator=data)
    model(actions, torch.rand(64, generator=data), states).sum().backward()  # VP-SDE times: all distinct
    model.eval().requires_grad_(False)
    with torch.no_grad():  # an eval-mode model without gradients, per-row times
        model(actions, torch.full((64,), 3.0), states)


def test_the_fast_dropout_is_torchs_dropout_bit_for_bit() -> None:
    assert core_nn.dropout_draws_match()  # the probe holds on the CPUs this suite runs on (AMD, and torch's default)
    layer = core_nn.Dropout(0.1).train()
    x = torch.randn(256, 64, requires_grad=True)
    results = []
    for fast in (True, False):
        core_nn.FAST_DROPOUT = fast
        try:
            torch.manual_seed(4)
            out = layer(x)
            (grad,) = torch.autograd.grad((out * out).sum(), x)
            results.append((out, grad, torch.get_rng_state()))
        finally:
            core_nn.FAST_DROPOUT = True
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
    assert 0.05 < float((results[0][0] == 0).float().mean()) < 0.15  # it did drop ~10%
    layer.eval()
    assert torch.equal(layer(x), x)


def test_where_the_probe_fails_dropout_is_torchs_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_nn, "_dropout_draws_match", False)
    monkeypatch.setattr(core_nn, "dropout_noise", lambda *args: pytest.fail("the fast mask ran"))
    x = torch.randn(32, 8)
    torch.manual_seed(5)
    out = core_nn.Dropout(0.25).train()(x)
    torch.manual_seed(5)
    assert torch.equal(out, torch.nn.functional.dropout(x, 0.25, training=True))


@pytest.mark.parametrize("method", ["bc", "srpo", "idql", "fql", "diffusion-ql"])
def test_a_whole_stage_trains_to_the_same_weights_with_and_without_the_levers(
        method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_compiled_activations: None) -> None:
    # the toy nets are small: lower oneDNN's and Mish's thresholds so that the levers are exercised on every product
    # and activation they can take, from the first step
    monkeypatch.setattr(core_nn, "ONEDNN_MIN_MULTIPLY_ADDS", 0)
    monkeypatch.setattr(core_nn, "ONEDNN_MIN_SIDE", 1)
    monkeypatch.setattr(core_nn, "ONEDNN_CPU", True)  # on any CPU
    monkeypatch.setattr(core_nn, "COMPILE_MIN_STEPS", 0)
    monkeypatch.setattr(core_nn, "COMPILED_MIN_ELEMENTS", 1)
    task = get_task("toy-two-moons")
    dataset = task.load()
    weights = []
    for levers in (True, False):
        set_training_levers(levers)
        try:
            config, ctx = fit_context(task, method, dataset, 0, "smoke", tmp_path / str(levers), torch.device("cpu"),
                                      Reporter(quiet=True))
            agent = get_method(method)().fit(ctx, config)
        finally:
            set_training_levers(True)
        weights.append([p.detach().clone() for p in trained_modules(agent).parameters()])
    # FQL: Adam (lr 3e-4) on 4 x 512 nets turns the float-rounding differences of near-zero gradient entries into
    # weight differences of ~1e-5 within 20 steps (either lever alone does it: oneDNN 1.6e-5, the sigmoid GELU
    # 9.7e-6, max |w| 0.11), under 1% of what 20 Adam steps at lr 3e-4 can move a weight (6e-3); 5e-5 still catches
    # a real change
    tolerance = 5e-5 if method == "fql" else 1e-5
    assert max(float((a - b).abs().max()) for a, b in zip(*weights, strict=True)) < tolerance


def test_the_lever_switches_name_real_flags_and_turn_them_all() -> None:
    assert all(isinstance(getattr(module, name), bool) for module, name in SWITCHES)  # a typo would set a new name
    try:
        set_training_levers(False)
        assert not any(getattr(module, name) for module, name in SWITCHES)
    finally:
        set_training_levers(True)
    assert all(getattr(module, name) for module, name in SWITCHES)


def trained_modules(agent: object) -> torch.nn.Module:
    """The agent's trained networks: the policy of a one-pass agent, every module a candidate agent holds."""
    if hasattr(agent, "policy"):
        return agent.policy
    return torch.nn.ModuleList(modules_of(agent))


def test_the_step_benchmark_caps_step_counts_but_never_the_samplers_work_per_step() -> None:
    """benchmarks/train_steps.py caps every stage's step count; a sampler's step count (FQL's Euler flow_steps,
    the diffusion steps) sets the work of each step and must keep its official value (it once did not: FQL
    was timed with 40 Euler steps instead of 10)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_steps", Path(__file__).parents[1] / "benchmarks"
                                                  / "train_steps.py")
    assert spec is not None and spec.loader is not None
    train_steps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_steps)
    assert train_steps.step_overrides("fql", 40) == {"steps": "40"}
    assert train_steps.step_overrides("idql", 40) == {"actor_steps": "40", "critic_steps": "40"}
    assert train_steps.step_overrides("srpo", 7) == {"behavior_steps": "7", "critic_steps": "7", "policy_steps": "7"}
    assert "diffusion_steps" not in train_steps.step_overrides("diffusion-ql", 40)
