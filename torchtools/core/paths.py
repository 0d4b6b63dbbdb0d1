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
