"""Paths a run will read or write, checked before any work. Nothing here imports torch."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from torchtools.core.errors import UserError


def check_writable_file(path: Path, option: str, *, suffixes: tuple[str, ...] = ()) -> None:
    """A file the run will write: not a folder, the right kind, and in a folder that can be written."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(f"{option} {path}: the name must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{option} {path} exists and cannot be written")
    check_writable_folder(path.parent, option, hint=f"choose another place for {option}")


def check_writable_folder(folder: Path, option: str, *, hint: str) -> None:
    """A folder the run will create or write into: its nearest existing ancestor must take a new file."""
    folder = Path(folder)
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{option} {folder}: {existing} is a file, not a folder; {hint}")
    try:  # a real probe: os.access says yes to root on a read-only file system
        handle, probe = tempfile.mkstemp(prefix=".torchtools-probe-", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise UserError(f"{option} {folder}: cannot write in {existing} ({error.strerror}); {hint}") from None


def check_readable_files(paths: list[Path], option: str) -> None:
    """Files the run will read (e.g. --predict inputs): each exists and can be opened."""
    for path in paths:
        path = Path(path)
        if path.is_dir():
            raise UserError(f"{option} {path} is a folder; give a file")
        if not path.is_file():
            raise UserError(f"{option} {path}: file not found")
        try:
            with open(path, "rb"):
                pass
        except OSError as error:
            raise UserError(f"{option} {path} cannot be read ({error.strerror})") from None


def write_atomically(path: Path, data: bytes) -> Path:
    """Write `data` to a temp file beside `path`, then rename it over `path`: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
