"""The report of a classifier's held-out evaluation: per-class accuracy and the confusion matrix, on the
terminal, as a PNG heatmap and in TensorBoard; shared by the image commands and names-rnn."""

from __future__ import annotations

from pathlib import Path

from torchtools.core.engine import EvalResult
from torchtools.core.metrics import confusion_matrix, per_class_accuracy
from torchtools.core.output import print_table, say

CONFUSION_MATRIX_MAX_CLASSES = 20  # wider matrices are in the JSON summary, not on the terminal


def report(evaluation: EvalResult, classes: list[str], *, split: str, plot: Path | None = None,
           writer=None) -> tuple[dict[str, float | None], list]:
    """Per-class accuracy and the confusion matrix: rich tables, optional PNG heatmap and TensorBoard figure.

    Returns both for the JSON summary ({class: accuracy}, matrix rows = true classes).
    """
    from torchtools.core import plots

    matrix = confusion_matrix(evaluation.outputs.argmax(dim=1), evaluation.targets, len(classes))
    accuracy = dict(zip(classes, per_class_accuracy(matrix)))
    totals = matrix.sum(dim=1).tolist()
    rows = [(name, count, int(matrix[index, index]), value if value is not None else "-")
            for index, ((name, value), count) in enumerate(zip(accuracy.items(), totals))]
    print_table(f"per-class accuracy ({split})", ["class", "samples", "correct", "accuracy"], rows)
    if len(classes) <= CONFUSION_MATRIX_MAX_CLASSES:
        # Many classes: 4-letter column heads keep the matrix inside a terminal; rows keep the full names.
        heads = [name[:4] for name in classes] if len(classes) > 10 else classes
        print_table(f"confusion matrix ({split}; rows: true, columns: predicted)", ["true \\ predicted", *heads],
                    [(name, *row) for name, row in zip(classes, matrix.tolist())])
    else:
        say(f"confusion matrix: {len(classes)} classes, in the --json summary")
    title = f"{split} confusion matrix (accuracy {evaluation.accuracy:.1%})"
    if plot is not None:
        plots.heatmap(plot, matrix.numpy(), classes, title=title)
        say(f"confusion matrix drawn to {plot}")
    if writer is not None:
        writer.add_figure(f"{split}/confusion_matrix", plots.heatmap_figure(matrix.numpy(), classes, title=title))
        for name, value in accuracy.items():
            if value is not None:
                writer.add_scalar(f"{split}/accuracy_by_class/{name}", value)
        writer.flush()
    return accuracy, matrix.tolist()
