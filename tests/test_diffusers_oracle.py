"""diffusers as an independent oracle for the hand-written DDPM samplers and VP schedules (issue 27).

The runtime does not use diffusers (its schedulers add ~2x the whole sample at batch 1: `core/diffusion.py`), so it
is a `dev` extra; here its `DDPMScheduler.step` checks our posterior mean and variance step by step, and its
`DPMSolverSinglestepScheduler` our DPM-Solver updates of orders 1 and 2 (SfBC's sampler)."""

from __future__ import annotations

import math

import pytest
import torch

from srpo_bench.core.diffusion import (
    VPSDE,
    DDPMSchedule,
    ddpm_sample_ancestral,
    ddpm_sample_clipped_x0,
    vp_beta_schedule,
)
from srpo_bench.core.noise import Noise

diffusers = pytest.importorskip("diffusers", reason="diffusers is the test oracle: pip install -e '.[dev]'")

T, BATCH, ACT = 5, 7, 3


def eps_model(x: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """A fixed, non-trivial noise prediction (large enough that x_0 clipping happens)."""
    return torch.sin(3.0 * x + t[..., None] if t.ndim == 1 else 3.0 * x + t) + 0.3 * states[:, :ACT]


def scheduler(schedule: DDPMSchedule, clip: bool, variance: str):
    return diffusers.DDPMScheduler(num_train_timesteps=schedule.steps, trained_betas=schedule.betas.float().numpy(),
                                   prediction_type="epsilon", clip_sample=clip, clip_sample_range=1.0,
                                   variance_type=variance, timestep_spacing="leading")


def oracle_step(sched, eps: torch.Tensor, i: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' posterior mean and standard deviation at step i: two draws of its step with known noise."""
    draws = []
    for seed in (1, 2):
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
        sample = sched.step(eps, i, x, generator=torch.Generator().manual_seed(seed)).prev_sample
        draws.append((sample, noise))
    (a, na), (b, nb) = draws
    if i == 0:  # no noise at the last step
        return a, torch.zeros(())
    std = ((a - b) / (na - nb)).mean()
    return a - std * na, std


class Recorded(Noise):
    """A `Noise` that hands out the given draws in order (the samplers' noise, made visible)."""

    def __init__(self, draws: list[torch.Tensor]) -> None:
        super().__init__(None)
        self.draws = list(draws)

    def normal(self, shape, device, dtype=torch.float32):  # type: ignore[override]
        return self.draws.pop(0)


@pytest.mark.parametrize(("sampler", "clip", "variance"), [("clipped_x0", True, "fixed_small_log"),
                                                           ("ancestral", False, "fixed_large")])
def test_each_ddpm_step_matches_diffusers_posterior_mean_and_variance(sampler: str, clip: bool, variance: str) -> None:
    """Diffusion-QL's sampler (x_0 clipped, posterior variance, log-variance clipped at t=1) against diffusers'
    `fixed_small_log`; IDQL's (beta_t variance, unclipped) against `fixed_large`. Our sampler runs with zero noise
    (its mean path), diffusers' step from the same x gives the same mean and our standard deviation."""
    schedule = DDPMSchedule.vp(T)
    coefficients = schedule.to("cpu")
    sched = scheduler(schedule, clip, variance)
    states = torch.randn(BATCH, 4, generator=torch.Generator().manual_seed(0))
    x = torch.randn(BATCH, ACT, generator=torch.Generator().manual_seed(3)) * 2
    zeros = [torch.zeros(BATCH, ACT) for _ in range(T)]
    for i in reversed(range(T)):
        t = torch.full((BATCH,), float(i))
        eps = eps_model(x, t, states)
        mean, std = oracle_step(sched, eps, i, x)
        ours_std = (torch.exp(0.5 * coefficients.posterior_log_variance_clipped[i]) if sampler == "clipped_x0"
                    else torch.sqrt(coefficients.betas[i])) if i > 0 else torch.zeros(())
        assert float(std) == pytest.approx(float(ours_std), rel=1e-4, abs=1e-6), i
        # one step of our sampler from x with zero noise (its mean): the sampler on a schedule truncated to i + 1
        # steps has the same coefficients at index i
        truncated = DDPMSchedule(schedule.betas[: i + 1]).to("cpu")
        ours = one_step(sampler, truncated, i, x, states, zeros)
        assert torch.allclose(ours, mean, atol=1e-5), (i, (ours - mean).abs().max())
        x = mean + std * torch.randn(BATCH, ACT, generator=torch.Generator().manual_seed(10 + i))


def one_step(sampler: str, schedule: DDPMSchedule, i: int, x: torch.Tensor, states: torch.Tensor,
             zeros: list[torch.Tensor]) -> torch.Tensor:
    """Our sampler's mean for step i from x: the loop of a schedule truncated to i + 1 steps starts at index i with x
    as its first draw and zero noise after; the second model call (step i - 1) stops it and returns the x it got."""
    class StopAfterOne(Exception):
        pass

    seen: list[torch.Tensor] = []

    def model(x_now: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if seen:
            raise StopAfterOne(x_now)
        seen.append(x_now)
        return eps_model(x_now, t, s)

    draws = [x, *zeros]
    try:
        if sampler == "clipped_x0":
            result = ddpm_sample_clipped_x0(model, states, schedule, ACT, generator=Recorded(draws))
        else:
            result = ddpm_sample_ancestral(model, states, schedule, ACT, clip=None, generator=Recorded(draws))
    except StopAfterOne as stop:
        return stop.args[0]
    return result  # i == 0: the loop had one step (the clipped_x0 sampler clamps its final result, as diffusers'
    #                 mean is of the clipped x_0 and stays inside [-1, 1] here)


def test_vp_betas_match_diffusers_linear_schedule_and_the_vp_sde() -> None:
    """Diffusion-QL's 'vp' betas integrate the linear VP-SDE beta(t) exactly over each step: their cumulative
    product is the VP-SDE's alpha_t^2 at t = i / T, and at many steps they approach diffusers' 'linear' betas
    with beta_start = b_min / T and beta_end = b_max / T (DDPM's 1e-4 .. 0.02 at T = 1000, b_max = 20)."""
    steps = 1000
    ours = vp_beta_schedule(steps, 0.1, 20.0)
    sde = VPSDE(0.1, 20.0)
    times = torch.arange(1, steps + 1, dtype=torch.float64) / steps
    assert torch.allclose(torch.cumprod(1 - ours, 0), torch.exp(2 * sde.log_alpha(times)), rtol=1e-10)
    linear = diffusers.DDPMScheduler(num_train_timesteps=steps, beta_schedule="linear", beta_start=1e-4,
                                     beta_end=0.02)
    # ours = 1 - exp(-beta(mid)/T) = beta(mid)/T - (beta/T)^2 / 2 + ...: at most (0.02)^2 / 2 = 2e-4 apart
    assert torch.allclose(ours.float(), linear.betas, atol=2.5e-4)
    assert torch.allclose(torch.cumprod(1 - ours, 0).float(), linear.alphas_cumprod, atol=1e-3)
    # and diffusers, given our betas, derives the same cumulative products our DDPM schedule does
    schedule = DDPMSchedule.vp(T)
    given = diffusers.DDPMScheduler(num_train_timesteps=T, trained_betas=schedule.betas.float().numpy())
    assert torch.allclose(given.alphas_cumprod, schedule.alphas_cumprod.float(), atol=1e-6)


class TableSDE:
    """A VP noise schedule given at discrete times by a diffusers scheduler's own sigmas (its sigma is sigma_t /
    alpha_t), read in the shape `build_segment` asks of an SDE: time u is the diffusers timestep itself."""

    def __init__(self, times: list[int], edm_sigmas: torch.Tensor) -> None:
        self.edm_sigma = {float(u): float(s) for u, s in zip(times, edm_sigmas.double(), strict=True)}

    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.tensor(-0.5 * math.log1p(self.edm_sigma[float(t)] ** 2), dtype=torch.float64)

    def marginal_lambda(self, t: torch.Tensor) -> torch.Tensor:
        return torch.tensor(-math.log(self.edm_sigma[float(t)]), dtype=torch.float64)  # log(alpha / sigma)


@pytest.mark.parametrize("order", [1, 2])
def test_dpm_solver_steps_match_diffusers_singlestep_scheduler(order: int) -> None:
    """Our singlestep DPM-Solver (noise prediction, orders 1 and 2, intermediate points on the time grid) against
    diffusers' `DPMSolverSinglestepScheduler(algorithm_type="dpmsolver", solver_type="midpoint")` on the same
    noise model, times and starting noise. Order 3 is not compared: for the intermediate point of an order-3
    segment the DPM-Solver paper (and the official code) uses its own coefficient, sigma (r2/r1)(phi(r2 h) - 1),
    where diffusers runs an order-2 midpoint step (tests/test_dpm_solver.py checks order 3 against exact ODEs)."""
    from srpo_bench.core.dpm_solver import apply_segment, build_segment, singlestep_orders

    timesteps = [999, 874, 749, 599, 449, 299]  # six steps, custom spacing, ending above timestep 0
    sched = diffusers.DPMSolverSinglestepScheduler(
        num_train_timesteps=1000, solver_order=order, algorithm_type="dpmsolver", solver_type="midpoint",
        lower_order_final=False, final_sigmas_type="sigma_min", prediction_type="epsilon")
    sched.set_timesteps(timesteps=timesteps)
    grid = [*timesteps, 0]  # "sigma_min": the last step lands on timestep 0's noise level
    sde = TableSDE(grid, sched.sigmas)
    states = torch.randn(BATCH, 4, generator=torch.Generator().manual_seed(3))

    vp_sigma = (1.0 - sched.alphas_cumprod).sqrt()

    def noise_model(x: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        # near the exact noise predictor of a standard normal (eps = sigma_t x), plus a non-linear, state- and
        # time-dependent part, so that the sample stays O(1) down to timestep 0 and float32 rounding stays small
        sigma = vp_sigma[t.long()].to(x.dtype)[:, None]
        return sigma * x + 0.2 * torch.sin(3.0 * x + t.to(x.dtype)[:, None] / 1000.0) + 0.1 * states[:, :ACT]

    start = torch.randn(BATCH, ACT, generator=torch.Generator().manual_seed(4))
    ours, index = start.clone(), 0
    for segment_order in singlestep_orders(len(timesteps), order):
        segment = build_segment(sde, float(grid[index]), float(grid[index + segment_order]), segment_order,
                                tuple(float(u) for u in grid[index + 1 : index + segment_order]))
        ours = apply_segment(noise_model, ours, states, segment)
        index += segment_order
    theirs = start.clone()
    for t in sched.timesteps:
        eps = noise_model(theirs, t.expand(BATCH), states)
        theirs = sched.step(eps, t, theirs).prev_sample
    assert index == len(timesteps)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    assert (ours - start).abs().max() > 0.1  # the solver moved the sample: the comparison is not of two no-ops
