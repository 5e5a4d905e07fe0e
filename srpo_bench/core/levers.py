"""The training levers' switches, in one place: `benchmarks/train_steps.py` turns them all off for its "before"
timings and the whole-stage test trains with them off and on (tests/test_training_levers.py). Each lever is
described where it lives; a new lever adds its switch here. `OPT_IN` holds the levers that are off by default
(the captured training step, `srpo_bench.core.stages.CAPTURE_STEPS`: tests/test_capture_lever.py)."""

from __future__ import annotations

from types import ModuleType

from srpo_bench.core import nn, optim, stages
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


#: levers that are off unless asked for: they are not yet measured to pay everywhere (a captured step compiles for
#: tens of seconds per stage, which a short stage or a CPU does not earn back; on a GPU `benchmarks/gpu_check.py`
#: measures it). `set_training_levers` leaves them alone.
OPT_IN: tuple[tuple[ModuleType, str], ...] = (
    (stages, "CAPTURE_STEPS"),  # each stage's per-step loss computation through torch.compile (CUDA graphs on GPU)
)


def set_training_levers(enabled: bool) -> None:
    """Turn every default-on training lever on or off (they are on by default); the opt-in ones stay as they are."""
    for module, name in SWITCHES:
        setattr(module, name, enabled)


def set_opt_in_levers(enabled: bool) -> None:
    """Turn the opt-in levers (`OPT_IN`) on or off (off by default)."""
    for module, name in OPT_IN:
        setattr(module, name, enabled)
