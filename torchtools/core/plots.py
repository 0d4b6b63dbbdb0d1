"""PNG plots through matplotlib's headless backend (imported only when a plot is asked for)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def line_plot(path: Path, xs: Sequence[float], ys: Sequence[float], *, xlabel: str, ylabel: str, title: str,
              hline: float | None = None, points: tuple[Sequence[float], Sequence[float]] | None = None) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    axes.plot(list(xs), list(ys))
    if hline is not None:
        axes.axhline(hline, color="grey", linestyle="--", linewidth=1)
    if points is not None:
        axes.scatter(list(points[0]), list(points[1]), color="C1", zorder=3)
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.grid(True, alpha=0.3)
    return _save(figure, path)


def heatmap(path: Path, matrix, labels: Sequence[str], *, title: str) -> Path:
    """A confusion matrix: rows are true labels, columns predicted."""
    return _save(heatmap_figure(matrix, labels, title=title), path)


def heatmap_figure(matrix, labels: Sequence[str], *, title: str):
    """The heatmap as a matplotlib figure (for TensorBoard's add_figure)."""
    plt = _pyplot()
    size = max(5.0, 0.45 * len(labels) + 2)
    figure, axes = plt.subplots(figsize=(size, size), dpi=100)
    image = axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels, rotation=90)
    axes.set_yticks(range(len(labels)), labels)
    axes.set(xlabel="predicted", ylabel="true", title=title)
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    return figure


def _save(figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path)
    figure.clear()
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path
