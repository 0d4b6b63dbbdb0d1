"""Numbers one way (core/numbers.py): each kind in one form in epoch lines, tables and summaries; thousands
separators only for counts."""

from __future__ import annotations

import re

import pytest

from conftest import run_torchtools
from torchtools.core import numbers
from torchtools.core.output import format_metrics


@pytest.mark.parametrize("kind, value, shown", [
    ("count", 60000, "60,000"),
    ("loss", 0.03016, "0.03016"), ("loss", 922.44, "922.4"), ("loss", 2578.3, "2578"), ("loss", 7.049e-12, "7.049e-12"),
    ("value", 1.9999970197677612, "2.000"), ("value", 0.000007, "7.000e-06"),
    ("accuracy", 1.0, "1.0000"), ("accuracy", 0.77777, "0.7778"),
    ("share", 0.125, "12.5%"), ("share", 1.0, "100%"), ("share", 0.0, "0%"),
    ("rate", 6.25, "6.25"), ("rate", 12418.2, "12.4k"), ("rate", 2.5e6, "2.5M"),
    ("size", 10_240, "10 KiB"), ("size", 1536, "1.5 KiB"), ("size", 523, "523 B"), ("size", 196_608_000, "188 MiB"),
])
def test_each_kind_has_one_form(kind, value, shown):
    assert getattr(numbers, kind)(value) == shown


def test_only_counts_have_thousands_separators():
    assert "," not in numbers.rate(12418.2) + numbers.value(12345.6) + numbers.size(10**9)
    assert numbers.count(1234567) == "1,234,567"


def test_metrics_are_shown_by_their_kind():
    line = format_metrics({"train_loss": 0.0301623, "val_accuracy": 1.0, "precision": 0.77777, "samples/s": 12418.2})
    assert line == "train_loss 0.03016  val_accuracy 1.0000  precision 0.7778  samples/s 12.4k"


def test_a_column_of_measurements_has_one_number_of_decimals():
    assert numbers.column([0.03016, 0.008911]) == ["0.03016", "0.00891"]
    assert numbers.column([1.0, 0.7778]) == ["1.000", "0.778"]


def test_fit_linear_and_inspect_weights_say_their_numbers_in_those_forms(tmp_path):
    fitted = run_torchtools("fit-linear", "--no-tensorboard", "--save", tmp_path / "w.pt", cwd=tmp_path,
                            env={"OMP_NUM_THREADS": "1"})
    assert fitted.exit_code == 0, fitted.stderr
    assert re.search(r"^w = 2\.000  b = -?\d\.\d{3}e-\d\d  loss = ", fitted.stderr, re.M), fitted.stderr
    inspected = run_torchtools("inspect-weights", tmp_path / "w.pt", cwd=tmp_path)
    assert inspected.exit_code == 0, inspected.stderr
    total = re.search(r"total: .* (\d+) bytes \((.*)\)", inspected.stderr)
    assert total and total.group(2) == f"{int(total.group(1))} B", inspected.stderr  # a few bytes, not "0.0 MiB"
    assert "0.0 MiB" not in inspected.stderr
