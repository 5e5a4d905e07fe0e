"""A sixth method is one file plus one entry point: the README's "Adding a method" steps, done from a test.

The method file and its entry point are written into a temporary folder put on sys.path as a tiny installed
distribution (`*.dist-info/entry_points.txt`), which is exactly what `pip install` makes of the one line a
method adds to its pyproject.toml. Then `srpo-bench list` shows it and `srpo-bench run` trains, evaluates and
times it end to end. A method whose module fails to import stays listed with its error and is refused by `run`.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from srpo_bench.cli import app

# Step 1 of the README: one file. Mean-action behavior cloning: one stage, one buffer, one pass per action.
TINY_METHOD = '''
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from srpo_bench.core.agents import Agent, PolicyAgent
from srpo_bench.core.method import FAMILIES, Method
from srpo_bench.core.stages import FitContext, PlanContext, Stage, StageConfig


@dataclass(frozen=True)
class MeanActionConfig(StageConfig):
    shrink: float = 1.0  # the action is shrink * mean dataset action


class MeanAction(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.anchor = nn.Linear(obs_dim, act_dim)  # Agent.device reads a parameter
        self.register_buffer("mean", torch.zeros(act_dim))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.mean.expand(observations.shape[0], -1)


class Tiny(Method):
    name = "tiny"
    Config = MeanActionConfig
    profiles: ClassVar[dict] = {"smoke": {family: {} for family in FAMILIES}}

    @classmethod
    def stages(cls, config: MeanActionConfig, plan: PlanContext) -> tuple[Stage, ...]:
        return (Stage("policy", config),)

    def fit(self, ctx: FitContext, config: MeanActionConfig) -> Agent:
        actions = ctx.dataset.tensors(ctx.device)["actions"]

        def train(policy: MeanAction) -> None:
            for step, _bar in ctx.steps("policy", 1):
                policy.mean.copy_(config.shrink * actions.mean(dim=0))
                ctx.log("policy", step, norm=float(policy.mean.norm()))

        return PolicyAgent(ctx.fit("policy", lambda: MeanAction(ctx.dataset.obs_dim, ctx.dataset.act_dim), train))
'''


def install(folder: Path, entry_points: dict[str, str]) -> None:
    """Step 2: one entry point line per method (group srpo_bench.methods), as pip installs it."""
    info = folder / "tiny_methods-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-methods\nVersion: 0.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[srpo_bench.methods]\n{lines}")


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_a_method_from_one_file_and_one_entry_point_runs_end_to_end(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tiny_method.py").write_text(textwrap.dedent(TINY_METHOD))
    install(tmp_path, {"tiny": "tiny_method:Tiny"})
    monkeypatch.syspath_prepend(str(tmp_path))

    listed = invoke("list")
    assert listed.exit_code == 0 and "tiny" in listed.output

    out = tmp_path / "results"
    result = invoke("run", "--envs", "toy-two-moons", "--methods", "tiny,bc", "--seeds", "0", "--profile", "smoke",
                    "--out", str(out), "--device", "cpu", "--quiet", "--set", "tiny.shrink=0.5")
    assert result.exit_code == 0, result.output
    assert "tiny[shrink=0.5]" in result.output  # the summary table lists runs made with overrides, labelled
    run_dir = out / "runs" / "smoke" / "toy-two-moons" / "tiny" / "seed0"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "finished" and run["config"] == {"shrink": 0.5}
    assert json.loads((run_dir / "speed.json").read_text())["nfe_per_action"] == 1
    assert len(json.loads((run_dir / "eval.json").read_text())["returns"]) == 64

    bad = invoke("run", "--envs", "toy-two-moons", "--methods", "tiny", "--set", "tiny.shrink=lots", "--seeds", "0",
                 "--profile", "smoke", "--out", str(tmp_path / "other"))
    assert bad.exit_code == 2 and "tiny.shrink: expected float, got 'lots'" in bad.output


def test_a_method_that_fails_to_import_is_listed_with_its_error_and_refused(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_method.py").write_text("import a_package_that_is_not_installed\n")
    install(tmp_path, {"broken": "broken_method:Broken"})
    monkeypatch.syspath_prepend(str(tmp_path))

    listed = invoke("list")
    assert listed.exit_code == 0
    assert "cannot load broken (broken_method:Broken): ModuleNotFoundError" in listed.output

    for methods in ("broken", "all"):
        result = invoke("run", "--envs", "toy-two-moons", "--methods", methods, "--seeds", "0", "--profile", "smoke",
                        "--out", str(tmp_path / "r"))
        assert result.exit_code == 2
        assert "method 'broken' (broken_method:Broken) cannot be loaded: ModuleNotFoundError" in result.output
    assert not (tmp_path / "r").exists()
