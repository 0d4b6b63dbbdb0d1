"""Vision datasets as whole uint8 tensors, and normalisation/augmentation as batch ops on the device.

MNIST-style and CIFAR datasets are read through torchvision's dataset classes; image folders
(`train/<class>/*`, `test/<class>/*`) through the one image reader, with the decoded tensor cached
beside the folder so the second run starts at once. Nothing here converts images one by one per epoch:
a batch is gathered from the uint8 tensor and turned into normalised floats in one op on its device.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from torchtools.core.errors import UserError
from torchtools.data import cifar_batches, downloads, roots
from torchtools.data.idx import read_idx
from torchtools.data.images import decode_images, list_image_folder, read_image

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

    def to(self, device: torch.device) -> ImageSet:
        return ImageSet(self.train_images.to(device), self.train_labels.to(device), self.test_images.to(device),
                        self.test_labels.to(device), self.classes, self.source)


def load_mnist(kind: str, root: Path, *, download: bool) -> ImageSet:
    """MNIST, Fashion-MNIST or KMNIST: the four IDX files (plain or .gz) read where they lie.

    `root` is the data root (files in root/<Name>/raw), the <Name> folder or the raw folder itself. Nothing
    is written there; missing files are downloaded into it, all or nothing.
    """
    import torchvision.datasets as datasets

    dataset_class = getattr(datasets, MNIST_CLASSES[kind])
    raw = roots.mnist_raw_folder(root, kind)
    missing = [(name, md5) for name, md5 in dataset_class.resources if not _idx_path(raw, Path(name).stem).is_file()]
    if missing:
        _download(downloads.mirror_fetcher(dataset_class.mirrors, missing), download, raw,
                  [name for name, _ in dataset_class.resources], [name for name, _ in missing])
    train_images, train_labels, test_images, test_labels = (_idx_path(raw, name) for name in roots.MNIST_FILES)
    classes = list(dataset_class.classes)
    train = _mnist_split(train_images, train_labels, len(classes))
    test = _mnist_split(test_images, test_labels, len(classes))
    return ImageSet(*train, *test, classes, str(raw))


def _idx_path(folder: Path, name: str) -> Path:
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
        raise UserError(f"dataset files not found in {folder}: put {', '.join(files)} there "
                        f"(downloading is off: --no-download)")
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


def is_image_folder_split(root: Path) -> bool:
    """True where root holds train/ and test/ folders (the image-folder layout)."""
    return (Path(root) / "train").is_dir() and (Path(root) / "test").is_dir()


def load_image_folders(root: Path, size: int, *, cache: bool = True) -> ImageSet:
    """root/train/<class>/* and root/test/<class>/*, decoded to RGB size x size uint8 tensors."""
    root = Path(root)
    train_images, train_labels, classes = _read_folder_cached(root / "train", size, cache)
    test_images, test_labels, test_classes = _read_folder_cached(root / "test", size, cache)
    if test_classes != classes:
        raise UserError(f"{root}/train and {root}/test hold different class folders: {classes} vs {test_classes}")
    return ImageSet(train_images, train_labels, test_images, test_labels, classes, str(root))


def _read_folder_cached(folder: Path, size: int, cache: bool) -> tuple[Tensor, Tensor, list[str]]:
    """Decode an image folder once; later runs load `.torchtools-cache-<size>.pt` while the files are unchanged."""
    from torchtools.core.checkpoints import load_file, save_checkpoint

    paths, labels, classes = list_image_folder(folder)
    signature = _folder_signature(folder, paths, size)
    cache_path = folder / f".torchtools-cache-{size}.pt"
    if cache and cache_path.is_file():
        try:
            cached = load_file(cache_path)
            if cached.get("signature") == signature:
                return cached["images"], cached["labels"], cached["classes"]
        except UserError:
            pass  # a torn or foreign cache file is rebuilt below
    images = _decode_all(paths, size)
    labels_tensor = torch.tensor(labels, dtype=torch.long)
    if cache:
        try:
            save_checkpoint(cache_path, {"signature": signature, "images": images, "labels": labels_tensor,
                                         "classes": classes})
        except OSError:
            pass  # a read-only data folder: decode again next time
    return images, labels_tensor, classes


def _folder_signature(folder: Path, paths: list[Path], size: int) -> str:
    digest = hashlib.sha1(str(size).encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _decode_all(paths: list[Path], size: int) -> Tensor:
    """Decode every image (in threads); any image of another size is resized to size x size."""
    images = decode_images(paths, lambda image: fit_size(image, size))
    for path, image in zip(paths, images):
        if image is None:
            raise UserError(f"{path} is not an image OpenCV can read")
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def fit_size(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an HWC/HW uint8 image to size x size (area filter when shrinking)."""
    if image.shape[:2] == (size, size):
        return image
    shrinking = image.shape[0] > size or image.shape[1] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images, on the 0..1 scale ToTensor gives."""
    values = images.transpose(0, 1).reshape(images.shape[1], -1).double() / 255
    return tuple(values.mean(dim=1).tolist()), tuple(values.std(dim=1).tolist())


class BatchTransform:
    """uint8 batch -> normalised float batch on its device, with optional random crop and flip.

    Normalising is one fused multiply-add: (x/255 - mean)/std = x * (1/(255 std)) - mean/std.
    Augmentation draws from its own seeded generator, so runs repeat exactly.
    """

    def __init__(self, mean, std, device: torch.device, *, crop_padding: int = 0, flip: bool = False,
                 channels_last: bool = False, seed: int = 0):
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale, self.shift = 1 / (255 * std_t), -mean_t / std_t
        self.crop_padding, self.flip, self.channels_last = crop_padding, flip, channels_last
        self.generator = torch.Generator(device=device).manual_seed(seed) if crop_padding or flip else None

    def __call__(self, batch: Tensor) -> Tensor:
        images = torch.addcmul(self.shift, batch.float(), self.scale)
        if self.crop_padding:
            images = random_crop(images, self.crop_padding, self.generator)
        if self.flip:
            images = random_flip(images, self.generator)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images


def random_crop(images: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Each image shifted by up to `padding` pixels each way (reflect padding), in one gather."""
    count, channels, height, width = images.shape
    padded = F.pad(images, (padding,) * 4, mode="reflect")
    dy, dx = (torch.randint(0, 2 * padding + 1, (2, count), device=images.device, generator=generator))
    rows = (dy[:, None] + torch.arange(height, device=images.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(width, device=images.device))[:, None, None, :]
    batch = torch.arange(count, device=images.device)[:, None, None, None]
    channel = torch.arange(channels, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_flip(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each image mirrored left-right with probability 1/2."""
    flip = torch.rand(len(images), device=images.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def image_for_model(path: Path, size: int, *, grayscale: bool, light_background_inverted: bool = False) -> Tensor:
    """A user's picture as a uint8 (C, size, size) tensor like the training images.

    MNIST digits are light on dark: a dark digit on light paper (bright border) is inverted.
    """
    image = read_image(path, grayscale=grayscale)
    if light_background_inverted:
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        if border.mean() > 127:
            image = 255 - image
    image = fit_size(image, size)
    tensor = torch.from_numpy(np.ascontiguousarray(image))
    return tensor.unsqueeze(0) if grayscale else tensor.permute(2, 0, 1).contiguous()
