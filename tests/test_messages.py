"""Messages that leave nobody stuck: what is missing and what to do next, and names shown as typed (markup,
bytes that are not UTF-8), for people reading stderr."""

import os
import shutil
from pathlib import Path

from conftest import assert_user_error, run_torchtools
from datafiles import write_image_folders, write_table

QUICK = ("--epochs", "1", "--device", "cpu", "--no-tensorboard")


def test_mnist_without_data_names_where_to_point_it(cli, tmp_path):
    run = cli("mnist", "--data", tmp_path / "empty", "--no-download", *QUICK)
    assert_user_error(run, str(tmp_path / "empty" / "MNIST" / "raw"), "train-images-idx3-ubyte.gz", "--data",
                      "$TORCHTOOLS_DATA")


def test_cifar_on_a_train_val_tree_says_it_needs_train_and_test(cli, tmp_path):
    root = write_image_folders(tmp_path / "photos", train=6, test=3)
    (root / "test").rename(root / "val")
    run = cli("cifar", "--data", root, *QUICK)
    assert_user_error(run, "train/ and val/", "test/<class>", "rename val/ to test/")
    assert not (root / "cifar-10-batches-py").exists()  # nothing downloaded into the user's folder


def test_cifar_on_an_empty_root_names_the_batches_folder_once(cli, tmp_path):
    run = cli("cifar", "--data", tmp_path, "--no-download", *QUICK)
    assert_user_error(run, f"{tmp_path / 'cifar-10-batches-py'} ", "data_batch_1", "--data")
    assert "cifar-10-batches-py/cifar-10-batches-py" not in run.stderr


def test_names_that_look_like_markup_are_shown_as_typed(cli, tmp_path):
    root = write_image_folders(tmp_path / "[/]data [bold red]", train=6, test=3)
    (root / "train" / "red").rename(root / "train" / "[red]x")
    (root / "test" / "red").rename(root / "test" / "[red]x")
    run = cli("cifar", "--data", root, "--loader", "memory", *QUICK)
    assert run.exit_code == 0, run.stderr
    assert f"{root}/train and {root}/test: 6 train" in run.stderr  # the folder as typed, no MarkupError
    assert "[red]x" in run.stderr  # the class in the per-class table


def test_a_name_that_is_not_utf8_ends_in_one_line(tmp_path):
    name = os.fsdecode(b"model-\xff-[/].pt")
    run = run_torchtools("transfer", "--checkpoint", tmp_path / name, cwd=tmp_path)
    assert_user_error(run, "file not found", "model-\\xff-[/].pt")  # non-UTF-8 bytes shown one way


def test_markup_in_a_checkpoint_path_is_not_read_as_markup(cli, tmp_path):
    folder = tmp_path / "[bold]runs"
    folder.mkdir()
    source = Path(shutil.which("python3") or "/bin/sh")  # any file that is not a checkpoint
    shutil.copyfile(source, folder / "m.pt")
    run = cli("transfer", "--checkpoint", folder / "m.pt")
    assert_user_error(run, str(folder / "m.pt"))


def test_a_torchtools_data_that_is_not_a_folder_is_said_not_passed_over(cli, tmp_path, monkeypatch):
    table = write_table(tmp_path / "table.csv", rows=40)
    monkeypatch.setenv("TORCHTOOLS_DATA", str(table))
    assert_user_error(cli("diabetes", *QUICK), "$TORCHTOOLS_DATA is", "table.csv", "not a folder")
    for root in (tmp_path, tmp_path / "not-yet"):  # no table there (yet): the built-in one, and it says so
        monkeypatch.setenv("TORCHTOOLS_DATA", str(root))
        run = cli("diabetes", *QUICK)
        assert run.exit_code == 0 and f"none under $TORCHTOOLS_DATA ({root})" in run.stderr, run.stderr


def test_an_input_that_is_a_fifo_or_a_device_is_named_as_such(cli, tmp_path):
    os.mkfifo(tmp_path / "fifo.csv")
    assert_user_error(cli("fit-linear", "--csv", tmp_path / "fifo.csv", *QUICK[:2]), "fifo.csv is a FIFO")
    assert_user_error(cli("inspect-weights", "/dev/zero"), "/dev/zero is a device")


def test_a_bad_predict_table_is_found_before_training(cli, tmp_path):
    table = write_table(tmp_path / "table.csv", rows=40)
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3,4,5,6,7,8\n1,abc,3,4,5,6,7,8\n")
    run = cli("diabetes", "--data", table, "--predict", bad, "--save", tmp_path / "m.pt", *QUICK)
    assert_user_error(run, "bad.csv", "line 2", "column 2")
    assert "epoch 1/1" not in run.stderr and not (tmp_path / "m.pt").exists()
