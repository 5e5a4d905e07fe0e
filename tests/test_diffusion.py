"""VP-SDE schedule values, the denoising losses and the DDPM 'vp' schedule, against hand-derived numbers."""

import math

import pytest
import torch

from srpo_bench.core.diffusion import (
    VPSDE,
    DDPMSchedule,
    ddpm_denoising_loss,
    vp_beta_schedule,
    vpsde_denoising_loss,
)


def hand_alpha(t: float, b0: float = 0.1, b1: float = 20.0) -> float:
    return math.exp(-0.25 * t * t * (b1 - b0) - 0.5 * t * b0)


@pytest.mark.parametrize(("t", "alpha", "sigma"), [(0.02, 0.997, 0.077), (0.1, 0.947, 0.322), (0.5, 0.281, 0.960),
                                                   (0.98, 0.008, 1.0)])
def test_vpsde_alpha_sigma_match_published_values(t: float, alpha: float, sigma: float) -> None:
    a, s = VPSDE().alpha_sigma(torch.tensor([t], dtype=torch.float64))
    assert a.item() == pytest.approx(alpha, abs=1.5e-3)
    assert s.item() == pytest.approx(sigma, abs=1.5e-3)
    assert a.item() == pytest.approx(hand_alpha(t), rel=1e-12)
    assert a.item() ** 2 + s.item() ** 2 == pytest.approx(1.0, abs=1e-12)


def test_inverse_lambda_inverts_marginal_lambda() -> None:
    sde = VPSDE()
    t = torch.linspace(1e-3, 1.0, 50, dtype=torch.float64)
    assert torch.allclose(sde.inverse_lambda(sde.marginal_lambda(t)), t, atol=1e-9)


def test_vpsde_denoising_loss_is_the_hand_computed_value() -> None:
    sde = VPSDE()
    actions = torch.tensor([[0.5, -0.2], [0.1, 0.9], [-0.7, 0.3]])
    states = torch.zeros(3, 1)

    def noise_model(a_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return 0.5 * a_t  # any fixed function: the loss must be || f(a_t) - z ||^2 summed, batch-averaged

    loss = vpsde_denoising_loss(noise_model, actions, states, sde, generator=torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    t = torch.rand(3, generator=gen) * (1 - 1e-3) + 1e-3
    z = torch.randn(3, 2, generator=gen)
    expected = 0.0
    for i in range(3):
        a = hand_alpha(float(t[i]))
        s = math.sqrt(1 - a * a)
        a_t = [a * float(actions[i, d]) + s * float(z[i, d]) for d in range(2)]
        expected += sum((0.5 * a_t[d] - float(z[i, d])) ** 2 for d in range(2))
    assert loss.item() == pytest.approx(expected / 3, rel=1e-5)


def test_perfect_noise_model_has_zero_vpsde_loss() -> None:
    """For a point mass at a0 the optimal eps is (a_t - alpha a0) / sigma: the loss must be exactly 0."""
    sde = VPSDE()
    a0 = torch.tensor([0.3, -0.4])

    def exact(a_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        alpha, sigma = sde.alpha_sigma(t)
        return (a_t - alpha[:, None] * a0) / sigma[:, None]

    loss = vpsde_denoising_loss(exact, a0.expand(64, 2), torch.zeros(64, 1), sde)
    assert loss.item() < 1e-8


def test_ddpm_vp_betas_for_t5_match_hand_values() -> None:
    # alpha_t = exp(-0.1/5 - 0.5 * 9.9 * (2t - 1) / 25), beta = 1 - alpha, t = 1..5 (Diffusion-QL 'vp')
    expected = [0.1958746, 0.4588182, 0.6357810, 0.7548782, 0.8350314]
    for t, value in zip(range(1, 6), expected, strict=True):
        assert 1 - math.exp(-0.1 / 5 - 0.5 * 9.9 * (2 * t - 1) / 25) == pytest.approx(value, abs=1e-6)
    assert vp_beta_schedule(5).tolist() == pytest.approx(expected, abs=1e-6)


def test_ddpm_posterior_matches_bayes_rule() -> None:
    schedule = DDPMSchedule.vp(5)
    i = 3  # posterior variance = beta_t (1 - abar_{t-1}) / (1 - abar_t)
    abar = torch.cumprod(1 - vp_beta_schedule(5), 0)
    assert schedule.posterior_variance[i].item() == pytest.approx(
        vp_beta_schedule(5)[i].item() * (1 - abar[i - 1].item()) / (1 - abar[i].item()), rel=1e-12)


def test_ddpm_loss_reductions() -> None:
    schedule = DDPMSchedule.vp(5)
    actions = torch.ones(8, 3) * 0.2

    def zero_model(a_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(a_t)

    gen = torch.Generator().manual_seed(0)
    mean_loss = ddpm_denoising_loss(zero_model, actions, torch.zeros(8, 1), schedule, generator=gen)
    gen = torch.Generator().manual_seed(0)
    summed = ddpm_denoising_loss(zero_model, actions, torch.zeros(8, 1), schedule, generator=gen,
                                 reduction="sum_dims")
    assert summed.item() == pytest.approx(3 * mean_loss.item(), rel=1e-6)
