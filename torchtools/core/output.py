"""What the user sees: the stderr console, the one progress display, tables and the one JSON summary.

Human output goes to stderr; stdout carries only the `--json` summary, so scripts can pipe it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, ProgressColumn
from rich.table import Table
from rich.text import Text

from torchtools.core import files, numbers

console = Console(stderr=True, highlight=False, soft_wrap=True)  # log lines never wrap mid-line
console.soft_wrap = not console.is_terminal  # a terminal's lines wrap between words, never mid-word


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
    return "  ".join(f"{name} {numbers.metric(name, value)}" for name, value in metrics.items() if value is not None)


def number(value: Any) -> str:
    """A number in its one form (core/numbers.py): a count with thousands separators (60,000), a measurement
    to 4 significant digits (0.9683, 564.0, 12346, 3.200e-05)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return numbers.count(value) if isinstance(value, int) else numbers.value(value)


def compact(value: float) -> str:
    """A large count in 4 significant digits: 115,605,504 -> 115.6M."""
    for size, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.4g}{unit}"
    return f"{value:.4g}"


def duration(seconds: float) -> str:
    """A time span as a clock reads it: 0:07, 12:34, 1:02:03."""
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def about(seconds: float) -> str:
    """A whole-run estimate in words: "about 40 s", "about 17 min", "about 2.5 h"."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def fit_fields(fields: Sequence[str], width: int, *, indent: str = "  ") -> list[str]:
    """Fields ("train_loss 0.3012") packed two spaces apart into lines of at most `width`: a line breaks
    between fields, never inside one (a terminal would break "test_accuracy" mid-word)."""
    lines = [fields[0]]
    for field in fields[1:]:
        if len(lines[-1]) + 2 + len(field) <= width:
            lines[-1] += "  " + field
        else:
            lines.append(indent + field)
    return lines


class _Line(ProgressColumn):
    """The progress line as EpochProgress composes it for the terminal's width."""

    def __init__(self, compose: Callable[[int], Text]):
        super().__init__()
        self.compose = compose

    def render(self, task) -> Text:
        return self.compose(console.width)


class EpochProgress:
    """Per-epoch progress: a live line on a terminal, one plain line per epoch otherwise.

    The live line keeps the epoch, the percentage and the time left at any width from 40 columns, and adds
    the running stats, the sample rate and the elapsed time as they fit. After the first steps, where the
    run will take a minute or more, one line says how long (a horizon): on a terminal and in logs alike.
    The plain form keeps cron and CI logs readable: nothing is redrawn, and runs of more than PLAIN_LINES
    epochs (the toy lessons run 1000) print every k-th epoch and the last.
    """

    PLAIN_LINES = 50
    HORIZON_AFTER_SECONDS = 2.0  # the first steps: enough to time them, a small part of a long epoch
    HORIZON_AFTER_STEPS = 3  # ... and at least these after the first
    HORIZON_WORTH_SECONDS = 60.0  # shorter runs need no estimate
    BAR_MIN, BAR_MAX = 10, 40

    def __init__(self, epochs: int):
        self.epochs = epochs
        self.quiet = is_quiet()
        self.live = console.is_terminal and not self.quiet
        self._bar: Progress | None = None
        self._task = None
        self._lines_printed = 0
        self._horizon_said = False
        self._done, self._total, self._stats = 0, 1, {}

    def start_epoch(self, epoch: int, total_batches: int) -> None:
        self.epoch = epoch
        self._started = time.perf_counter()
        self._first_step: float | None = None  # when the first step ended: it carries the warm-up
        self._samples = 0
        self._done, self._total, self._stats = 0, max(total_batches, 1), {}
        if self.live:
            self._bar = Progress(_Line(self.line), console=console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task("train", total=total_batches)

    def advance(self, batches_done: int) -> None:
        """One more step done (called every step: no stats, no device sync)."""
        self._done = batches_done
        if self._first_step is None:
            self._first_step = time.perf_counter()
        elif not self._horizon_said and batches_done > self.HORIZON_AFTER_STEPS and (
                time.perf_counter() - self._first_step >= self.HORIZON_AFTER_SECONDS
                or batches_done >= self._total // 10):
            self._say_horizon()

    def _step_seconds(self) -> float | None:
        """Seconds a step takes, timed after the first (which carries the warm-up)."""
        if self._first_step is None or self._done < 2:
            return None
        return (time.perf_counter() - self._first_step) / (self._done - 1)

    def _say_horizon(self) -> None:
        self._horizon_said = True
        epochs = self.epochs - self.epoch + 1
        run_seconds = self._step_seconds() * (self._total * epochs - self._done)
        if run_seconds >= self.HORIZON_WORTH_SECONDS and not self.quiet:
            console.print(f"{about(run_seconds)} more for {epochs} epoch{'s' if epochs > 1 else ''} (timed on "
                          f"the first {self._done} steps; the evaluations add to it)", markup=False)

    def update(self, batches_done: int, samples_done: int, stats: dict[str, float | None]) -> None:
        """Show how far the epoch is, with running stats (loss, accuracy) and the sample rate."""
        self._samples, self._done = samples_done, batches_done
        elapsed = time.perf_counter() - self._started
        self._stats = {**stats, "samples/s": samples_done / max(elapsed, 1e-9)}

    def line(self, width: int) -> Text:
        """The live line for `width` columns: "epoch 2/10 ━━━╸──── 37% 0:45 left" and what else fits."""
        elapsed = time.perf_counter() - self._started
        share = min(self._done / self._total, 1.0)
        step_seconds = self._step_seconds()
        left = duration(step_seconds * (self._total - self._done)) if step_seconds is not None else "-:--"
        head, tail = f"epoch {self.epoch}/{self.epochs} ", f" {share:4.0%} {left} left"
        stats = {key: value for key, value in self._stats.items() if key != "samples/s"}
        extras = [f"  {format_metrics(stats)}" if stats else "",
                  f"  {numbers.rate(self._stats['samples/s'])} samples/s" if "samples/s" in self._stats else "",
                  f"  {duration(elapsed)} elapsed"]
        room = width - 1 - len(head) - len(tail) - self.BAR_MIN
        for extra in extras:
            if extra and len(extra) <= room:
                tail, room = tail + extra, room - len(extra)
        bar_width = max(min(self.BAR_MAX, width - 1 - len(head) - len(tail)), 1)
        filled = round(share * bar_width)
        return Text.assemble(head, ("━" * filled, "magenta"), ("─" * (bar_width - filled), "bright_black"), tail)

    def end_epoch(self, metrics: dict[str, float | None]) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        seconds = time.perf_counter() - self._started
        every = -(-self.epochs // self.PLAIN_LINES)
        if not self.quiet and (self.epoch % every == 0 or self.epoch == self.epochs or not self._lines_printed):
            self._lines_printed += 1
            rate = self._samples / max(seconds, 1e-9)
            fields = [f"epoch {self.epoch}/{self.epochs}",
                      *(f"{name} {numbers.metric(name, value)}" for name, value in metrics.items()
                        if value is not None),
                      f"{numbers.rate(rate)} samples/s", numbers.seconds(seconds)]
            # On a terminal the line breaks between fields; a log keeps one line an epoch for grep.
            lines = fit_fields(fields, console.width) if console.is_terminal else ["  ".join(fields)]
            console.print("\n".join(lines), markup=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
                narrow: Callable[[], tuple[str, str, Sequence[str], Sequence[Sequence[Any]]]] | None = None,
                dense: bool = False) -> None:
    """A table that fits the terminal: never wrapped. One wider than the console is replaced by `narrow`'s
    (note, title, columns, rows) where given (the largest confusions for a confusion matrix); else its first
    column (names) is cut with an ellipsis, and columns that still do not fit are left out, saying which.
    `dense`: one space before each cell, none after (a matrix of counts: 10 classes fit 80 columns)."""
    if is_quiet():
        return
    table = _table(title, columns, rows, dense=dense)
    if _width(table) > console.width and narrow is not None:
        note, title, columns, rows = narrow()
        say(note)
        dense = False
        table = _table(title, columns, rows)
    left_out = []
    while _width(table, first_cut=True) > console.width and len(columns) > 2:
        left_out.insert(0, str(columns[-1]))
        columns, rows = columns[:-1], [row[:-1] for row in rows]
        table = _table(title, columns, rows, dense=dense)
    excess = _width(table) - console.width
    if excess > 0:  # names cut in the middle, keeping both ends: layer4.0.downsample.0.weight -> layer4.…0.weight
        first = max(len(str(row[0])) for row in rows)
        rows = [(_cut(str(row[0]), max(first - excess, NAME_WIDTH_MIN)), *row[1:]) for row in rows]
        table = _table(title, columns, rows, dense=dense)
    if left_out:
        table.caption = f"left out at {console.width} columns: {', '.join(left_out)} (see --json)"
    console.print(table)


def _cut(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


NAME_WIDTH_MIN = 16  # the least a cut first column keeps


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, dense: bool = False) -> Table:
    table = Table(title=Text(terminal(title)), title_justify="left", padding=(0, 0, 0, 1) if dense else (0, 1))
    cells = _cells(rows)
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


def _cells(rows: Sequence[Sequence[Any]]) -> list[list[Text]]:
    """The rows as plain text (names are not markup, and are shown as data: `terminal`); a column of
    measurements (floats) in one number of decimals (numbers.column), counts with thousands separators."""
    texts = [[str(value) if _is_number(value) else terminal(value) for value in row] for row in rows]
    for index in range(max(map(len, rows), default=0)):
        column = [(row_index, row[index]) for row_index, row in enumerate(rows) if index < len(row)]
        measured = [(row_index, value) for row_index, value in column if _is_number(value) and isinstance(value, float)]
        for row_index, value in column:
            if _is_number(value) and isinstance(value, int):
                texts[row_index][index] = numbers.count(value)
        for (row_index, _), text in zip(measured, numbers.column([value for _, value in measured])):
            texts[row_index][index] = text
    return [[Text(text) for text in row] for row in texts]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def emit_summary(summary: dict[str, Any]) -> None:
    """Under --json, print the summary: exactly one JSON object on one line of stdout, strict JSON (NaN and
    infinities as null) for every parser. A closed or full stdout is one error line (files.write_stream)."""
    if not _mode.json or _mode.muted:
        return
    files.write_stream(sys.stdout, files.strict_json(summary, separators=(",", ":")) + "\n", "the --json summary")
