"""Image folders of any size: files decoded batch by batch in DataLoader worker processes.

`TensorBatches` holds a whole decoded folder in memory, which is the fastest path but grows with the
folder (a 224 px training set takes 196 kB an image, about 2 GB for 10,000 photos). `StreamedImages`
keeps only the file list and decodes each batch when it is needed, so memory stays flat however many
images there are: a few batches in flight, not the folder.

Decoding runs in worker processes, not threads: OpenCV releases the GIL while it decodes, but decode +
resize of a photo is CPU-bound work of a few milliseconds, and the preparation around it (numpy
stacking, the collate) holds the GIL. Processes decode the next batches while the model trains on the
current one; each worker keeps OpenCV to one thread, so `workers` processes use about `workers` cores.

Everything else matches TensorBatches (it is one, over file indices): the same seeded order per epoch,
the same torchrun shares, the uint8 batch handed to `transform` on the device (normalisation and
augmentation stay there), so both loaders give the same batches for the same readable files and seed.
On CUDA the batches come through pinned memory and are copied without blocking.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from torchtools.core import distributed
from torchtools.data.images import DEFAULT_MAX_PIXELS, Unreadable, read_picture
from torchtools.data.loaders import TensorBatches

Prepare = Callable[[np.ndarray], np.ndarray]


def default_workers() -> int:
    """Decoding processes when none are asked for: one a core, at most 8 (more rarely pays off)."""
    return min(os.cpu_count() or 1, 8)


class DecodedBatch(NamedTuple):
    """What a worker hands back: the readable images (N, C, H, W) uint8, their labels and paths, and
    the files it could not decode (so the main process can name them)."""

    images: Tensor
    labels: Tensor
    paths: list[Path]
    failed: list[Path]


class ImageFiles(Dataset):
    """Item i: (path, prepared uint8 image or None where the file cannot be read, label)."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], prepare: Prepare, *, grayscale: bool,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        self.paths, self.labels, self.prepare, self.grayscale = list(paths), list(labels), prepare, grayscale
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Path, np.ndarray | None, int]:
        path = self.paths[index]
        try:
            image = self.prepare(read_picture(path, grayscale=self.grayscale, max_pixels=self.max_pixels))
        except Unreadable:
            image = None
        return path, image, self.labels[index]


def collate_decoded(items: list[tuple[Path, np.ndarray | None, int]]) -> DecodedBatch:
    """Stack the readable images as (N, C, H, W) uint8; list the unreadable files instead of failing."""
    good = [(path, image, label) for path, image, label in items if image is not None]
    failed = [path for path, image, _ in items if image is None]
    if not good:
        return DecodedBatch(torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), [], failed)
    stacked = np.stack([image if image.ndim == 3 else image[:, :, None] for _, image, _ in good])
    images = torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([label for _, _, label in good], dtype=torch.long)
    return DecodedBatch(images, labels, [path for path, _, _ in good], failed)


def _one_opencv_thread(_worker: int) -> None:
    # Each worker is one core's worth of decoding; OpenCV's own thread pool per worker would oversubscribe.
    cv2.setNumThreads(1)


def decoding_loader(files: ImageFiles, batches, *, workers: int | None, pin_memory: bool = False,
                    persistent: bool = False) -> DataLoader:
    """A DataLoader yielding a DecodedBatch for each list of indices in `batches`, in that order.

    Workers start from a fork server, not by forking this process: a fork taken while training threads
    (OpenMP, TensorBoard, progress) hold locks left workers hung in the test suite. The server preloads
    this module, so a worker starts in milliseconds. `prepare` travels to the workers with the dataset, so
    it must be picklable (a bound method of a frozen dataclass, a module-level function, a partial).
    `persistent` keeps the workers alive from one iteration (epoch) to the next.
    """
    workers = default_workers() if workers is None else workers
    return DataLoader(files, batch_sampler=batches, num_workers=workers, collate_fn=collate_decoded,
                      pin_memory=pin_memory, worker_init_fn=_one_opencv_thread if workers else None,
                      multiprocessing_context=_worker_context() if workers else None,
                      persistent_workers=persistent and workers > 0)


class _EpochBatches:
    """A batch sampler whose batches are replaced before each epoch, so one DataLoader serves them all."""

    def __init__(self):
        self.batches: list[list[int]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _Decoder:
    """One DataLoader and its worker processes for every epoch of a StreamedImages (started on first use).

    Shared by the copies evaluation makes of a StreamedImages (copy.copy keeps this object), so their
    epochs reuse the same workers too.
    """

    def __init__(self, files: ImageFiles, workers: int | None, pin_memory: bool):
        self.files, self.workers, self.pin_memory = files, workers, pin_memory
        self.sampler = _EpochBatches()
        self.loader: DataLoader | None = None

    def epoch(self, batches: list[list[int]]) -> Iterator[DecodedBatch]:
        self.sampler.batches = batches  # read when the iteration starts, below
        if self.loader is None:
            self.loader = decoding_loader(self.files, self.sampler, workers=self.workers, pin_memory=self.pin_memory,
                                          persistent=True)
        return iter(self.loader)

    def close(self) -> None:
        """Stop the worker processes now (they also stop when this object is collected, or at exit)."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader = None


@functools.cache
def _worker_context():
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")  # Windows
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


class StreamedImages(TensorBatches):
    """Batches of (transform(uint8 images), int64 labels) on `device`, decoded from image files as needed.

    A TensorBatches over file indices: order, `set_epoch`, `shard` and `__len__` are its own, so the
    engine treats both alike. Files that cannot be decoded are left out of their batch and named in
    `skipped` (each once, however many epochs meet them). A batch whose files are all unreadable is
    left out, and in training (shuffled) under torchrun every process leaves that step out together
    (`distributed.all_agree`), so no process waits in a step the others skipped.

    The decoding workers persist from epoch to epoch (one DataLoader for the whole run); `close` stops them.
    """

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], prepare: Prepare, *, grayscale: bool,
                 batch_size: int, shuffle: bool = False, seed: int = 0,
                 transform: Callable[[Tensor], Tensor] | None = None, device: torch.device, drop_last: bool = False,
                 workers: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        super().__init__(torch.arange(len(paths)), torch.tensor(list(labels), dtype=torch.long),
                         batch_size=batch_size, shuffle=shuffle, seed=seed, transform=transform, drop_last=drop_last)
        self.files = ImageFiles(paths, labels, prepare, grayscale=grayscale, max_pixels=max_pixels)
        self.device, self.workers = torch.device(device), workers
        self._decoder = _Decoder(self.files, workers, pin_memory=self.device.type == "cuda")
        self.skipped: list[Path] = []
        self._skipped_set: set[Path] = set()

    def _epoch_batches(self) -> list[list[int]]:
        """This epoch's batches of file indices, exactly as TensorBatches slices its order."""
        order = self._begin_epoch().tolist()
        return [order[number * self.batch_size:(number + 1) * self.batch_size] for number in range(len(self))]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        cuda = self.device.type == "cuda"
        for batch in self._decoder.epoch(self._epoch_batches()):
            self._record(batch.failed)
            # Unreadable files can leave a training batch of one image, which BatchNorm cannot normalise.
            usable = bool(batch.paths) and not (self.shuffle and batch.failed and len(batch.paths) == 1)
            if self.shuffle:  # training: under torchrun all processes take this step, or none does
                usable = distributed.all_agree(usable)
            if not usable:
                continue
            images = batch.images.to(self.device, non_blocking=cuda)
            labels = batch.labels.to(self.device, non_blocking=cuda)
            yield (self.transform(images) if self.transform else images), labels

    def close(self) -> None:
        """Stop the decoding workers (a later epoch starts new ones)."""
        self._decoder.close()

    def _record(self, failed: list[Path]) -> None:
        for path in failed:
            if path not in self._skipped_set:
                self._skipped_set.add(path)
                self.skipped.append(path)

    def peek(self, count: int) -> Tensor:
        """The first `count` readable images in file order, prepared, as one uint8 (N, C, H, W) tensor
        (for a TensorBoard grid); decoded here, in this process, the unreadable ones recorded."""
        readable, failed = [], []
        for index in range(len(self.files)):
            if len(readable) == count:
                break
            item = self.files[index]
            (readable if item[1] is not None else failed).append(item)
        self._record([path for path, _, _ in failed])
        return collate_decoded(readable).images
