"""Vision datasets as whole uint8 tensors, and normalisation/augmentation as batch ops on the device.

MNIST-style and CIFAR datasets are read through torchvision's dataset classes; image folders
(`train/<class>/*`, `test/<class>/*`) through the one image reader, with the decoded tensor cached
beside the folder so the second run starts at once. Nothing here converts images one by one per epoch:
a batch is gathered from the uint8 tensor and turned into normalised floats in one op on its device.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from torchtools.data.images import decode_images, list_image_folder, read_image
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

    def to(self, device: torch.device) -> ImageSet:
        return ImageSet(self.train_images.to(device), self.train_labels.to(device), self.test_images.to(device),
                        self.test_labels.to(device), self.classes, self.source)


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
