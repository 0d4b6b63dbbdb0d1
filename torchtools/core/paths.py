"""Paths a run will read or write, checked before any work in one place: `check_paths`, which `Run.start`
calls with every output of the run (`Config.writes`: the options declared as written, and the names derived
from them: the best file, the epoch files, the report's files) and every input (`Config.reads`).

An output must be a regular file or a new name (never a folder, device, FIFO or socket, also through a link:
the writer renames over it), not one of the run's inputs (compared by inode: every file the run reads, each
picture of a walk or a CSV included), not named twice, with a name that fits the file system together with
the temporary name the writer adds (core/files.py), in a folder that takes a new file. Nor may it lie where
this run or the next would read it as data (`Input.holds`): inside a class folder, a names folder, a raw
MNIST folder or a --labels CSV's picture folder, or as a new folder (a new class) in a class-folder root.
Nothing here imports torch.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from torchtools.core.errors import UserError, not_a_file
from torchtools.core.files import TEMP_EXTRA

NAME_MAX = 255  # where the file system does not say (os.pathconf)
PATH_MAX = 4096


@dataclass(frozen=True)
class Output:
    """A file (or, `folder`, a folder written into) that the run writes."""

    path: Path
    option: str  # how the message names it: "--save", "--save's best file"
    folder: bool = False
    suffixes: tuple[str, ...] = ()  # the name must end in one of these
    replaces: tuple[str, ...] = ()  # input options it may be (--save over the --resume file: the usual resume)
    hint: str = ""  # what to do instead; default "choose another place for OPTION"


@dataclass(frozen=True)
class Input:
    """A file or folder the run reads (only its identity matters here: the commands read and check it)."""

    path: Path
    option: str
    # A folder read as data: FILES, whatever is created anywhere inside it is read (a class folder, a names
    # folder, a raw MNIST folder, a CSV's picture folder); CLASSES, each folder in it is read as a class.
    holds: str = ""


FILES, CLASSES = "files", "classes"


def best_path(path: Path) -> Path:
    """Where the best-epoch checkpoint goes beside the last one: model.pt -> model.best.pt."""
    path = Path(path)
    if not path.name:  # "." or "/": a folder, which check_paths refuses by the --save name itself
        return path
    return path.with_name(f"{path.stem}.best{path.suffix or '.pt'}")


def epoch_path(path: Path, epoch: int) -> Path:
    """Where --save-every keeps an epoch's checkpoint: model.pt -> model.epoch3.pt."""
    path = Path(path)
    if not path.name:
        return path
    return path.with_name(f"{path.stem}.epoch{epoch}{path.suffix or '.pt'}")


def check_paths(outputs: list[Output], inputs: list[Input]) -> None:
    """Every output of a run, checked against the file system, the run's inputs and each other."""
    read: dict[tuple, list[Input]] = {}
    for given in inputs:
        key = _identity(given.path)
        if key[0] == "file" and not given.holds:  # a folder read as data: said by _check_outside_data
            read.setdefault(key, []).append(given)
    data = [(Path(os.path.realpath(given.path)), given) for given in inputs if given.holds]
    named: dict[tuple, Output] = {}
    probed: set[str] = set()
    for output in outputs:
        _check_output(output, probed)
        key = _identity(output.path)
        for given in read.get(key, []):
            if given.option not in output.replaces:
                raise UserError(f"{output.option} {output.path} would overwrite the {given.option} {given.path}, "
                                f"which this run reads; choose another name for {output.option}")
        _check_outside_data(output, data)
        key = ("name", os.path.realpath(output.path))  # hard links (the epoch files) are replaced apart by rename
        other = named.get(key)
        if other is not None and not (other.folder and output.folder):  # two options may write into one folder
            raise UserError(f"{other.option} {other.path} and {output.option} {output.path} name the same "
                            "file; give each its own name")
        named[key] = output


def _check_outside_data(output: Output, data: list[tuple[Path, Input]]) -> None:
    """An output lies outside every folder read as data, where the next run would read it as a picture, a
    name file or a class; beside the data (--save photos/model.pt at a train/val tree's root) is fine."""
    where = Path(os.path.realpath(output.path))
    for folder, given in data:
        try:
            depth = len(where.relative_to(folder).parts)
        except ValueError:
            continue
        if given.holds == FILES or output.folder or depth >= 2:
            what = "a folder there is read as a class" if given.holds == CLASSES else \
                "what is written there would be read as data"
            raise UserError(f"{output.option} {output.path} lies inside {given.path}, which this run reads as data "
                            f"({given.option}): {what}; choose a place outside it")


def _check_output(output: Output, probed: set[str]) -> None:
    path, option = Path(output.path), output.option
    hint = output.hint or f"choose another place for {option}"
    if output.suffixes and path.suffix.lower() not in output.suffixes:
        raise UserError(f"{option} {path}: the name must end in {' or '.join(output.suffixes)}")
    _check_names(output, hint)
    try:
        mode = os.stat(path).st_mode  # through a link: the file the name leads to
    except (FileNotFoundError, NotADirectoryError):  # a new name (a parent that is a file: said below)
        mode = None
    except OSError as error:
        raise UserError(f"{option} {path} cannot be reached ({error.strerror}); {hint}") from None
    if mode is not None:
        through = f" (through the link to {os.path.realpath(path)})" if os.path.islink(path) else ""
        if output.folder and not stat.S_ISDIR(mode):
            raise UserError(f"{option} {path} is a file{through}, not a folder; {hint}")
        if not output.folder and stat.S_ISDIR(mode):
            raise UserError(f"{option} {path} is a folder{through}; give a file name")
        if not output.folder and not stat.S_ISREG(mode):
            raise UserError(f"{option} {path} is {_kind(mode)}{through}, which the run would replace with its file; "
                            "give the name of a regular file")
        if not output.folder and not os.access(path, os.W_OK):
            raise UserError(f"{option} {path} exists and cannot be written")
    folder = path if output.folder else path.parent
    key = os.path.realpath(_existing(folder))
    if key not in probed:
        check_writable_folder(folder, option, hint=hint)
        probed.add(key)


def _check_names(output: Output, hint: str) -> None:
    """Each name the run creates fits the file system: the folders made on the way, and the file's own name
    with the temporary name the writer puts beside it (.NAME.XXXXXXXX.tmp), counted in bytes."""
    path = Path(os.path.abspath(output.path))
    existing = _existing(path if output.folder else path.parent)
    limit = _pathconf(existing, "PC_NAME_MAX", NAME_MAX)
    created = path.relative_to(existing).parts if path != existing else ()
    for index, part in enumerate(created):
        extra = TEMP_EXTRA if index == len(created) - 1 and not output.folder else 0
        size = len(os.fsencode(part))
        if size + extra > limit:
            added = f" ({size + extra} with the temporary name written beside it)" if extra else ""
            shown = part if len(part) <= 40 else part[:20] + "..." + part[-12:]
            raise UserError(f"{output.option}: the name {shown} is {size} bytes{added}, over this file system's "
                            f"limit of {limit} bytes a name; choose a shorter name")
    if len(os.fsencode(str(path))) + TEMP_EXTRA >= _pathconf(existing, "PC_PATH_MAX", PATH_MAX):
        raise UserError(f"{output.option}: the path is too long for this file system; {hint}")


def check_writable_folder(folder: Path, option: str, *, hint: str) -> None:
    """A folder the run will create or write into: its nearest existing ancestor must take a new file."""
    folder = Path(folder)
    existing = _existing(folder)
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
        if not path.is_file():
            raise not_a_file(path, option)
        try:
            with open(path, "rb"):
                pass
        except OSError as error:
            raise UserError(f"{option} {path} cannot be read ({error.strerror})") from None


def _existing(path: Path) -> Path:
    """The path itself or its nearest ancestor that exists (os.path.exists: a name too long is just absent)."""
    path = Path(os.path.abspath(path))
    while not os.path.exists(path) and path.parent != path:
        path = path.parent
    return path


def _identity(path: Path) -> tuple:
    """Two names of one file compare equal: an existing file by device and inode (links, hard links), a new
    one by its full path with the links of its folders resolved."""
    try:
        info = os.stat(path)
        return ("file", info.st_dev, info.st_ino)
    except OSError:
        return ("new", os.path.realpath(path))


def _pathconf(path: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(path, name)
    except (OSError, ValueError):
        return default


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"
