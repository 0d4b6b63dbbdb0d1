"""Nothing a run writes lands on or in what it reads (issue 25, item 1): the output check takes every file the
run reads (each picture of the walk or the CSV, the dataset's files), compared by inode, and the folders it
reads as data, where nothing may be created. Each case checks the bytes of the user's files afterwards."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_refused_before_training, assert_user_error, run_torchtools
from datafiles import (NAMES_SMALL, names_rows, write_cifar10_batches, write_image, write_image_folders, write_mnist,
                       write_names_folder, write_photo_folders, write_table)
from torchtools.core import files
from torchtools.core.run import REPORT_LOCK

TRANSFER = ("--weights", "none", "--arch", "resnet18", "--image-size", "32", "--epochs", "1", "--device", "cpu")


def digest(folder: Path) -> dict[str, str]:
    """Every file under `folder` and its bytes' hash: what the user would find changed."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def photos(tmp_path) -> Path:
    return write_photo_folders(tmp_path / "photos", train=3, val=2)


def test_save_onto_a_training_photo_is_refused_and_the_photo_kept(cli, tmp_path, photos):
    before = digest(photos)
    run = cli("transfer", "--data", photos, *TRANSFER, "--save", photos / "train" / "ants" / "0.jpg")
    assert_refused_before_training(run, tmp_path, "--save", "0.jpg", "which this run reads")
    assert digest(photos) == before  # no 0.best.jpg either


@pytest.mark.parametrize("option,name", [("--plot", "user.png"), ("--save", "model.pt")])
def test_a_new_file_in_a_class_folder_is_refused(cli, tmp_path, photos, option, name):
    before = digest(photos)
    run = cli("transfer", "--data", photos, *TRANSFER, option, photos / "train" / "ants" / name)
    assert_refused_before_training(run, tmp_path, option, "reads as data", "choose a place outside it")
    assert digest(photos) == before


def test_a_report_into_a_class_folder_is_refused(cli, tmp_path, photos):
    before = digest(photos)
    run = cli("transfer", "--data", photos, *TRANSFER, "--report", photos / "train" / "ants")
    assert_refused_before_training(run, tmp_path, "--report", "reads as data")
    assert digest(photos) == before


def test_a_new_class_folder_is_refused(cli, tmp_path, photos):
    """A new folder in a class root is the next run's new class: a report folder, a --save in a new folder."""
    before = digest(photos)
    for option, path in (("--report", photos / "train" / "report"), ("--save", photos / "val" / "out" / "m.pt"),
                         ("--runs-dir", photos / "train")):
        run = cli("transfer", "--data", photos, *TRANSFER, option, path)
        assert_refused_before_training(run, tmp_path, option, "read as a class")
    assert digest(photos) == before


def test_tensorboard_under_a_class_folder_as_the_current_folder_is_refused(tmp_path, photos):
    before = digest(photos)
    run = run_torchtools("transfer", "--data", photos, *TRANSFER, cwd=photos / "train" / "bees")
    assert_user_error(run, "--runs-dir runs", "reads as data")
    assert digest(photos) == before


def test_saving_beside_the_data_stays_allowed(cli, tmp_path):
    """--save and --report at the root of a train/test tree: nothing there is read as a picture."""
    data = write_image_folders(tmp_path / "data", train=12, test=6)
    before = digest(data)
    run = cli("cifar", "--data", data, "--epochs", "1", "--batch-size", "4", "--no-tensorboard", "--json",
              "--save", data / "model.pt", "--report", data / "report")
    assert run.exit_code == 0, run.stderr
    after = digest(data)
    assert "model.pt" in after and "report/history.csv" in after
    assert {name: value for name, value in after.items() if name.startswith(("train/", "test/"))} == before
    assert not (data / "report" / REPORT_LOCK).exists()  # the lock goes with the run


def test_a_picture_a_csv_names_outside_data_is_kept(cli, tmp_path):
    """--labels naming ../elsewhere/x.png and an absolute path: neither is overwritten, nor their folder used."""
    rng = np.random.default_rng(0)
    images, elsewhere = tmp_path / "images", tmp_path / "elsewhere"
    rows = ["image,label"]
    for index in range(8):
        write_image(images / f"{index}.png", index % 2, rng)
        rows.append(f"{index}.png,{'ab'[index % 2]}")
    write_image(elsewhere / "up.png", 0, rng)
    write_image(elsewhere / "absolute.png", 1, rng)
    rows += ["../elsewhere/up.png,a", f"{elsewhere / 'absolute.png'},b"]
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    before = digest(elsewhere), digest(images)
    for option, path in (("--save", elsewhere / "up.png"), ("--save", elsewhere / "absolute.png"),
                         ("--plot", elsewhere / "new.png"), ("--save", images / "3.png")):
        run = cli("transfer", "--data", images, "--labels", labels, *TRANSFER, option, path)
        assert_refused_before_training(run, tmp_path, option, str(path.name))
    assert (digest(elsewhere), digest(images)) == before


def test_a_linked_picture_s_target_is_kept(cli, tmp_path, photos):
    """A picture linked into a class folder from elsewhere: its target is read, so --save may not replace it."""
    outside = tmp_path / "mine" / "holiday.jpg"
    outside.parent.mkdir()
    outside.write_bytes((photos / "train" / "ants" / "0.jpg").read_bytes())
    (photos / "train" / "ants" / "linked.jpg").symlink_to(outside)
    before = outside.read_bytes()
    run = cli("transfer", "--data", photos, *TRANSFER, "--save", outside)
    assert_refused_before_training(run, tmp_path, "--save", "holiday.jpg", "which this run reads")
    assert outside.read_bytes() == before


def test_mnist_save_onto_its_idx_file_or_raw_folder_is_refused(cli, tmp_path):
    root = write_mnist(tmp_path / "data", train=20, test=10)
    before = digest(root)
    raw = root / "MNIST" / "raw"
    for path in (raw / "train-images-idx3-ubyte.gz", raw / "train-images-idx3-ubyte", raw / "model.pt"):
        run = cli("mnist", "--data", root, "--epochs", "1", "--save", path)
        assert_refused_before_training(run, tmp_path, "--save", path.name)
    assert digest(root) == before


def test_cifar_save_onto_a_batch_is_refused(cli, tmp_path):
    root = write_cifar10_batches(tmp_path / "data", train=10, test=5)
    before = digest(root)
    run = cli("cifar", "--data", root, "--epochs", "1", "--save", root / "cifar-10-batches-py" / "data_batch_1")
    assert_refused_before_training(run, tmp_path, "--save", "data_batch_1")
    assert digest(root) == before


def test_diabetes_save_onto_its_own_table_under_the_root_is_refused(cli, tmp_path):
    table = tmp_path / "root" / "diabetes" / "diabetes.csv.gz"
    table.parent.mkdir(parents=True)
    write_table(table, rows=60)
    before = table.read_bytes()
    run = cli("diabetes", "--data", tmp_path / "root", "--epochs", "1", "--save", table)
    assert_refused_before_training(run, tmp_path, "--save", "diabetes.csv.gz", "which this run reads")
    assert table.read_bytes() == before


@pytest.mark.parametrize("given", ["--data", "--test"])
def test_names_save_into_a_names_folder_is_refused(cli, tmp_path, given):
    names = write_names_folder(tmp_path / "names", names_rows(0, per_label=10))
    other = write_names_folder(tmp_path / "other", names_rows(1, per_label=10))
    data = ("--data", names, "--test", other) if given == "--data" else ("--data", other, "--test", names)
    before = digest(names)
    for path in (names / "English.txt", names / "Russian.txt"):
        run = cli("names-rnn", *data, "--epochs", "1", *NAMES_SMALL, "--save", path)
        assert_refused_before_training(run, tmp_path, "--save", path.name)
    assert digest(names) == before  # no English.best.txt, the next run's new language


def test_conv_demo_grids_may_not_replace_the_image(cli, tmp_path):
    grid = tmp_path / "grid"
    grid.mkdir()
    image = grid / "conv-layer.png"
    write_image(image, 0, np.random.default_rng(0))
    before = image.read_bytes()
    run = cli("conv-demo", "--demo", "image", "--image", image, "--out", grid, "--no-tensorboard")
    assert_user_error(run, "--out's conv-layer.png", "--image")
    assert image.read_bytes() == before


def test_a_report_folder_is_taken_by_one_run_at_a_time(cli, tmp_path):
    table = write_table(tmp_path / "table.csv", rows=60)
    report = tmp_path / "report"
    held = files.Lock(report, "--report", name=REPORT_LOCK)  # another run holds it
    try:
        run = cli("diabetes", "--data", table, "--epochs", "1", "--no-tensorboard", "--report", report)
        assert_refused_before_training(run, tmp_path, "--report", "another torchtools run")
        assert os.listdir(report) == [REPORT_LOCK]
    finally:
        held.release()
    run = cli("diabetes", "--data", table, "--epochs", "1", "--no-tensorboard", "--report", report, "--json")
    assert run.exit_code == 0, run.stderr
    assert "history.csv" in os.listdir(report) and REPORT_LOCK not in os.listdir(report)


def test_predict_pictures_are_inputs_by_inode(cli, tmp_path, photos):
    """A --predict folder's picture, reached through a link named as --save, is not replaced."""
    link = tmp_path / "alias.jpg"
    link.symlink_to(photos / "val" / "bees" / "0.jpg")
    before = digest(photos)
    run = cli("transfer", "--data", photos, *TRANSFER, "--predict", photos / "val", "--save", link)
    assert_refused_before_training(run, tmp_path, "--save", "--predict")
    assert digest(photos) == before


def test_neighbours_predictions_and_hard_links(cli, tmp_path, photos):
    """--output into a class folder, and --save naming a hard link of a training photo, are refused too."""
    before = digest(photos)
    run = cli("transfer", "--data", photos, *TRANSFER, "--predict", photos / "val", "--output",
              photos / "train" / "bees" / "predictions.csv")
    assert_refused_before_training(run, tmp_path, "--output", "reads as data")
    os.link(photos / "train" / "bees" / "1.png", tmp_path / "hard.png")
    run = cli("transfer", "--data", photos, *TRANSFER, "--plot", tmp_path / "hard.png")
    assert_refused_before_training(run, tmp_path, "--plot", "which this run reads")
    assert digest(photos) == before


def test_mnist_report_into_the_raw_folder_is_refused(cli, tmp_path):
    root = write_mnist(tmp_path / "data", train=20, test=10)
    before = digest(root)
    run = cli("mnist", "--data", root / "MNIST" / "raw", "--epochs", "1", "--report", root / "MNIST" / "raw" / "r")
    assert_refused_before_training(run, tmp_path, "--report", "reads as data")
    assert digest(root) == before
