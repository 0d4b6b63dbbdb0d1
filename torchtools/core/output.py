"""What the user sees: the stderr console, the one progress display, tables and the one JSON summary.

Human output goes to stderr; stdout carries only the `--json` summary, so scripts can pipe it.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

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


def say(message: str) -> None:
    """One line of human output on stderr (suppressed by --quiet)."""
    if not is_quiet():
        console.print(message)


def warn(message: str) -> None:
    """A warning stays visible even under --quiet."""
    if not _mode.muted:
        console.print(f"[yellow]warning:[/yellow] {escape(message)}")


def format_metrics(metrics: dict[str, float | None]) -> str:
    return "  ".join(f"{name} {_format_number(value)}" for name, value in metrics.items() if value is not None)


def _format_number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"


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
                f"epoch {self.epoch}/{self.epochs}  {format_metrics(metrics)}  {rate:,.0f} samples/s  {seconds:.1f}s"
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    if is_quiet():
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(str(column), justify="right" if column != columns[0] else "left")
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    # A table wider than the console (a confusion matrix of many classes) is printed whole, not squashed.
    # rich caps measure() and print(width=) at the console's width, so such a table goes through a wider twin.
    natural = console.measure(table, options=console.options.update(max_width=10_000)).maximum
    wide = console if natural <= console.width else Console(file=console.file, width=natural, highlight=False)
    wide.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def emit_summary(summary: dict[str, Any]) -> None:
    """Under --json, print the summary: exactly one JSON object on one line of stdout.

    Non-finite floats become null so the line stays valid JSON for every parser.
    """
    if not _mode.json or _mode.muted:
        return
    sys.stdout.write(json.dumps(_json_safe(summary), separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if hasattr(value, "__fspath__"):
        return str(value)
    return value
