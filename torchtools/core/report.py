"""What a run leaves for a person: the --report folder (history.csv, curves.png, confusion.png and the
command's own pictures and tables), and the held-out report of a classifier (per-class accuracy and the
confusion matrix on the terminal, as a PNG heatmap and in TensorBoard), shared by the image commands and
names-rnn. Every file is written atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Sequence

from torchtools.core import plots
from torchtools.core.engine import EvalResult
from torchtools.core.metrics import confusion_matrix, per_class_accuracy, per_class_precision
from torchtools.core.output import console, number, print_table, say, terminal, wrote
from torchtools.core.files import csv_cell, write_bytes

CONFUSION_MATRIX_MAX_CLASSES = 20  # wider matrices are in the JSON summary and confusion.png, not on the terminal
CONFUSIONS_SHOWN = 10  # the largest confusions a too-wide matrix is shown as


class ReportFolder:
    """The --report DIR of a run: each file is named once it is written (`files`, for the JSON summary)."""

    def __init__(self, folder: Path, names: tuple[str, ...]):
        self.folder = Path(folder)
        self.names = names  # the config's REPORT_FILES
        self._named: list[str] = []

    @property
    def files(self) -> list[str]:
        """The files written: a picture that could not be drawn is not there (core/plots.py)."""
        return [name for name in self._named if Path(name).is_file()]

    def path(self, name: str) -> Path:
        if name not in self.names:  # Run.start checked those names before any work, and only those
            raise ValueError(f"{name} is not in the config's REPORT_FILES: add it there")
        path = self.folder / name
        if str(path) not in self._named:
            self._named.append(str(path))
        return path

    def history(self, rows: list[dict[str, Any]], *, title: str) -> None:
        """history.csv (one row per epoch: epoch, every metric, the lr, seconds) and curves.png."""
        if not rows:
            return
        columns = list(dict.fromkeys(key for row in rows for key in row))
        self.csv("history.csv", columns, [[row.get(key) for key in columns] for row in rows])
        plots.curves(self.path("curves.png"), rows, title=title)

    def csv(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
        """A CSV: floats as repr (they read back exactly), None as an empty cell, text safe in a spreadsheet."""
        text = io.StringIO()
        out = csv.writer(text, lineterminator="\n")
        out.writerow(columns)
        out.writerows([["" if value is None else repr(value) if isinstance(value, float) else csv_cell(value)
                        for value in row] for row in rows])
        return write_bytes(self.path(name), text.getvalue().encode(errors="surrogateescape"))

    def table(self, name: str, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """One table as NAME.csv and as NAME.md (a markdown table a person reads)."""
        self.csv(f"{name}.csv", columns, rows)
        lines = [f"# {title}", "", "| " + " | ".join(map(str, columns)) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_markdown_cell(value) for value in row) + " |" for row in rows]
        write_bytes(self.path(f"{name}.md"), ("\n".join(lines) + "\n").encode(errors="surrogateescape"))

    def announce(self) -> None:
        if self.files:
            wrote(f"report ({len(self.files)} file{'' if len(self.files) == 1 else 's'})", self.folder)


def largest_confusions(matrix, classes: list[str], count: int = CONFUSIONS_SHOWN) -> list[tuple[str, str, int, float]]:
    """(true, predicted, count, share of the true class) of the most frequent mistakes, largest first."""
    totals = matrix.sum(dim=1)
    pairs = [(int(matrix[true, predicted]), true, predicted) for true in range(len(classes))
             for predicted in range(len(classes)) if true != predicted and matrix[true, predicted] > 0]
    pairs.sort(key=lambda item: (-item[0], item[1], item[2]))
    return [(classes[true], classes[predicted], number, number / int(totals[true]))
            for number, true, predicted in pairs[:count]]


def report(evaluation: EvalResult, classes: list[str], *, split: str, plot: Path | None = None,
           writer=None, folder: ReportFolder | None = None) -> tuple[dict[str, float | None], list]:
    """Per-class accuracy and the confusion matrix: rich tables (the largest confusions where the matrix is
    wider than the terminal), the PNG heatmap (--plot, and confusion.png in the report), TensorBoard.

    Returns both for the JSON summary ({class: accuracy}, matrix rows = true classes).
    """
    matrix = confusion_matrix(evaluation.outputs.argmax(dim=1), evaluation.targets, len(classes))
    accuracy = dict(zip(classes, per_class_accuracy(matrix)))
    totals = matrix.sum(dim=1).tolist()
    precision = per_class_precision(matrix)
    rows = [(name, count, int(matrix[index, index]), value if value is not None else "-",
             precision[index] if precision[index] is not None else "-")
            for index, ((name, value), count) in enumerate(zip(accuracy.items(), totals))]
    # A class's accuracy is its recall (found of those there); precision is right of those it was named.
    print_table(f"per-class accuracy ({split})", ["class", "samples", "correct", "recall", "precision"], rows)
    drawn = "confusion.png in --report" if folder is not None else "--report DIR's confusion.png"
    if len(classes) > plots.HEATMAP_MAX_CLASSES:
        drawn = f"--json; the {plots.HEATMAP_MAX_CLASSES} most confused classes: {drawn}"

    def narrow():
        return (f"confusion matrix: too wide for {_columns()} columns (all of it: {drawn}, and --json)",
                f"largest confusions ({split})",
                ["true", "predicted", "count", "share of true"], largest_confusions(matrix, classes))

    if len(classes) <= CONFUSION_MATRIX_MAX_CLASSES:
        # Many classes: 4-letter column heads keep the matrix narrower; rows keep the full names.
        heads = [name[:4] for name in classes] if len(classes) > 10 else classes
        print_table(f"confusion matrix ({split}; rows: true, columns: predicted)", ["true", *heads],
                    [(name, *row) for name, row in zip(classes, matrix.tolist())], narrow=narrow, dense=True)
    else:
        note, title, columns, confusions = narrow()
        say(f"confusion matrix: {len(classes)} classes (all of it: {drawn}, and --json)")
        print_table(title, columns, confusions)
    title = f"{split} confusion matrix, accuracy {evaluation.accuracy:.1%}\n(colour: share of the true class)"
    if plot is not None:
        if plots.heatmap(plot, matrix.numpy(), classes, title=title) is not None:
            wrote("confusion matrix", plot)
    if folder is not None:
        plots.heatmap(folder.path("confusion.png"), matrix.numpy(), classes, title=title)
    if writer is not None:
        plots.heatmap(plots.TensorBoardFigure(writer, f"{split}/confusion_matrix"), matrix.numpy(), classes,
                      title=title)
        for name, value in accuracy.items():
            if value is not None:
                writer.add_scalar(f"{split}/accuracy_by_class/{name}", value)
        writer.flush()
    return accuracy, matrix.tolist()


def _columns() -> int:
    return console.width


def _markdown_cell(value: Any) -> str:
    """A cell of a table a person reads (`cat worst_names.md`): a name by the terminal's one text rule (a newline
    or an escape sequence in it shown escaped, never splitting the row or recolouring the terminal)."""
    return (number(value) if isinstance(value, (int, float)) and not isinstance(value, bool)
            else terminal(value).replace("|", "\\|"))
