"""One time for every row: the samplers call their denoisers with `shared_times` (one value expanded to the rows),
and the denoisers run their time path once for it. The result is the per-row function to float rounding, outputs
and every parameter gradient (Diffusion-QL back-propagates through its sampler), for each method's network; the
samplers really pass shared times; the time path really runs on one row; and per-row time tensors (training
minibatches, a plain `torch.full`) keep the per-row path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from baselines.diffusion_ql import DiffusionQLNoiseNet
from baselines.sfbc import SfBCScoreNet
from srpo_bench.core import nn as core_nn
from srpo_bench.core.diffusion import VPSDE, DDPMSchedule, ddpm_sample_ancestral, ddpm_sample_clipped_x0
from srpo_bench.core.dpm_solver import dpm_solver_sample
from srpo_bench.core.nn import LearnableFourierFeatures, NoisePredictor, is_shared_time, shared_times

ROWS, OBS, ACT = 48, 5, 3


def idql_denoiser() -> NoisePredictor:
    torch.manual_seed(0)
    return NoisePredictor(OBS, ACT, LearnableFourierFeatures(16), 16, cond_dims=(32, 32), width=32, blocks=2,
                          dropout=0.0, activation=nn.SiLU)


def diffusion_ql_denoiser() -> DiffusionQLNoiseNet:
    torch.manual_seed(0)
    return DiffusionQLNoiseNet(OBS, ACT, hidden=32)


def sfbc_denoiser() -> SfBCScoreNet:
    torch.manual_seed(0)
    return SfBCScoreNet(OBS, ACT, VPSDE())


DENOISERS = {"idql": idql_denoiser, "diffusion-ql": diffusion_ql_denoiser, "sfbc": sfbc_denoiser}


def test_shared_times_are_one_value_expanded_and_nothing_else_counts_as_shared() -> None:
    t = shared_times(3.0, ROWS, "cpu")
    assert t.shape == (ROWS,) and t.stride() == (0,) and torch.equal(t, torch.full((ROWS,), 3.0))
    assert is_shared_time(t)
    assert shared_times(0.25, ROWS, "cpu", torch.float64).dtype == torch.float64
    assert not is_shared_time(torch.full((ROWS,), 3.0))  # equal values, but a per-row tensor
    assert not is_shared_time(shared_times(3.0, 1, "cpu"))  # one row: nothing to share
    assert not is_shared_time(torch.full((1,), 3.0).expand(ROWS, 2))  # not a [rows] time
    assert not is_shared_time(t.contiguous())


def outputs_and_gradients(model: nn.Module, t: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    data = torch.Generator().manual_seed(1)
    actions, states = torch.randn(ROWS, ACT, generator=data), torch.randn(ROWS, OBS, generator=data)
    model.zero_grad(set_to_none=True)
    out = model(actions, t, states)
    (out * torch.linspace(-1.0, 1.0, out.numel()).reshape(out.shape)).sum().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("method", sorted(DENOISERS))
@pytest.mark.parametrize("value", [1.0, 3.0, 0.37])  # DDPM step indices, a VP-SDE time (SfBC divides by sigma_t: t > 0)
def test_a_shared_time_gives_the_per_row_function_and_its_gradients(method: str, value: float) -> None:
    model = DENOISERS[method]().eval()
    shared, shared_grads = outputs_and_gradients(model, shared_times(value, ROWS, "cpu"))
    per_row, per_row_grads = outputs_and_gradients(model, torch.full((ROWS,), value))
    assert torch.allclose(shared, per_row, rtol=1e-5, atol=1e-6)
    assert len(shared_grads) == len(per_row_grads) == len(list(model.parameters()))  # the time path's included
    for a, b in zip(shared_grads, per_row_grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    with torch.no_grad():  # and acting: no gradients, eval mode
        data = torch.Generator().manual_seed(2)
        actions, states = torch.randn(ROWS, ACT, generator=data), torch.randn(ROWS, OBS, generator=data)
        acted = model(actions, shared_times(value, ROWS, "cpu"), states)
        assert torch.allclose(acted, model(actions, torch.full((ROWS,), value), states), rtol=1e-5, atol=1e-6)


TIME_PATH = {"idql": "time_embedding", "diffusion-ql": "time_mlp", "sfbc": "time_embed"}  # each one's time module


@pytest.mark.parametrize("method", sorted(DENOISERS))
def test_the_time_path_runs_on_one_row_for_a_shared_time_and_per_row_otherwise(method: str) -> None:
    model = DENOISERS[method]().eval()
    rows: list[int] = []
    getattr(model, TIME_PATH[method]).register_forward_hook(lambda _module, args, _out: rows.append(len(args[0])))
    actions, states = torch.randn(ROWS, ACT), torch.randn(ROWS, OBS)
    with torch.no_grad():
        model(actions, shared_times(2.0, ROWS, "cpu"), states)
        model(actions, torch.full((ROWS,), 2.0), states)
        core_nn.SHARED_TIMES = False
        try:
            model(actions, shared_times(2.0, ROWS, "cpu"), states)  # the switch off: the per-row path
        finally:
            core_nn.SHARED_TIMES = True
    assert rows == [1, ROWS, ROWS]


def recording_denoiser(seen: list[torch.Tensor]):
    def eps(x: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        seen.append(t)
        return 0.1 * x + t[:, None] * 0.01
    return eps


def test_every_sampler_calls_its_denoiser_with_shared_times() -> None:
    states = torch.zeros(ROWS, OBS)
    schedule = DDPMSchedule.vp(5).to("cpu")
    for sample in (lambda eps: ddpm_sample_ancestral(eps, states, schedule, ACT),
                   lambda eps: ddpm_sample_clipped_x0(eps, states, schedule, ACT),
                   lambda eps: dpm_solver_sample(eps, states, ACT, VPSDE(), steps=15, order=3)):
        seen: list[torch.Tensor] = []
        sample(recording_denoiser(seen))
        assert seen and all(is_shared_time(t) and t.shape == (ROWS,) for t in seen)
        assert len({float(t[0]) for t in seen}) == len(seen)  # a new time each call
