"""The training levers' switches, in one place: `benchmarks/train_steps.py` turns them all off for its "before"
timings and the whole-stage test trains with them off and on (tests/test_training_levers.py). Each lever is
described where it lives; a new lever adds its switch here."""

from __future__ import annotations

from types import ModuleType

from srpo_bench.core import nn, optim
from srpo_bench.data import sampler

SWITCHES: tuple[tuple[ModuleType, str], ...] = (
    (optim, "FUSED"),  # fused Adam/AdamW
    (sampler, "GATHER_ON_ACCESS"),  # minibatch arrays gathered when read
    (nn, "ONEDNN_LINEAR"),  # large products in oneDNN on AMD CPUs (eager acting takes them too)
    (nn, "FAST_GELU"),  # tanh-GELU through sigmoid
    (nn, "FAST_MISH"),  # compiled sigmoid-form Mish in long stages
    (nn, "DISTINCT_TIMES"),  # a discrete-time denoiser's time path once per distinct time
    (nn, "FAST_DROPOUT"),  # dropout masks from torch's own draws in a tighter loop
)


def set_training_levers(enabled: bool) -> None:
    """Turn every training lever on or off (they are on by default)."""
    for module, name in SWITCHES:
        setattr(module, name, enabled)
