"""Vision datasets as whole uint8 tensors in memory: the ImageSet, MNIST-style IDX files and CIFAR batches.

Image folders are read by torchtools.data.folders into the same ImageSet.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from torchtools.core.errors import UserError
from torchtools.data import cifar_batches, downloads, roots
from torchtools.data.idx import read_idx

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
    """MNIST, Fashion-MNIST or KMNIST: the four IDX files (plain or .gz) read where they lie.

    `root` is the data root (files in root/<Name>/raw), the <Name> folder or the raw folder itself. Nothing
    is written there; missing files are downloaded into it, all or nothing.
    """
    import torchvision.datasets as datasets

    dataset_class = getattr(datasets, roots.MNIST_FOLDERS[kind])  # the folder is the class name
    raw = roots.mnist_raw_folder(root, kind)
    missing = [(name, md5) for name, md5 in dataset_class.resources if not idx_path(raw, Path(name).stem).is_file()]
    if missing:
        _download(downloads.mirror_fetcher(dataset_class.mirrors, missing), download, raw,
                  [name for name, _ in dataset_class.resources], [name for name, _ in missing])
    train_images, train_labels, test_images, test_labels = (idx_path(raw, name) for name in roots.MNIST_FILES)
    classes = list(dataset_class.classes)
    train = _mnist_split(train_images, train_labels, len(classes))
    test = _mnist_split(test_images, test_labels, len(classes))
    return ImageSet(*train, *test, classes, str(raw))


def idx_path(folder: Path, name: str) -> Path:
    """NAME where it exists (torchvision's unpacked copy), else NAME.gz."""
    plain = folder / name
    return plain if plain.is_file() else folder / f"{name}.gz"


def _mnist_split(images_path: Path, labels_path: Path, classes: int) -> tuple[Tensor, Tensor]:
    images, labels = read_idx(images_path, ndim=3), read_idx(labels_path, ndim=1)
    if len(images) != len(labels):
        raise UserError(f"{images_path} holds {len(images):,} images but {labels_path} holds {len(labels):,} labels")
    if len(labels) and int(labels.max()) >= classes:
        raise UserError(f"{labels_path} holds label {int(labels.max())}; labels must lie in 0..{classes - 1}")
    return images.unsqueeze(1), labels.long()


def _download(fetch, download: bool, folder: Path, files: list[str], missing: list[str]) -> None:
    """Fetch the missing files into `folder` (all or nothing); with --no-download say what to put where."""
    if not download:
        raise UserError(f"dataset files not found in {folder} (downloading is off: --no-download): put "
                        f"{', '.join(files)} there, {downloads.ELSEWHERE}")
    downloads.fetch_files(folder, missing, fetch)


def load_cifar(kind: str, root: Path, *, download: bool) -> ImageSet:
    """CIFAR-10/100 pickle batches (cifar-10-batches-py, cifar-100-python) under root, or that folder itself.

    The batches are read with an unpickler that builds arrays and nothing else (cifar_batches); their
    checksums are not compared, so batches rebuilt from other sources (the CIFAR-10 JPEGs) are fine.
    """
    import torchvision.datasets as datasets

    layout = cifar_batches.LAYOUTS[kind]
    folder = roots.cifar_batches_folder(root, kind)
    files = [*layout.train, layout.test, layout.meta]
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        source = getattr(datasets, CIFAR_CLASSES[kind])  # for its download address and checksum
        _download(downloads.archive_fetcher(source.url, source.filename, source.tgz_md5, layout.folder),
                  download, folder, files, missing)
    classes = cifar_batches.read_class_names(folder, layout)
    train = cifar_batches.read_split(folder, layout.train, layout, len(classes))
    test = cifar_batches.read_split(folder, (layout.test,), layout, len(classes))
    return ImageSet(torch.from_numpy(train.images), torch.from_numpy(train.labels), torch.from_numpy(test.images),
                    torch.from_numpy(test.labels), classes, str(folder))
