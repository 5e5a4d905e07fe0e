"""Networks shared by the methods: MLPs, time embeddings, the LN-ResNet denoiser, the tanh policy.

Sizes default to the official codes' ones; every method passes its own.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# --- Linear: oneDNN for the large matrix products on AMD CPUs ----------------------------------------------
# torch's CPU `addmm`/`mm` call MKL. On an AMD EPYC (Zen 4), oneDNN (in the same torch wheel) runs the large products
# faster (IDQL's 512 x 256 x 1024: 1.13-1.22x for the forward product and the input gradient, alone) and adds the
# bias in the product instead of a separate pass; below ~33M multiply-adds, or with a side under 64, its per-call
# cost (~20 us) loses instead (docs/timing.md). So `Linear` sends its forward product and the gradient of
# its input through oneDNN when the product is large; the weight gradient stays on MKL, which was as fast or faster
# for every shape measured (oneDNN wants a contiguous transposed copy there). Results equal the plain layer's to
# float tolerance (tests/test_training_levers.py). Eager acting takes the same rule: a batch-1 act's products are
# small and stay on MKL, while a large act (IDQL at 256 states: 16,384 candidate rows through 256 x 1024 products)
# runs 1.22-1.25x faster there (2026-12-02, 3 alternated rounds). Tracing, export and compiled acts see `F.linear`
# (`eager_cpu_float32`).
# On an Intel Xeon (AVX-512, 2026-12-02) MKL runs its own tuned kernels and oneDNN never won: IDQL's critic step
# 0.93x with it (6 of 6 rounds slower), its actor step 0.99x, its eager act at 256 states 0.93x, every other stage
# and act 0.95-1.04x (`benchmarks/train_steps.py --off ONEDNN_LINEAR`, `benchmarks/runtime_rounds.py --off
# ONEDNN_LINEAR`). So the rule applies where it was measured to pay, on AMD CPUs (`ONEDNN_CPU`); elsewhere (Intel,
# ARM, a CPU whose vendor cannot be read) every product is `F.linear`.
ONEDNN_LINEAR = True  # the lever; off: `benchmarks/train_steps.py`'s "before", `runtime_rounds.py --off ONEDNN_LINEAR`
ONEDNN_MIN_MULTIPLY_ADDS = 1 << 25  # rows x inner x outer below this: MKL (256 x 256 x 256, 16.7M: a wash, 1.02x)
ONEDNN_MIN_SIDE = 64  # inner or outer width below this: MKL (e.g. a 256 -> 3 output layer, an 11-d input)
_onednn_linear = (getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available()
                  else None)


def cpu_vendor(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's vendor as the kernel reports it (GenuineIntel, AuthenticAMD); '' where it cannot be read (no
    /proc/cpuinfo: macOS, Windows; no vendor line: ARM)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == "vendor_id":
                    return value.strip()
    except OSError:
        pass
    return ""


ONEDNN_CPU = cpu_vendor() == "AuthenticAMD"  # a CPU where oneDNN's large products were measured faster (above)


def eager_cpu_float32(x: torch.Tensor) -> bool:
    """A float32 CPU tensor outside tracing, scripting and compiling: where the CPU training levers apply."""
    return (x.device.type == "cpu" and x.dtype == torch.float32
            and not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()))


def needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd records a call on these tensors (inputs and weights): grad mode on and one requires grad."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def onednn_pays(rows: int, inner: int, outer: int) -> bool:
    """Whether a [rows, inner] x [inner, outer] product goes to oneDNN (see the measurements above)."""
    return (ONEDNN_LINEAR and ONEDNN_CPU and _onednn_linear is not None and inner >= ONEDNN_MIN_SIDE
            and outer >= ONEDNN_MIN_SIDE and rows * inner * outer >= ONEDNN_MIN_MULTIPLY_ADDS)


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b: the forward product and dL/dx in oneDNN, dL/dW = g^T x in MKL, dL/db = sum_rows g."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, inputs: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(inputs, weight)
        ctx.has_bias = bias is not None
        return _onednn_linear(inputs, weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        inputs, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_inputs = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            # [rows, out] x [out, in]: the forward's rows x in x out multiply-adds and sides, so oneDNN pays here
            # exactly when it did forward (`onednn_pays` is symmetric in inner and outer)
            grad_inputs = _onednn_linear(grad, weight.t(), None, "none", [], "")
        if ctx.needs_input_grad[1]:
            grad_weight = grad.t().mm(inputs)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0)
        return grad_inputs, grad_weight, grad_bias


class Linear(nn.Linear):
    """`nn.Linear` (same parameters, state-dict keys and initialisation) whose large products run in oneDNN on AMD
    CPUs (eager float32, training and acting alike). Everything else (other CPUs, GPU, other dtypes, small products,
    tracing, export, compiling) is `F.linear` exactly."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # the flags and sizes first: they decide most calls (every call off AMD, batch-1 acts) with a few integer
        # tests; `eager_cpu_float32`'s tracing/compiling queries first cost ~2 us a call (a batch-1 256 x 256 eval
        # Linear: 10.4 -> 8.5 us, Intel Xeon, one core, 2026-12-02)
        if (inputs.dim() == 2 and onednn_pays(inputs.shape[0], self.in_features, self.out_features)
                and self.weight.dtype == torch.float32 and eager_cpu_float32(inputs)):
            if needs_grad(inputs, self.weight):
                return _OneDNNLinear.apply(inputs.contiguous(), self.weight, self.bias)
            return _onednn_linear(inputs.contiguous(), self.weight, self.bias, "none", [], "")
        return F.linear(inputs, self.weight, self.bias)


# --- compiled elementwise activations (Mish) -------------------------------------------------------------------
# An activation written as a few torch ops costs one pass over memory per op in eager mode; inductor (torch's
# compiler) fuses each direction into one loop. Worth it where the activation is expensive (Mish below: 1.12x
# Diffusion-QL's whole step through `torch.compile`, 1.21x again called without Dynamo, see below; 1.16x SRPO's
# behavior step; alternated chunk by chunk in one run), not for cheap ones called often on small tensors (GELU).
# Compiling costs seconds per process, so only a training stage of at least COMPILE_MIN_STEPS steps uses the
# compiled kernels, and then on every one of its steps: `FitContext.steps` tells this module each stage's length
# (`training_stage`). The choice is a function of the stage's declaration alone, so a stage trains the same whether
# it runs alone, after other runs in the same process, or again after a crash (stages resume from their start).
# Short stages (tests, smoke and toy profiles) keep the eager form and never pay for a compile they cannot earn
# back. Where compiling fails (no C++ compiler, an inductor error) the process keeps the eager form, with one
# warning. CPU float32 only, like the other levers. Inside a long stage the module's mode does not matter (SRPO's
# policy stage queries the frozen behavior model in eval mode, and that is training work); evaluations during
# training (`FitContext` turns the lever off around them) and all acting outside stages (speed, export, compiled
# acts) run torch's own function exactly.
# The kernels work on flat tensors and are compiled per element count (a stage trains at a few fixed sizes: full
# minibatches), traced with `make_fx` and handed to inductor directly: a `torch.compile`d function with dynamic
# shapes spends ~40 us per call in Dynamo's guards and wrappers (83 against 43 us for the [256, 256] Mish forward,
# 97 against 62 backward), and Diffusion-QL makes ~95 such calls a step. A size costs ~1 s to compile with a warm
# inductor cache (~5-20 s cold). There is no cap on the sizes a process compiles: a cap would make a stage's kernels
# (and so its float rounding) depend on what the process trained before.
# e.g. Diffusion-QL's step at its official sizes: ~83 -> 74 ms through `torch.compile`, -> 60 ms without Dynamo, for
# two sizes' compiles (2000 steps save ~45 s); SRPO's toy policy stage (1000 steps of a cheap step) lost ~6 s to
# a compile, so the toy and smoke profiles stay eager
COMPILE_MIN_STEPS = 2000
COMPILED_MIN_ELEMENTS = 8192  # below this a compiled call's dispatch loses to the eager form (measured)
_compiled_stage = False  # whether the stage now training is long enough for the compiled kernels
Kernel = Callable[..., torch.Tensor]


@contextlib.contextmanager
def training_stage(total_steps: int) -> Iterator[None]:
    """While a training stage of `total_steps` steps runs: whether it uses the compiled activations (restored after,
    so a stage nested in another leaves the outer one's choice as it was; `training_stage(0)`: off, as around an
    evaluation)."""
    global _compiled_stage
    outer, _compiled_stage = _compiled_stage, total_steps >= COMPILE_MIN_STEPS
    try:
        yield
    finally:
        _compiled_stage = outer


def compile_kernel(function: Kernel, *examples: torch.Tensor) -> Kernel:
    """`function` compiled by inductor for inputs shaped like `examples` (flat float32 CPU tensors), without
    Dynamo: traced once by `make_fx`, called with tensors of exactly those shapes, without grad."""
    from torch._inductor import compile as inductor_compile
    from torch.fx.experimental.proxy_tensor import make_fx

    return inductor_compile(make_fx(function)(*examples), list(examples))


class CompiledActivation:
    """y = forward(x), dx = backward(x, dy) for one elementwise activation, compiled per element count on demand."""

    def __init__(self, name: str, forward: Kernel, backward: Kernel, reference: Kernel) -> None:
        self.name, self.forward, self.backward, self.reference = name, forward, backward, reference
        self.kernels: dict[int, tuple[Kernel, Kernel]] = {}  # element count -> (forward, backward)
        self.failed = False

    def applies(self, enabled: bool, x: torch.Tensor) -> bool:
        """Whether this call runs the compiled kernels (compiling them for its size on the first such call): the
        lever's flag, a long training stage, a large enough CPU float32 tensor outside tracing and compiling."""
        return (enabled and _compiled_stage and x.numel() >= COMPILED_MIN_ELEMENTS and eager_cpu_float32(x)
                and self.compile(x.numel()) is not None)

    def compile(self, size: int) -> tuple[Kernel, Kernel] | None:
        """The kernels for flat tensors of `size` elements, compiled and checked against the reference on the
        first request (None once compiling failed in this process, for any size)."""
        if size not in self.kernels and not self.failed:
            try:
                probe, upstream = torch.linspace(-30.0, 30.0, size), torch.ones(size)  # two tensors: no aliasing
                with torch.enable_grad():
                    probe_grad = probe.clone().requires_grad_(True)
                    (expected_grad,) = torch.autograd.grad(self.reference(probe_grad), probe_grad, upstream)
                with torch.no_grad():  # always called without grad (the autograd Function below holds the graph)
                    forward = compile_kernel(self.forward, probe)
                    backward = compile_kernel(self.backward, probe, upstream)
                    if not (torch.allclose(forward(probe), self.reference(probe), rtol=1e-5, atol=1e-6)
                            and torch.allclose(backward(probe, upstream), expected_grad, rtol=1e-4, atol=1e-5)):
                        raise RuntimeError(f"the compiled kernels disagree with {self.reference.__name__}")
                self.kernels[size] = (forward, backward)
            except Exception as exc:  # noqa: BLE001 - any compile failure means: keep the eager form
                # for every size from now on, those compiled before included: which sizes run compiled must not
                # depend on the order in which the process met them
                self.failed = True
                self.kernels.clear()
                detail = str(exc).splitlines()[0] if str(exc) else ""
                warnings.warn(f"{self.name} lever off, the eager form kept: compiling failed "
                              f"({type(exc).__name__}: {detail})", RuntimeWarning, stacklevel=4)
        return self.kernels.get(size)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The activation through the compiled kernels (call only where `applies` said so)."""
        if needs_grad(x):
            return _CompiledActivationFunction.apply(x, self)
        with torch.no_grad():
            return self.kernels[x.numel()][0](x.detach().reshape(-1)).view(x.shape)


class _CompiledActivationFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor,
                activation: CompiledActivation) -> torch.Tensor:
        flat = x.detach().reshape(-1)
        forward, ctx.backward_kernel = activation.kernels[flat.numel()]
        ctx.save_for_backward(flat)
        ctx.shape = x.shape
        return forward(flat).view(x.shape)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (flat,) = ctx.saved_tensors
        return ctx.backward_kernel(flat, grad.reshape(-1)).view(ctx.shape), None


# --- GELU (tanh approximation) without tanh ------------------------------------------------------------------
# 0.5 x (1 + tanh(u)) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): the same function (flax's default
# `nn.gelu`, FQL's MLPs), written with sigmoid because torch's vectorised tanh is slow on this CPU (2.6 ns per
# element against sigmoid's 0.5; torch's tanh-GELU costs ~0.3 ms per 256 x 512 call, FQL makes 76 such calls a
# step). Within float rounding of `F.gelu(approximate="tanh")` (tests/test_training_levers.py). Eager: compiled
# through `torch.compile` (one loop per direction) it ran 1.2x faster alone at 256 x 512 but made FQL's whole step
# ~5% slower (its ~20 us per-call dispatch, 76 calls a step; alternated chunk by chunk in one run, 2026-12-02); the
# Dynamo-free kernels the Mish lever now uses were not tried for it.
FAST_GELU = True  # the lever; `benchmarks/train_steps.py` switches it off for its "before" timings
GELU_K = 2.0 * math.sqrt(2.0 / math.pi)
GELU_C = 0.044715


def _gelu_gate(x: torch.Tensor) -> torch.Tensor:
    """sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)), in place on one new tensor."""
    return (x * x).mul_(GELU_C).add_(1.0).mul_(x).mul_(GELU_K).sigmoid_()


class _GELUTanh(torch.autograd.Function):
    """y = x s, s the gate; dy/dx = s (1 + x (1 - s) K (1 + 3 C x^2)) from the saved x and s."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        gate = _gelu_gate(x)
        ctx.save_for_backward(x, gate)
        return x * gate

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        x, gate = ctx.saved_tensors
        slope = (x * x).mul_(3.0 * GELU_C).add_(1.0).mul_(GELU_K).mul_(x)  # x K (1 + 3 C x^2)
        slope.addcmul_(slope, gate, value=-1.0)  # times (1 - s)
        return slope.add_(1.0).mul_(gate).mul_(grad)


class GELUTanh(nn.Module):
    """`nn.GELU(approximate="tanh")` computed through sigmoid in training mode on CPU float32 (lever flag
    `FAST_GELU`); eval mode (acting, export) and anything else is `F.gelu(approximate="tanh")` exactly, so acting
    timings are unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if FAST_GELU and self.training and eager_cpu_float32(x):
            if needs_grad(x):
                return _GELUTanh.apply(x)
            return _gelu_gate(x).mul_(x)
        return F.gelu(x, approximate="tanh")


# --- Mish through one sigmoid -------------------------------------------------------------------------------------
# torch's `mish` computes exp, log1p and tanh per element: ~5.4 ns per element on the AMD EPYC (silu: 1.1), 29.6 ms
# forward + backward on one [2048, 1024] activation of SRPO's behavior model, ~20% of its training step. With
# s = sigmoid(x) and u = 1 - s = sigmoid(-x), 1 + e^x = 1 / u, so
#     tanh(softplus(x)) = ((1 + e^x)^2 - 1) / ((1 + e^x)^2 + 1) = (1 - u^2) / (1 + u^2) = s (1 + u) / (1 + u^2)
# (1 - u^2 = (1 - u)(1 + u) = s (1 + u): no cancellation where s is tiny), and with du/dx = -s u,
#     mish(x) = x t,  t = s (1 + u) / (1 + u^2);     mish'(x) = t + 4 x s u^2 / (1 + u^2)^2
# one sigmoid (one exp) and a few multiply-adds, finite for every finite x (the sigmoid saturates to 0 or 1 instead
# of overflowing), within float32 rounding of the exact function everywhere (relative error <= 2.5e-7 over
# [-87, 87], as torch's own `mish`). Eager torch would make ~8 passes over memory for that, slower than `mish` at
# large shapes, so the eager form is torch's `mish` and long stages compile this form: on the AMD EPYC the
# compiled kernels (then through e^x at min(x, 20)) took [2048, 1024] forward + backward 29.6 -> 3.9 ms and
# [256, 256] 0.81 -> 0.22 ms; on the Intel Xeon inductor's e^x kernel with that clamp ran 3.2x slower than without
# it (87 against 27 us forward at [256, 256]; the generated C++ differs only by the `minimum`), and this sigmoid
# form needs no clamp (2026-12-02, one core; see docs/timing.md). Results are torch's to float rounding
# (tests/test_training_levers.py).
FAST_MISH = True  # the lever; `benchmarks/train_steps.py` switches it off for its "before" timings


def _mish_forward(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    u = 1.0 - s
    return x * (s * (1.0 + u) / (1.0 + u * u))


def _mish_backward(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    u = 1.0 - s
    r = 1.0 / (1.0 + u * u)
    return grad * (s * (1.0 + u) * r + 4.0 * x * s * (u * u) * (r * r))


MISH = CompiledActivation("Mish", _mish_forward, _mish_backward, F.mish)


class Mish(nn.Mish):
    """`nn.Mish` whose calls in long training stages on CPU float32 run the compiled sigmoid-form kernels (lever
    `FAST_MISH`); everywhere else (short stages, evaluations, acting) `F.mish` exactly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return MISH(x) if MISH.applies(FAST_MISH, x) else F.mish(x)


# --- dropout's mask: torch's own draws, in a tighter loop -------------------------------------------------------
# torch's CPU dropout (`F.dropout` in training) draws its mask with `bernoulli_(1 - p)`: per element one double
# uniform from the generator's mt19937 (`random64`: two 32-bit draws), u = (bits & (2^53 - 1)) 2^-53, kept where
# u < 1 - p, then `div_(1 - p)` and a product with the input. On this AMD CPU that draw is a serial per-element
# loop costing ~1.0-1.2 ms per [512, 256] mask (IDQL's actor makes 3 a step, SRPO's behavior model 3 four times
# that size). An int64 `random_()` makes the same `random64` draw per element in a tighter loop, and
# u < 1 - p  <=>  (bits & (2^53 - 1)) < ceil((1 - p) 2^53) exactly (an integer against a power-of-two scaling), so
# the mask, the generator's state after it, and therefore every result are torch's bit for bit, ~0.3 ms sooner per
# call. torch draws the mask differently elsewhere (on Intel CPUs through MKL's VSL streams), so the first use
# checks on a probe that this reproduces torch's mask and generator state exactly, and keeps torch's dropout where
# it does not. CPU float32 in training mode only, like the other levers.
FAST_DROPOUT = True  # the lever; `benchmarks/train_steps.py` switches it off for its "before" timings
DOUBLE_MANTISSA = (1 << 53) - 1  # the bits of a random64 draw that make torch's double uniform
_dropout_draws_match: bool | None = None  # the probe's answer, once per process


def dropout_noise(shape: Sequence[int], keep: float, dtype: torch.dtype,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """torch's dropout noise, bernoulli(keep) / keep, from the same generator draws (see above)."""
    bits = torch.empty(shape, dtype=torch.int64).random_(generator=generator)
    return bits.bitwise_and_(DOUBLE_MANTISSA).lt_(math.ceil(keep * 2.0**53)).to(dtype).div_(keep)


def dropout_draws_match() -> bool:
    """Whether `dropout_noise` reproduces torch's `bernoulli_` mask and generator state here (probed once)."""
    global _dropout_draws_match
    if _dropout_draws_match is None:
        generator = torch.Generator().manual_seed(0)
        reference = torch.empty(4099).bernoulli_(0.9, generator=generator).div_(0.9)
        after = generator.get_state()
        ours = dropout_noise((4099,), 0.9, torch.float32, generator.manual_seed(0))
        _dropout_draws_match = torch.equal(reference, ours) and torch.equal(after, generator.get_state())
    return _dropout_draws_match


class Dropout(nn.Dropout):
    """`nn.Dropout` whose training-mode mask on CPU float32 comes from `dropout_noise` (lever `FAST_DROPOUT`),
    where the probe says it is torch's own; everywhere else `F.dropout` exactly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (FAST_DROPOUT and self.training and 0.0 < self.p < 1.0 and not self.inplace and eager_cpu_float32(x)
                and dropout_draws_match()):
            with torch.no_grad():
                noise = dropout_noise(x.shape, 1.0 - self.p, x.dtype)
            return x * noise
        return super().forward(x)


def mlp(
    input_dim: int,
    hidden_dims: Sequence[int],
    output_dim: int,
    activation: type[nn.Module] = nn.ReLU,
    output_activation: type[nn.Module] | None = None,
    input_layer_norm: bool = False,
    layer_norm_eps: float = 1e-5,
) -> nn.Sequential:
    """Linear layers with `activation` between them; optional LayerNorm on the input (IDQL's V net)."""
    layers: list[nn.Module] = [nn.LayerNorm(input_dim, eps=layer_norm_eps)] if input_layer_norm else []
    widths = [input_dim, *hidden_dims]
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [Linear(fan_in, fan_out), activation()]
    layers.append(Linear(widths[-1], output_dim))
    if output_activation is not None:
        layers.append(output_activation())
    return nn.Sequential(*layers)


# --- time embeddings ------------------------------------------------------------------------------
class GaussianFourierProjection(nn.Module):
    """[sin(2 pi t W), cos(2 pi t W)] with W ~ N(0, scale^2) frozen (SRPO/SfBC: embed 64, scale 30).

    W is a buffer, so it is saved in checkpoints like the official frozen `nn.Parameter`.
    """

    def __init__(self, embed_dim: int = 64, scale: float = 30.0) -> None:
        super().__init__()
        self.register_buffer("weights", torch.randn(embed_dim // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        projected = t.reshape(-1, 1) * self.weights[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(projected), torch.cos(projected)], dim=-1)


class LearnableFourierFeatures(nn.Module):
    """IDQL's time features: a learnable kernel W ~ N(0, 0.2^2) of shape [dim/2, 1], [cos(2 pi t W), sin(...)]."""

    def __init__(self, embed_dim: int = 128, init_std: float = 0.2) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(embed_dim // 2, 1) * init_std)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        projected = 2 * math.pi * t.reshape(-1, 1) @ self.kernel.T
        return torch.cat([torch.cos(projected), torch.sin(projected)], dim=-1)


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of a (discrete) step index (Diffusion-QL: dim 16)."""

    def __init__(self, embed_dim: int = 16) -> None:
        super().__init__()
        half = embed_dim // 2
        frequencies = torch.exp(torch.arange(half) * -(math.log(10000.0) / (half - 1)))
        self.register_buffer("frequencies", frequencies)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arguments = t.reshape(-1, 1).float() * self.frequencies[None, :]
        return torch.cat([torch.sin(arguments), torch.cos(arguments)], dim=-1)


# --- the LN-ResNet (SRPO's behavior model, IDQL's score network) -------------------------------------
class LNResidualBlock(nn.Module):
    """x + Linear(act(Linear(LayerNorm(Dropout(x))))) with a 4x wide hidden layer (IDQL's MLPResNetBlock)."""

    def __init__(self, width: int, dropout: float, activation: type[nn.Module], layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.body = nn.Sequential(
            Dropout(dropout),
            nn.LayerNorm(width, eps=layer_norm_eps),
            Linear(width, 4 * width),
            activation(),
            Linear(4 * width, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LNResNet(nn.Module):
    """Linear(in -> width) -> `blocks` LN residual blocks -> act -> Linear(width -> out)."""

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        width: int = 256,
        blocks: int = 3,
        dropout: float = 0.1,
        activation: type[nn.Module] = Mish,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.input = Linear(input_dim, width)
        self.blocks = nn.Sequential(*[LNResidualBlock(width, dropout, activation, layer_norm_eps)
                                      for _ in range(blocks)])
        self.output = nn.Sequential(activation(), Linear(width, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.input(x))

    def trunk(self, hidden: torch.Tensor) -> torch.Tensor:
        """Everything after the input layer: the residual blocks and the output head."""
        return self.output(self.blocks(hidden))


# --- the time conditioning once per distinct time ----------------------------------------------------------------
# A discrete-time denoiser (IDQL's DDPM, T = 5) sees at most T distinct times in a minibatch of hundreds of rows,
# yet its time path (embedding -> conditioning MLP -> the conditioning columns of the LN-ResNet's input layer) is a
# function of the time alone. Running it once per distinct time and gathering the result per row is the same
# function (its weight gradients are the same sums, taken per time first), with fewer products: IDQL's batch of
# 512 on Hopper spends 84M of its 891M forward multiply-adds there (MLP 128-256-256, then 256 of the input layer's
# 270 columns), and as many again in each backward product; its actor step runs 1.08x faster (alternated chunk by
# chunk, one core, 2026-12-02). Continuous times (SRPO's VP-SDE: all distinct) keep the per-row path.
# Diffusion-QL's own network (time MLP 16-32-16) is not a `NoisePredictor`. Training work only (training mode or
# a call that needs gradients), CPU float32 outside tracing, like the other levers (acting, export and the compiled
# acts call with one time for every row: `shared_times` below). Results equal the per-row path's to float rounding
# (tests/test_training_levers.py).
DISTINCT_TIMES = True  # the lever; `benchmarks/train_steps.py` switches it off for its "before" timings
DISTINCT_TIMES_MAX_SHARE = 4  # at most one distinct time per 4 rows, or the per-row path (unique + gather cost)

# --- one time for every row: the samplers' calls -------------------------------------------------------------------
# Every sampler step (DDPM, DPM-Solver, acting and Diffusion-QL's differentiable chain alike) calls its denoiser with
# one time for all rows. The samplers say so in the tensor itself: the times are one value expanded to the rows (a
# stride-0 view, `shared_times`), which costs nothing to make or to check, needs no look at the values (no host sync
# on a GPU) and survives tracing, compiling and ONNX export (strides are known when the act is traced). A denoiser
# then runs its time path once and broadcasts it: IDQL's `NoisePredictor` skips 164k of its 1.74M multiply-adds per
# row (the conditioning MLP and 256 of its input layer's 270 columns), Diffusion-QL's and SfBC's networks their
# (small) time embeddings. The same function to float rounding, in every runtime (tests/test_shared_times.py);
# `SHARED_TIMES = False` restores the per-row path (A/B: `benchmarks/runtime_rounds.py --off SHARED_TIMES`).
SHARED_TIMES = True


def shared_times(value: float, rows: int, device: torch.device | str, dtype: torch.dtype = torch.float32
                 ) -> torch.Tensor:
    """[rows] times all equal to `value`, as one value expanded to the rows (see above)."""
    return torch.full((1,), value, device=device, dtype=dtype).expand(rows)


def is_shared_time(t: torch.Tensor) -> bool:
    """Whether `t` holds one time for every row in the form `shared_times` makes (a 1-d stride-0 view)."""
    return SHARED_TIMES and t.dim() == 1 and t.shape[0] > 1 and t.stride(0) == 0


def per_time(module: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """module(t) for [B] times: run once and broadcast to the B rows when they share one time."""
    if is_shared_time(t):
        return module(t[:1]).expand(t.shape[0], -1)
    return module(t)


def distinct_times_apply(module: NoisePredictor, noisy_actions: torch.Tensor, states: torch.Tensor) -> bool:
    """Whether a denoiser call runs its time path once per distinct time (see above): training work only, a
    module in training mode or a call that needs gradients, as for `Linear`."""
    return (DISTINCT_TIMES and (module.training or needs_grad(noisy_actions, states, module.resnet.input.weight))
            and states.dim() == 2 and noisy_actions.dim() == 2 and eager_cpu_float32(states))


class NoisePredictor(nn.Module):
    """eps(a_t, t, s): time embedding -> conditioning MLP, concatenated with (a_t, s), into an LN-ResNet.

    SRPO (`ScoreNet_IDQL`): Gaussian Fourier (64, scale 30) -> MLP 64-128-128 Mish; LN-ResNet 256 x 3, Mish.
    IDQL (`DDPM` + `MLPResNet`): learnable Fourier (128) -> MLP 128-256-256 swish; LN-ResNet 256 x 3, swish.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        time_embedding: nn.Module,
        time_embed_dim: int,
        cond_dims: Sequence[int] = (128, 128),
        width: int = 256,
        blocks: int = 3,
        dropout: float = 0.1,
        activation: type[nn.Module] = Mish,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.time_embedding = time_embedding
        self.cond = mlp(time_embed_dim, cond_dims[:-1], cond_dims[-1], activation=activation)
        self.resnet = LNResNet(act_dim + obs_dim + cond_dims[-1], act_dim, width, blocks, dropout, activation,
                               layer_norm_eps)

    def forward(self, noisy_actions: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        if is_shared_time(t):  # a sampler step: one time for every row
            return self._forward_per_distinct_time(noisy_actions, t[:1], None, states)
        if distinct_times_apply(self, noisy_actions, states):
            times, rows = torch.unique(t.reshape(-1), return_inverse=True)
            if times.numel() * DISTINCT_TIMES_MAX_SHARE <= rows.numel():
                return self._forward_per_distinct_time(noisy_actions, times, rows, states)
        cond = self.cond(self.time_embedding(t))
        return self.resnet(torch.cat([noisy_actions, states, cond], dim=-1))

    def _forward_per_distinct_time(self, noisy_actions: torch.Tensor, times: torch.Tensor,
                                   rows: torch.Tensor | None, states: torch.Tensor) -> torch.Tensor:
        """The same function with the time path run once per distinct time: the input layer's product split
        into its (a_t, s) columns, per row, and its conditioning columns, per distinct time, gathered per row
        (`rows`: each row's index into `times`; None: one time for every row, broadcast)."""
        layer = self.resnet.input
        inputs = torch.cat([noisy_actions, states], dim=-1)
        split = inputs.shape[1]
        conditioning = F.linear(self.cond(self.time_embedding(times)), layer.weight[:, split:], layer.bias)
        hidden = F.linear(inputs, layer.weight[:, :split])
        return self.resnet.trunk(hidden.add_(conditioning if rows is None else conditioning.index_select(0, rows)))


class DeterministicPolicy(nn.Module):
    """a = tanh(MLP(s)) (SRPO's `Dirac_Policy`: 2 x 256 ReLU locomotion, 4 x 256 antmaze)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.net = mlp(obs_dim, [hidden] * layers, act_dim, activation=nn.ReLU, output_activation=nn.Tanh)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.net(states)


# --- Flax's initialisation, for methods whose official code is JAX/Flax (IDQL) ---------------------------
FLAX_TRUNCATED_NORMAL_STD = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2] (jax.nn.initializers)


def lecun_normal_(weight: torch.Tensor) -> None:
    """Flax `nn.Dense` default kernel init: variance 1 / fan_in, truncated normal (jax `lecun_normal`)."""
    std = math.sqrt(1.0 / weight.shape[1]) / FLAX_TRUNCATED_NORMAL_STD
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


@torch.no_grad()
def flax_initialize(module: nn.Module) -> nn.Module:
    """jaxrl5's initialisation: every Linear xavier-uniform (`default_init` of its MLPs and of MLPResNet's input
    and output Dense), except the Dense layers inside the LN-ResNet blocks, which keep flax's lecun-normal
    default; all biases zero (flax's default)."""
    in_blocks = {id(layer) for block in module.modules() if isinstance(block, LNResidualBlock)
                 for layer in block.modules() if isinstance(layer, nn.Linear)}
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            if id(layer) in in_blocks:
                lecun_normal_(layer.weight)
            else:
                nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return module


def polyak_update(target: nn.Module, source: nn.Module, rate: float) -> None:
    """target <- (1 - rate) target + rate source, in place (targets for critics, EMA actors); one foreach call,
    the same per-element `lerp` as a loop of `lerp_` (tests/test_training_levers.py), without its Python loop."""
    targets, sources = list(target.parameters()), list(source.parameters())
    if len(targets) != len(sources):
        raise ValueError(f"polyak_update: {len(targets)} target parameters, {len(sources)} source parameters")
    with torch.no_grad():
        torch._foreach_lerp_(targets, sources, rate)
