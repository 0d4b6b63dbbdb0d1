"""The one reader of data files that may be gzip (told by their magic bytes, whatever their name): tables,
names, --labels CSVs, IDX files. A gzip file cut short or not gzip at all (a file named .gz without gzip's
magic bytes, an empty one included) is one error naming the file, wherever it is read (never gzip's
EOFError, which click would take for Ctrl-D, nor a BadGzipFile traceback, nor what a reader makes of the
bytes as they are); a text line longer than LINE_MAX is one error naming the file and the line.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from torchtools.core.errors import UserError, not_a_file

GZIP_MAGIC = b"\x1f\x8b"
LINE_MAX = 1 << 20  # characters in one line of a text file: a name, a CSV row
_BROKEN = (EOFError, zlib.error, gzip.BadGzipFile)  # a cut stream, a bad block, a bad header


def _gzipped(path: Path, head: bytes) -> bool:
    """Whether the file that starts with `head` is gzip; a name ending in .gz promises it, so one that is not is
    an error here rather than text or bytes that its reader would misread ("holds no data rows")."""
    if head.startswith(GZIP_MAGIC):
        return True
    if path.suffix.lower() == ".gz":
        found = "it is empty" if not head else "it does not start with gzip's magic bytes 1f 8b"
        raise UserError(f"{path} is not gzip, though named .gz ({found}): compress it again, or name it without .gz")
    return False


def broken(path: Path, error: BaseException) -> UserError:
    reason = str(error) or type(error).__name__
    return UserError(f"{path} is not a complete gzip file ({reason}): fetch or compress it again")


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise not_a_file(path) from None
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    if not _gzipped(path, data[:len(GZIP_MAGIC)]):
        return data
    try:
        return gzip.decompress(data)
    except _BROKEN as error:
        raise broken(path, error) from None


class TextFile:
    """A text file's lines (gunzipped when gzip; utf-8, a byte-order mark dropped; CRLF and LF alike), each
    within LINE_MAX; `line` is the number of the last line read, for messages."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise not_a_file(self.path)
        try:
            with open(self.path, "rb") as probe:
                head = probe.read(len(GZIP_MAGIC))
        except OSError as error:
            raise UserError(f"cannot read {self.path}: {error.strerror or error}") from None
        self.line = 0
        opener = gzip.open if _gzipped(self.path, head) else open
        self._stream = opener(self.path, "rt", encoding="utf-8-sig", newline=None)

    def __enter__(self) -> TextFile:
        return self

    def __exit__(self, *exception) -> None:
        self._stream.close()

    def __iter__(self) -> TextFile:
        return self

    def __next__(self) -> str:
        try:
            text = self._stream.readline(LINE_MAX + 1)
        except _BROKEN as error:
            raise broken(self.path, error) from None
        if not text:
            raise StopIteration
        self.line += 1
        if len(text) > LINE_MAX and not text.endswith("\n"):
            raise UserError(f"{self.path}, line {self.line}: over {LINE_MAX:,} characters; is it the right file?")
        return text

    def lines(self) -> list[str]:
        """Every line, without its line ending."""
        return [text.rstrip("\r\n") for text in self]


def open_text(path: Path) -> TextFile:
    return TextFile(path)
