"""Labels from a CSV for a folder of pictures (Kaggle's `train.csv` beside `train/`), listed exactly as a
class-folder tree is listed by data.folders, so both loaders, the split and the cache treat them alike.

The CSV has a header; the image column and the label column are found by name (`image`, `id`, `file`, ...;
`label`, `class`, `species`, ...), or named with --image-column / --label-column, or are its only two
columns. Image cells are paths relative to the folder, the extension optional (Kaggle's `id` column). Rows
held out for validation come from a column (--held-out-column: true/false, 1/0, or train/val/test) or a
second CSV (--val-labels); otherwise the caller's seeded stratified --val-split applies.

What the image flow does with an unreadable file is done here too: a row whose picture is missing is
skipped and named by its CSV line, and `Listing.missing` joins the set's unreadable files (`add_missing`),
so it is counted with them; an exact duplicate row is skipped and counted; a label held by a single
picture cannot be both learned and scored, so its row is skipped and named. A column that is not there, a row without a label,
and one picture given two labels are errors naming the file and the line.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from torchtools.core.errors import UserError, not_a_file
from torchtools.core.output import warn
from torchtools.data.images import IMAGE_SUFFIXES, identity
from torchtools.data.compressed import open_text

IMAGE_COLUMNS = ("image", "images", "image_id", "imageid", "id", "file", "filename", "file_name", "path", "img",
                 "image_name", "fname")
LABEL_COLUMNS = ("label", "labels", "class", "category", "species", "target", "breed", "y")
HELD_OUT_VALUES = {"true": True, "1": True, "yes": True, "val": True, "valid": True, "validation": True,
                   "test": True, "false": False, "0": False, "no": False, "train": False, "": False}
SHOWN = 3


@dataclass(frozen=True)
class Columns:
    """Which columns hold what; None: found from the header."""

    image: str | None = None
    label: str | None = None
    held_out: str | None = None


@dataclass
class Row:
    path: Path
    label: str
    line: int
    held_out: bool
    csv: Path  # the CSV whose line it is (--labels or --val-labels)


@dataclass
class Listing:
    """What data.folders.list_folders returns for a class-folder tree, from CSV rows instead."""

    train_paths: list[Path]
    train_labels: list[int]
    held_paths: list[Path]
    held_labels: list[int]
    classes: list[str]
    layout: str
    notes: dict[str, int] = field(default_factory=dict)  # rows skipped, by reason
    missing: list[Path] = field(default_factory=list)  # pictures the CSV names that are not there

    def as_tuple(self) -> tuple:
        return (self.train_paths, self.train_labels, self.held_paths, self.held_labels, self.classes, self.layout)

    def add_missing(self, images) -> None:
        """Count the missing pictures with the set's unreadable files (the summary's skipped images)."""
        images.skipped[:0] = self.missing


def from_settings(settings, folder: Path | None, *, quiet: bool = False) -> tuple[Path, Listing | None]:
    """(the picture folder, its listing) for a command's LabelsCsvSettings: without --labels, (folder, None)
    and the class-folder tree is read as ever; the column options are refused without --labels."""
    if settings.labels is None:
        given = [flag for flag, value in (("--image-column", settings.image_column),
                                           ("--label-column", settings.label_column),
                                           ("--held-out-column", settings.held_out_column),
                                           ("--val-labels", settings.val_labels)) if value is not None]
        if given:
            raise UserError(f"{', '.join(given)} describe(s) the --labels CSV: pass --labels FILE.csv too")
        return folder, None
    for option, path in (("--labels", settings.labels), ("--val-labels", settings.val_labels)):
        if path is not None and not Path(path).is_file():
            raise not_a_file(path, option)
    folder = Path(folder) if folder is not None else Path(settings.labels).parent
    columns = Columns(settings.image_column, settings.label_column, settings.held_out_column)
    return folder, list_labelled(folder, settings.labels, columns=columns, val_labels=settings.val_labels,
                                 quiet=quiet)


def list_labelled(folder: Path, labels: Path, *, columns: Columns = Columns(), val_labels: Path | None = None,
                  quiet: bool = False) -> Listing:
    """The folder's pictures with the labels the CSV gives them (held-out rows from a column or `val_labels`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder not found: {folder} (the --labels paths are relative to it)")
    said: list[str] = []  # the rows skipped, said once the listing is done (`quiet`: by the run's own listing)
    rows, notes = _rows(folder, labels, columns, said, held_out_column=columns.held_out)
    if val_labels is not None:
        held, held_notes = _rows(folder, val_labels, columns, said, held_out_column=None)
        _check_disjoint(rows, held, labels, val_labels)
        rows += [Row(row.path, row.label, row.line, True, row.csv) for row in held]
        notes = dict(Counter(notes) + Counter(held_notes))
    missing = [row.path for row in rows if not row.path.is_file()]
    rows = _without_lonely_labels([row for row in rows if row.path.is_file()], notes, said)
    for line in [] if quiet else said:
        warn(line)
    classes = sorted({row.label for row in rows})
    if not rows:
        raise UserError(f"{labels} labels no pictures")
    index = {name: position for position, name in enumerate(classes)}
    # The order of a class-folder tree: by class, then by path; training rows first, then the held-out ones.
    ordered = sorted(rows, key=lambda row: (row.held_out, index[row.label], str(row.path)))
    train = [row for row in ordered if not row.held_out]
    held = [row for row in ordered if row.held_out]
    source = f"{folder} labelled by {labels}" + (f" (held out: {val_labels})" if val_labels else "")
    layout = source if held else f"{source} split by --val-split"
    return Listing([row.path for row in train], [index[row.label] for row in train], [row.path for row in held],
                   [index[row.label] for row in held], classes, layout, notes, missing)


def _rows(folder: Path, labels: Path, columns: Columns, said: list[str], *, held_out_column: str | None
          ) -> tuple[list[Row], dict]:
    try:
        with open_text(labels) as text:
            reader = csv.DictReader(text)
            header = [name.strip() for name in reader.fieldnames or []]
            reader.fieldnames = header
            image, label = _column(header, columns.image, IMAGE_COLUMNS, labels, "image", 0), \
                _column(header, columns.label, LABEL_COLUMNS, labels, "label", 1)
            if held_out_column is not None and held_out_column not in header:
                raise _unknown(labels, held_out_column, header)
            rows, seen, notes, missing = [], {}, Counter(), []
            for record in reader:
                line = reader.line_num
                name, tag = (record.get(image) or "").strip(), (record.get(label) or "").strip()
                if not name and not tag:
                    continue  # a blank line
                if not name or not tag:
                    raise UserError(f"{labels}, line {line}: no {'image' if not name else 'label'} in this row")
                path = _picture(folder, name)
                if (key := _file(path)) in seen:
                    first = seen[key]
                    if first.label != tag:
                        raise UserError(f"{labels}, lines {first.line} and {line}: {name} is labelled both "
                                        f"{first.label} and {tag}")
                    notes["duplicate"] += 1
                    continue
                if not path.is_file():
                    missing.append(f"line {line} ({name})")
                held = _held_out(record.get(held_out_column), labels, line, held_out_column) \
                    if held_out_column is not None else False
                seen[key] = row = Row(path, tag, line, held, labels)
                rows.append(row)
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{labels}, line {text.line}: not a readable CSV ({error})") from None
    if missing:
        said.append(f"{labels}: {len(missing)} row(s) name no picture under {folder}, skipped: "
                    + ", ".join(missing[:SHOWN]) + (" ..." if len(missing) > SHOWN else ""))
        notes["missing"] += len(missing)
    if notes["duplicate"]:
        said.append(f"{labels}: {notes['duplicate']} duplicate row(s) skipped")
    return rows, dict(notes)


def _column(header: list[str], named: str | None, known: tuple[str, ...], labels: Path, what: str,
            position: int) -> str:
    """The named column, else the first header cell with a known name, else (two columns) the one at `position`."""
    if named is not None:
        if named not in header:
            raise _unknown(labels, named, header)
        return named
    lowered = {name.lower(): name for name in header}
    found = next((lowered[name] for name in known if name in lowered), None)
    if found is not None:
        return found
    if len(header) == 2:
        return header[position]
    raise UserError(f"{labels}: no {what} column found among {', '.join(header) or 'no columns'}; "
                    f"name it with --{what}-column")


def _unknown(labels: Path, name: str, header: list[str]) -> UserError:
    return UserError(f"{labels} has no column {name!r} (its columns: {', '.join(header) or 'none'})")


def _picture(folder: Path, name: str) -> Path:
    """folder/name, or with the first image extension that exists when the name has none (Kaggle ids)."""
    path = folder / name
    if path.is_file() or path.suffix.lower() in IMAGE_SUFFIXES:
        return path
    return next((candidate for suffix in sorted(IMAGE_SUFFIXES) for candidate in
                 (path.with_name(path.name + suffix), path.with_name(path.name + suffix.upper()))
                 if candidate.is_file()), path)


def _held_out(value: str | None, labels: Path, line: int, column: str) -> bool:
    key = (value or "").strip().lower()
    if key not in HELD_OUT_VALUES:
        raise UserError(f"{labels}, line {line}: {column} is {value!r}; use true/false, 1/0, or train/val/test")
    return HELD_OUT_VALUES[key]


def _file(path: Path) -> tuple:
    """What a row's picture is: one file however the CSV spells it (`3`, `sub/../3.jpg`, a link to it)."""
    return identity(path) or ("missing", os.path.realpath(path))


def _check_disjoint(rows: list[Row], held: list[Row], labels: Path, val_labels: Path) -> None:
    training = {_file(row.path): row for row in rows}
    both = [row for row in held if _file(row.path) in training]
    if both:
        row = both[0]
        raise UserError(f"{row.path.name} is in {labels} (line {training[_file(row.path)].line}) and in "
                        f"{val_labels} (line {row.line}): a picture is trained on or held out, not both")


def _without_lonely_labels(rows: list[Row], notes: dict, said: list[str]) -> list[Row]:
    """Rows of labels held by one picture are left out: such a class can be neither learned and scored."""
    counts = Counter(row.label for row in rows)
    lonely = [row for row in rows if counts[row.label] == 1]
    if lonely:
        said.append(f"{len(lonely)} label(s) held by one picture only, skipped: "
                    + ", ".join(f"{row.label} ({row.csv}, line {row.line})" for row in lonely[:SHOWN])
                    + (" ..." if len(lonely) > SHOWN else ""))
        notes["lonely_label"] = len(lonely)
    return [row for row in rows if counts[row.label] > 1]
