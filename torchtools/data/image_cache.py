"""The decode cache of image folders: decoded uint8 pictures kept in one plain file per folder state.

A file holds a first line naming the format, one line of JSON (the signature of the files and the
preparation it was made from, dtype, shape, the indices of the pictures kept, the files skipped, and a
BLAKE2b digest of that header and the pixel bytes), then the pixel bytes. Everything is checked when it
is read, the sizes before anything is allocated: a torn, stale, foreign or planted file is decoded again,
with a warning, never trusted. Files are written by the one output writer (core.files) and evicted when
unused for MAX_AGE_DAYS or beyond the cap ($TORCHTOOLS_CACHE_MAX_BYTES, default 2 GiB), oldest first.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import time
from pathlib import Path

import numpy as np
import torch

from torchtools.core.files import write_atomically
from torchtools.core.output import path_text, warn
from torchtools.data.budget import GIB, parse_bytes

CACHE_VARIABLE = "TORCHTOOLS_CACHE"
CAP_VARIABLE = "TORCHTOOLS_CACHE_MAX_BYTES"
DEFAULT_CAP = 2 * GIB
MAX_AGE_DAYS = 30
MAGIC = b"torchtools-decoded-images-2\n"
HEADER_LIMIT = 1 << 26  # a header line longer than this is not one of ours


class _Bad(Exception):
    """Why a cache file is not used."""


def cache_folder() -> Path:
    """$TORCHTOOLS_CACHE, else $XDG_CACHE_HOME/torchtools, else ~/.cache/torchtools."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torchtools"


def cache_cap() -> int:
    """Bytes the cache folder may hold: $TORCHTOOLS_CACHE_MAX_BYTES (e.g. 500M, 10G; 0: no cache), else 2 GiB."""
    text = os.environ.get(CAP_VARIABLE, "").strip()
    return 0 if text == "0" else parse_bytes(text, variable=CAP_VARIABLE) if text else DEFAULT_CAP


def cache_path(signature: str) -> Path:
    return cache_folder() / f"images-{signature}.cache"


def load(signature: str, paths: list[Path], channels: int) -> tuple[torch.Tensor, list[int], list[Path]] | None:
    """(images, kept indices, skipped files) from the cache for these files, or None (absent or refused)."""
    path, cap = cache_path(signature), cache_cap()
    if not cap:
        return None
    try:
        # Opened without blocking and read only if a regular file: a FIFO planted here must not hang the run.
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)),
                       "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise _Bad("not a regular file")
            result = _read(file, info.st_size, signature, paths, channels, cap)
        os.utime(path)  # in use: eviction goes by last use
        return result
    except FileNotFoundError:
        return None
    except (OSError, _Bad) as error:
        warn(f"decode cache {path_text(path)} not used ({error}); decoding the pictures again")
        return None


def store(signature: str, images: torch.Tensor, kept: list[int], skipped: list[Path]) -> None:
    """Write the cache file for these files (nothing where it cannot be written), then evict old ones."""
    cap, path = cache_cap(), cache_path(signature)
    pixels = images.contiguous().numpy()
    header = _header(signature, list(images.shape), kept, skipped)
    header["digest"] = _digest(header, pixels)
    line = json.dumps(header).encode() + b"\n"
    if len(MAGIC) + len(line) + pixels.nbytes > cap:
        return  # a folder over the whole cap is decoded each time rather than evicting every other

    def write(file) -> None:
        file.write(MAGIC)
        file.write(line)
        file.write(memoryview(pixels).cast("B"))

    try:
        write_atomically(path, write)
        evict(path.parent, cap, keep=path)
    except OSError:
        pass  # no writable cache folder: decode again next time


def evict(folder: Path, cap: int, *, keep: Path | None = None) -> None:
    """Remove cache files unused for MAX_AGE_DAYS, then the least recently used beyond `cap` bytes in all."""
    files = []
    for path in folder.glob("images-*"):  # older versions' images-*.pt too
        try:
            info = path.stat()
        except OSError:
            continue
        files.append((info.st_mtime, info.st_size, path))
    total = sum(size for _, size, path in files if path == keep)
    oldest = time.time() - MAX_AGE_DAYS * 86400
    for modified, size, path in sorted(files, reverse=True):  # newest first
        if path == keep:
            continue
        if modified < oldest or total + size > cap or path.suffix != ".cache":
            path.unlink(missing_ok=True)
        else:
            total += size


def _header(signature: str, shape: list[int], kept: list[int], skipped: list[Path]) -> dict:
    return {"signature": signature, "dtype": "uint8", "shape": shape, "kept": kept,
            "skipped": [os.fsdecode(path) for path in skipped]}


def _digest(header: dict, pixels) -> str:
    digest = hashlib.blake2b(json.dumps({key: header[key] for key in sorted(header) if key != "digest"}).encode())
    digest.update(memoryview(pixels).cast("B"))
    return digest.hexdigest()


def _read(file, size: int, signature: str, paths: list[Path], channels: int, cap: int):
    if file.read(len(MAGIC)) != MAGIC:
        raise _Bad("not a torchtools decode cache")
    try:
        header = json.loads(file.readline(HEADER_LIMIT))
    except (ValueError, UnicodeDecodeError):
        raise _Bad("its header is not JSON") from None
    if not isinstance(header, dict) or set(header) != {"signature", "dtype", "shape", "kept", "skipped", "digest"}:
        raise _Bad("its header is not one of this version's")
    if header["signature"] != signature:
        raise _Bad("made for other files")
    shape, kept = header["shape"], header["kept"]
    if header["dtype"] != "uint8" or not _ints(shape) or len(shape) != 4 or min(shape) < 1 or shape[1] != channels:
        raise _Bad(f"dtype {header['dtype']!r} and shape {shape!r} are not decoded pictures")
    if not _ints(kept) or len(kept) != shape[0] or kept != sorted(set(kept)) or kept[0] < 0 or kept[-1] >= len(paths):
        raise _Bad("its indices of kept pictures do not fit the files")
    kept_set = set(kept)
    if header["skipped"] != [os.fsdecode(path) for index, path in enumerate(paths) if index not in kept_set]:
        raise _Bad("its skipped files are not the files left out")
    count = math.prod(shape)
    if count > cap:
        raise _Bad(f"it is larger than the cache's cap ({CAP_VARIABLE})")
    if size - file.tell() != count:  # checked before the pixels are allocated
        raise _Bad(f"it holds {size - file.tell():,} bytes of pixels where its shape needs {count:,}")
    pixels = np.empty(count, dtype=np.uint8)
    if file.readinto(memoryview(pixels)) != count:
        raise _Bad("it ends early")
    if header["digest"] != _digest(header, pixels):
        raise _Bad("its digest does not match its contents")
    return (torch.from_numpy(pixels).view(shape), kept,
            [paths[index] for index in range(len(paths)) if index not in kept_set])


def _ints(values) -> bool:
    return isinstance(values, list) and all(isinstance(value, int) and not isinstance(value, bool) for value in values)
