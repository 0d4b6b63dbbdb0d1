"""--predict inputs: image files, folders and quoted globs turned into one list, then read in batches.

A pipeline hands --predict whatever it has: a few files, a folder of thousands, a pattern the shell
must not expand (`--predict 'incoming/**/*.jpg'`, so the command line stays short). Listing keeps only
paths; `image_batches` decodes them a batch at a time in worker processes, so memory stays bounded
whatever the count, and unreadable files are handed back by name instead of ending the run.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from torch import Tensor

from torchtools.core.errors import UserError
from torchtools.data.images import IMAGE_SUFFIXES
from torchtools.data.streaming import ImageFiles, Prepare, decoding_loader

_GLOB_CHARACTERS = set("*?[")


def expand_image_inputs(items: Sequence[str | Path]) -> list[Path]:
    """Every image the items name, in order, each once.

    A file is kept whatever its suffix (the user named it); a folder is walked recursively for files
    with an image suffix, sorted, hidden files and folders left out; a glob (with * ? or [) is expanded
    with ** spanning folders, keeping image files and walking the folders it matches. Items that name
    no image at all are one UserError listing every one of them.
    """
    found: dict[Path, None] = {}  # an ordered set
    empty: list[str] = []
    for item in items:
        paths = _expand(str(item))
        if not paths:
            empty.append(str(item))
        found.update(dict.fromkeys(paths))
    if empty:
        raise UserError(f"--predict: no images found at {', '.join(empty)} (give image files, folders holding images, "
                        f"or quoted globs such as 'photos/**/*.jpg')")
    return list(found)


def _expand(item: str) -> list[Path]:
    path = Path(item)
    if path.is_file():
        return [path]
    if path.is_dir():
        return _walk(path)
    if not _GLOB_CHARACTERS & set(item):
        return []
    paths: list[Path] = []
    for match in sorted(glob.glob(item, recursive=True)):
        match_path = Path(match)
        if match_path.is_dir():
            paths.extend(_walk(match_path))
        elif match_path.suffix.lower() in IMAGE_SUFFIXES and match_path.is_file():
            paths.append(match_path)
    return paths


def _walk(folder: Path) -> list[Path]:
    """Image files under `folder`, sorted by path, skipping hidden entries (.git, .thumbnails, ._x.jpg)."""
    paths = []
    for root, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        paths.extend(Path(root) / name for name in files
                     if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES)
    return sorted(paths)


def image_batches(paths: Sequence[Path], prepare: Prepare, *, grayscale: bool, batch_size: int,
                  workers: int | None = None) -> Iterator[tuple[list[Path], Tensor, list[Path]]]:
    """(readable paths, their prepared images as uint8 (N, C, H, W), unreadable paths) per batch of `paths`.

    In order, batch_size files at a time, decoded in `workers` processes (default: one a core, at most
    8; 0 decodes here), a few batches ahead at most. A batch whose files are all unreadable comes back
    with no paths and an empty tensor: check `if readable:` before predicting.
    """
    files = ImageFiles(paths, [0] * len(paths), prepare, grayscale=grayscale)
    batches = [list(range(start, min(start + batch_size, len(paths)))) for start in range(0, len(paths), batch_size)]
    for batch in decoding_loader(files, batches, workers=workers):
        yield batch.paths, batch.images, batch.failed
