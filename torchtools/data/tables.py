"""Numeric CSV tables (gzip or plain, optional header, CRLF, BOM), read with errors that name line and column."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from torchtools.core.errors import UserError
from torchtools.data.compressed import open_text

FLOAT32_MAX = float(np.finfo(np.float32).max)  # larger cells would become inf in the float32 table


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


def read_numeric_csv(path: Path, *, min_columns: int = 1) -> Table:
    """Comma-separated numbers, one row a line; blank lines and #-comments skipped.

    The first row is a header only when none of its cells is a number: a row mixing numbers and text is
    a mistyped data row, and an error names its line and column rather than dropping it. NaN and infinite
    cells are errors too (they would only surface later as a NaN loss). Every row must have as many
    columns as the first.
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
                if not rows and header is None and not any(_is_number(cell) for cell in cells):
                    header = cells
                    continue
                row = _numbers(path, line_number, cells)
                width = len(header) if header is not None else (len(rows[0]) if rows else len(row))
                if len(row) != width:
                    raise UserError(f"{path}, line {line_number}: {len(row)} columns where {width} were expected")
                rows.append(row)
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not a readable text/CSV file ({error})") from None
    if not rows:
        raise UserError(f"{path} holds no data rows")
    if len(rows[0]) < min_columns:
        raise UserError(f"{path} has {len(rows[0])} column(s); at least {min_columns} are needed")
    return Table(np.asarray(rows, dtype=np.float32), header)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _numbers(path: Path, line_number: int, cells: list[str]) -> list[float]:
    """A data row's cells as finite floats; the first bad cell is an error naming its line and column."""
    row = []
    for column, cell in enumerate(cells, start=1):
        try:
            value = float(cell)
        except ValueError:
            raise UserError(f"{path}, line {line_number}, column {column}: {cell[:40]!r} is not a number") from None
        if not math.isfinite(value):
            raise UserError(f"{path}, line {line_number}, column {column}: {cell!r} is not a finite number "
                            f"(NaN and infinity cannot be trained on)")
        if abs(value) > FLOAT32_MAX:
            raise UserError(f"{path}, line {line_number}, column {column}: {cell[:40]} is too large for float32")
        row.append(value)
    return row


def check_binary_labels(labels: np.ndarray, path: Path) -> None:
    """A 0/1 label column holding both classes: anything else cannot train a binary classifier."""
    labels = np.asarray(labels)
    bad = np.flatnonzero((labels != 0) & (labels != 1))
    if len(bad):
        raise UserError(f"{path}: the last column must be the 0/1 label; data row {bad[0] + 1} has "
                        f"{labels[bad[0]]:g}")
    for label in (0, 1):
        if not np.any(labels == label):
            raise UserError(f"{path}: all {len(labels)} rows have label {1 - label}: a classifier needs both classes")


def check_split_sizes(path: Path, train_rows: int, held_out_rows: int, val_split: float) -> None:
    """Enough rows to train on (two at least: one row has no spread to standardise by) and, when --val-split
    asks for one, a non-empty held-out set."""
    total = train_rows + held_out_rows
    if val_split > 0 and (held_out_rows == 0 or train_rows < 2):
        raise UserError(f"{path} has {total} data row(s): too few for a training and a held-out split "
                        f"(--val-split {val_split:g} leaves {train_rows} to train on, {held_out_rows} held out); "
                        f"add rows or pass --val-split 0")
    if train_rows < 2:
        raise UserError(f"{path} has {total} data row(s): too few to train on (at least 2 are needed)")


def check_held_out_classes(path: Path, labels: np.ndarray, held_out: np.ndarray) -> None:
    """A held-out set holding one class alone cannot score a binary classifier (no recall, no ROC AUC)."""
    held = np.unique(np.asarray(labels)[np.asarray(held_out)])
    if len(held) == 1:
        counts = {int(label): int(np.sum(np.asarray(labels) == label)) for label in (0, 1)}
        raise UserError(f"{path}: too few rows of label {1 - int(held[0])} ({counts[1 - int(held[0])]}) to hold "
                        "some out; each label needs 2 or more rows (add rows, or pass --val-split 0)")
