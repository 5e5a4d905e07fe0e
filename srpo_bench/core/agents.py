"""Agents: a trained policy as evaluation and timing see it, and the two shapes every method's agent takes.

- `PolicyAgent`: one deterministic network pass per action (SRPO, BC).
- `CandidateAgent`: draw N candidate actions per state from a generative behavior/policy model, score them
  with a critic, select one (Diffusion-QL, IDQL, SfBC). The three methods differ only in the three callables
  (sampler, scorer, selection rule); batching, seeding and the declared cost live here once.

The contract: `act_with_noise(observations, noise)` is the method's whole evaluation-time act as a pure function
of the observations and the random draws it takes from `noise` (`core/noise.py`); `act(observations)` is that
function with the draws taken from the agent's own generator. A runtime (`srpo_bench/runtimes.py`) records the
draws once, then exports or compiles `act_with_noise` with the noise as inputs: no per-method code. An agent
that only overrides `act` still acts eagerly; the runtimes say it cannot be exported.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import nn

from srpo_bench.core.noise import Noise, as_noise


class Agent(ABC):
    """A trained policy: `act` is the method's exact evaluation-time action selection."""

    #: network evaluations per action, by network ({"policy": 1}; {"denoiser": 250, "critic": 100}).
    network_evaluations: dict[str, int]

    def act(self, observations: torch.Tensor) -> torch.Tensor:
        """[B, obs_dim] float32 on `self.device` -> [B, act_dim] actions in the action box."""
        return self.act_with_noise(observations, Noise(self.generator))

    def act_with_noise(self, observations: torch.Tensor, noise: Noise) -> torch.Tensor:
        """`act` with every random draw taken from `noise`: a pure function of observations and given noise."""
        raise NotImplementedError(f"{type(self).__name__} implements act() only, not act_with_noise(observations, "
                                  "noise): it acts eagerly and cannot be exported or compiled")

    @property
    def pure(self) -> bool:
        """Whether the agent implements `act_with_noise` (what the compiled and onnx runtimes need)."""
        return type(self).act_with_noise is not Agent.act_with_noise

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @property
    def nfe_per_action(self) -> int:
        return int(sum(self.network_evaluations.values()))

    @property
    def generator(self) -> torch.Generator:
        """The agent's own sampling generator on its device (seed 0 until `seed` is called)."""
        generator = self.__dict__.get("_generator")
        if generator is None:
            generator = self.__dict__["_generator"] = torch.Generator(device=self.device).manual_seed(0)
        return generator

    @generator.setter
    def generator(self, generator: torch.Generator) -> None:
        self.__dict__["_generator"] = generator

    def seed(self, seed: int) -> None:
        """Reseed the agent's own sampling noise."""
        self.generator.manual_seed(seed)


class PolicyAgent(Agent):
    """One forward pass of a deterministic policy per action."""

    def __init__(self, policy: nn.Module) -> None:
        self.policy = policy.eval()
        self.network_evaluations = {"policy": 1}

    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    def act(self, observations: torch.Tensor) -> torch.Tensor:
        # draws nothing: no Noise object is built on the batch-1 hot path
        return self.policy(observations)

    def act_with_noise(self, observations: torch.Tensor, noise: Noise) -> torch.Tensor:
        return self.policy(observations)


#: states [B * N, obs] (state-major: each state repeated N times), noise -> candidates [B * N, act]
Sampler = Callable[[torch.Tensor, Noise], torch.Tensor]
#: states [B * N, obs], candidates [B * N, act] -> scores [B * N]
Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: observations [B, obs], scores [B, N], candidates [B, N, act], noise -> actions [B, act]
Selection = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Noise], torch.Tensor]


class CandidateAgent(Agent):
    """Sample `num_candidates` actions per state, score them, select: all B states in one batched pass.

    The sampler draws first and the selection second, both from the agent's own generator, so an agent
    reseeded with `seed(k)` repeats its actions exactly.
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

    @property
    def device(self) -> torch.device:
        return self._device

    @torch.no_grad()
    def act_with_noise(self, observations: torch.Tensor, noise: Noise) -> torch.Tensor:
        batch, count = observations.shape[0], self.num_candidates
        states = observations.repeat_interleave(count, dim=0)  # [B * N, obs_dim], state-major
        candidates = self.sampler(states, noise)
        scores = self.scorer(states, candidates).reshape(batch, count)
        return self.selection(observations, scores, candidates.reshape(batch, count, self.act_dim), noise)


# --- selection rules shared by the candidate methods ----------------------------------------------------
def pick(candidates: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """candidates [B, N, act], index [B] -> [B, act]."""
    return candidates.gather(1, index[:, None, None].expand(-1, 1, candidates.shape[2])).squeeze(1)


def argmax_selection(observations: torch.Tensor, scores: torch.Tensor, candidates: torch.Tensor,
                     noise: Noise | torch.Generator | None = None) -> torch.Tensor:
    """The highest-scoring candidate (IDQL's `eval_actions`)."""
    return pick(candidates, scores.argmax(dim=1))


def softmax_draw_selection(observations: torch.Tensor, scores: torch.Tensor, candidates: torch.Tensor,
                           noise: Noise | torch.Generator | None = None) -> torch.Tensor:
    """One candidate drawn with probability softmax(scores) (Diffusion-QL's `sample_action`, temperature 1)."""
    return pick(candidates, as_noise(noise).categorical(torch.softmax(scores, dim=1)))
