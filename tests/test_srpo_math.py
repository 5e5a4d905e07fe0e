"""SRPO's surrogate gradient and IQL's expectile loss against hand-derived values on tiny networks."""

import numpy as np
import pytest
import torch
from torch import nn

from srpo_bench.config import ConfigError, resolve_config
from srpo_bench.core.critics import IQLCritic, IQLCriticStage, TwinQ, expectile_loss
from srpo_bench.core.diffusion import VPSDE
from srpo_bench.core.rewards import episode_limit_returns, return_range
from srpo_bench.data.dataset import OfflineDataset
from srpo_bench.srpo import SRPO, SRPOPolicyStage, diffusion_weight, score_regularized_loss
from srpo_bench.tasks import d4rl_equivalent, get_task


def policy_stage(**settings: object) -> SRPOPolicyStage:
    """SRPO's policy stage at the official settings, with `settings` changed."""
    values = dict(steps=1, batch_size=1, lr=3e-4, layers=2, hidden=256, beta=0.05, weighting="sigma2",
                  epsilon_baseline=False, t_min=0.02, t_max=0.98, q_head="mean", normalize_q_grad=False)
    return SRPOPolicyStage(**{**values, **settings})


class FixedNoiseModel(nn.Module):
    """eps(a_t, t, s) = A a_t + t b: an arbitrary fixed function with no parameters to train."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("A", torch.tensor([[0.7, -0.3], [0.2, 1.1]]))
        self.register_buffer("b", torch.tensor([0.5, -0.25]))

    def forward(self, a_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return a_t @ self.A.T + t[:, None] * self.b


class QuadraticQ(TwinQ):
    """Q1 = -|a - c1|^2 + s, Q2 = -2 |a - c2|^2: grad_a of the mean is known in closed form."""

    def __init__(self) -> None:
        nn.Module.__init__(self)
        self.c1 = torch.tensor([0.4, -0.1])
        self.c2 = torch.tensor([-0.2, 0.3])

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return -((actions - self.c1) ** 2).sum(-1) + states[:, 0], -2 * ((actions - self.c2) ** 2).sum(-1)


@pytest.mark.parametrize("weighting", ["sigma2", "constant", "score"])
@pytest.mark.parametrize("baseline", [False, True])
def test_surrogate_gradient_is_weighted_score_minus_beta_q_gradient(weighting: str, baseline: bool) -> None:
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(3, 2), nn.Tanh())
    states = torch.randn(5, 3)
    config = policy_stage(beta=0.3, weighting=weighting, epsilon_baseline=baseline)
    sde = VPSDE()
    loss = score_regularized_loss(policy, FixedNoiseModel(), QuadraticQ(), states, config, sde,
                                  generator=torch.Generator().manual_seed(7))
    grads = torch.autograd.grad(loss, list(policy.parameters()))

    # Hand version: replay the same t and z, build the constant vector (w eps_hat - beta grad_a Q),
    # and push it through the Jacobian d pi / d theta.
    gen = torch.Generator().manual_seed(7)
    t = torch.rand(5, generator=gen) * 0.96 + 0.02
    z = torch.randn(5, 2, generator=gen)
    with torch.no_grad():
        a = policy(states)
        alpha, sigma = sde.alpha_sigma(t)
        eps_hat = FixedNoiseModel()(alpha[:, None] * a + sigma[:, None] * z, t, states)
        if baseline:
            eps_hat = eps_hat - z
        w = {"sigma2": sigma**2, "constant": torch.ones(5), "score": alpha / sigma}[weighting]
        c1, c2 = QuadraticQ().c1, QuadraticQ().c2
        grad_q = 0.5 * (-2 * (a - c1) + -4 * (a - c2))  # grad_a of mean(Q1, Q2)
        vector = (w[:, None] * eps_hat - 0.3 * grad_q) / 5  # the loss averages over the batch
    expected = torch.autograd.grad(policy(states), list(policy.parameters()), grad_outputs=vector)
    for got, want in zip(grads, expected, strict=True):
        assert torch.allclose(got, want, atol=1e-6)


def test_no_gradient_reaches_the_behavior_model() -> None:
    model = nn.Linear(2, 2)
    wrapped = lambda a_t, t, s: model(a_t)  # noqa: E731
    policy = nn.Sequential(nn.Linear(1, 2), nn.Tanh())
    loss = score_regularized_loss(policy, wrapped, QuadraticQ(), torch.zeros(4, 1), policy_stage(), VPSDE())
    loss.backward()
    assert model.weight.grad is None


def test_diffusion_weights() -> None:
    alpha, sigma = torch.tensor([0.6]), torch.tensor([0.8])
    assert diffusion_weight("sigma2", alpha, sigma).item() == pytest.approx(0.64)
    assert diffusion_weight("constant", alpha, sigma).item() == 1.0
    assert diffusion_weight("score", alpha, sigma).item() == pytest.approx(0.75)
    with pytest.raises(ConfigError, match="srpo.weighting: expected one of sigma2, constant, score, got 'VDS'"):
        resolve_config(SRPO, get_task("toy-two-moons"), "smoke", {"weighting": "VDS"})


def test_expectile_loss_hand_values() -> None:
    diff = torch.tensor([2.0, -1.0, 0.5, -3.0])
    # tau = 0.7: weights 0.7, 0.3, 0.7, 0.3 -> (0.7*4 + 0.3*1 + 0.7*0.25 + 0.3*9) / 4
    assert expectile_loss(diff, 0.7).item() == pytest.approx((2.8 + 0.3 + 0.175 + 2.7) / 4)
    assert expectile_loss(diff, 0.5).item() == pytest.approx(0.5 * (diff**2).mean().item())


def test_expectile_regression_finds_the_expectile() -> None:
    """Minimising the loss over a constant v gives the tau-expectile, above the mean for tau > 0.5."""
    samples = torch.tensor([0.0, 0.0, 0.0, 1.0])
    v = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([v], lr=0.5)
    for _ in range(500):
        optimizer.zero_grad()
        expectile_loss(samples - v, 0.9).backward()
        optimizer.step()
    # tau-expectile e solves tau * sum_{x>e}(x - e) = (1 - tau) * sum_{x<e}(e - x): 0.9 (1 - e) = 0.1 * 3 e
    assert v.item() == pytest.approx(0.9 / 1.2, abs=1e-4)


def test_d4rl_equivalent_names() -> None:
    assert d4rl_equivalent("lite-hopper-medium-replay-v0") == "hopper-medium-replay-v2"
    assert d4rl_equivalent("minari:D4RL/antmaze/large-diverse-v1") == "antmaze-large-diverse-v2"
    assert d4rl_equivalent("walker2d-medium-v2") == "walker2d-medium-v2"


# --- fidelity: the IQL step order and SRPO's reward scale, against the official formulas ------------------
def iql_step(next_value: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One IQL update from fixed weights; returns (the Q target, V(s') after the step)."""
    torch.manual_seed(0)
    config = IQLCriticStage(steps=1, batch_size=4, lr=0.1, expectile=0.7, gamma=0.9, polyak=0.005,
                            next_value=next_value, reward_transform="none", return_split="trajectory", hidden=8)
    critic = IQLCritic(3, 2, config)
    batch = {"observations": torch.randn(4, 3), "actions": torch.randn(4, 2), "rewards": torch.randn(4),
             "next_observations": torch.randn(4, 3), "terminals": torch.tensor([0.0, 1.0, 0.0, 0.0])}
    v_before = critic.v(batch["next_observations"]).detach()
    targets = []
    original = torch.nn.functional.mse_loss
    torch.nn.functional.mse_loss = lambda q, target: (targets.append(target), original(q, target))[1]
    try:
        critic.update(batch)
    finally:
        torch.nn.functional.mse_loss = original
    expected_v = v_before if next_value == "before_v_step" else critic.v(batch["next_observations"]).detach()
    target = batch["rewards"] + 0.9 * (1 - batch["terminals"]) * expected_v
    return targets[0], target


@pytest.mark.parametrize("next_value", ["before_v_step", "after_v_step"])
def test_iql_q_target_reads_v_before_or_after_the_v_step(next_value: str) -> None:
    """SRPO's `update_q0` computes next_v = vf(s') before the V update; IDQL's `update_q` after `update_v`.
    y = r + gamma (1 - d) V(s') must use the V of that moment (lr 0.1 makes the two differ)."""
    got, want = iql_step(next_value)
    torch.testing.assert_close(got, want)
    other = iql_step("after_v_step" if next_value == "before_v_step" else "before_v_step")[1]
    assert not torch.allclose(want, other)


def test_srpo_return_range_follows_the_official_episode_split() -> None:
    """`utils.return_range`: cut where terminal or the running length hits max_episode_steps, drop the partial
    tail. Rows: [1, 2 | T] [3, 4, 5 | limit 3] [6, 7 | T] [8 | tail, dropped] -> returns 3, 12, 13."""
    rewards = np.array([1, 2, 3, 4, 5, 6, 7, 8], dtype=np.float32)
    terminals = np.array([0, 1, 0, 0, 0, 0, 1, 0], dtype=np.float32)
    assert episode_limit_returns(rewards, terminals, 3).tolist() == [3.0, 12.0, 13.0]
    # the true trajectory ends (here: after rows 1, 4, 6, 7) give another range: 3, 12, 13, 8 -> same span 10,
    # so move the last trajectory end to show they differ: ends after 1 and 7 only -> returns 3 and 33
    ends = np.array([0, 1, 0, 0, 0, 0, 0, 1], dtype=bool)
    dataset = OfflineDataset(name="t", source="t", observations=np.zeros((8, 1)), actions=np.zeros((8, 1)),
                             rewards=rewards, next_observations=np.zeros((8, 1)), terminals=terminals,
                             episode_ends=ends)
    assert return_range(dataset, "episode_limit", 3) == 13.0 - 3.0
    assert return_range(dataset, "trajectory", 3) == 33.0 - 3.0
