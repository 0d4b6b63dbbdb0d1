"""PNG plots through matplotlib's headless backend (imported only when a plot is asked for), written atomically
(or drawn into the TensorBoard logs: `TensorBoardFigure`).

Text is drawn as it is, never parsed as mathtext (`$\\alpha$` stays those characters), and names (class
labels, captions) with the terminal's escaping of control characters (output.terminal). A picture that
cannot be drawn anyway costs that picture alone: one warning, and the run's other files are written
(`_one_picture`).
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from torchtools.core.errors import UserError, first_line
from torchtools.core.files import write_bytes
from torchtools.core.output import say, terminal, warn

ANNOTATE_MAX_CLASSES = 20  # counts are written into the confusion cells up to this many classes
HEATMAP_MAX_CLASSES = 60  # a wider confusion matrix is drawn as its most confused classes (the figure grows with it)
FLAT = 1e-6  # curves that move less than this (relatively) are drawn flat, not as ticks at 1e-9 apart
LOG_SPAN = 100.0  # a loss whose largest value is this many times its smallest is drawn on a log axis


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False  # class names and file names are data, never mathtext
    import matplotlib.pyplot as plt

    return plt


@dataclass(frozen=True)
class TensorBoardFigure:
    """Where a picture goes when it goes into the TensorBoard logs (a figure under `tag`) instead of a file: the
    same drawing, through the same one-picture guard."""

    writer: Any
    tag: str

    def __str__(self) -> str:
        return f"TensorBoard's {self.tag}"


def _one_picture(draw):
    """A drawing that fails costs its own picture: one warning, no stale file left under its name (the run
    would have replaced it), None returned; a failed write stays the one error line it is (core/files.py)."""
    @functools.wraps(draw)
    def drawn(path: Path | TensorBoardFigure, *args, **kwargs) -> Path | TensorBoardFigure | None:
        try:
            return draw(path, *args, **kwargs)
        except UserError:
            raise
        except Exception as error:  # matplotlib's own failures, whatever the backend raises
            import matplotlib.pyplot as plt

            plt.close("all")
            if not isinstance(path, TensorBoardFigure):
                Path(path).unlink(missing_ok=True)
            warn(f"could not draw {path} ({first_line(error)}); the run's other files are written")
            return None
    return drawn


@_one_picture
def line_plot(path: Path, xs: Sequence[float], ys: Sequence[float], *, xlabel: str, ylabel: str, title: str,
              hline: float | None = None, points: tuple[Sequence[float], Sequence[float]] | None = None,
              mark: tuple[float, float] | None = None, loss: bool = False,
              predicted: tuple[Sequence[float], Sequence[float]] | None = None) -> Path:
    """A line over (xs, ys); `points` scattered under it (the data), `predicted` marked on it (--predict),
    `mark` a labelled point (a minimum); a `loss` that spans decades on a log axis."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    axes.plot(list(xs), list(ys), label="fit" if points is not None else None)
    if hline is not None:
        axes.axhline(hline, color="grey", linestyle="--", linewidth=1)
    if points is not None:
        axes.scatter(list(points[0]), list(points[1]), color="C1", zorder=3, label="data")
        if predicted is not None:
            axes.scatter(list(predicted[0]), list(predicted[1]), color="C2", marker="D", zorder=4, label="--predict")
        axes.legend()
    if mark is not None:
        axes.scatter([mark[0]], [mark[1]], color="C3", marker="v", s=80, zorder=4)
        axes.annotate(f"minimum {mark[1]:.4g} at {mark[0]:.4g}", mark, textcoords="offset points", xytext=(8, 8))
    if loss and _spans_decades(list(ys)):
        axes.set_yscale("log")
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.grid(True, alpha=0.3)
    return save(figure, path)


@_one_picture
def curves(path: Path, history: list[dict], *, title: str) -> Path:
    """Loss (and accuracy, where the model has one) per epoch, train and held out."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    panels = [kind for kind in ("loss", "accuracy")
              if any(key.endswith(kind) and row.get(key) is not None for row in history for key in row)]
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), dpi=100, squeeze=False)
    for axis, kind in zip(axes[0], panels):
        names = sorted({key for row in history for key in row if key.endswith(f"_{kind}")}, key=_train_first)
        values = []
        for name in names:
            ys = [row.get(name) for row in history]
            values += [y for y in ys if y is not None]
            axis.plot(epochs, [math.nan if y is None else y for y in ys], marker="o" if len(epochs) < 30 else None,
                      label=name.replace("_", " "))
        if kind == "loss" and _spans_decades(values):
            axis.set_yscale("log")
        else:  # values that barely move read as themselves, not as "1e-9 + 0.1" offsets
            axis.ticklabel_format(axis="y", useOffset=False)
            low, high = min(values, default=0.0), max(values, default=0.0)
            if high - low <= FLAT * max(abs(high), 1.0):  # flat: a band of 1% around it
                margin = 0.01 * max(abs(high), 1.0)
                axis.set_ylim(low - margin, high + margin)
        axis.set(xlabel="epoch", ylabel=kind, title=f"{title}: {kind}")
        if len(epochs) <= 20:  # whole epochs
            axis.set_xticks(epochs)
        else:
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(True, alpha=0.3)
        axis.legend()
    return save(figure, path)


@_one_picture
def heatmap(path: Path | TensorBoardFigure, matrix, labels: Sequence[str], *, title: str) -> Path | TensorBoardFigure:
    """A confusion matrix: rows are true labels, columns predicted; a PNG file, or a TensorBoard figure."""
    if len(labels) > HEATMAP_MAX_CLASSES:
        say(f"{path}: {HEATMAP_MAX_CLASSES} of the {len(labels)} classes drawn, the most confused (every count is "
            "in the --json summary)")
    return save(heatmap_figure(matrix, labels, title=title), path)


def _most_confused(counts, count: int) -> list[int]:
    """The `count` classes most often mistaken, either way (then the largest), in their own order."""
    wrong = counts.sum(axis=0) + counts.sum(axis=1) - 2 * np.diag(counts)
    order = sorted(range(len(counts)), key=lambda index: (-int(wrong[index]), -int(counts[index].sum()), index))
    return sorted(order[:count])


def heatmap_figure(matrix, labels: Sequence[str], *, title: str):
    """The confusion matrix with each row normalised (the share of a true class given each label), so a small
    class's confusions show as plainly as a large one's; the counts are written in where they fit."""
    plt = _pyplot()
    counts = np.asarray(matrix)
    totals = counts.sum(axis=1, keepdims=True)
    labels = [terminal(label) for label in labels]
    if len(labels) > HEATMAP_MAX_CLASSES:  # each row keeps its share of the whole true class
        keep = _most_confused(counts, HEATMAP_MAX_CLASSES)
        title = f"{title} ({len(keep)} of {len(labels)} classes: the most confused)"
        counts, totals, labels = counts[np.ix_(keep, keep)], totals[keep], [labels[index] for index in keep]
    shares = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    size = max(5.0, 0.45 * len(labels) + 2)
    figure, axes = plt.subplots(figsize=(size, size), dpi=100)
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(labels)), labels, rotation=90)
    axes.set_yticks(range(len(labels)), labels)
    axes.set(xlabel="predicted", ylabel="true")
    axes.set_title(title, wrap=True)  # a long title wraps inside the figure instead of being cut at its edges
    if len(labels) <= ANNOTATE_MAX_CLASSES:
        for row in range(len(labels)):
            for column in range(len(labels)):
                if counts[row, column]:
                    axes.text(column, row, f"{counts[row, column]:,}", ha="center", va="center", fontsize=7,
                              color="white" if shares[row, column] > 0.5 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the true class")
    figure.tight_layout()
    return figure


@_one_picture
def picture_grid(path: Path, pictures, captions: Sequence[str], *, title: str, columns: int = 8) -> Path:
    """Pictures (uint8 arrays, HW or HWC) in a grid, each with its caption."""
    plt = _pyplot()
    rows = max(1, math.ceil(len(pictures) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.9 * rows + 0.4), dpi=100, squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < len(pictures):
            picture = pictures[index]
            axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=255)
            axis.set_title(terminal(captions[index]), fontsize=7)
    figure.suptitle(title)
    return save(figure, path)


@_one_picture
def lr_find(path: Path, lrs: Sequence[float], losses: Sequence[float], *, suggested: float,
            minimum: float) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    axes.plot(list(lrs), list(losses))
    axes.set_xscale("log")
    axes.axvline(suggested, color="C3", linestyle="--", label=f"steepest descent {suggested:.2e}")
    axes.axvline(minimum / 10, color="C2", linestyle=":", label=f"minimum / 10 {minimum / 10:.2e}")
    axes.set(xlabel="learning rate (log)", ylabel="smoothed training loss", title="learning-rate range test")
    axes.grid(True, alpha=0.3)
    axes.legend()
    return save(figure, path)


@_one_picture
def roc(path: Path, false_positive: Sequence[float], true_positive: Sequence[float], *, auc: float | None,
        title: str) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5, 5), dpi=100)
    axes.plot(list(false_positive), list(true_positive), label=f"AUC {auc:.4f}" if auc is not None else None)
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right")
    return save(figure, path)


def save(figure, path: Path | TensorBoardFigure) -> Path | TensorBoardFigure:
    """The figure as a PNG at `path`, atomically; or into the TensorBoard logs."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    if isinstance(path, TensorBoardFigure):
        path.writer.add_figure(path.tag, figure)  # drawn there, and closed
        return path
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return write_bytes(Path(path), buffer.getvalue())


def _spans_decades(values: Sequence[float]) -> bool:
    positive = [value for value in values if value is not None and math.isfinite(value) and value > 0]
    return bool(positive) and len(positive) == len([v for v in values if v is not None]) and \
        max(positive) / min(positive) >= LOG_SPAN


def _train_first(name: str) -> tuple[bool, str]:
    return not name.startswith("train"), name
