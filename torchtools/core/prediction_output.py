"""--output FILE.csv / FILE.jsonl: one row per predicted image, written atomically, for pipelines.

CSV (a header row, then one row an image; the csv module quotes paths holding commas, quotes or
newlines):

    path,label,probability,label_2,probability_2,label_3,probability_3
    photos/cat 1.jpg,cat,0.912345,dog,0.081234,bird,0.006421

`label`/`probability` are the top class; label_N/probability_N the next ones, up to --top-k (capped at
the model's class count). Probabilities have 6 decimals. A text cell a spreadsheet would run as a
formula (starting with =, +, -, @, a tab or CR) starts with ' instead.

JSON Lines (one object a line): {"path": ..., "label": ..., "probability": ..., "top": [[label, p], ...]}
with `top` holding the --top-k classes, best first, the first being label/probability; strict JSON
(a NaN probability is null).

The rows go to a hidden temp file beside the target (core/files.atomic_file), renamed over it when every
image is done: a reader (the next pipeline step, a cron job's rsync) never sees half a file, and a failed
or interrupted run leaves the previous output as it was. The first `keep` rows also stay in memory for
the JSON summary, whose `predictions` list is capped there (`predictions_capped` says so). Run.start has
checked the path (core/paths.py) before any work.
"""

from __future__ import annotations

import contextlib
import csv
import math
from pathlib import Path
from typing import Any

from torchtools.core.files import atomic_file, csv_cell, strict_json
from torchtools.core.output import path_text, say, warn_skipped, wrote

FORMATS = (".csv", ".jsonl")
KEEP_IN_SUMMARY = 100
PRINTED = 20  # predictions shown on the terminal; the rest go to the file and the summary
SHOWN = 3  # skipped inputs named on the terminal (the summary names them all)


def _csv_header(top_k: int, column: str) -> list[str]:
    ranks = [f"{name}_{rank}" for rank in range(2, top_k + 1) for name in ("label", "probability")]
    return [column, "label", "probability", *ranks]


class PredictionWriter:
    """Collect predictions one image at a time; with a path, stream them to a .csv or .jsonl file.

        with PredictionWriter(output, top_k, classes=len(classes)) as writer:
            for path, probabilities in ...:
                writer.add(path, classes, probabilities)
            writer.skip(unreadable_paths)
        session.finish(**writer.summary())

    `path` None keeps rows for the summary only (the small-input case without --output).
    """

    def __init__(self, path: Path | None, top_k: int, *, classes: int, keep: int = KEEP_IN_SUMMARY,
                 item: str = "image", column: str = "path"):
        """`classes` caps --top-k (no columns for classes the model lacks); `item` keys what was predicted in
        the summary rows (images: "image", names: "name"); `column` in the file's rows ("path", "name")."""
        self.path = None if path is None else Path(path)
        self.top_k, self.keep, self.item, self.column = min(top_k, classes), keep, item, column
        self.rows: list[dict[str, Any]] = []
        self.count = 0
        self.skipped: list[Path] = []
        self._file = self._csv = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> PredictionWriter:
        if self.path is not None:
            # surrogateescape: a file name of any bytes is written back as those bytes, never an encoding error
            self._file = self._stack.enter_context(atomic_file(self.path, "w", newline="", encoding="utf-8",
                                                               errors="surrogateescape"))
            if self.path.suffix.lower() == ".csv":
                self._csv = csv.writer(self._file)
                self._csv.writerow(_csv_header(self.top_k, self.column))
        return self

    def add(self, path: Path | str, labels: list[str], probabilities: list[float]) -> None:
        """One image: class names and their probabilities, in any order (all classes, or the top ones)."""
        ranked = sorted(zip(labels, probabilities), key=lambda pair: -_rank(pair[1]))[:self.top_k]
        top = [[label, round(float(probability), 6)] for label, probability in ranked]
        path = path_text(path)  # a name of any bytes, as UTF-8 text
        if self._csv is not None:
            cells = [csv_cell(path)] + [f"{probability:.6f}" if column % 2 else csv_cell(label)
                                        for label, probability in top for column in (0, 1)]
            self._csv.writerow(cells + [""] * (2 * self.top_k + 1 - len(cells)))
        elif self._file is not None:
            row = {self.column: path, "label": top[0][0], "probability": top[0][1], "top": top}
            self._file.write(strict_json(row, ensure_ascii=False) + "\n")
        if self.count < self.keep:
            # The summary's rows keep the shape of the JSON summary's `predictions` (image, label, top).
            self.rows.append({self.item: path, "label": top[0][0], "probability": top[0][1], "top": top})
        self.count += 1
        if self.count <= PRINTED:
            say(f"{path}: {top[0][0]}  (" + ", ".join(f"{label} {p:.3f}" for label, p in top) + ")")

    def report(self, inputs: int, unreadable: str) -> dict[str, Any]:
        """Say what was skipped (`unreadable` describes them) and how many were labelled; return the summary
        keys (`predictions` null when there was nothing to predict)."""
        warn_skipped(unreadable, self.skipped, shown=SHOWN)
        if self.count > PRINTED:
            say(f"... {self.count:,} labelled")
        if self.path is not None:
            wrote(f"predictions ({self.count:,} rows)", self.path)
        summary = self.summary()
        if not inputs:
            summary["predictions"] = None
        return summary

    def skip(self, paths: list[Path]) -> None:
        """Files that could not be read: named in the summary, no row in the file."""
        self.skipped.extend(paths)

    def summary(self) -> dict[str, Any]:
        """Keys for the JSON summary: counts, the output path, the (capped) rows, the skipped files."""
        return {f"predicted_{self.item}s": self.count,
                f"unreadable_{self.item}s": [path_text(path) for path in self.skipped],
                "predictions_output": str(self.path) if self.path else None, "predictions": self.rows,
                "predictions_capped": self.count > len(self.rows)}

    def __exit__(self, error_type, error, traceback) -> bool | None:
        # The file is put in place only when every row is written; after an error it is removed.
        return self._stack.__exit__(error_type, error, traceback)


def _rank(probability: float) -> float:
    """A NaN probability (a broken model) sorts last, not wherever sorted() leaves it."""
    return probability if not math.isnan(probability) else -math.inf
