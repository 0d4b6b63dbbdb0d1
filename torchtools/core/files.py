"""The one output writer: every file a run writes goes through `atomic_file` (`write_atomically`, `write_bytes`).

A temp file beside the target, fsync, then rename over it with the umask's mode: a reader (or a stop)
never sees half a file, and a failed write leaves the earlier file as it was. A failed write (a full
disk, a lost folder) is a `WriteFailed`: one `error:` line naming the file, never a traceback. The
--json summary on stdout fails the same way (`write_stream`). Also here: the temp names (whose length
core/paths.py checks before work), the lock a run holds on its --save, and the cell and JSON forms every
file shares. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO

from torchtools.core.errors import UserError

RANDOM = 8  # the characters tempfile.mkstemp puts in a name
TEMP_EXTRA = len("..") + RANDOM + len(".tmp")  # .NAME.XXXXXXXX.tmp (keep_suffix: .STEM.XXXXXXXX.tmp.SUFFIX)
FULL = (errno.ENOSPC, errno.EDQUOT)


class WriteFailed(UserError, OSError):
    """A file could not be written (full disk, quota, a folder gone): the earlier file is intact. An OSError too,
    so a caller that may go on without its file (the decode cache) still catches it as one."""


def temporary(path: Path, *, keep_suffix: bool = False) -> Path:
    """A new empty file beside `path` (mode 0600 until `commit`), named .NAME.XXXXXXXX.tmp; `keep_suffix`
    ends it in path's suffix instead, for writers that go by it (torch.export.save takes only .pt2)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if keep_suffix:
            handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        else:
            handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise failed(path, error) from None
    os.close(handle)
    return Path(name)


def commit(temp: Path, path: Path) -> Path:
    """Put a finished temp file in place: the mode a new file gets under the umask (not mkstemp's 0600)."""
    try:
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    except OSError as error:
        Path(temp).unlink(missing_ok=True)
        raise failed(path, error) from None
    return Path(path)


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb", **open_args: Any) -> Iterator[IO]:
    """`with atomic_file(path) as file:` writes a temp file, put in place when the block ends without an
    error; after an error (or a stop) the temp file is removed and `path` is as it was."""
    path = Path(path)
    temp, file = temporary(path), None
    try:
        with open(temp, mode, **open_args) as raw:
            file = _Recording(raw)
            yield file
            raw.flush()
            os.fsync(raw.fileno())
    except Exception as error:
        temp.unlink(missing_ok=True)
        # A writer that calls file.write itself (torch.save) may report a failed write as its own error.
        cause = error if isinstance(error, OSError) else getattr(file, "error", None)
        if cause is None:
            raise
        raise failed(path, cause) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    commit(temp, path)


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(file)` on a temp file beside `path`, then put it in place with the umask's mode."""
    with atomic_file(path) as file:
        write(file)
    return Path(path)


def write_bytes(path: Path, data: bytes) -> Path:
    return write_atomically(path, lambda file: file.write(data))


def link_atomically(source: Path, path: Path) -> Path:
    """`path` as a hard link to the finished file `source` (the same bytes, not written twice), put in place
    atomically; where the file system has no hard links (FAT, some network shares) a copy."""
    temp = temporary(path)
    try:
        temp.unlink()  # os.link makes the name itself
        try:
            os.link(source, temp)
        except OSError as error:
            if error.errno in FULL:
                raise
            shutil.copyfile(source, temp)
            with open(temp, "rb+") as copied:
                os.fsync(copied.fileno())
        os.replace(temp, path)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise failed(path, error) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return Path(path)


def failed(path: Path, error: OSError) -> WriteFailed:
    """The one message of a failed write: which file, why, that the earlier one is intact, what to do."""
    if isinstance(error, WriteFailed):  # already said
        return error
    path = Path(path)
    reason = error.strerror or str(error) or type(error).__name__
    earlier = f"the earlier {path} is intact" if os.path.exists(path) else "nothing was left there"
    advice = "free some space or choose another place" if error.errno in FULL else "choose another place"
    return WriteFailed(f"cannot write {path} ({reason}); {earlier}; {advice}")


def write_stream(stream: IO[str] | None, text: str, what: str) -> None:
    """Text on a stream the run does not own (stdout): a full or closed one is one error line (a pipe whose
    reader is gone goes to the stop path, as SIGPIPE would), and the stream is pointed at /dev/null so that
    Python's flush at exit has nothing left to fail on."""
    try:
        if stream is None:  # started with stdout closed (>&-)
            raise OSError(errno.EBADF, "it is closed")
        stream.write(text)
        stream.flush()
    except BrokenPipeError:  # its reader is gone: the stop path's (exit 141, core/stopping.py), not an error
        raise
    except (OSError, ValueError) as error:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        reason = getattr(error, "strerror", None) or str(error)
        raise WriteFailed(f"cannot write {what} ({reason}); point stdout at a file or pipe that takes it, "
                          "or leave out --json") from None


class Lock:
    """The lock a run holds on its --save for as long as it runs (flock on a .NAME.lock beside it): a second
    run with the same --save fails at once instead of racing the first for the file."""

    def __init__(self, path: Path, option: str, *, name: str | None = None):
        path = Path(path)
        # `name`: a lock file inside the folder `path` (a --report folder is taken as --save's file is)
        self.name = path / name if name else path.with_name(f".{path.name}.lock")
        self.handle: int | None = None
        for _ in range(3):  # the file was removed by a run ending between our open and flock: take the new one
            handle = self._open(path, option)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(handle)
                raise UserError(f"{option} {path} is being written by another torchtools run (it holds {self.name});"
                                f" wait for it to end, or choose another {option}") from None
            except OSError:  # a file system without flock (some network shares): the run goes on unguarded
                os.close(handle)
                return
            if _same_file(handle, self.name):
                self.handle = handle
                return
            os.close(handle)

    def _open(self, path: Path, option: str) -> int:
        try:
            self.name.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as error:
            raise UserError(f"{option} {path}: cannot create its lock file {self.name} ({error.strerror}); "
                            f"choose another place for {option}") from None

    def release(self) -> None:
        """Remove the lock file, then let the lock go (a run waiting on the old file sees it gone and retries)."""
        if self.handle is not None:
            with contextlib.suppress(OSError):
                self.name.unlink()
            os.close(self.handle)
            self.handle = None


def _same_file(handle: int, name: Path) -> bool:
    try:
        here, there = os.fstat(handle), os.stat(name)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


FORMULA = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet runs as a formula at the start of a cell


def csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: one starting like a formula gets a leading "'" (OWASP's advice).
    Numbers are left as they are (a negative number is not text)."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA) else value


def strict_json(value: Any, **dumps: Any) -> str:
    """JSON every parser reads: NaN and infinities as null, paths as text, keys as text."""
    return json.dumps(json_safe(value), allow_nan=False, **dumps)


def json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


class _Recording:
    """The open temp file, handed to a writer: an OSError raised by its write is kept, so that a writer which
    turns it into its own error (torch.save: "unexpected pos") is still reported as the failed write it was."""

    def __init__(self, file: IO):
        self._file, self.error = file, None

    def write(self, data):
        try:
            return self._file.write(data)
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name: str):
        return getattr(self._file, name)


def _umask() -> int:
    # Reading the umask means setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
