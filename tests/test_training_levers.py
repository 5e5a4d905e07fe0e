"""Training levers keep results equal: fused Adam/AdamW gives the default implementation's weights to float
tolerance, a minibatch gathered on access holds the same rows, and whole stages trained with the levers on and
off end at the same weights (so stage keys, which pin the trained result, stay as they are)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from srpo_bench.core import optim
from srpo_bench.core.nn import LNResNet
from srpo_bench.data import sampler
from srpo_bench.data.sampler import EpochSampler
from srpo_bench.progress import Reporter
from srpo_bench.registry import get_method
from srpo_bench.runner import fit_context
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


@pytest.mark.parametrize("method", ["bc", "srpo"])
def test_a_whole_stage_trains_to_the_same_weights_with_and_without_the_levers(method: str, tmp_path: Path) -> None:
    task = get_task("toy-two-moons")
    dataset = task.load()
    weights = []
    for levers in (True, False):
        optim.FUSED = sampler.GATHER_ON_ACCESS = levers
        try:
            config, ctx = fit_context(task, method, dataset, 0, "smoke", tmp_path / str(levers), torch.device("cpu"),
                                      Reporter(quiet=True))
            agent = get_method(method)().fit(ctx, config)
        finally:
            optim.FUSED = sampler.GATHER_ON_ACCESS = True
        weights.append([p.detach().clone() for p in agent.policy.parameters()])
    assert max(float((a - b).abs().max()) for a, b in zip(*weights, strict=True)) < 1e-5
