"""Numbers one way: each kind of number has one form, wherever it is shown (epoch lines, tables, summaries).

- count: whole, with thousands separators (60,000), the only kind that has them;
- loss and value (a weight, a parameter, a difference): 4 significant digits (0.3012, 922.4, 2578, 3.200e-05);
- accuracy (any 0..1 score: accuracy, precision, recall, F1, AUC, a probability): 4 decimals (1.0000, 0.7778);
- share (a part of a whole, as a percentage): 12.5%;
- rate (per second): 3 significant digits, k/M/G above a thousand (6.25, 12.4k);
- size in bytes: binary units, whole from 10 up, one decimal below (1.5 KiB, 10 KiB, 188 MiB);
- seconds: 7.9s, 123s.
Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

SCORES = ("accuracy", "acc", "precision", "recall", "f1", "auc", "probability")


def count(value: int) -> str:
    return f"{int(value):,}"


def value(number: float) -> str:
    """4 significant digits, trailing zeros kept so a column lines up; whole from 1000; tiny ones as 3.200e-05."""
    number = float(number)
    if not math.isfinite(number) or number == 0:
        return f"{number:g}"
    if abs(float(f"{number:.4g}")) >= 1000:  # 999.96 rounds up to 1000, not "1000."
        return f"{number:.0f}"
    if abs(number) < 1e-3:
        return f"{number:.3e}"
    return f"{number:#.4g}"


loss = value


def accuracy(number: float) -> str:
    return f"{float(number):.4f}" if math.isfinite(number) else f"{number:g}"


def share(number: float) -> str:
    """A fraction as a percentage: 0.125 -> 12.5%, 1.0 -> 100%."""
    percent = float(number) * 100
    return f"{percent:.0f}%" if percent >= 99.95 or percent == 0 else f"{percent:.3g}%"


def rate(number: float) -> str:
    number = float(number)
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= size:
            return f"{number / size:.3g}{unit}"
    return f"{number:.3g}"


def size(byte_count: float) -> str:
    """Binary units, whole from 10 up, one decimal below: 523 B, 1.5 KiB, 10 KiB, 188 MiB."""
    byte_count = float(byte_count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(byte_count) < 1024 or unit == "TiB":
            return f"{byte_count:.0f} {unit}" if unit == "B" or byte_count >= 10 else f"{byte_count:.1f} {unit}"
        byte_count /= 1024
    raise AssertionError("unreachable")


def seconds(number: float) -> str:
    return f"{number:.1f}s" if number < 100 else f"{number:.0f}s"


def metric(name: str, number: float) -> str:
    """A named metric in its kind's form: val_accuracy 0.9683, train_loss 0.3012, samples/s 12.4k."""
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        return str(number)
    words = name.lower().replace("/", "_").split("_")
    if "samples" in words or name.endswith("/s"):
        return rate(number)
    if any(word in SCORES for word in words):
        return accuracy(number)
    if isinstance(number, int):
        return count(number)
    return loss(number)


def column(numbers: Sequence[float]) -> list[str]:
    """A column of measurements to one number of decimals: 4 significant digits for its largest, so
    0.03016 and 0.008911 read 0.03016 and 0.00891, and 1.0 beside 0.7778 reads 1.000 beside 0.778."""
    finite = [abs(float(number)) for number in numbers if math.isfinite(number)]
    largest = max(finite, default=0.0)
    if largest == 0 or not 1e-3 <= largest < 1e4:
        return [value(number) for number in numbers]
    decimals = max(0, 3 - math.floor(math.log10(largest)))
    return [f"{float(number):.{decimals}f}" if math.isfinite(number) else f"{number:g}" for number in numbers]
