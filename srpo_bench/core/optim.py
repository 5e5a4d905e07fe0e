"""The optimizers every method trains with: torch's Adam / AdamW with the fused kernel where torch has one.

`fused=True` runs each optimizer step as one kernel over all parameters instead of a Python loop of per-tensor
ops: the same update rule (Kingma & Ba; AdamW's decoupled weight decay), the same defaults, equal weights to
float tolerance (tests/test_training_levers.py: 1e-6 after a few hundred steps), and much less per-step
overhead on CPU for the many small tensors of these networks (measured 2026-12-01: IDQL's actor step 4.2 ms -> 1.6 ms).
`FUSED = False` restores torch's default implementation (for A/B timings: `benchmarks/train_steps.py`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

FUSED = True


def _fused(parameters: list[torch.Tensor]) -> bool:
    return FUSED and bool(parameters) and all(
        p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in parameters)


def adam(parameters: Iterable[torch.Tensor], lr: float) -> torch.optim.Adam:
    params = list(parameters)
    return torch.optim.Adam(params, lr=lr, fused=_fused(params) or None)


def adamw(parameters: Iterable[torch.Tensor], lr: float, weight_decay: float = 0.01) -> torch.optim.AdamW:
    """torch's AdamW (default weight decay 0.01, as the official codes use it)."""
    params = list(parameters)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=_fused(params) or None)
