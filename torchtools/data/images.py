"""The one picture reader and the one input walk.

Every picture a command reads (image folders in memory or streamed, --predict, --inputs, conv-demo)
goes through `read_picture`: the file opened without blocking and read only if it is a regular file
(a FIFO or a device is skipped, never waited on), its width and height read from the header by Pillow
and checked against the pixel limit before anything is decoded, then the bytes decoded by OpenCV. OpenCV
is handed bytes, never a file name, so names of any bytes (not UTF-8 too) read alike.

Every folder and `**` glob is listed by `walk` / `glob_pictures`: each real folder entered once (its
(st_dev, st_ino)), so symlink loops end and no picture is counted twice; hidden entries left out.
"""

from __future__ import annotations

import fnmatch
import io
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image

from torchtools.core.errors import UserError
from torchtools.core.options import DEFAULT_MAX_PIXELS  # width x height; --max-pixels / $TORCHTOOLS_MAX_PIXELS
from torchtools.core.output import path_text
from torchtools.core.paths import CLASSES, FILES, Input

# OpenCV's own "[ WARN:0@...]" lines (a truncated JPEG) are not torchtools': every skip is said once, by
# warn_skipped, and --quiet holds.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
# How skipped pictures are described wherever they are named (core.output.warn_skipped).
UNREADABLE = "unreadable picture(s) (not a regular file, not a picture, damaged, or over --max-pixels)"
_MAGIC = set("*?[")
Identity = tuple[int, int | str]  # (st_dev, st_ino), see `identity`


class Unreadable(Exception):
    """A picture that cannot be read; the message says why."""


def read_picture(path: Path, *, grayscale: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """uint8 RGB (H, W, 3) or grey (H, W); Unreadable saying why when the file cannot be read."""
    try:
        return _read_picture(path, grayscale, max_pixels)
    except (OSError, ValueError, MemoryError, cv2.error) as error:  # a read error, a decoder's refusal
        raise Unreadable(f"damaged or unreadable ({type(error).__name__})") from None


def _read_picture(path: Path, grayscale: bool, max_pixels: int) -> np.ndarray:
    with _open_regular(path) as file:
        width, height = _header(file).size
        _check_pixels(width, height, max_pixels)
        file.seek(0)
        data = file.read()
    flags = cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if image is not None:
        image = image if grayscale else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    else:  # some OpenCV builds decode GIF only as video: Pillow decodes its first frame
        picture = _header(io.BytesIO(data))
        if picture.format != "GIF":
            raise Unreadable("damaged, or a format OpenCV cannot decode")
        image = np.asarray(picture.convert("L" if grayscale else "RGB"))
    # A file whose body is not what its header says (a polyglot) is held to the limit too.
    _check_pixels(image.shape[1], image.shape[0], max_pixels)
    return image


def decode_pictures(paths: Sequence[Path], prepare: Callable[[np.ndarray], np.ndarray], *, grayscale: bool = False,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> list[np.ndarray | None]:
    """`read_picture` over many files in threads (OpenCV releases the GIL), each result passed through
    `prepare` (resize, crop); None where a file cannot be read."""

    def decode(path: Path) -> np.ndarray | None:
        try:
            return prepare(read_picture(path, grayscale=grayscale, max_pixels=max_pixels))
        except Unreadable:
            return None

    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(decode, paths, chunksize=max(1, len(paths) // (8 * workers))))


def read_image(path: Path, *, grayscale: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """`read_picture` for a file the user named: a missing or unreadable file is a UserError."""
    if not os.path.exists(path):
        raise UserError(f"image not found: {path_text(path)}")
    try:
        return read_picture(path, grayscale=grayscale, max_pixels=max_pixels)
    except Unreadable as error:
        raise UserError(f"{path_text(path)} cannot be read: {error}") from None


def _open_regular(path: Path) -> BinaryIO:
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as error:
        raise Unreadable(error.strerror or "cannot be opened") from None
    file = os.fdopen(handle, "rb")
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        file.close()
        raise Unreadable("not a regular file")
    return file


def _header(file: BinaryIO) -> Image.Image:
    """The picture as Pillow's plugins identify it from its header, nothing decoded.

    The plugins are called directly, as Image.open calls them but without its decompression-bomb check:
    that check reads Image.MAX_IMAGE_PIXELS, a process-wide setting, where the limit here is the caller's.
    """
    Image.init()
    prefix = file.read(16)
    for name in Image.ID:
        factory, accept = Image.OPEN[name]
        try:  # a plugin rejects foreign bytes in its own way (SyntaxError, struct.error, ...)
            accepted = accept is None or accept(prefix)
            if not accepted or isinstance(accepted, str):  # a str: "recognised, but this build cannot read it"
                continue
            file.seek(0)
            return factory(file, "")
        except Exception:
            continue
    raise Unreadable("not an image format torchtools reads (JPEG, PNG, BMP, GIF, TIFF, WebP, PPM)")


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise Unreadable(f"{width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,} "
                         "(--max-pixels N or $TORCHTOOLS_MAX_PIXELS raises it)")


def _entries(folder: Path, *, hidden: bool = False) -> list[os.DirEntry]:
    """A folder's entries by name, hidden ones (.git, .thumbnails, ._x.jpg) left out unless asked for;
    none if the folder cannot be read."""
    try:
        with os.scandir(folder) as entries:
            return sorted((entry for entry in entries if hidden or not entry.name.startswith(".")),
                          key=lambda entry: entry.name)
    except OSError:
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symlinks: a linked folder is walked (once)
    except OSError:
        return False


def identity(path) -> Identity | None:
    """(st_dev, st_ino): what a file or folder is, whatever links lead to it; None if it cannot be reached.
    Where a file system gives no inode numbers (0), the resolved path stands in for one."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino or os.path.realpath(path)


def _is_picture_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def walk(folder: Path, seen: set[Identity] | None = None) -> list[Path]:
    """Files with a picture suffix under `folder`, in path order; each real folder and file once.

    `seen` holds the (st_dev, st_ino) of what was listed already; pass one set to several walks (classes,
    --predict items) so a folder or picture linked into two of them is listed only in the first.
    Entries that are not regular files are listed too: the reader then skips and names them.
    """
    seen = set() if seen is None else seen
    key = identity(folder)
    if key is None or key in seen:
        return []
    seen.add(key)
    found: list[Path] = []
    stack: list[tuple[Path, Iterator[os.DirEntry]]] = [(Path(folder), iter(_entries(folder)))]
    while stack:  # depth first in name order: the order of sorted paths, with no recursion limit
        parent, entries = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        is_dir, path = _is_dir(entry), parent / entry.name
        if not is_dir and not _is_picture_name(entry.name):
            continue
        key = identity(path)
        if key is None or key in seen:
            continue
        seen.add(key)
        if is_dir:
            stack.append((path, iter(_entries(path))))
        else:
            found.append(path)
    return found


def glob_pictures(pattern: str) -> list[Path]:
    """The pictures a glob names (`**` spanning folders, hidden entries left out unless the pattern says
    `.`): matching files with a picture suffix, and everything `walk` finds in matching folders.

    Each folder is entered once for each place in the pattern, so symlink loops end."""
    seen: set[Identity] = set()
    parts = Path(pattern).parts
    fixed = next((index for index, part in enumerate(parts) if _MAGIC & set(part)), len(parts))
    base, parts = Path(*parts[:fixed]) if fixed else Path("."), parts[fixed:]
    if not parts:
        return walk(base, seen) if base.is_dir() else []
    matched: set[Path] = set()
    entered: set[tuple[Identity, int]] = set()
    stack = [(base, 0)]
    while stack:
        folder, index = stack.pop()
        key = identity(folder)
        if key is None or (key, index) in entered:
            continue
        entered.add((key, index))
        part, last = parts[index], index + 1 == len(parts)
        if part == "**":
            if last:
                matched.add(folder)
                continue
            stack.append((folder, index + 1))  # ** as no folder at all
            stack.extend((folder / entry.name, index) for entry in _entries(folder) if _is_dir(entry))
            continue
        for entry in _entries(folder, hidden=part.startswith(".")):  # hidden only where the pattern says "."
            if not fnmatch.fnmatchcase(entry.name, part):
                continue
            if last:
                matched.add(folder / entry.name)
            elif _is_dir(entry):
                stack.append((folder / entry.name, index + 1))
    found: list[Path] = []
    for path in sorted(matched):
        if path.is_dir():
            found.extend(walk(path, seen))
        elif _is_picture_name(path.name) and (key := identity(path)) is not None and key not in seen:
            seen.add(key)
            found.append(path)
    return found


def list_image_folder(root: Path, seen: set[Identity] | None = None
                      ) -> tuple[list[Path], list[int], list[str]]:
    """An ImageFolder layout: root/<class>/<image>. Returns (paths, labels, sorted class names)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder not found: {path_text(root)}")
    seen = set() if seen is None else seen
    classes = [entry.name for entry in _entries(root) if _is_dir(entry)]
    if not classes:
        raise UserError(f"{path_text(root)} holds no class folders (expected {path_text(root)}/<class>/<image>)")
    paths, labels = [], []
    for label, name in enumerate(classes):
        found = walk(root / name, seen)
        paths.extend(found)
        labels.extend([label] * len(found))
    if not paths:
        raise UserError(f"{path_text(root)} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths, labels, classes


def pictures_read(paths: Sequence[Path], option: str, *, folders: bool = True) -> list[Input]:
    """What the output check (core/paths.py) must keep safe of pictures a run reads: each file, by inode, and
    (`folders`) each folder they lie in, as named and as resolved, where a file written would be read next."""
    inputs = [Input(Path(path), option) for path in paths]
    if folders:
        found = dict.fromkeys(folder for path in paths for folder in (Path(path).parent,
                                                                        Path(os.path.realpath(path)).parent))
        inputs += [Input(folder, option, holds=FILES) for folder in found]
    return inputs


def image_folder_reads(roots: Sequence[Path], option: str) -> list[Input]:
    """A class-folder tree's reads, listed by the walk its reader uses (nothing decoded): each class root
    (a new folder there is a new class), each class folder, and each picture with the folders it lies in."""
    inputs, seen = [], set()
    for root in roots:
        paths, _, classes = list_image_folder(root, seen)
        inputs += [Input(Path(root), option, holds=CLASSES)]
        inputs += [Input(Path(root) / name, option, holds=FILES) for name in classes]
        inputs += pictures_read(paths, option)
    return inputs
