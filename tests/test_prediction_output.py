"""--output FILE.csv / FILE.jsonl: rows that parse back, atomic replacement, refusals before any work (Run.start)."""

import csv
import json
import os
from pathlib import Path

import pytest

from conftest import assert_refused_before_training
from torchtools.core.prediction_output import PredictionWriter

CLASSES = ["ant", "bee", "wasp, paper"]  # a comma in a class name must survive the CSV
ODD_NAME = Path('photos/my "best", shot é.jpg')


def write_three(writer: PredictionWriter) -> None:
    writer.add(ODD_NAME, CLASSES, [0.1, 0.7, 0.2])
    writer.add(Path("b.png"), CLASSES, [0.6, 0.3, 0.1])
    writer.add(Path("c.png"), CLASSES, [0.05, 0.05, 0.9])
    writer.skip([Path("broken.jpg")])


def test_csv_rows_parse_back_with_the_top_classes_best_first(tmp_path):
    output = tmp_path / "out" / "predictions.csv"  # a missing folder is created
    with PredictionWriter(output, top_k=2, classes=3) as writer:
        write_three(writer)
    with output.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["path", "label", "probability", "label_2", "probability_2"]
    assert rows[0] == {"path": str(ODD_NAME), "label": "bee", "probability": "0.700000", "label_2": "wasp, paper",
                       "probability_2": "0.200000"}
    assert [row["label"] for row in rows] == ["bee", "ant", "wasp, paper"]
    assert oct(output.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())  # as any new file, not 0600


def test_a_top_k_above_the_class_count_is_capped_at_it(tmp_path):
    output = tmp_path / "predictions.csv"
    with PredictionWriter(output, top_k=4, classes=3) as writer:
        writer.add("a.png", CLASSES, [0.2, 0.3, 0.5])
    with output.open(newline="", encoding="utf-8") as file:
        (row,) = csv.DictReader(file)
    assert row["label_3"] == "ant" and "label_4" not in row


def test_jsonl_rows_parse_back_one_object_a_line(tmp_path):
    output = tmp_path / "predictions.jsonl"
    with PredictionWriter(output, top_k=3, classes=3) as writer:
        write_three(writer)
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 3
    assert rows[0] == {"path": str(ODD_NAME), "label": "bee", "probability": 0.7,
                       "top": [["bee", 0.7], ["wasp, paper", 0.2], ["ant", 0.1]]}


def test_the_summary_counts_everything_but_keeps_only_the_first_rows(tmp_path):
    with PredictionWriter(tmp_path / "p.csv", top_k=1, classes=3, keep=2) as writer:
        write_three(writer)
    summary = writer.summary()
    assert summary["predicted_images"] == 3 and summary["predictions_capped"] is True
    assert [row["image"] for row in summary["predictions"]] == [str(ODD_NAME), "b.png"]
    assert summary["predictions"][0] == {"image": str(ODD_NAME), "label": "bee", "probability": 0.7,
                                         "top": [["bee", 0.7]]}
    assert summary["unreadable_images"] == ["broken.jpg"]
    assert summary["predictions_output"] == str(tmp_path / "p.csv")


def test_without_a_file_rows_are_kept_for_the_summary_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with PredictionWriter(None, top_k=3, classes=3) as writer:
        write_three(writer)
    assert writer.summary()["predictions_output"] is None and writer.summary()["predictions_capped"] is False
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_failed_run_leaves_the_previous_output_and_no_temp_file(tmp_path, suffix):
    output = tmp_path / f"predictions{suffix}"
    output.write_text("yesterday's results\n")
    with pytest.raises(KeyboardInterrupt):
        with PredictionWriter(output, top_k=3, classes=3) as writer:
            write_three(writer)
            raise KeyboardInterrupt  # Ctrl-C halfway
    assert os.listdir(tmp_path) == [output.name]
    assert output.read_text() == "yesterday's results\n"


PREDICTING = ("--predict", "photo.png", "--epochs", "1", "--device", "cpu", "--no-tensorboard")


@pytest.mark.parametrize("name", ["predictions.txt", "predictions", "predictions.json"])
def test_an_unknown_format_is_refused_up_front(cli, tmp_path, name):
    run = cli("mnist", "--data", tmp_path, *PREDICTING, "--output", tmp_path / name)
    assert_refused_before_training(run, tmp_path, ".csv or .jsonl")


def test_a_folder_is_refused_as_output(cli, tmp_path):
    folder = tmp_path / "results.csv"
    folder.mkdir()
    assert_refused_before_training(cli("mnist", "--data", tmp_path, *PREDICTING, "--output", folder), tmp_path,
                                   "is a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_folder_is_refused_up_front(cli, tmp_path):
    tmp_path.chmod(0o500)
    try:
        run = cli("mnist", "--data", tmp_path, *PREDICTING, "--output", tmp_path / "new" / "predictions.csv")
        assert_refused_before_training(run, tmp_path, "cannot write in")
    finally:
        tmp_path.chmod(0o700)


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
