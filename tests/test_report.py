"""--report DIR: every picture decodes to its size and is not blank, history.csv is the JSON's history, the
command's own pictures and tables are there, and DIR is checked before any training."""

from __future__ import annotations

import csv
import os

import cv2
import pytest

from conftest import assert_refused_before_training
from datafiles import NAMES_SMALL, names_rows, write_mnist, write_names_csv, write_table

MNIST_SMALL = ("--epochs", "2", "--batch-size", "32", "--lr", "0.05", "--no-tensorboard", "--json")


def picture(path, size: tuple[int, int] | None = None):
    """The PNG decoded (OpenCV), of `size` (width, height) where given, and not one flat colour."""
    image = cv2.imread(str(path))
    assert image is not None, path
    if size is not None:
        assert (image.shape[1], image.shape[0]) == size, (path, image.shape)
    assert image.std() > 0, path
    return image


def read_history(path) -> list[dict]:
    with open(path, newline="") as file:
        return [{key: (float(value) if key != "epoch" else int(value)) if value != "" else None
                 for key, value in row.items()} for row in csv.DictReader(file)]


def test_mnist_report_holds_history_curves_confusion_mistakes_and_a_batch(cli, tmp_path):
    write_mnist(tmp_path / "data")
    report = tmp_path / "report"
    run = cli("mnist", "--data", tmp_path / "data", *MNIST_SMALL, "--report", report)
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    names = {"config.yaml", "history.csv", "curves.png", "confusion.png", "mistakes.png", "batch.png"}
    assert {os.path.basename(path) for path in summary["report"]} == names
    assert f"wrote report (6 files): {report}" in run.stderr
    history = summary["history"]
    assert [row["epoch"] for row in history] == [1, 2]
    assert set(history[0]) == {"epoch", "train_loss", "train_accuracy", "lr", "test_loss", "test_accuracy",
                               "seconds"}
    assert read_history(report / "history.csv") == history
    picture(report / "curves.png", (1100, 400))  # loss and accuracy side by side
    picture(report / "confusion.png", (650, 650))  # ten classes
    assert picture(report / "batch.png").shape[1] == 1280  # 8 pictures a row
    assert picture(report / "mistakes.png").shape[1] == 1280


def test_the_history_is_in_the_json_without_a_report_and_the_report_key_is_null(cli, tmp_path):
    write_mnist(tmp_path / "data")
    summary = cli("mnist", "--data", tmp_path / "data", *MNIST_SMALL).summary
    assert len(summary["history"]) == 2 and summary["report"] is None
    assert all(row["seconds"] > 0 and row["lr"] == 0.05 for row in summary["history"])


def test_a_checkpoint_run_reports_its_evaluation(cli, tmp_path):
    write_mnist(tmp_path / "data")
    cli("mnist", "--data", tmp_path / "data", *MNIST_SMALL, "--save", tmp_path / "m.pt")
    run = cli("mnist", "--data", tmp_path / "data", "--checkpoint", tmp_path / "m.pt", "--report", tmp_path / "r",
              "--json")
    assert run.exit_code == 0, run.stderr
    assert sorted(os.listdir(tmp_path / "r")) == ["config.yaml", "confusion.png", "mistakes.png"]
    assert "epoch 1/" not in run.stderr and "recipe" not in run.stderr and "model:" not in run.stderr


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_a_report_folder_that_cannot_be_written_is_one_error_before_training(cli, tmp_path, kind):
    write_mnist(tmp_path / "data")
    target = tmp_path / "out"
    if kind == "file":
        target.write_text("not a folder")
        fragment = "is a file"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        target.mkdir()
        target.chmod(0o500)
        target = target / "report"
        fragment = "cannot write"
    run = cli("mnist", "--data", tmp_path / "data", *MNIST_SMALL, "--report", target, "--save", tmp_path / "m.pt")
    assert_refused_before_training(run, tmp_path, "--report", fragment, created=(tmp_path / "m.pt",))


def test_names_report_has_the_most_confused_pairs_and_worst_names(cli, tmp_path):
    train = write_names_csv(tmp_path / "train.csv", names_rows(0), gzipped=False)
    test = write_names_csv(tmp_path / "test.csv", names_rows(1, per_label=10), gzipped=False)
    report = tmp_path / "report"
    run = cli("names-rnn", "--data", train, "--test", test, "--epochs", "1", *NAMES_SMALL, "--lr", "1e-4",
              "--report", report, "--json")  # a slow rate: mistakes to list
    assert run.exit_code == 0, run.stderr
    assert {"confused_pairs.csv", "confused_pairs.md", "worst_names.csv", "worst_names.md", "confusion.png",
            "curves.png", "history.csv"} <= set(os.listdir(report))
    with open(report / "worst_names.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    labels = set(run.summary["labels"])
    assert rows and all(row["true"] in labels and row["predicted"] != row["true"] for row in rows)
    assert (report / "worst_names.md").read_text().startswith("# most confident mistakes (test)")
    picture(report / "confusion.png")
    assert read_history(report / "history.csv") == run.summary["history"]


def test_diabetes_report_draws_the_roc_curve(cli, tmp_path):
    table = write_table(tmp_path / "diabetes.csv")
    run = cli("diabetes", "--data", table, "--epochs", "3", "--no-tensorboard", "--report", tmp_path / "r",
              "--json")
    assert run.exit_code == 0, run.stderr
    picture(tmp_path / "r" / "roc.png", (500, 500))
    assert run.summary["model_summary"]["total_params"] == 8 * 6 + 6 + 6 * 4 + 4 + 4 + 1


def test_fit_linear_draws_the_data_and_the_line_and_the_sweep_minimum(cli, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("hours,score\n" + "".join(f"{x},{2 * x + 1}\n" for x in range(100, 200, 10)))
    run = cli("fit-linear", "--csv", data, "--epochs", "5", "--lr", "1e-5", "--no-tensorboard", "--report",
              tmp_path / "r", "--json")
    assert run.exit_code == 0, run.stderr
    picture(tmp_path / "r" / "fit.png", (600, 400))
    assert read_history(tmp_path / "r" / "history.csv") == run.summary["history"]
    sweep = cli("fit-linear", "--method", "exhaustive", "--no-tensorboard", "--report", tmp_path / "s", "--json")
    assert {os.path.basename(path) for path in sweep.summary["report"]} == {"config.yaml", "sweep.png", "fit.png"}
    picture(tmp_path / "s" / "sweep.png", (600, 400))


def test_fit_logistic_draws_the_curve_over_the_data(cli, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("hours,passed\n" + "".join(f"{x},{int(x > 150)}\n" for x in range(100, 200, 10)))
    run = cli("fit-logistic", "--csv", data, "--epochs", "5", "--no-tensorboard", "--report", tmp_path / "r",
              "--plot", tmp_path / "plot.png")
    assert run.exit_code == 0, run.stderr
    picture(tmp_path / "r" / "fit.png", (600, 400))
    picture(tmp_path / "plot.png", (600, 400))
    assert f"wrote plot: {tmp_path / 'plot.png'}" in run.stderr
