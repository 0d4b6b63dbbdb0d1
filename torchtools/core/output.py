"""What the user sees: the stderr console, the one progress display, tables and the one JSON summary.

Human output goes to stderr; stdout carries only the `--json` summary, so scripts can pipe it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from torchtools.core import files

console = Console(stderr=True, highlight=False, soft_wrap=True)  # log lines never wrap mid-line


@dataclass
class _Mode:
    quiet: bool = False  # --quiet: only warnings and errors
    json: bool = False  # --json: the summary goes to stdout
    muted: bool = False  # torchrun processes other than 0: silent (errors still show everywhere)


# The output mode is set once per command (configure), and read here; nothing passes it down.
_mode = _Mode()


def configure(*, quiet: bool, json: bool) -> None:
    _mode.quiet, _mode.json = quiet, json


def mute() -> None:
    """Silence this process's progress, messages, warnings and tables (torchrun processes other than 0)."""
    _mode.muted = True


def is_quiet() -> bool:
    return _mode.quiet or _mode.muted


# Control characters (C0, DEL, C1), line and paragraph separators, and bidirectional overrides: each would
# split a line, move the cursor, recolour the terminal or reorder what follows it.
_ESCAPED = {code: repr(chr(code))[1:-1] if code < 0x2000 else f"\\u{code:04x}"
            for code in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F),
                         *range(0x2066, 0x206A)]}


def terminal(text: Any) -> str:
    """The one text rule of the terminal: names are data. Control characters and escape sequences are shown
    escaped (\\n, \\x1b), and bytes that are not UTF-8 (a file name's, kept as surrogates) as \\xNN,
    in every line: messages, warnings, errors and tables."""
    text = str(text)
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no file name gave
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.translate(_ESCAPED)


def say(message: str) -> None:
    """One line of human output on stderr (suppressed by --quiet), as plain text: a file or class name
    holding "[bold]" or "[/]" is shown as typed, never read as rich markup."""
    if not is_quiet():
        console.print(terminal(message), markup=False)


def warn(message: str) -> None:
    """A warning stays visible even under --quiet."""
    if not _mode.muted:
        console.print(f"[yellow]warning:[/yellow] {escape(terminal(message))}")


def error(message: str) -> None:
    """The one `error:` line a failed command ends with."""
    console.print(f"[red]error:[/red] {escape(terminal(message))}", soft_wrap=True)


def notice(message: str) -> None:
    """A line that stays visible even under --quiet, as it is (what a stop left saved)."""
    if not _mode.muted:
        console.print(escape(terminal(message)))


def path_text(path) -> str:
    """A file name as text that prints and encodes anywhere: bytes that are not UTF-8 shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def warn_skipped(what: str, paths: Sequence, *, shown: int = 3) -> None:
    """The one line naming skipped inputs: "skipped 4 unreadable picture(s) (...): a.png, b.png, c.png ..."."""
    if paths:
        names = ", ".join(path_text(path) for path in paths[:shown]) + (" ..." if len(paths) > shown else "")
        warn(f"skipped {len(paths)} {what}: {names}")


def wrote(what: str, path) -> None:
    """The one line that says a file or folder was written: "wrote checkpoint: runs/mnist.pt"."""
    say(f"wrote {what}: {path}")


def format_metrics(metrics: dict[str, float | None]) -> str:
    return "  ".join(f"{name} {number(value)}" for name, value in metrics.items() if value is not None)


def number(value: Any) -> str:
    """A number as people read it: counts whole with thousands separators (60,000), measurements to 4
    significant digits, trailing zeros kept so a column of them lines up (0.9683, 0.4080, 564.0461 as 564.0,
    12,345.6 as 12,346, 3.2e-05 as 3.200e-05)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if abs(float(f"{value:.4g}")) >= 1000:  # 999.96 rounds up to 1,000, not "1000."
        return f"{value:,.0f}"
    return f"{value:#.4g}"


def compact(value: float) -> str:
    """A large count in 4 significant digits: 115,605,504 -> 115.6M."""
    for size, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.4g}{unit}"
    return f"{value:.4g}"


class EpochProgress:
    """Per-epoch progress: a live rich bar on a terminal, one plain line per epoch otherwise.

    The plain form keeps cron and CI logs readable: nothing is redrawn, nothing is printed mid-epoch,
    and runs of more than PLAIN_LINES epochs (the toy lessons run 1000) print every k-th epoch and the last.
    """

    PLAIN_LINES = 50

    def __init__(self, epochs: int):
        self.epochs = epochs
        self.quiet = is_quiet()
        self.live = console.is_terminal and not self.quiet
        self._bar: Progress | None = None
        self._task = None
        self._lines_printed = 0

    def start_epoch(self, epoch: int, total_batches: int) -> None:
        self.epoch = epoch
        self._started = time.perf_counter()
        self._samples = 0
        if self.live:
            self._bar = Progress(
                TextColumn(f"epoch {epoch}/{self.epochs}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                TextColumn("elapsed,"),
                TimeRemainingColumn(),
                TextColumn("left"),
                console=console,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("train", total=total_batches, stats="")

    def update(self, batches_done: int, samples_done: int, stats: dict[str, float | None]) -> None:
        """Show how far the epoch is, with running stats (loss, accuracy) and the sample rate."""
        self._samples = samples_done
        if self._bar is not None:
            rate = samples_done / max(time.perf_counter() - self._started, 1e-9)
            self._bar.update(self._task, completed=batches_done, stats=format_metrics({**stats, "samples/s": rate}))

    def end_epoch(self, metrics: dict[str, float | None]) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        seconds = time.perf_counter() - self._started
        every = -(-self.epochs // self.PLAIN_LINES)
        if not self.quiet and (self.epoch % every == 0 or self.epoch == self.epochs or not self._lines_printed):
            self._lines_printed += 1
            rate = self._samples / max(seconds, 1e-9)
            console.print(
                f"epoch {self.epoch}/{self.epochs}  {format_metrics(metrics)}  {number(rate)} samples/s  "
                f"{number(seconds)}s"
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
                narrow: Callable[[], tuple[str, str, Sequence[str], Sequence[Sequence[Any]]]] | None = None) -> None:
    """A table that fits the terminal: never wrapped. One wider than the console is replaced by `narrow`'s
    (note, title, columns, rows) where given (the largest confusions for a confusion matrix); else its first
    column (names) is cut with an ellipsis, and columns that still do not fit are left out, saying which."""
    if is_quiet():
        return
    table = _table(title, columns, rows)
    if _width(table) > console.width and narrow is not None:
        note, title, columns, rows = narrow()
        say(note)
        table = _table(title, columns, rows)
    left_out = []
    while _width(table, first_cut=True) > console.width and len(columns) > 2:
        left_out.insert(0, str(columns[-1]))
        columns, rows = columns[:-1], [row[:-1] for row in rows]
        table = _table(title, columns, rows)
    excess = _width(table) - console.width
    if excess > 0:  # names cut in the middle, keeping both ends: layer4.0.downsample.0.weight -> layer4.…0.weight
        first = max(len(str(row[0])) for row in rows)
        rows = [(_cut(str(row[0]), max(first - excess, NAME_WIDTH_MIN)), *row[1:]) for row in rows]
        table = _table(title, columns, rows)
    if left_out:
        table.caption = f"left out at {console.width} columns: {', '.join(left_out)} (see --json)"
    console.print(table)


def _cut(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


NAME_WIDTH_MIN = 16  # the least a cut first column keeps


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    table = Table(title=Text(terminal(title)), title_justify="left")
    cells = [[_cell(value) for value in row] for row in rows]
    for index, column in enumerate(columns):
        # Every column but the first (the names, which may be cut) keeps its width: numbers are never cut.
        widest = max([len(str(column)), *(len(row[index]) for row in cells if index < len(row))])
        table.add_column(terminal(column), justify="right" if index else "left", no_wrap=bool(index),
                         min_width=widest if index else None)
    for row in cells:
        table.add_row(*row)
    return table


def _width(table: Table, *, first_cut: bool = False) -> int:
    """The table's natural width; with `first_cut`, as it would be with its first column cut to NAME_WIDTH_MIN."""
    natural = console.measure(table, options=console.options.update(max_width=10_000)).maximum
    if not first_cut:
        return natural
    first = max((len(cell) for cell in [table.columns[0].header, *table.columns[0]._cells]), default=0)
    return natural - max(0, first - NAME_WIDTH_MIN)


def _cell(value: Any) -> Text:
    """A table cell as plain text (class and layer names are not markup)."""
    return Text(number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else terminal(value))


def emit_summary(summary: dict[str, Any]) -> None:
    """Under --json, print the summary: exactly one JSON object on one line of stdout, strict JSON (NaN and
    infinities as null) for every parser. A closed or full stdout is one error line (files.write_stream)."""
    if not _mode.json or _mode.muted:
        return
    files.write_stream(sys.stdout, files.strict_json(summary, separators=(",", ":")) + "\n", "the --json summary")
