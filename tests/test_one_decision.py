"""One decision per picture, whichever loader reads it; a --labels CSV's rows compared as files (issue 25,
item 6)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import assert_user_error
from datafiles import write_image
from torchtools.data.folders import read_folders
from torchtools.data.labels_csv import list_labelled
from torchtools.data.transforms import ImageFormat


@pytest.fixture
def tree(tmp_path):
    """Two classes of good pictures, a truncated JPEG whose header reads fine and a float TIFF among them."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("ants", "bees")):
        for index in range(4):
            write_image(tmp_path / "tree" / name / f"{index}.png", label, rng)
    whole = tmp_path / "whole.jpg"
    write_image(whole, 0, rng)
    data = whole.read_bytes()
    (tmp_path / "tree" / "ants" / "cut.jpg").write_bytes(data[:len(data) // 3])
    assert cv2.imwrite(str(tmp_path / "tree" / "bees" / "float.tiff"), rng.random((40, 40, 3)).astype(np.float32))
    return tmp_path / "tree"


def test_both_loaders_skip_the_same_pictures(tree):
    fmt = ImageFormat(32, (0.5,) * 3, (0.5,) * 3)
    sets = {loader: read_folders(tree, fmt.prepare, key=fmt.key, val_split=0.25, seed=0, loader=loader, size=32)
            for loader in ("memory", "stream")}
    skipped = {loader: sorted(path.name for path in images.skipped) for loader, images in sets.items()}
    assert skipped["memory"] == skipped["stream"]
    assert "cut.jpg" in skipped["memory"]
    memory, stream = sets["memory"], sets["stream"]
    assert len(memory.train_labels) == len(stream.train_images)
    assert memory.train_labels.tolist() == stream.train_labels.tolist()


def test_the_stream_loaders_full_pass_is_paid_once_per_folder(tree, monkeypatch):
    """The stream loader decides by a full decode; the decision is cached, so a second run decodes nothing
    before its first batch, and a changed folder is decided again."""
    from torchtools.data import folders

    decoded = []
    real = folders.decode_pictures
    monkeypatch.setattr(folders, "decode_pictures", lambda paths, *args, **kw: decoded.append(len(paths)) or
                        real(paths, *args, **kw))
    fmt = ImageFormat(32, (0.5,) * 3, (0.5,) * 3)
    runs = [read_folders(tree, fmt.prepare, key=fmt.key, val_split=0.25, seed=0, loader="stream", size=32)
            for _ in range(2)]
    assert decoded == [10]
    assert [sorted(path.name for path in run.skipped) for run in runs] == [["cut.jpg", "float.tiff"]] * 2
    write_image(tree / "ants" / "4.png", 0, np.random.default_rng(1))
    read_folders(tree, fmt.prepare, key=fmt.key, val_split=0.25, seed=0, loader="stream", size=32)
    assert decoded == [10, 11]


def test_the_summary_counts_agree(cli, tree):
    counts = {}
    for loader in ("memory", "stream"):
        run = cli("transfer", "--data", tree, "--loader", loader, "--weights", "none", "--arch", "resnet18",
                  "--image-size", "32", "--batch-size", "4", "--epochs", "1", "--no-tensorboard", "--json",
                  "--device", "cpu", "--val-split", "0.25")
        assert run.exit_code == 0, run.stderr
        assert run.stderr.count("skipped") == 1, run.stderr  # said once, by the listing, whichever loader
        counts[loader] = (run.summary["skipped_images"], run.summary["train_images"], run.summary["val_images"])
    assert counts["memory"] == counts["stream"] and counts["memory"][0] >= 1


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    for index in range(6):
        write_image(tmp_path / "images" / f"{index}.jpg", index % 2, rng)
    (tmp_path / "images" / "sub").mkdir()
    return tmp_path / "images"


@pytest.mark.parametrize("other", ["sub/../3.jpg", "./3.jpg", "3.jpg", "{absolute}", "link.jpg"])
def test_one_file_named_twice_with_two_labels_is_refused(tmp_path, images, other):
    (images / "link.jpg").symlink_to(images / "3.jpg")
    other = other.format(absolute=images / "3.jpg")
    csv = tmp_path / "labels.csv"
    csv.write_text("image,label\n0,a\n1,b\n2,a\n3,b\n4,a\n5,b\n" + f"{other},a\n")
    with pytest.raises(Exception, match="labelled both b and a"):
        list_labelled(images, csv)


def test_the_same_file_in_training_and_held_out_csvs_is_refused(tmp_path, images):
    train, held = tmp_path / "tr.csv", tmp_path / "va.csv"
    train.write_text("image,label\n0,a\n1,b\n2,a\n3,b\n")
    held.write_text("image,label\n4,a\nsub/../1.jpg,b\n")
    with pytest.raises(Exception, match="not both"):
        list_labelled(images, train, val_labels=held)


def test_a_lonely_label_is_named_in_its_own_csv(cli, tmp_path, images):
    train, held = tmp_path / "tr2.csv", tmp_path / "va2.csv"
    train.write_text("image,label\n0,a\n1,b\n2,a\n3,b\n")
    held.write_text("image,label\n4,a\n5,c\n")
    run = cli("transfer", "--data", images, "--labels", train, "--val-labels", held, "--weights", "none",
              "--image-size", "32", "--batch-size", "2", "--epochs", "1", "--no-tensorboard", "--device", "cpu")
    assert f"c ({held}, line 3)" in run.stderr, run.stderr
    assert f"{train}: 1 label" not in run.stderr


def test_an_empty_data_or_report_name_is_refused(cli, tmp_path):
    assert_user_error(cli("transfer", "--data", "", "--weights", "none"), "--data")
    assert_user_error(cli("diabetes", "--report", "", "--epochs", "1"), "--report")


def test_a_csv_s_skipped_rows_are_said_once(cli, tmp_path, images):
    """The output check lists the CSV's pictures before any work; the skips are said by the run's listing only."""
    csv = tmp_path / "labels.csv"
    csv.write_text("image,label\n0,a\n1,b\n2,a\n3,b\n4,a\n5,b\nmissing,a\n5,b\n")
    run = cli("transfer", "--data", images, "--labels", csv, "--weights", "none", "--arch", "resnet18",
              "--image-size", "32", "--batch-size", "4", "--epochs", "1", "--no-tensorboard", "--device", "cpu")
    assert run.exit_code == 0, run.stderr
    assert run.stderr.count("name no picture") == 1 and run.stderr.count("duplicate row") == 1, run.stderr
