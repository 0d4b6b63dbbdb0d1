"""Image-classification folders (ImageFolder layout), decoded once into square uint8 tensors.

DIR/train/<class>/* and DIR/val/<class>/*, or DIR/<class>/* split by a seeded per-class hold-out.
Every image is read once with the one OpenCV reader, its shorter side resized to `size` and the centre
size x size kept: the val transform (resize + centre crop) is then a slice, and training crops are
drawn from that square on the device. Files OpenCV cannot read are skipped and counted, never fatal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from torchtools.data.images import decode_images, list_image_folder
from torchtools.data.loaders import stratified_split
from torchtools.core.errors import UserError


@dataclass
class FolderImages:
    train_images: Tensor  # (N, 3, size, size) uint8
    train_labels: Tensor
    val_images: Tensor
    val_labels: Tensor
    classes: list[str]
    skipped: list[Path]  # files that could not be decoded
    layout: str  # how the split was made, for the user


def class_folders(root: Path) -> tuple[list[Path], list[int], list[Path], list[int], list[str], str]:
    """List (train paths, labels, val paths, labels, classes, layout) without decoding anything.

    With no val/ folder the val lists are empty: the caller splits the readable training images.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder not found: {root}")
    train_root = root / "train" if (root / "train").is_dir() else root
    train_paths, train_labels, classes = list_image_folder(train_root)
    if not (root / "val").is_dir():
        return train_paths, train_labels, [], [], classes, f"{train_root} split by --val-split"
    val_paths, val_labels, val_classes = list_image_folder(root / "val")
    if val_classes != classes:
        raise UserError(f"{train_root} and {root / 'val'} hold different class folders: {classes} vs {val_classes}")
    return train_paths, train_labels, val_paths, val_labels, classes, f"{train_root} and {root / 'val'}"


def read_folders(root: Path, size: int, *, val_split: float, seed: int, classes: int | None = None) -> FolderImages:
    """Decode the folders (in threads); `classes` must match the class folders."""
    train_paths, train_labels, val_paths, val_labels, names, layout = class_folders(root)
    if classes is not None and classes != len(names):
        raise UserError(f"--classes is {classes} but {root} holds {len(names)} class folders ({', '.join(names)})")
    paths = train_paths + val_paths
    decoded = decode_images(paths, lambda image: centre_square(image, size))
    skipped = [path for path, image in zip(paths, decoded) if image is None]
    train = [(image, label) for image, label in zip(decoded, train_labels) if image is not None]
    val = [(image, label) for image, label in zip(decoded[len(train_paths):], val_labels) if image is not None]
    if not val_paths:
        train_index, val_index = stratified_split([label for _, label in train], val_split, seed)
        train, val = [train[i] for i in train_index], [train[i] for i in val_index]
    if not train or not val:
        which = "training" if not train else "validation"
        raise UserError(f"no readable {which} images in {layout} ({len(skipped)} unreadable)")
    return FolderImages(*_stack(train), *_stack(val), names, skipped, layout)


def centre_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize the shorter side to `size` (area filter when shrinking), keep the centre size x size."""
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_height, new_width) != (height, width):
        filter_ = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (new_width, new_height), interpolation=filter_)
    top, left = (new_height - size) // 2, (new_width - size) // 2
    return np.ascontiguousarray(image[top:top + size, left:left + size])


def _stack(pairs: list[tuple[np.ndarray, int]]) -> tuple[Tensor, Tensor]:
    images = torch.from_numpy(np.stack([image for image, _ in pairs])).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor([label for _, label in pairs], dtype=torch.long)
