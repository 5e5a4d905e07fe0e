"""Flow matching on the linear (rectified) path, and its Euler sampler: the building blocks of flow policies.

A velocity field v(s, x_t, t) is trained to carry noise x_0 ~ N(0, I) to data x_1 = a along
    x_t = (1 - t) x_0 + t x_1,   t ~ U(0, 1),   target velocity  x_1 - x_0,
    L(v) = E || v(s, x_t, t) - (x_1 - x_0) ||^2         (mean over batch and action dimensions),
and sampled by integrating dx/dt = v(s, x, t) from t = 0 to 1 with `steps` Euler steps:
    x_{k+1} = x_k + v(s, x_k, k / steps) / steps.
For a velocity field that is exactly (x_1 - x_0) of a point mass x_1 = c, v(x, t) = (c - x) / (1 - t) and
Euler reaches c exactly at t = 1 (tests/test_fql.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: v(states [B, obs], x_t [B, act], t [B, 1]) -> velocity [B, act]
VelocityField = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def flow_matching_loss(velocity: VelocityField, states: torch.Tensor, actions: torch.Tensor,
                       noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """mean || v(s, (1 - t) x_0 + t a, t) - (a - x_0) ||^2 with x_0 = `noise` and `t` of shape [B, 1]."""
    x_t = (1.0 - t) * noise + t * actions
    return ((velocity(states, x_t, t) - (actions - noise)) ** 2).mean()


def euler_sample(velocity: VelocityField, states: torch.Tensor, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """Integrate the flow from `noise` at t = 0 to t = 1 with `steps` Euler steps (no clipping)."""
    x = noise
    for k in range(steps):
        t = torch.full((x.shape[0], 1), k / steps, device=x.device, dtype=x.dtype)
        x = x + velocity(states, x, t) / steps
    return x
