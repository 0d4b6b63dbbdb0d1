"""The one image-folder reader: class folders decoded once into an in-memory ImageSet, cached outside them.

Layouts: DIR/train/<class>/* with DIR/val/<class>/* or DIR/test/<class>/*, or DIR/<class>/* split by a
seeded per-class hold-out. Every file goes through the one OpenCV reader and the command's `prepare`
(resize, crop) once; files that cannot be read are skipped, counted and named, never fatal. The decoded
tensors are cached under the cache folder (see `cache_folder`), never inside the user's dataset folder,
and reused while the files (names, sizes, modification times) are unchanged.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from torchtools.core.errors import UserError
from torchtools.core.output import say
from torchtools.data.budget import choose_loader
from torchtools.data.images import decode_images, list_image_folder
from torchtools.data.loaders import stratified_split
from torchtools.data.vision import ImageSet

HELD_OUT_FOLDERS = ("val", "test")
CACHE_VARIABLE = "TORCHTOOLS_CACHE"


def cache_folder() -> Path:
    """$TORCHTOOLS_CACHE, else $XDG_CACHE_HOME/torchtools, else ~/.cache/torchtools."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torchtools"


def list_folders(root: Path) -> tuple[list[Path], list[int], list[Path], list[int], list[str], str]:
    """(train paths, labels, held-out paths, labels, classes, layout) without decoding anything.

    With no val/ or test/ folder the held-out lists are empty: the caller splits the training images.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder not found: {root}")
    train_root = root / "train" if (root / "train").is_dir() else root
    train_paths, train_labels, classes = list_image_folder(train_root)
    held_root = next((root / name for name in HELD_OUT_FOLDERS if (root / name).is_dir()), None)
    if train_root == root or held_root is None:
        return train_paths, train_labels, [], [], classes, f"{train_root} split by --val-split"
    held_paths, held_labels, held_classes = list_image_folder(held_root)
    if held_classes != classes:
        raise UserError(f"{train_root} and {held_root} hold different class folders: {classes} vs {held_classes}")
    return train_paths, train_labels, held_paths, held_labels, classes, f"{train_root} and {held_root}"


def read_folders(root: Path, prepare: Callable[[np.ndarray], np.ndarray], *, key: str, grayscale: bool = False,
                 val_split: float = 0.2, seed: int = 0, loader: str = "memory", size: int = 0,
                 listing: tuple | None = None, device: torch.device | None = None) -> ImageSet | FolderFiles:
    """Every image under root, decoded (or loaded from the cache) into an ImageSet, or with loader "stream"
    listed as FolderFiles to decode batch by batch; "auto" picks by the memory budget (data.budget) of
    `device`, where the decoded set would be kept.
    A held-out share is split off (seeded, per class) if the layout has none. `key` names what `prepare`
    does (e.g. "centre-256"), so caches of other sizes stay apart. `listing` stands for list_folders(root)
    where the labels come from elsewhere (data.labels_csv)."""
    train_paths, train_labels, held_paths, held_labels, classes, layout = listing or list_folders(root)
    paths, labels = train_paths + held_paths, train_labels + held_labels
    chosen, reason = choose_loader(loader, len(paths), 1 if grayscale else 3, size, device=device)
    say(f"loader {reason}")
    if chosen == "stream":
        # A cheap signature check leaves out empty and foreign files now, so both loaders train on the same
        # files; a file that passes it and still fails to decode is skipped by the batch that meets it.
        readable = [index for index, path in enumerate(paths) if cv2.haveImageReader(str(path))]
        kept = set(readable)
        skipped = [path for index, path in enumerate(paths) if index not in kept]
        train_count = sum(index < len(train_paths) for index in readable)
        paths, labels = [paths[index] for index in readable], [labels[index] for index in readable]
        train_index, held_index, layout = _split(train_count, labels, held_paths, val_split, seed, layout, root)
        return FolderFiles([paths[i] for i in train_index], torch.tensor([labels[i] for i in train_index], dtype=torch.long),
                           [paths[i] for i in held_index], torch.tensor([labels[i] for i in held_index],
                                                                        dtype=torch.long), classes, layout, skipped)
    images, kept, skipped = _decoded(paths, prepare, key=f"{key}-{'grey' if grayscale else 'rgb'}",
                                     grayscale=grayscale)
    kept_labels = [labels[i] for i in kept]
    train_count = sum(i < len(train_paths) for i in kept)  # kept is sorted: train files come first
    train_index, held_index, layout = _split(train_count, kept_labels, held_paths, val_split, seed, layout, root)
    kept_labels = torch.tensor(kept_labels, dtype=torch.long)
    return ImageSet(images[train_index], kept_labels[train_index], images[held_index], kept_labels[held_index],
                    classes, layout, skipped=skipped)


@dataclass
class FolderFiles:
    """An image folder to stream: the same splits as an ImageSet, as file lists (see data.streaming)."""

    train_images: list[Path]
    train_labels: Tensor
    test_images: list[Path]
    test_labels: Tensor
    classes: list[str]
    source: str
    skipped: list[Path] = field(default_factory=list)  # filled in as epochs meet unreadable files

    def to(self, device: torch.device) -> FolderFiles:
        return self  # decoded batches are moved to the device as they come


def _split(train_count: int, labels: list[int], held_paths: list, val_split: float, seed: int, layout: str,
           root: Path) -> tuple[Tensor, Tensor, str]:
    """(train indices, held-out indices, layout): the first train_count items are the training files;
    the rest the held-out folder's, or else a seeded stratified share of the training files."""
    if held_paths:
        return torch.arange(train_count), torch.arange(train_count, len(labels)), layout
    if val_split > 0:
        train_index, held_index = stratified_split(labels[:train_count], val_split, seed)
        return torch.from_numpy(train_index), torch.from_numpy(held_index), layout
    return torch.arange(train_count), torch.arange(0), f"{root} (nothing held out: --val-split 0)"


def _decoded(paths: list[Path], prepare, *, key: str, grayscale: bool) -> tuple[torch.Tensor, list[int], list[Path]]:
    """(uint8 images (N, C, H, W) of the readable files, their indices into paths, the unreadable files)."""
    from torchtools.core.checkpoints import load_file, save_checkpoint

    signature = _signature(paths, key)
    cache = cache_folder() / f"images-{signature}.pt"
    if cache.is_file():
        try:
            cached = load_file(cache)
            return cached["images"], cached["kept"], [Path(path) for path in cached["skipped"]]
        except (UserError, KeyError, TypeError):
            pass  # a torn or foreign cache file is rebuilt below
    decoded = decode_images(paths, prepare, grayscale=grayscale)
    kept = [index for index, image in enumerate(decoded) if image is not None]
    skipped = [paths[index] for index, image in enumerate(decoded) if image is None]
    if not kept:
        raise UserError(f"none of the {len(paths)} images under {paths[0].parents[1]} can be read")
    stacked = np.stack([decoded[index] for index in kept])
    images = torch.from_numpy(stacked).unsqueeze(1) if grayscale else torch.from_numpy(stacked).permute(0, 3, 1, 2)
    images = images.contiguous()
    try:
        save_checkpoint(cache, {"images": images, "kept": kept, "skipped": [str(path) for path in skipped]})
    except OSError:
        pass  # no writable cache folder: decode again next time
    return images, kept, skipped


def _signature(paths: list[Path], key: str) -> str:
    """Changes whenever a file is added, removed, renamed, rewritten, or prepared differently."""
    digest = hashlib.sha1(key.encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
