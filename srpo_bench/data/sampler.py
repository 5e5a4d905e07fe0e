"""Minibatches the way the official SRPO code draws them: walk a random permutation of the whole
dataset in order and reshuffle when it runs out (no sampling with replacement)."""

from __future__ import annotations

import torch


class EpochSampler:
    """Yields dicts of tensors (already on the dataset's device), one minibatch per `next()`."""

    def __init__(self, tensors: dict[str, torch.Tensor], batch_size: int, seed: int) -> None:
        self.tensors = tensors
        self.size = int(next(iter(tensors.values())).shape[0])
        self.batch_size = min(batch_size, self.size)
        self.device = next(iter(tensors.values())).device
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self._order = self._permutation()
        self._cursor = 0

    def _permutation(self) -> torch.Tensor:
        return torch.randperm(self.size, generator=self.generator).to(self.device)

    def __iter__(self) -> EpochSampler:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._cursor + self.batch_size > self.size:
            self._order = self._permutation()
            self._cursor = 0
        index = self._order[self._cursor : self._cursor + self.batch_size]
        self._cursor += self.batch_size
        return {key: value[index] for key, value in self.tensors.items()}
