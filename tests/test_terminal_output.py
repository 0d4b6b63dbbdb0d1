"""Output that fits the terminal: at COLUMNS=80 no table of any command is wider than 80 (real subprocesses on
tiny data), --json stdout stays one line, numbers read as people write them, and what was written is said."""

from __future__ import annotations

import json

import pytest

from conftest import run_torchtools
from datafiles import (NAMES_SMALL, names_rows, write_cifar10_batches, write_mnist, write_names_csv,
                       write_photo_folders, write_table)
from torchtools.core.output import compact, number

BOX = set("┃│┏┡└━─┓┩┘╇┳┻╋")


def commands(tmp_path, weights) -> dict[str, list]:
    mnist = write_mnist(tmp_path / "mnist")
    return {
        "mnist": ["mnist", "--data", mnist, "--epochs", "1", "--batch-size", "64", "--runs-dir", tmp_path / "runs"],
        "cifar": ["cifar", "--data", write_cifar10_batches(tmp_path / "cifar", train=40, test=20), "--epochs", "1",
                  "--no-tensorboard"],
        "transfer": ["transfer", "--weights", weights, "--data",
                     write_photo_folders(tmp_path / "photos", train=4, val=2), "--epochs", "1", "--image-size", "32",
                     "--batch-size", "4", "--no-tensorboard"],
        "names-rnn": ["names-rnn", "--data", write_names_csv(tmp_path / "names.csv", names_rows(0, per_label=20),
                                                             gzipped=False), "--epochs", "1", *NAMES_SMALL],
        "diabetes": ["diabetes", "--data", write_table(tmp_path / "table.csv"), "--epochs", "2", "--no-tensorboard"],
        "fit-linear": ["fit-linear", "--method", "exhaustive", "--no-tensorboard"],
        "fit-logistic": ["fit-logistic", "--epochs", "3", "--no-tensorboard"],
        "conv-demo": ["conv-demo"],
        "inspect-weights": ["inspect-weights", weights, "--arch", "resnet18"],
    }


@pytest.mark.parametrize("name", ["mnist", "cifar", "transfer", "names-rnn", "diabetes", "fit-linear",
                                  "fit-logistic", "conv-demo", "inspect-weights"])
def test_no_table_is_wider_than_80_columns_and_json_is_one_line(tmp_path, resnet18_weights, name):
    args = commands(tmp_path, resnet18_weights[0])[name]
    run = run_torchtools(*args, "--json", cwd=tmp_path, env={"COLUMNS": "80", "TORCHTOOLS_CACHE": str(tmp_path)})
    assert run.exit_code == 0, run.stderr
    tables = [line for line in run.stderr.splitlines() if BOX & set(line)]
    assert tables or name == "fit-logistic", run.stderr  # fit-logistic prints no table
    assert max(map(len, tables), default=0) <= 80, "\n".join(line for line in tables if len(line) > 80)
    assert len(run.stdout.splitlines()) == 1 and json.loads(run.stdout)["command"] == name


def test_a_matrix_too_wide_is_shown_as_its_largest_confusions(tmp_path):
    mnist = write_mnist(tmp_path / "mnist")
    run = run_torchtools("mnist", "--data", mnist, "--epochs", "1", "--no-tensorboard", "--report", tmp_path / "r",
                         cwd=tmp_path, env={"COLUMNS": "30"})  # the dense 10-class matrix takes 40
    assert run.exit_code == 0, run.stderr
    assert "confusion matrix: too wide for 30 columns (all of it: confusion.png in --report" in run.stderr
    assert "largest confusions (test)" in run.stderr and "rows: true, columns: predicted" not in run.stderr


def test_training_says_what_it_wrote(tmp_path):
    mnist = write_mnist(tmp_path / "mnist")
    run = run_torchtools("mnist", "--data", mnist, "--epochs", "1", "--save", tmp_path / "m.pt", "--runs-dir",
                         tmp_path / "runs", cwd=tmp_path)
    assert run.exit_code == 0, run.stderr
    assert f"wrote checkpoint (last epoch): {tmp_path / 'm.pt'}" in run.stderr
    assert f"wrote checkpoint (best epoch): {tmp_path / 'm.best.pt'}" in run.stderr
    assert f"wrote TensorBoard run: {tmp_path / 'runs' / 'mnist'}" in run.stderr
    assert "model: CourseCNN" in run.stderr and "multiply-adds per sample" in run.stderr


def test_numbers_are_four_significant_digits_with_thousands_separators_for_counts():
    assert number(0.9682999849319458) == "0.9683"
    assert number(564.0461) == "564.0"
    assert number(12345.6) == "12346"  # a measurement: thousands separators are for counts
    assert number(60000) == "60,000"
    assert number(3.2e-05) == "3.200e-05"
    assert compact(115_605_504) == "115.6M"
