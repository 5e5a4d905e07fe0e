"""Diffusion schedules, denoising losses and DDPM samplers shared by every method.

Two families, as the official codes of SRPO, SfBC, Diffusion-QL and IDQL define them:
- continuous-time VP-SDE with linear beta(t) (SRPO, SfBC): beta_0 = 0.1, beta_1 = 20,
  log alpha_t = -1/4 t^2 (beta_1 - beta_0) - 1/2 t beta_0, sigma_t = sqrt(1 - alpha_t^2);
- discrete DDPM with Diffusion-QL's 'vp' schedule (Diffusion-QL, IDQL): T = 5, b_min = 0.1, b_max = 10,
  alpha_t = exp(-b_min/T - 1/2 (b_max - b_min)(2t - 1)/T^2), beta_t = 1 - alpha_t for t = 1..T.
The high-order DPM-Solver for the VP-SDE lives in `dpm_solver.py`.

Why hand-written samplers and not diffusers' schedulers (measured on this project's 2-core CPU, one thread,
5-step DDPM with a 3 x 256 Mish noise MLP, median of 300 samples, best of 3 runs, 2026-11-25):
    batch 1:  network alone 0.124 ms, our loop 0.219 ms, diffusers DDPMScheduler 0.469 ms per action sample
    batch 50: network alone 0.886 ms, our loop 1.001 ms, diffusers DDPMScheduler 1.321 ms
i.e. diffusers adds ~70-90 us per step against ~20 us here: 2.1x the whole sample at batch 1, where acting
speed is measured. That would inflate every diffusion baseline's time and flatter SRPO's speedup, so the
baselines use these plain tensor loops. diffusers' DDPMScheduler also has no "beta" variance with per-step
clipping (IDQL's sampler) and wants integer timesteps. DPM-Solver: see `dpm_solver.py` (same decision).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from srpo_bench.core.nn import shared_times
from srpo_bench.core.noise import Noise, as_noise

NoiseModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (a_t, t, s) -> eps


# --- continuous VP-SDE --------------------------------------------------------------------------------
@dataclass(frozen=True)
class VPSDE:
    beta_min: float = 0.1
    beta_max: float = 20.0

    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha_t and sigma_t = sqrt(1 - alpha_t^2) (SRPO `utils.marginal_prob_std`)."""
        log_alpha = self.log_alpha(t)
        alpha = torch.exp(log_alpha)
        # 1 - alpha^2 = -expm1(2 log alpha): exact for small t where alpha ~ 1.
        sigma = torch.sqrt(-torch.expm1(2.0 * log_alpha))
        return alpha, sigma

    def marginal_lambda(self, t: torch.Tensor) -> torch.Tensor:
        """lambda_t = log(alpha_t / sigma_t), the half-log-SNR DPM-Solver steps in."""
        alpha, sigma = self.alpha_sigma(t)
        return torch.log(alpha) - torch.log(sigma)

    def inverse_lambda(self, lam: torch.Tensor) -> torch.Tensor:
        """t for a given lambda (closed form for the linear schedule, as in DPM-Solver's NoiseScheduleVP)."""
        log_alpha = -0.5 * torch.logaddexp(torch.zeros_like(lam), -2.0 * lam)
        # solve 1/4 (b1 - b0) t^2 + 1/2 b0 t + log alpha = 0 for t >= 0, in the cancellation-free form
        delta = self.beta_min**2 + 4.0 * (self.beta_max - self.beta_min) * (-log_alpha)
        return 4.0 * (-log_alpha) / (self.beta_min + torch.sqrt(delta))


def vpsde_denoising_loss(
    noise_model: NoiseModel,
    actions: torch.Tensor,
    states: torch.Tensor,
    sde: VPSDE,
    t_min: float = 1e-3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """E_{t~U(t_min,1), z} || eps(alpha_t a + sigma_t z, t, s) - z ||^2, summed over action dims, mean over batch
    (SRPO `loss_fn`, t_min = 1e-3)."""
    batch = actions.shape[0]
    t = torch.rand(batch, device=actions.device, generator=generator) * (1.0 - t_min) + t_min
    z = torch.randn(actions.shape, device=actions.device, generator=generator)
    alpha, sigma = sde.alpha_sigma(t)
    noisy = alpha[:, None] * actions + sigma[:, None] * z
    return ((noise_model(noisy, t, states) - z) ** 2).sum(dim=-1).mean()


# --- discrete DDPM ---------------------------------------------------------------------------------
def vp_beta_schedule(steps: int, b_min: float = 0.1, b_max: float = 10.0) -> torch.Tensor:
    """Diffusion-QL's 'vp' betas (`helpers.vp_beta_schedule`), float64 for exact tests."""
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    alpha = torch.exp(-b_min / steps - 0.5 * (b_max - b_min) * (2 * t - 1) / steps**2)
    return 1.0 - alpha


@dataclass
class DDPMSchedule:
    """Precomputed DDPM quantities; index i = 0..T-1 is step t = i + 1."""

    betas: torch.Tensor

    def __post_init__(self) -> None:
        betas = self.betas.double()
        self.steps = int(betas.shape[0])
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        previous = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        self.alphas_cumprod_prev = previous
        # q(x_{t-1} | x_t, x_0): variance and the two mean coefficients (Ho et al. 2020, eq. 7)
        self.posterior_variance = betas * (1.0 - previous) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = torch.log(
            torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]])
        )
        self.posterior_mean_coef_x0 = betas * torch.sqrt(previous) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef_xt = (1.0 - previous) * torch.sqrt(self.alphas) / (1.0 - self.alphas_cumprod)

    @classmethod
    def vp(cls, steps: int = 5, b_min: float = 0.1, b_max: float = 10.0) -> DDPMSchedule:
        return cls(vp_beta_schedule(steps, b_min, b_max))

    def to(self, device: torch.device | str) -> DDPMSchedule:
        """float32 copies of every coefficient on `device` (computed once, not per step)."""
        moved = DDPMSchedule.__new__(DDPMSchedule)
        moved.steps = self.steps
        for name in ("betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev", "posterior_variance",
                     "posterior_log_variance_clipped", "posterior_mean_coef_x0", "posterior_mean_coef_xt"):
            setattr(moved, name, getattr(self, name).to(device=device, dtype=torch.float32))
        return moved


def ddpm_noising(
    schedule: DDPMSchedule, x0: torch.Tensor, step_index: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
    abar = schedule.alphas_cumprod[step_index][:, None]
    return torch.sqrt(abar) * x0 + torch.sqrt(1.0 - abar) * noise


def ddpm_denoising_loss(
    noise_model: NoiseModel,
    actions: torch.Tensor,
    states: torch.Tensor,
    schedule: DDPMSchedule,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """t ~ U{0..T-1}, eps-prediction L2.

    Diffusion-QL averages over every element (`reduction='mean'`); IDQL sums over action dims (`'sum_dims'`).
    """
    batch = actions.shape[0]
    step_index = torch.randint(0, schedule.steps, (batch,), device=actions.device, generator=generator)
    noise = torch.randn(actions.shape, device=actions.device, generator=generator)
    noisy = ddpm_noising(schedule, actions, step_index, noise)
    squared = (noise_model(noisy, step_index.float(), states) - noise) ** 2
    if reduction == "sum_dims":
        return squared.sum(dim=-1).mean()
    return squared.mean()


def ddpm_sample_clipped_x0(
    noise_model: NoiseModel,
    states: torch.Tensor,
    schedule: DDPMSchedule,
    act_dim: int,
    max_action: float = 1.0,
    generator: Noise | torch.Generator | None = None,
) -> torch.Tensor:
    """Diffusion-QL's sampler: predict x_0 from eps, clip it to [-max_action, max_action], step with the
    posterior q(x_{t-1} | x_t, x_0) and its clipped log-variance; no noise at the last step; clamp the result.
    Differentiable (the actor's Q loss back-propagates through all T steps)."""
    batch, noise_source = states.shape[0], as_noise(generator)
    x = noise_source.normal((batch, act_dim), states.device)
    for i in reversed(range(schedule.steps)):
        step = shared_times(float(i), batch, states.device)
        eps = noise_model(x, step, states)
        abar = schedule.alphas_cumprod[i]
        x0 = (x - torch.sqrt(1.0 - abar) * eps) / torch.sqrt(abar)
        x0 = x0.clamp(-max_action, max_action)
        mean = schedule.posterior_mean_coef_x0[i] * x0 + schedule.posterior_mean_coef_xt[i] * x
        if i > 0:
            noise = noise_source.normal(x.shape, x.device)
            x = mean + torch.exp(0.5 * schedule.posterior_log_variance_clipped[i]) * noise
        else:
            x = mean
    return x.clamp(-max_action, max_action)


def ddpm_sample_ancestral(
    noise_model: NoiseModel,
    states: torch.Tensor,
    schedule: DDPMSchedule,
    act_dim: int,
    temperature: float = 1.0,
    clip: float | None = 1.0,
    generator: Noise | torch.Generator | None = None,
) -> torch.Tensor:
    """IDQL's `ddpm_sampler`: x <- (x - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t) + [t > 1] sqrt(beta_t)
    temperature z, clipped to [-clip, clip] after every step (`clip_sampler=True`)."""
    batch, noise_source = states.shape[0], as_noise(generator)
    x = noise_source.normal((batch, act_dim), states.device)
    for i in reversed(range(schedule.steps)):
        step = shared_times(float(i), batch, states.device)
        eps = noise_model(x, step, states)
        x = (x - schedule.betas[i] / torch.sqrt(1.0 - schedule.alphas_cumprod[i]) * eps) / torch.sqrt(
            schedule.alphas[i]
        )
        if i > 0:
            noise = noise_source.normal(x.shape, x.device)
            x = x + torch.sqrt(schedule.betas[i]) * temperature * noise
        if clip is not None:
            x = x.clamp(-clip, clip)
    return x
