"""In-memory batching: whole small datasets as tensors on the device, shuffled and sliced per epoch.

The course's DataLoader spends most of an epoch in per-sample conversion and collation. When a dataset
fits in memory, one tensor on the training device and a shuffled index per epoch do the same job with
a single gather per batch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from torchtools.core import distributed


class TensorBatches:
    """Batches of (inputs, targets) sliced from tensors already on the device.

    Each epoch (each `iter`, or as set by `set_epoch`) draws a new permutation from `seed` and the epoch
    count, so runs repeat exactly. `transform` runs on each whole input batch (normalisation,
    augmentation) on the device.

    Under torchrun each process takes its share on construction (see `shard`): every process draws the
    same permutation and keeps the positions rank, rank + world_size, ... of it. Iterate them in every
    process alike (fit and evaluate do): a process iterating alone would wait for the others.
    """

    def __init__(self, inputs: Tensor, targets: Tensor, *, batch_size: int, shuffle: bool = False,
                 seed: int = 0, transform: Callable[[Tensor], Tensor] | None = None, drop_last: bool = False):
        if len(inputs) != len(targets):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.transform, self.drop_last = transform, drop_last
        self.epoch = 0
        self.shard(distributed.rank(), distributed.world_size())

    def shard(self, rank: int, world_size: int, *, every_sample: bool = False) -> TensorBatches:
        """Keep only this process's strided share of every epoch's order.

        Shares are equal by default, as DDP training needs (every process takes the same number of
        steps), so the last len % world_size samples of each epoch's order sit that epoch out; a new
        permutation picks others next epoch. `every_sample` (evaluation) keeps them: shares then
        differ by at most one sample and together hold each sample exactly once.
        """
        self.rank, self.world_size, self.every_sample = rank, world_size, every_sample
        return self

    def set_epoch(self, epoch: int) -> None:
        """Draw the next iteration's order for this (0-based) epoch, e.g. when a run is resumed."""
        self.epoch = epoch

    def _begin_epoch(self) -> Tensor:
        """This iteration's order, with the transform's augmentation reseeded for its epoch (so a resumed run
        draws what an unbroken one would), and the epoch count moved on."""
        order = self._indices()
        if hasattr(self.transform, "set_epoch"):
            self.transform.set_epoch(self.epoch)
        self.epoch += 1
        return order

    def _indices(self) -> Tensor:
        count = len(self.targets)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(count, generator=generator)
        else:
            order = torch.arange(count)
        return order[self.rank::self.world_size][:self._share()].to(self.targets.device)

    def _share(self) -> int:
        count = len(self.targets)
        return len(range(self.rank, count, self.world_size)) if self.every_sample else count // self.world_size

    def __len__(self) -> int:
        samples = self._share()
        return samples // self.batch_size if self.drop_last else -(-samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self._begin_epoch()
        for batch_number in range(len(self)):
            index = order[batch_number * self.batch_size:(batch_number + 1) * self.batch_size]
            inputs = self.inputs[index]
            yield (self.transform(inputs) if self.transform else inputs), self.targets[index]


def every_sample(batches: TensorBatches) -> TensorBatches:
    """A view of `batches` that yields each sample once, in order, in this process alone (no shuffle, no
    dropped last batch, no torchrun share): to compute something of every sample."""
    view = copy.copy(batches)
    view.shuffle, view.drop_last = False, False
    return view.shard(0, 1, every_sample=True)


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
