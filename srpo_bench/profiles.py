"""Profiles: `paper` is every method's official schedule; `quick` fits a laptop; `smoke` runs in seconds.

Training step counts per method live next to each method (`Method.profiles`) so a new method is one file.
`quick` budgets are matched in CPU time, not in steps: on a locomotion task each method trains for about
4-6 minutes at one thread (SRPO 3k behavior + 20k IQL + 5k policy steps; Diffusion-QL 5k joint steps; IDQL
3k actor + 20k IQL steps; SfBC 5k behavior steps + 2 planning iterations; FQL 1.5k joint steps of its 4 x 512
networks), and wherever two methods train the
same IQL critic it gets the same number of steps. A new method's quick schedule should keep to that budget.
What the harness itself does per profile (evaluation episodes, timing repeats) lives here and is the same
for every method, so no method gets more evaluation episodes or gentler timing than another.
"""

from __future__ import annotations

from dataclasses import dataclass

PROFILE_NAMES = ("smoke", "quick", "paper", "ogbench-cpu")
#: profiles made for some families only: a run of any other family, or of a method without a schedule for it, is
#: refused (config.resolve_config), never trained at the official schedule by default
PROFILE_FAMILIES = {"ogbench-cpu": ("ogbench",)}

#: `ogbench-cpu`: this project's budget, not any paper's. About 15 minutes of CPU time per run at one thread
#: (900 s), split into step counts by the training speeds measured at OGBench shapes (obs 28, act 5) on this
#: machine's CPU with `benchmarks/train_steps.py` (steps/s at one thread: SRPO behavior 25 at batch 256, IQL
#: critic 142-143, SRPO policy 58, IDQL actor 30 at batch 256, FQL 6.6, BC 476). Each method's file holds its
#: step counts; docs/reproducing.md and the `ogbench-cpu` protocol say how it was chosen.
CPU_BUDGET_SECONDS = 900


@dataclass(frozen=True)
class HarnessSettings:
    eval_episodes: int  # toy: one-step episodes, so many are cheap
    speed_repeats: int
    speed_max_seconds: float  # cap per batch size, so a slow sampler cannot stall a run
    #: evaluations of the policy during its last training stage, evenly spaced (the official codes evaluate as
    #: they train: IDQL every 250k of 3M steps, Diffusion-QL every 50 of 2000 epochs); the final policy's
    #: evaluation is the run's score and the curve's last point.
    evaluations_during_training: int


HARNESS: dict[str, dict[str, HarnessSettings]] = {
    # smoke ogbench: one 200-750-step episode and no evaluation during training (candidate samplers act ~1,000
    # times per episode), so a smoke run of every method stays in seconds.
    "smoke": {"toy": HarnessSettings(64, 3, 1.0, 1), "ogbench": HarnessSettings(1, 3, 1.0, 0),
              "default": HarnessSettings(2, 3, 1.0, 1)},
    # ogbench: a success rate needs more episodes than a mean return; they are short (200-750 steps).
    "quick": {"toy": HarnessSettings(256, 10, 3.0, 2), "ogbench": HarnessSettings(10, 10, 5.0, 2),
              "default": HarnessSettings(5, 10, 5.0, 2)},
    # paper: SRPO's official protocol evaluates 20 episodes (seeds 1001-1020); applied to every method. Nine
    # evaluations during training (every 10 %) give the curve its last-3 mean.
    # ogbench paper: FQL's protocol, 50 episodes (`main.py --eval_episodes`), applied to every method.
    "paper": {"toy": HarnessSettings(1000, 30, 20.0, 9), "ogbench": HarnessSettings(50, 30, 20.0, 9),
              "default": HarnessSettings(20, 30, 20.0, 9)},
    # ogbench-cpu: 20 episodes per evaluation (batched: the 20 envs step together), 4 evaluations during the last
    # stage (every 20 %) besides the final one, so each run gives its score-against-training-time curve.
    "ogbench-cpu": {"ogbench": HarnessSettings(20, 10, 5.0, 4)},
}


def harness_settings(profile: str, family: str) -> HarnessSettings:
    table = HARNESS[profile]
    if family not in table and "default" not in table:
        families = ", ".join(PROFILE_FAMILIES.get(profile, tuple(table)))
        raise ValueError(f"profile '{profile}' is made for the {families} family only, not {family}")
    return table.get(family, table.get("default"))  # type: ignore[return-value]
