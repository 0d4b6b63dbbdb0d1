"""Vision datasets as whole uint8 tensors in memory: the ImageSet, MNIST-style IDX files and CIFAR batches.

Image folders are read by torchtools.data.folders into the same ImageSet.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from torchtools.core.errors import UserError

MNIST_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
CIFAR_CLASSES = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}
# The course's MNIST normalisation (the training set's mean and std), used for all three MNIST-style sets.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


@dataclass
class ImageSet:
    """A whole dataset in memory: uint8 images (N, C, H, W) and int64 labels for each split."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    classes: list[str]
    source: str  # where it was read from, for the user
    skipped: list[Path] = field(default_factory=list)  # files that could not be read (image folders)

    def to(self, device: torch.device) -> ImageSet:
        return dataclasses.replace(self, train_images=self.train_images.to(device),
                                   train_labels=self.train_labels.to(device),
                                   test_images=self.test_images.to(device), test_labels=self.test_labels.to(device))


def load_mnist(kind: str, root: Path, *, download: bool) -> ImageSet:
    """MNIST, Fashion-MNIST or KMNIST from root/<Name>/raw (the IDX files, plain or .gz)."""
    import torchvision.datasets as datasets

    dataset_class = getattr(datasets, MNIST_CLASSES[kind])
    raw = Path(root) / dataset_class.__name__ / "raw"
    names = [Path(url).stem for url, _ in dataset_class.resources]  # the unpacked IDX file names
    _unpack_gzip(raw, names)
    if not all((raw / name).is_file() for name in names):
        _download(lambda: dataset_class(str(root), train=True, download=True), download, raw,
                  [f"{name}.gz" for name in names])
    train, test = (dataset_class(str(root), train=split, download=False) for split in (True, False))
    return ImageSet(train.data.unsqueeze(1), train.targets.long(), test.data.unsqueeze(1), test.targets.long(),
                    list(train.classes), str(raw))


def _unpack_gzip(folder: Path, names: list[str]) -> None:
    """Unpack NAME.gz beside itself where NAME is absent, as torchvision would, without its md5 check.

    torchvision only unpacks files matching the published checksums; re-compressed or hand-made IDX
    files are fine to read. The write is atomic, so concurrent runs never see half a file.
    """
    for name in names:
        packed, target = folder / f"{name}.gz", folder / name
        if target.is_file() or not packed.is_file():
            continue
        temp_name = None
        try:
            handle, temp_name = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
            with os.fdopen(handle, "wb") as out, gzip.open(packed, "rb") as source:
                out.write(source.read())
            os.replace(temp_name, target)
        except OSError as error:  # BadGzipFile is an OSError too
            if temp_name is not None:
                Path(temp_name).unlink(missing_ok=True)
            reason = "not a readable gzip file" if isinstance(error, gzip.BadGzipFile) else error.strerror or error
            raise UserError(f"cannot unpack {packed} into {folder}: {reason}") from None
        except EOFError:
            Path(temp_name).unlink(missing_ok=True)
            raise UserError(f"cannot unpack {packed}: the file is truncated") from None


def _download(make_dataset, download: bool, folder: Path, files: list[str]) -> None:
    """Let torchvision download missing files; offline (or with --no-download) say what to put where."""
    wanted = f"put {', '.join(files)} in {folder}"
    if not download:
        raise UserError(f"dataset files not found in {folder}: {wanted} (downloading is off: --no-download)")
    try:
        make_dataset()
    except Exception as error:  # urllib, SSL, socket and md5 failures all mean "not downloadable here"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"dataset files not found in {folder} and the download failed ({reason}): {wanted}") from None


def cifar_dataset_class(kind: str) -> type:
    """torchvision's CIFAR10/100 class, reading present files whatever their md5 (downloads stay checked).

    Batches rebuilt from other sources (e.g. from the CIFAR-10 JPEGs) are valid data that the
    published checksums would refuse.
    """
    import torchvision.datasets as datasets

    base_class = getattr(datasets, CIFAR_CLASSES[kind])
    return type(base_class.__name__, (base_class,), {
        "train_list": [[name, None] for name, _ in base_class.train_list],
        "test_list": [[name, None] for name, _ in base_class.test_list],
        "meta": {**base_class.meta, "md5": None},
    })


def load_cifar(kind: str, root: Path, *, download: bool) -> ImageSet:
    """CIFAR-10/100 in torchvision's python-pickle layout under root (cifar-10-batches-py, cifar-100-python)."""
    dataset_class = cifar_dataset_class(kind)
    base_class = dataset_class.__base__
    folder = Path(root) / base_class.base_folder
    files = [name for name, _ in base_class.train_list + base_class.test_list] + [base_class.meta["filename"]]
    if not all((folder / name).is_file() for name in files):
        _download(lambda: dataset_class(str(root), train=True, download=True), download, folder, files)
    try:
        train, test = (dataset_class(str(root), train=split, download=False) for split in (True, False))
    except (KeyError, ValueError, EOFError, OSError) as error:
        raise UserError(f"{folder} holds unreadable CIFAR batches ({type(error).__name__}: {error})") from None

    def as_tensor(dataset) -> tuple[Tensor, Tensor]:
        images = torch.from_numpy(np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2)))
        return images, torch.tensor(dataset.targets, dtype=torch.long)

    return ImageSet(*as_tensor(train), *as_tensor(test), list(train.classes), str(folder))
