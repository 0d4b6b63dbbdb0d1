"""Numeric CSV tables (gzip or plain, optional header, CRLF), read with errors that name the line."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from torchtools.core.errors import UserError


@dataclass
class Table:
    values: np.ndarray  # float32, rows x columns
    header: list[str] | None

    @property
    def features(self) -> np.ndarray:
        return self.values[:, :-1]

    @property
    def last_column(self) -> np.ndarray:
        return self.values[:, -1]


def open_text(path: Path):
    """Open a text file, gunzipping when it is gzip (by magic bytes, whatever its name)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    return opener(path, "rt", encoding="utf-8", newline=None)  # newline=None: CRLF and LF alike


def read_numeric_csv(path: Path, *, min_columns: int = 1) -> Table:
    """Comma-separated numbers, one row a line. A first line that is not numeric is taken as a header.

    Every row must have as many columns as the first; a malformed row is an error naming its line.
    """
    rows: list[list[float]] = []
    header = None
    try:
        with open_text(path) as text:
            for line_number, line in enumerate(text, start=1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                cells = [cell.strip() for cell in line.split(",")]
                try:
                    row = [float(cell) for cell in cells]
                except ValueError:
                    if not rows and header is None:
                        header = cells
                        continue
                    raise UserError(f"{path}, line {line_number}: not a row of numbers: {line[:60]!r}") from None
                width = len(header) if header is not None else (len(rows[0]) if rows else len(row))
                if len(row) != width:
                    raise UserError(f"{path}, line {line_number}: {len(row)} columns where {width} were expected")
                rows.append(row)
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as error:
        raise UserError(f"{path} is not a readable text/CSV file ({error})") from None
    if not rows:
        raise UserError(f"{path} holds no data rows")
    if len(rows[0]) < min_columns:
        raise UserError(f"{path} has {len(rows[0])} column(s); at least {min_columns} are needed")
    return Table(np.asarray(rows, dtype=np.float32), header)
