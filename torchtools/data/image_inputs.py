"""--predict inputs: image files, folders and quoted globs turned into one list, then read in batches.

A pipeline hands --predict whatever it has: a few files, a folder of thousands, a pattern the shell
must not expand (`--predict 'incoming/**/*.jpg'`, so the command line stays short). Listing keeps only
paths; `image_batches` decodes them a batch at a time in worker processes, so memory stays bounded
whatever the count, and unreadable files are handed back by name instead of ending the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from torch import Tensor

from torchtools.core.errors import UserError
from torchtools.core.output import path_text
from torchtools.data.images import DEFAULT_MAX_PIXELS, Identity, glob_pictures, identity, walk
from torchtools.data.streaming import ImageFiles, Prepare, decoding_loader

_GLOB_CHARACTERS = set("*?[")


def expand_image_inputs(items: Sequence[str | Path]) -> list[Path]:
    """Every picture the items name, in order, each once (data.images' one walk).

    A file is kept whatever its suffix or kind (the user named it; the reader skips and names what is not
    a regular picture file); a folder is walked for files with a picture suffix; a glob (with * ? or [) is
    expanded with ** spanning folders, keeping picture files and walking the folders it matches. A folder
    or picture reached twice (a symlink loop, a second link, two items) is listed once. Items that name no
    picture at all are one UserError listing every one of them.
    """
    found: list[Path] = []
    seen: set[Identity] = set()  # (st_dev, st_ino) of the pictures listed, across the items
    empty: list[str] = []
    for item in items:
        paths = _expand(str(item))
        if not paths:
            empty.append(path_text(item))
        for path in paths:
            key = identity(path)  # None: gone since it was listed; kept, so the reader names it
            if key is None or key not in seen:
                seen.add(key)
                found.append(path)
    if empty:
        raise UserError(f"--predict: no images found at {', '.join(empty)} (give image files, folders holding images, "
                        f"or quoted globs such as 'photos/**/*.jpg')")
    return found


def _expand(item: str) -> list[Path]:
    path = Path(item)
    if path.is_dir():
        return walk(path)
    if os.path.exists(path):
        return [path]
    return glob_pictures(item) if _GLOB_CHARACTERS & set(item) else []


def image_batches(paths: Sequence[Path], prepare: Prepare, *, grayscale: bool, batch_size: int,
                  workers: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
                  ) -> Iterator[tuple[list[Path], Tensor, list[Path]]]:
    """(readable paths, their prepared images as uint8 (N, C, H, W), unreadable paths) per batch of `paths`.

    In order, batch_size files at a time, decoded in `workers` processes (default: one a core, at most
    8; 0 decodes here), a few batches ahead at most. A batch whose files are all unreadable comes back
    with no paths and an empty tensor: check `if readable:` before predicting.
    """
    files = ImageFiles(paths, [0] * len(paths), prepare, grayscale=grayscale, max_pixels=max_pixels)
    batches = [list(range(start, min(start + batch_size, len(paths)))) for start in range(0, len(paths), batch_size)]
    for batch in decoding_loader(files, batches, workers=workers):
        yield batch.paths, batch.images, batch.failed
