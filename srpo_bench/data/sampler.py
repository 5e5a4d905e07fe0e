"""Minibatches the way the official SRPO code draws them: walk a random permutation of the whole
dataset in order and reshuffle when it runs out (no sampling with replacement).

A minibatch gathers an array only when the training step reads it (`Batch`): a behavior stage that reads
observations and actions does not pay for gathering rewards, next observations and terminals. The rows are
the same either way (one permutation per epoch, whatever is read), so the trained weights are identical.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch

from srpo_bench.core.stages import host_to_device

#: False gathers every array up front, as before (only for A/B timings: benchmarks/train_steps.py)
GATHER_ON_ACCESS = True


class Batch(Mapping[str, torch.Tensor]):
    """The rows `index` of every tensor, each gathered on first access and kept."""

    def __init__(self, tensors: dict[str, torch.Tensor], index: torch.Tensor) -> None:
        self._tensors, self._index = tensors, index
        self._gathered: dict[str, torch.Tensor] = {}
        if not GATHER_ON_ACCESS:
            self._gathered = {key: value[index] for key, value in tensors.items()}

    def __getitem__(self, key: str) -> torch.Tensor:
        value = self._gathered.get(key)
        if value is None:
            value = self._gathered[key] = self._tensors[key][self._index]
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


class EpochSampler:
    """Yields `Batch`es (mappings of tensors, already on the dataset's device), one minibatch per `next()`."""

    def __init__(self, tensors: dict[str, torch.Tensor], batch_size: int, seed: int) -> None:
        self.tensors = tensors
        self.size = int(next(iter(tensors.values())).shape[0])
        self.batch_size = min(batch_size, self.size)
        self.device = next(iter(tensors.values())).device
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self._order = self._permutation()
        self._cursor = 0

    def _permutation(self) -> torch.Tensor:
        # drawn on the CPU generator (the official order), moved without making the host wait for the device: on
        # CUDA a pinned, non-blocking copy, as the per-step samplers do; on the CPU the draw itself, as before
        return host_to_device(torch.randperm(self.size, generator=self.generator), self.device)

    def __iter__(self) -> EpochSampler:
        return self

    def __next__(self) -> Batch:
        if self._cursor + self.batch_size > self.size:
            self._order = self._permutation()
            self._cursor = 0
        index = self._order[self._cursor : self._cursor + self.batch_size]
        self._cursor += self.batch_size
        return Batch(self.tensors, index)
