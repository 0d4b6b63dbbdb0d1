"""Surnames by country: both public layouts, Unicode folding and a character vocabulary.

The course ships a CSV of `name,country` rows (names_train.csv.gz); the PyTorch char-RNN tutorial ships a
folder of `<Label>.txt` files with one name a line. Either becomes a NameSet of folded names and labels.
"""

from __future__ import annotations

import csv
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from torchtools.data.compressed import open_text
from torchtools.core.errors import UserError

# The tutorial keeps ASCII letters and " .,;'"; the hyphen of double-barrelled names is kept too.
NAME_CHARACTERS = frozenset(string.ascii_letters + " .,;'-")
# A surname has at most three words ("De la Fontaine"); longer lines are scraped page text such as the
# tutorial's "To The First Page".
MAX_NAME_WORDS = 3
# The first row of a CSV is a header when its label cell is one of these.
HEADER_LABELS = {"label", "country", "language", "category", "class"}


def fold(text: str) -> str:
    """Unicode to ASCII as the tutorial does: strip accents (NFD, drop combining marks), keep name characters."""
    decomposed = unicodedata.normalize("NFD", text.strip())
    return "".join(char for char in decomposed if unicodedata.category(char) != "Mn" and char in NAME_CHARACTERS)


def is_junk(folded: str) -> bool:
    return not any(char.isalpha() for char in folded) or len(folded.split()) > MAX_NAME_WORDS


@dataclass
class NameSet:
    names: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    blank: int = 0  # empty lines / empty name cells
    junk: int = 0  # lines that fold to no letters or are not a name

    def add(self, raw: str, label: str) -> None:
        if not raw.strip():
            self.blank += 1
            return
        name = fold(raw)
        if is_junk(name):
            self.junk += 1
            return
        self.names.append(name)
        self.labels.append(label)

    def subset(self, keep: Sequence[int]) -> NameSet:
        return NameSet([self.names[i] for i in keep], [self.labels[i] for i in keep], self.blank, self.junk)

    def describe(self) -> str:
        skipped = f"; skipped {self.blank} blank and {self.junk} junk line(s)" if self.blank or self.junk else ""
        return f"{len(self.names):,} names, {len(set(self.labels))} labels{skipped}"


def read_names(path: Path) -> NameSet:
    """A folder of <Label>.txt files, or a CSV (gzip or plain) of name,label rows, told apart by what path is."""
    path = Path(path)
    if path.is_dir():
        names = _read_folder(path)
    elif path.is_file():
        names = _read_csv(path)
    else:
        raise UserError(f"no names at {path}: pass a name,label CSV (gzip or plain) or a folder of <Label>.txt files")
    if not names.names:
        raise UserError(f"{path} holds no names ({names.blank} blank and {names.junk} junk line(s))")
    return names


def _read_folder(folder: Path) -> NameSet:
    files = sorted(file for file in folder.glob("*.txt") if file.is_file())
    if not files:
        raise UserError(f"{folder} holds no <Label>.txt files (one name a line, the file name is the label)")
    names = NameSet()
    for file in files:
        try:
            with open_text(file) as text:
                lines = text.lines()
        except UnicodeDecodeError as error:
            raise UserError(f"{file} is not UTF-8 text ({error})") from None
        for line in lines:
            names.add(line, file.stem)
    return names


def _read_csv(path: Path) -> NameSet:
    names = NameSet()
    try:
        with open_text(path) as text:
            reader = csv.reader(text)
            for row in reader:
                if not any(cell.strip() for cell in row):
                    names.blank += 1
                    continue
                if len(row) != 2 or not row[1].strip():
                    raise UserError(f"{path}, line {reader.line_num}: expected a name,label row, found "
                                    f"{','.join(row)[:60]!r}")
                if reader.line_num == 1 and row[1].strip().lower() in HEADER_LABELS:
                    continue
                names.add(row[0], row[1].strip())
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{path}, line {text.line}: not a readable name,label CSV ({error})") from None
    return names


class Vocabulary:
    """Characters to indices: 0 pads, 1 stands for a character never seen in training."""

    PAD, UNKNOWN = 0, 1

    def __init__(self, characters: str):
        self.characters = characters
        self._index = {char: position + 2 for position, char in enumerate(characters)}

    @classmethod
    def from_names(cls, names: Sequence[str]) -> Vocabulary:
        return cls("".join(sorted(set("".join(names)))))

    def __len__(self) -> int:
        return len(self.characters) + 2

    def encode(self, names: Sequence[str]) -> Tensor:
        """Names as rows of indices, right-padded with PAD to the longest (a name's length is its non-PAD count)."""
        codes = torch.full((len(names), max((len(name) for name in names), default=0)), self.PAD, dtype=torch.long)
        for row, name in enumerate(names):
            codes[row, :len(name)] = torch.tensor([self._index.get(char, self.UNKNOWN) for char in name])
        return codes
