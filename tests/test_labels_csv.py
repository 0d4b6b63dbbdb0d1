"""--labels FILE.csv: a Kaggle-style folder of pictures and a CSV of labels is listed, split and trained exactly as
the same pictures in class folders are; the held-out rows from a column or a second CSV; each bad CSV case."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_user_error
from datafiles import write_image
from torchtools.data.folders import list_folders, read_folders
from torchtools.data.labels_csv import Columns, list_labelled
from torchtools.data.transforms import ImageFormat

SMALL = ("--weights", "none", "--arch", "resnet18", "--image-size", "32", "--batch-size", "4", "--epochs", "1",
         "--no-tensorboard", "--json", "--device", "cpu")
SPECIES = ("acer", "quercus", "salix")


@pytest.fixture
def kaggle(tmp_path) -> tuple[Path, Path, Path]:
    """(images/ with train.csv beside it, whose ids have no extension; the same pictures as a class-folder tree)."""
    rng = np.random.default_rng(0)
    rows = ["id,species"]
    for index in range(24):
        label = index % 3
        write_image(tmp_path / "tree" / SPECIES[label] / f"{index:03d}.png", label % 2, rng)
        rows.append(f"{index:03d},{SPECIES[label]}")
    (tmp_path / "images").mkdir()
    for picture in (tmp_path / "tree").rglob("*.png"):
        shutil.copy2(picture, tmp_path / "images" / picture.name)
    csv = tmp_path / "train.csv"
    csv.write_text("\n".join(rows) + "\n")
    return tmp_path / "images", csv, tmp_path / "tree"


def names(paths) -> list[str]:
    return [Path(path).name for path in paths]


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_a_labels_csv_and_a_class_folder_tree_give_the_same_split(kaggle, loader):
    images, csv, tree = kaggle
    listing = list_labelled(images, csv)
    assert listing.classes == list(SPECIES) and listing.layout.endswith("split by --val-split")
    train_paths, train_labels, held_paths, held_labels, classes, _ = list_folders(tree)
    assert names(listing.train_paths) == names(train_paths)
    assert (listing.train_labels, listing.classes) == (train_labels, classes)
    assert listing.held_paths == held_paths == []
    fmt = ImageFormat(32, (0.5,) * 3, (0.5,) * 3)
    split = [read_folders(root, fmt.prepare, key=fmt.key, val_split=0.25, seed=3, loader=loader, size=32,
                          listing=given) for root, given in ((images, listing.as_tuple()), (tree, None))]
    from_csv, from_tree = split
    for attribute in ("train_labels", "test_labels"):
        assert getattr(from_csv, attribute).tolist() == getattr(from_tree, attribute).tolist()
    if loader == "stream":
        assert names(from_csv.test_images) == names(from_tree.test_images)
        assert names(from_csv.train_images) == names(from_tree.train_images)
    else:
        assert (from_csv.test_images == from_tree.test_images).all() and len(from_csv.test_images) == 6


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_kaggle_style_folder_trains_and_predicts_with_the_epoch_metrics_of_the_tree(cli, tmp_path, kaggle, loader):
    images, csv, tree = kaggle
    by_csv = cli("transfer", "--labels", csv, "--data", images, "--loader", loader, "--save", tmp_path / "m.pt",
                 *SMALL)
    assert by_csv.exit_code == 0, by_csv.stderr
    by_tree = cli("transfer", "--data", tree, "--loader", loader, *SMALL)
    assert by_tree.exit_code == 0, by_tree.stderr
    assert by_csv.summary["classes"] == by_tree.summary["classes"] == list(SPECIES)
    assert (by_csv.summary["train_images"], by_csv.summary["val_images"]) == (18, 6)
    assert by_csv.summary["metrics"] == pytest.approx(by_tree.summary["metrics"], abs=1e-6)
    assert by_csv.summary["confusion_matrix"] == by_tree.summary["confusion_matrix"]
    predicted = cli("transfer", "--checkpoint", tmp_path / "m.pt", "--predict", images, "--json", "--quiet")
    assert predicted.exit_code == 0, predicted.stderr
    assert predicted.summary["predicted_images"] == 24


def test_cifar_trains_on_a_labels_csv_without_train_and_test_folders(cli, kaggle):
    images, csv, _ = kaggle
    moved = images / "train.csv"  # beside the pictures: --data defaults to the CSV's own folder
    shutil.move(csv, moved)
    run = cli("cifar", "--labels", moved, "--epochs", "1", "--no-tensorboard", "--json", "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    assert run.summary["classes"] == list(SPECIES) and run.summary["dataset"] == "images"
    assert sum(map(sum, run.summary["confusion_matrix"])) == 6  # a seeded 20% of each class held out


def test_held_out_rows_from_a_column_or_a_second_csv(kaggle, tmp_path):
    images, csv, _ = kaggle
    lines = csv.read_text().splitlines()
    marked = tmp_path / "marked.csv"
    flags = ["true" if index % 4 == 0 else "false" for index in range(len(lines) - 1)]
    marked.write_text("\n".join([lines[0] + ",is_valid"] + [f"{line},{flag}" for line, flag in zip(lines[1:], flags)])
                      + "\n")
    by_column = list_labelled(images, marked, columns=Columns(held_out="is_valid"))
    assert names(by_column.held_paths) == [f"{index:03d}.png" for index in (0, 12, 4, 16, 8, 20)]  # by class
    train, held = tmp_path / "train_only.csv", tmp_path / "val.csv"
    train.write_text("\n".join(lines[:1] + [line for index, line in enumerate(lines[1:]) if index % 4]) + "\n")
    held.write_text("\n".join(lines[:1] + [line for index, line in enumerate(lines[1:]) if not index % 4]) + "\n")
    by_file = list_labelled(images, train, val_labels=held)
    assert by_file.as_tuple()[:5] == by_column.as_tuple()[:5]


def csv_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_a_missing_picture_is_skipped_counted_and_named_by_line(cli, kaggle, tmp_path):
    images, csv, _ = kaggle
    csv.write_text(csv.read_text() + "999,acer\n")
    run = cli("transfer", "--labels", csv, "--data", images, *SMALL)
    assert run.exit_code == 0, run.stderr
    assert "1 row(s) name no picture" in run.stderr and "line 26 (999)" in run.stderr
    assert run.summary["skipped_images"] == 1 and run.summary["train_images"] + run.summary["val_images"] == 24


def test_duplicates_and_lonely_labels_are_skipped_and_counted(kaggle):
    images, csv, _ = kaggle
    csv.write_text(csv.read_text() + "000,acer\n005,salix\n")  # 000 again, same label; 005 is already salix
    listing = list_labelled(images, csv)
    assert listing.notes["duplicate"] == 2 and len(listing.train_paths) == 24
    csv.write_text("id,species\n000,acer\n001,acer\n002,betula\n")
    lonely = list_labelled(images, csv)
    assert lonely.classes == ["acer"] and lonely.notes["lonely_label"] == 1


@pytest.mark.parametrize("text, options, fragments", [
    ("id,species\n000,acer\n", ("--image-column", "picture"), ("no column 'picture'", "id, species")),
    ("id,species\n000,acer\n", ("--label-column", "genus"), ("no column 'genus'",)),
    ("a,b,c\n000,acer,1\n", (), ("no image column found among a, b, c", "--image-column")),
    ("id,species\n000,acer\n000,quercus\n", (), ("lines 2 and 3", "labelled both acer and quercus")),
    ("id,species\n000,acer\n001,\n", (), ("line 3", "no label")),
    ("id,species,valid\n000,acer,maybe\n", ("--held-out-column", "valid"), ("line 2", "valid is 'maybe'")),
])
def test_bad_csvs_are_one_error_line_naming_file_and_line(cli, kaggle, tmp_path, text, options, fragments):
    images, _, _ = kaggle
    labels = csv_file(tmp_path, text)
    run = cli("transfer", "--labels", labels, "--data", images, *options, *SMALL)
    assert_user_error(run, str(labels), *fragments)


def test_column_options_need_labels(cli, kaggle):
    images, _, tree = kaggle
    assert_user_error(cli("transfer", "--data", tree, "--image-column", "id", *SMALL), "pass --labels")
    assert_user_error(cli("cifar", "--data", tree, "--val-labels", tree / "x.csv"), "pass --labels")
    assert_user_error(cli("transfer", "--labels", tree / "absent.csv", "--data", images, *SMALL),
                      "--labels", "not found")
