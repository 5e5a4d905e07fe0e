"""Agents: a trained policy as evaluation and timing see it, and the two shapes every method's agent takes.

- `PolicyAgent`: one deterministic network pass per action (SRPO, BC).
- `CandidateAgent`: draw N candidate actions per state from a generative behavior/policy model, score them
  with a critic, select one (Diffusion-QL, IDQL, SfBC). The three methods differ only in the three callables
  (sampler, scorer, selection rule); batching, seeding and the declared cost live here once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import nn


class Agent(ABC):
    """A trained policy: `act` is the method's exact evaluation-time action selection."""

    #: network evaluations per action, by network ({"policy": 1}; {"denoiser": 250, "critic": 100}).
    network_evaluations: dict[str, int]

    @abstractmethod
    def act(self, observations: torch.Tensor) -> torch.Tensor:
        """[B, obs_dim] float32 on `self.device` -> [B, act_dim] actions in the action box."""

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @property
    def nfe_per_action(self) -> int:
        return int(sum(self.network_evaluations.values()))

    def seed(self, seed: int) -> None:
        """Reseed the agent's own sampling noise (stochastic agents override)."""


class PolicyAgent(Agent):
    """One forward pass of a deterministic policy per action."""

    def __init__(self, policy: nn.Module) -> None:
        self.policy = policy.eval()
        self.network_evaluations = {"policy": 1}

    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    def act(self, observations: torch.Tensor) -> torch.Tensor:
        return self.policy(observations)


#: states [B * N, obs] (state-major: each state repeated N times), generator -> candidates [B * N, act]
Sampler = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
#: states [B * N, obs], candidates [B * N, act] -> scores [B * N]
Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: observations [B, obs], scores [B, N], candidates [B, N, act], generator -> actions [B, act]
Selection = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


class CandidateAgent(Agent):
    """Sample `num_candidates` actions per state, score them, select: all B states in one batched pass.

    The sampler runs first and the selection second, both on the agent's own generator, so an agent reseeded
    with `seed(k)` repeats its actions exactly.
    """

    def __init__(
        self,
        sampler: Sampler,
        scorer: Scorer,
        selection: Selection,
        num_candidates: int,
        act_dim: int,
        network_evaluations: dict[str, int],
        device: torch.device,
    ) -> None:
        self.sampler, self.scorer, self.selection = sampler, scorer, selection
        self.num_candidates = num_candidates
        self.act_dim = act_dim
        self.network_evaluations = network_evaluations
        self._device = torch.device(device)
        self.generator = torch.Generator(device=self._device).manual_seed(0)

    @property
    def device(self) -> torch.device:
        return self._device

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    @torch.no_grad()
    def act(self, observations: torch.Tensor) -> torch.Tensor:
        batch, count = observations.shape[0], self.num_candidates
        states = observations.repeat_interleave(count, dim=0)  # [B * N, obs_dim], state-major
        candidates = self.sampler(states, self.generator)
        scores = self.scorer(states, candidates).reshape(batch, count)
        return self.selection(observations, scores, candidates.reshape(batch, count, self.act_dim), self.generator)


# --- selection rules shared by the candidate methods ----------------------------------------------------
def pick(candidates: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """candidates [B, N, act], index [B] -> [B, act]."""
    return candidates[torch.arange(candidates.shape[0], device=candidates.device), index]


def argmax_selection(observations: torch.Tensor, scores: torch.Tensor, candidates: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
    """The highest-scoring candidate (IDQL's `eval_actions`)."""
    return pick(candidates, scores.argmax(dim=1))


def softmax_draw_selection(observations: torch.Tensor, scores: torch.Tensor, candidates: torch.Tensor,
                           generator: torch.Generator) -> torch.Tensor:
    """One candidate drawn with probability softmax(scores) (Diffusion-QL's `sample_action`, temperature 1)."""
    index = torch.multinomial(torch.softmax(scores, dim=1), 1, generator=generator)  # [B, 1]
    return candidates.gather(1, index[:, :, None].expand(-1, 1, candidates.shape[2])).squeeze(1)
