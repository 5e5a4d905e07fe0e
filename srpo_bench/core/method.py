"""`Method`: how an offline-RL method meets the rest of the system.

A method is one file with, top to bottom: its `Config` (a frozen dataclass; defaults are the official settings,
choices are `Literal`s), its `stages` (what it trains, as data: see `core/stages.py`), its losses, and its agent.
`fit` trains the declared stages through `ctx.fit` and returns an `Agent`. Register it with one entry point in
pyproject.toml (group `srpo_bench.methods`); the README's "Adding a method" section walks through it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from srpo_bench.core.agents import Agent
from srpo_bench.core.stages import FitContext, PlanContext, Stage
from srpo_bench.tasks import Task

FAMILIES = ("toy", "locomotion", "antmaze", "ogbench")


class Method(ABC):
    name: ClassVar[str]
    Config: ClassVar[type]  # a frozen dataclass whose defaults are the official settings
    #: profile -> family ("toy" | "locomotion" | "antmaze" | "ogbench") -> setting overrides. "paper" is the official
    #: schedule and overrides nothing.
    profiles: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}

    @classmethod
    def task_settings(cls, task: Task) -> dict[str, Any]:
        """Per-task official settings (temperatures, expectiles...) as setting overrides."""
        return {}

    @classmethod
    @abstractmethod
    def stages(cls, config: Any, plan: PlanContext) -> tuple[Stage, ...]:
        """The stages `fit` trains, in order, each with the whole config that determines its weights."""

    @abstractmethod
    def fit(self, ctx: FitContext, config: Any) -> Agent: ...
