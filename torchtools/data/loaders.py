"""In-memory batching: whole small datasets as tensors on the device, shuffled and sliced per epoch.

The course's DataLoader spends most of an epoch in per-sample conversion and collation. When a dataset
fits in memory, one tensor on the training device and a shuffled index per epoch do the same job with
a single gather per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor


class TensorBatches:
    """Batches of (inputs, targets) sliced from tensors already on the device.

    Each epoch (each `iter`) draws a new permutation from `seed` and the epoch count, so runs repeat
    exactly. `transform` runs on each whole input batch (normalisation, augmentation) on the device.
    Under torchrun, `shard(rank, world_size)` makes each process take its strided share of every epoch.
    """

    def __init__(self, inputs: Tensor, targets: Tensor, *, batch_size: int, shuffle: bool = False,
                 seed: int = 0, transform: Callable[[Tensor], Tensor] | None = None, drop_last: bool = False):
        if len(inputs) != len(targets):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.transform, self.drop_last = transform, drop_last
        self.epoch = 0
        self.rank, self.world_size = 0, 1

    def shard(self, rank: int, world_size: int) -> TensorBatches:
        self.rank, self.world_size = rank, world_size
        return self

    def _indices(self) -> Tensor:
        count = len(self.targets)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(count, generator=generator)
        else:
            order = torch.arange(count)
        # Equal shares for every rank (DDP needs the same number of steps everywhere): drop the tail.
        per_rank = count // self.world_size
        order = order[self.rank::self.world_size][:per_rank]
        return order.to(self.targets.device)

    def __len__(self) -> int:
        samples = len(self.targets) // self.world_size
        return samples // self.batch_size if self.drop_last else -(-samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self._indices()
        self.epoch += 1
        for batch_number in range(len(self)):
            index = order[batch_number * self.batch_size:(batch_number + 1) * self.batch_size]
            inputs = self.inputs[index]
            yield (self.transform(inputs) if self.transform else inputs), self.targets[index]


def stratified_split(labels: Sequence[int] | np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held_out): `fraction` of each class held out, chosen by a seeded shuffle.

    Every class with at least two samples keeps at least one on each side.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, held_out = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = int(round(len(members) * fraction))
        if len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        held_out.append(members[:count])
        train.append(members[count:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held_out))
