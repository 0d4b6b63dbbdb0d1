"""The one image-folder reader: class folders decoded once into an in-memory ImageSet, cached outside them.

Layouts: DIR/train/<class>/* with DIR/val/<class>/* or DIR/test/<class>/*, or DIR/<class>/* split by a
seeded per-class hold-out. Every file goes through the one OpenCV reader and the command's `prepare`
(resize, crop) once; files that cannot be read are skipped, counted and named, never fatal, unless a
class is left with no readable training picture. The decoded tensors are cached (data.image_cache), never
inside the user's dataset folder, and reused while the files (names, sizes, modification times) are
unchanged and the cache file passes its checks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from torchtools.core.errors import UserError
from torchtools.core.output import path_text, say
from torchtools.data import image_cache
from torchtools.data.budget import choose_loader
from torchtools.data.images import (DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, Identity, Unreadable, decode_pictures,
                                    list_image_folder, read_picture)
from torchtools.data.loaders import stratified_split
from torchtools.data.vision import ImageSet

HELD_OUT_FOLDERS = ("val", "test")
SHOWN = 3


def list_folders(root: Path) -> tuple[list[Path], list[int], list[Path], list[int], list[str], str]:
    """(train paths, labels, held-out paths, labels, classes, layout) without decoding anything.

    With no val/ or test/ folder the held-out lists are empty: the caller splits the training images.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder not found: {root}")
    train_root, held_root = class_roots(root)
    seen: set[Identity] = set()  # one walk: a picture linked into train/ and val/ is trained on only
    train_paths, train_labels, classes = list_image_folder(train_root, seen)
    if held_root is None:
        return train_paths, train_labels, [], [], classes, f"{path_text(train_root)} split by --val-split"
    held_paths, held_labels, held_classes = list_image_folder(held_root, seen)
    if held_classes != classes:
        raise UserError(f"{path_text(train_root)} and {path_text(held_root)} hold different class folders: "
                        f"{', '.join(map(path_text, classes))} vs {', '.join(map(path_text, held_classes))}")
    return (train_paths, train_labels, held_paths, held_labels, classes,
            f"{path_text(train_root)} and {path_text(held_root)}")


def class_roots(root: Path) -> tuple[Path, Path | None]:
    """(the training class root, the held-out one or None): DIR/train and DIR/val|test, else DIR alone."""
    root = Path(root)
    if not (root / "train").is_dir():
        return root, None
    return root / "train", next((root / name for name in HELD_OUT_FOLDERS if (root / name).is_dir()), None)


def read_folders(root: Path, prepare: Callable[[np.ndarray], np.ndarray], *, key: str, grayscale: bool = False,
                 val_split: float = 0.2, seed: int = 0, loader: str = "memory", size: int = 0,
                 listing: tuple | None = None, device: torch.device | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageSet | FolderFiles:
    """Every image under root, decoded (or loaded from the cache) into an ImageSet, or with loader "stream"
    listed as FolderFiles to decode batch by batch; "auto" picks by the memory budget (data.budget) of
    `device`, where the decoded set would be kept.
    A held-out share is split off (seeded, per class) if the layout has none. `key` names what `prepare`
    does (e.g. "centre-256"), so caches of other sizes stay apart. `listing` stands for list_folders(root)
    where the labels come from elsewhere (data.labels_csv). Pictures over `max_pixels` are skipped.
    A class with no readable training picture is a UserError: it could be neither learned nor scored."""
    train_paths, train_labels, held_paths, held_labels, classes, layout = listing or list_folders(root)
    paths, labels = train_paths + held_paths, train_labels + held_labels
    chosen, reason = choose_loader(loader, len(paths), 1 if grayscale else 3, size, device=device)
    say(f"loader {reason}")
    if chosen == "stream":
        kept, skipped = _decided(paths, grayscale=grayscale, max_pixels=max_pixels)
    else:
        images, kept, skipped = _decoded(paths, prepare, key=f"{key}-{'grey' if grayscale else 'rgb'}-{max_pixels}",
                                         grayscale=grayscale, max_pixels=max_pixels)
    kept_labels = [labels[i] for i in kept]
    train_count = sum(i < len(train_paths) for i in kept)  # kept is sorted: train files come first
    _check_every_class(set(kept_labels[:train_count]), classes, train_paths, train_labels, layout)
    train_index, held_index, layout = _split(train_count, kept_labels, held_paths, val_split, seed, layout, root)
    kept_labels = torch.tensor(kept_labels, dtype=torch.long)
    if chosen == "stream":
        kept_paths = [paths[i] for i in kept]
        return FolderFiles([kept_paths[i] for i in train_index], kept_labels[train_index],
                           [kept_paths[i] for i in held_index], kept_labels[held_index], classes, layout, skipped,
                           max_pixels=max_pixels)
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
    max_pixels: int = DEFAULT_MAX_PIXELS  # the limit the listing was checked with, for the decoding workers

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


def _check_every_class(present: set[int], classes: list[str], train_paths: list[Path], train_labels: list[int],
                       source: str) -> None:
    """Each class needs a readable training picture (`present`: the labels that have one): a class without
    could be neither learned nor scored, and would leave a run that looks fine. Refused, naming its files."""
    empty = [label for label in range(len(classes)) if label not in present]
    if not empty:
        return
    files = [path for path, label in zip(train_paths, train_labels) if label == empty[0]]  # all unreadable
    shown = ", ".join(map(path_text, files[:SHOWN])) + (" ..." if len(files) > SHOWN else "")
    held = f" ({len(files)} unreadable: {shown})" if files else \
        f" (it holds no file torchtools reads as a picture: {', '.join(sorted(IMAGE_SUFFIXES))}; not HEIC or RAW)"
    others = f"; nor do {len(empty) - 1} other class(es)" if len(empty) > 1 else ""
    raise UserError(f"class {path_text(classes[empty[0]])} of {source} has no readable training picture{held}"
                    f"{others}: add pictures torchtools can read, or remove the class")


def _decoded(paths: list[Path], prepare, *, key: str, grayscale: bool, max_pixels: int
             ) -> tuple[torch.Tensor, list[int], list[Path]]:
    """(uint8 images (N, C, H, W) of the readable files, their indices into paths, the unreadable files)."""
    image_cache.cache_cap()  # a bad $TORCHTOOLS_CACHE_MAX_BYTES is an error before the decoding, not after
    signature = _signature(paths, key)
    cached = image_cache.load(signature, paths, 1 if grayscale else 3)
    if cached is not None:
        return cached
    decoded = decode_pictures(paths, prepare, grayscale=grayscale, max_pixels=max_pixels)
    kept = [index for index, image in enumerate(decoded) if image is not None]
    skipped = [paths[index] for index, image in enumerate(decoded) if image is None]
    if not kept:
        raise UserError(f"none of the {len(paths)} images under {path_text(paths[0].parents[1])} can be read "
                        f"(e.g. {path_text(skipped[0])}: {_why(skipped[0], grayscale, max_pixels)})")
    stacked = np.stack([decoded[index] for index in kept])
    images = torch.from_numpy(stacked).unsqueeze(1) if grayscale else torch.from_numpy(stacked).permute(0, 3, 1, 2)
    images = images.contiguous()
    image_cache.store(signature, images, kept, skipped)
    return images, kept, skipped


def _why(path: Path, grayscale: bool, max_pixels: int) -> str:
    """What the one reader says of a picture it cannot read."""
    try:
        read_picture(path, grayscale=grayscale, max_pixels=max_pixels)
    except Unreadable as error:
        return str(error)
    return "it could not be read then"


def _decided(paths: list[Path], *, grayscale: bool, max_pixels: int) -> tuple[list[int], list[Path]]:
    """The stream loader's (kept indices, unreadable files): one decision per picture, whichever loader. Each
    file is decoded in full once, as the memory loader decodes it, so a truncated JPEG whose header reads fine
    is skipped by both and both report the same counts. The decision is kept in the decode cache (one byte per
    picture and channel), so the extra pass over a folder too large for memory is paid once, not every run; a
    file that changes after it changes the folder's signature. A file that breaks mid-run is skipped by the
    batch that meets it."""
    channels = 1 if grayscale else 3
    signature = _signature(paths, f"decision-{'grey' if grayscale else 'rgb'}-{max_pixels}")
    cached = image_cache.load(signature, paths, channels)
    if cached is not None:
        return cached[1], cached[2]
    readable = decode_pictures(paths, _checked_only, grayscale=grayscale, max_pixels=max_pixels)
    kept = [index for index, image in enumerate(readable) if image is not None]
    skipped = [paths[index] for index, image in enumerate(readable) if image is None]
    if kept:
        image_cache.store(signature, torch.zeros((len(kept), channels, 1, 1), dtype=torch.uint8), kept, skipped)
    return kept, skipped


def _checked_only(image: np.ndarray) -> np.ndarray:
    """The stream loader's listing decodes to decide, and keeps nothing of the picture."""
    return np.zeros(0, dtype=np.uint8)


def _signature(paths: list[Path], key: str) -> str:
    """Changes whenever a file is added, removed, renamed, rewritten, or prepared differently."""
    digest = hashlib.sha1(key.encode())
    for path in paths:
        try:
            stat = path.stat()
            size, modified = stat.st_size, stat.st_mtime_ns
        except OSError:  # gone since it was listed: the reader skips it
            size = modified = -1
        digest.update(os.fsencode(path.resolve()) + f"\0{size}\0{modified}\n".encode())
    return digest.hexdigest()
