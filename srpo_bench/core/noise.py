"""Where an agent's random draws come from: drawn from a generator (eager acting, training), or handed in
as tensors (a runtime that exported or compiled the act, a deployed policy).

Every stochastic sampler and selection rule draws through a `Noise` instead of calling `torch.randn(...,
generator=...)` itself. With `Noise(generator)` the draws are exactly the generator's (same values, same
order as the direct calls), so eager acting is unchanged. With `Noise.given(tensors)` the same code consumes
pre-drawn tensors in order, which makes the act a pure function of (observations, noise tensors): it can be
traced, exported to ONNX or compiled, and replayed with noise drawn outside. `Noise.recording(...)` draws
like a generator and keeps the list of draws (`NoiseDraw`: kind, shape, dtype), so a runtime learns the
noise an act consumes at a batch size from one dry run.

Three kinds cover every sampler here: "normal" (`torch.randn`), "uniform" (`torch.rand`, [0, 1)) and
"exponential" (rate 1). `categorical` draws one index per row with probabilities proportional to `weights`
the way `torch.multinomial(weights, 1, generator=g)` does on CPU and CUDA (its one-sample fast path:
argmax of weights / E with E ~ Exp(1), drawn with `g`), so it is exact against the old calls and exportable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

NoiseKind = Literal["normal", "uniform", "exponential"]


@dataclass(frozen=True)
class NoiseDraw:
    """One draw an act makes: its distribution, shape and dtype."""

    kind: NoiseKind
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32

    def draw(self, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        return self.fill(torch.empty(self.shape, device=device, dtype=self.dtype), generator)

    def fill(self, tensor: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Draw into `tensor` in place: the values `torch.randn` / `torch.rand` / `exponential_` give."""
        if self.kind == "normal":
            return tensor.normal_(0.0, 1.0, generator=generator)
        if self.kind == "uniform":
            return tensor.uniform_(0.0, 1.0, generator=generator)
        return tensor.exponential_(1.0, generator=generator)


class Noise:
    """A source of draws: a generator (or torch's global one with None), or a list of given tensors."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator
        self._given: list[torch.Tensor] | None = None
        self.record: list[NoiseDraw] | None = None

    @classmethod
    def given(cls, tensors: Sequence[torch.Tensor]) -> Noise:
        """Consume `tensors` in order (each must have the shape the sampler asks for)."""
        noise = cls()
        noise._given = list(tensors)
        return noise

    @classmethod
    def recording(cls, generator: torch.Generator | None = None) -> Noise:
        """Draw from `generator` and keep the list of draws in `record`."""
        noise = cls(generator)
        noise.record = []
        return noise

    def _take(self, kind: NoiseKind, shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        draw = NoiseDraw(kind, tuple(int(size) for size in shape), dtype)
        if self._given is not None:
            if not self._given:
                raise ValueError(f"the act asked for more noise than given (a {kind} draw of shape {draw.shape})")
            tensor = self._given.pop(0)
            if tuple(tensor.shape) != draw.shape:
                raise ValueError(f"given noise has shape {tuple(tensor.shape)}, the act draws {kind} {draw.shape}")
            return tensor
        if self.record is not None:
            self.record.append(draw)
        return draw.draw(self.generator, device)

    def normal(self, shape: Sequence[int], device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self._take("normal", shape, device, dtype)

    def uniform(self, shape: Sequence[int], device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self._take("uniform", shape, device, dtype)

    def exponential(self, shape: Sequence[int], device: torch.device,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self._take("exponential", shape, device, dtype)

    def categorical(self, weights: torch.Tensor) -> torch.Tensor:
        """[B, N] non-negative weights -> [B] indices, as `torch.multinomial(weights, 1, generator=g)[:, 0]`."""
        race = self.exponential(weights.shape, weights.device, weights.dtype)
        return (weights / race).argmax(dim=1)


def as_noise(source: Noise | torch.Generator | None) -> Noise:
    """Samplers accept a `Noise`, a generator or None (torch's global generator)."""
    return source if isinstance(source, Noise) else Noise(source)


def draw_all(draws: Sequence[NoiseDraw], generator: torch.Generator | None, device: torch.device) -> list[torch.Tensor]:
    """The tensors of `draws`, drawn in order from `generator`: the same values an eager act would draw."""
    return [draw.draw(generator, device) for draw in draws]
