"""Work at the size of a user's data: streamed folders, predicting folders to CSV/JSONL, early stopping."""

import csv
import json

import pytest

from conftest import assert_user_error
from image_files import messy_folder
from datafiles import write_mnist, write_photo_folders

SMALL = ("--image-size", "32", "--batch-size", "4", "--no-tensorboard", "--json")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """train/ and val/ of two learnable classes, one corrupt and one empty file among the training ants."""
    root = write_photo_folders(tmp_path_factory.mktemp("photos"), train=8, val=4, prefix="photo ")
    (root / "train" / "ants" / "empty.png").write_bytes(b"")
    return root


def test_stream_and_memory_loaders_train_alike(cli, photos):
    runs = {}
    for loader in ("memory", "stream"):
        run = cli("transfer", "--weights", "none", "--arch", "resnet18", "--data", photos, "--epochs", "2",
                  "--loader", loader, *SMALL)
        assert run.exit_code == 0, run.stderr
        assert f"loader {loader}: --loader {loader}" in run.stderr
        assert "broken.jpg" in run.stderr and "empty.png" in run.stderr  # skipped and named in both
        runs[loader] = run.summary
    memory, stream = runs["memory"], runs["stream"]
    assert memory["skipped_images"] == stream["skipped_images"] == 2
    assert (memory["train_images"], memory["val_images"]) == (16, 8)
    # The same files, order, seeded crops and model: the same numbers up to decode/float noise.
    for key in ("train_loss", "val_loss", "val_accuracy"):
        assert stream["metrics"][key] == pytest.approx(memory["metrics"][key], abs=1e-3), key


def test_auto_loader_streams_over_the_memory_budget(cli, photos, monkeypatch):
    monkeypatch.setenv("TORCHTOOLS_MEMORY_BUDGET", "10K")
    run = cli("transfer", "--weights", "none", "--arch", "resnet18", "--data", photos, "--epochs", "1", *SMALL)
    assert run.exit_code == 0, run.stderr
    assert "loader stream:" in run.stderr and "over the 10 KiB budget" in run.stderr
    monkeypatch.setenv("TORCHTOOLS_MEMORY_BUDGET", "lots")
    assert_user_error(cli("transfer", "--weights", "none", "--data", photos, *SMALL), "TORCHTOOLS_MEMORY_BUDGET")


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_predict_a_messy_folder_to_a_file(cli, tmp_path, suffix):
    data = write_mnist(tmp_path / "data", train=60, test=20)
    checkpoint = tmp_path / "m.pt"
    assert cli("mnist", "--data", data, "--model", "mlp", "--epochs", "1", "--save", checkpoint, "--no-tensorboard",
               "-q").exit_code == 0
    readable, unreadable = messy_folder(tmp_path / "incoming")
    output = tmp_path / "out" / f"labels{suffix}"
    run = cli("mnist", "--checkpoint", checkpoint, "--predict", tmp_path / "incoming", "--output", output,
              "--top-k", "2", "--json")
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["predicted_images"] == len(readable) and summary["predictions_output"] == str(output)
    assert sorted(summary["unreadable_images"]) == sorted(map(str, unreadable))
    assert all(path.name in run.stderr for path in unreadable)
    if suffix == ".csv":
        with output.open(newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
        assert set(rows[0]) == {"path", "label", "probability", "label_2", "probability_2"}
    else:
        rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
        assert all(len(row["top"]) == 2 for row in rows)
    assert sorted(row["path"] for row in rows) == sorted(map(str, readable))
    assert all(row["label"] in [str(digit) for digit in range(10)] for row in rows)
    assert not list(output.parent.glob(".*.tmp")), "the temp file was left behind"


def test_predict_globs_and_bad_outputs_are_checked_first(cli, tmp_path):
    data = write_mnist(tmp_path / "data", train=60, test=20)
    readable, _ = messy_folder(tmp_path / "incoming")
    common = ("mnist", "--data", data, "--epochs", "1", "--no-tensorboard")
    assert_user_error(cli(*common, "--output", tmp_path / "p.csv"), "--output", "--predict")
    assert_user_error(cli(*common, "--predict", tmp_path / "incoming", "--output", tmp_path / "p.txt"),
                      "--output", ".csv")
    (tmp_path / "folder.csv").mkdir()
    assert_user_error(cli(*common, "--predict", tmp_path / "incoming", "--output", tmp_path / "folder.csv"),
                      "is a folder")
    run = cli(*common, "--model", "mlp", "--predict", str(tmp_path / "incoming" / "**" / "*.png"), "--json")
    assert run.exit_code == 0, run.stderr
    pngs = [path for path in readable if path.suffix == ".png"]
    assert run.summary["predicted_images"] == len(pngs)


def test_patience_and_target_accuracy_stop_early(cli, tmp_path):
    data = write_mnist(tmp_path / "data", train=200, test=50)
    common = ("mnist", "--data", data, "--model", "mlp", "--batch-size", "32", "--lr", "0.05", "--momentum", "0.9",
              "--no-tensorboard", "--json")
    target = cli(*common, "--epochs", "30", "--target-accuracy", "0.5", "--save", tmp_path / "t.pt")
    assert target.exit_code == 0, target.stderr
    assert target.summary["stopped_early"] == "target" and target.summary["epochs"] < 30
    assert target.summary["metrics"]["test_accuracy"] >= 0.5 and "reached --target-accuracy" in target.stderr
    patient = cli(*common, "--epochs", "40", "--patience", "1", "--lr", "0.0")  # lr 0: never improves
    assert patient.exit_code == 0, patient.stderr
    assert patient.summary["stopped_early"] == "patience" and patient.summary["epochs"] == 2
    plain = cli(*common, "--epochs", "1")
    assert plain.summary["stopped_early"] is None
