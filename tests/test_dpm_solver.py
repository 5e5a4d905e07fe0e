"""DPM-Solver on distributions whose noise prediction is known in closed form.

Under the VP-SDE a Gaussian mixture stays one: p_t(x) = sum_k w_k N(x; alpha_t mu_k, alpha_t^2 s_k^2 + sigma_t^2),
so eps(x, t) = -sigma_t grad log p_t(x) is exact, and sampling error is the solver's alone.
"""

from __future__ import annotations

import pytest
import torch

from srpo_bench.core.diffusion import VPSDE
from srpo_bench.core.dpm_solver import (
    apply_segment,
    build_segment,
    dpm_solver_nfe,
    dpm_solver_sample,
    noise_from_score,
    singlestep_orders,
    solver_plan,
)

SDE = VPSDE()
# Two well separated components (5 std apart), wide enough for 15 time-uniform steps (see
# `test_narrow_distributions_contract_at_15_steps` for what happens to narrow ones).
WEIGHTS = torch.tensor([0.3, 0.7], dtype=torch.float64)
MEANS = torch.tensor([-1.2, 1.0], dtype=torch.float64)
STDS = torch.tensor([0.35, 0.45], dtype=torch.float64)
VALLEY = -0.1  # between the components: splits samples into the two modes


class CountingMixtureNoise:
    """Exact eps of the 1-D two-component mixture above; counts its calls (NFE)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        alpha, sigma = SDE.alpha_sigma(t.double())
        variance = alpha[:, None] ** 2 * STDS**2 + sigma[:, None] ** 2  # [B, K]
        diff = x.double() - alpha[:, None] * MEANS  # [B, K]
        log_resp = torch.log(WEIGHTS) - 0.5 * diff**2 / variance - 0.5 * torch.log(variance)
        resp = torch.softmax(log_resp, dim=-1)
        score = -(resp * diff / variance).sum(dim=-1, keepdim=True)
        return (-sigma[:, None] * score).to(x.dtype)


def gaussian_noise(mean: float, std: float):
    """Exact eps of N(mean, std^2) in 1-D."""

    def noise_model(x: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        alpha, sigma = SDE.alpha_sigma(t)
        return sigma[:, None] * (x - alpha[:, None] * mean) / (alpha[:, None] ** 2 * std**2 + sigma[:, None] ** 2)

    return noise_model


def mixture_statistics(samples: torch.Tensor) -> tuple[float, list[float], list[float]]:
    """Weight of the left component and per-component mean / std, splitting at the valley."""
    left, right = samples[samples < VALLEY], samples[samples >= VALLEY]
    weight = left.numel() / samples.numel()
    return weight, [left.mean().item(), right.mean().item()], [left.std().item(), right.std().item()]


def exact_statistics() -> tuple[float, list[float], list[float]]:
    """The same statistics on 400k exact draws from the mixture (the split at the valley biases them slightly)."""
    generator = torch.Generator().manual_seed(123)
    component = (torch.rand(400_000, generator=generator, dtype=torch.float64) >= WEIGHTS[0]).long()
    draws = MEANS[component] + STDS[component] * torch.randn(400_000, generator=generator, dtype=torch.float64)
    return mixture_statistics(draws)


EXACT_WEIGHT, EXACT_MEANS, EXACT_STDS = exact_statistics()


def sample_mixture(steps: int, order: int, seed: int = 0, intermediate: str = "time_grid",
                   model: CountingMixtureNoise | None = None) -> torch.Tensor:
    states = torch.zeros(20_000, 1, dtype=torch.float64)
    return dpm_solver_sample(model or CountingMixtureNoise(), states, 1, SDE, steps=steps, order=order,
                             generator=torch.Generator().manual_seed(seed), intermediate=intermediate).squeeze(-1)


def test_orders_split_steps_like_dpm_solver_fast() -> None:
    assert singlestep_orders(15, 3) == [3, 3, 3, 3, 2, 1]  # SfBC: 15 steps, order 3
    assert singlestep_orders(16, 3) == [3, 3, 3, 3, 3, 1]
    assert singlestep_orders(17, 3) == [3, 3, 3, 3, 3, 2]
    assert singlestep_orders(15, 2) == [2] * 7 + [1]
    assert singlestep_orders(4, 1) == [1, 1, 1, 1]
    for steps in range(1, 25):
        for order in (1, 2, 3):
            assert dpm_solver_nfe(steps, order) == steps
    with pytest.raises(ValueError):
        singlestep_orders(15, 4)


def test_time_grid_plan_evaluates_on_the_uniform_grid() -> None:
    plan = solver_plan(SDE, 15, 3, 1.0, 1e-3)
    times = [t for segment in plan for t in segment.times]
    grid = [1.0 + (1e-3 - 1.0) * i / 15 for i in range(15)]
    assert times == pytest.approx(grid, abs=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("intermediate", ["time_grid", "lambda_fractions"])
def test_one_segment_has_the_local_error_of_its_order(order: int, intermediate: str) -> None:
    """An order-k step from s to t errs by O(h^{k+1}): halving the step divides the error by ~2^{k+1}."""
    mean, std, s = 0.4, 0.3, 0.5
    start = torch.linspace(-2.0, 2.0, 41, dtype=torch.float64)[:, None]
    states = torch.zeros(41, 1, dtype=torch.float64)
    errors = []
    for dt in (0.1, 0.05, 0.025):
        t = s - dt
        inner = tuple(s - dt * k / order for k in range(1, order)) if intermediate == "time_grid" else None
        segment = build_segment(SDE, s, t, order, inner)
        (alpha_s, sigma_s), (alpha_t, sigma_t) = (SDE.alpha_sigma(torch.tensor(u, dtype=torch.float64))
                                                  for u in (s, t))
        std_s, std_t = (torch.sqrt(a**2 * std**2 + b**2) for a, b in ((alpha_s, sigma_s), (alpha_t, sigma_t)))
        x_s = alpha_s * mean + start * std_s
        exact = alpha_t * mean + start * std_t  # the probability-flow ODE maps quantiles to quantiles
        errors.append((apply_segment(gaussian_noise(mean, std), x_s, states, segment) - exact).abs().max().item())
    for coarse, fine in zip(errors[:-1], errors[1:], strict=True):
        assert coarse / fine > 0.75 * 2 ** (order + 1)


@pytest.mark.parametrize("intermediate", ["time_grid", "lambda_fractions"])
def test_third_order_15_steps_samples_a_1d_gaussian_mixture(intermediate: str) -> None:
    model = CountingMixtureNoise()
    weight, means, stds = mixture_statistics(sample_mixture(15, 3, intermediate=intermediate, model=model))
    assert model.calls == dpm_solver_nfe(15, 3) == 15
    assert weight == pytest.approx(EXACT_WEIGHT, abs=0.02)
    assert means == pytest.approx(EXACT_MEANS, abs=0.06)
    assert stds == pytest.approx(EXACT_STDS, rel=0.15)  # 15 time-uniform steps contract spreads a little


@pytest.mark.parametrize("order", [1, 2])
def test_lower_orders_sample_the_mixture(order: int) -> None:
    model = CountingMixtureNoise()
    weight, means, stds = mixture_statistics(sample_mixture(15, order, seed=1, model=model))
    assert model.calls == 15
    assert weight == pytest.approx(EXACT_WEIGHT, abs=0.02)
    assert means == pytest.approx(EXACT_MEANS, abs=0.12 if order == 1 else 0.06)  # DDIM drifts most
    assert stds == pytest.approx(EXACT_STDS, rel=0.15)


def test_more_steps_converge_to_the_mixture() -> None:
    weight, means, stds = mixture_statistics(sample_mixture(150, 3, seed=2))
    assert weight == pytest.approx(EXACT_WEIGHT, abs=0.01)
    assert means == pytest.approx(EXACT_MEANS, abs=0.01)
    assert stds == pytest.approx(EXACT_STDS, rel=0.03)


def test_narrow_distributions_contract_at_15_steps() -> None:
    """Documents SfBC's sampler: the last time-uniform segment (t = 0.068 -> 1e-3, one DDIM step over
    h = 3.1 in lambda) shrinks spreads well below sigma_0.068 = 0.22; 150 steps recover them."""
    states = torch.zeros(20_000, 1, dtype=torch.float64)
    spreads = [
        dpm_solver_sample(gaussian_noise(0.0, 0.1), states, 1, SDE, steps=steps,
                          generator=torch.Generator().manual_seed(3)).std().item()
        for steps in (15, 150)
    ]
    assert spreads[0] == pytest.approx(0.05, abs=0.01)
    assert spreads[1] == pytest.approx(0.1, rel=0.05)


def test_samples_a_correlated_2d_gaussian() -> None:
    mean = torch.tensor([0.3, -0.2], dtype=torch.float64)
    covariance = torch.tensor([[0.36, 0.15], [0.15, 0.25]], dtype=torch.float64)

    def score(x: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        alpha, sigma = SDE.alpha_sigma(t)
        cov_t = alpha[:, None, None] ** 2 * covariance + sigma[:, None, None] ** 2 * torch.eye(2, dtype=x.dtype)
        return -torch.linalg.solve(cov_t, (x - alpha[:, None] * mean)[..., None]).squeeze(-1)

    generator = torch.Generator().manual_seed(2)
    states = torch.zeros(20_000, 3, dtype=torch.float64)
    samples = dpm_solver_sample(noise_from_score(score, SDE), states, 2, SDE, generator=generator)
    assert samples.shape == (20_000, 2)
    torch.testing.assert_close(samples.mean(0), mean, atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(samples.T), covariance, atol=0.03, rtol=0.0)


def test_clip_and_generator_reproducibility() -> None:
    model = CountingMixtureNoise()
    states = torch.zeros(64, 1)
    first = dpm_solver_sample(model, states, 1, SDE, generator=torch.Generator().manual_seed(5), clip=0.3)
    again = dpm_solver_sample(model, states, 1, SDE, generator=torch.Generator().manual_seed(5), clip=0.3)
    torch.testing.assert_close(first, again)
    assert first.dtype == torch.float32 and first.abs().max() <= 0.3
