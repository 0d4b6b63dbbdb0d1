"""One reader for every data file that may be gzip (data/compressed.py): a .gz cut short or not gzip at all is
one `error:` line naming the file, whichever option reads it (issue 25, item 4); a line or a CSV field past
the limit is named with its file and line (item 3)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from conftest import assert_user_error, run_torchtools
from datafiles import NAMES_SMALL, names_rows, write_image, write_mnist, write_names_csv, write_table


def cut_short(path):
    """The file gzipped, then cut in the middle of its stream (a copy that stopped)."""
    data = gzip.compress(path.read_bytes())
    path.write_bytes(data[:len(data) // 2])
    return path


def bad_header(path):
    """The gzip magic, then bytes that are not a gzip header."""
    path.write_bytes(b"\x1f\x8b" + b"not gzip at all" * 20)
    return path


BREAK = {"cut short": cut_short, "bad header": bad_header}


@pytest.fixture
def kaggle(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["image,label"] + [f"{index}.png,{'ab'[index % 2]}" for index in range(8)]
    for index in range(8):
        write_image(tmp_path / "images" / f"{index}.png", index % 2, rng)
    labels = tmp_path / "images" / "train.csv.gz"
    labels.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    return tmp_path / "images", labels


@pytest.mark.parametrize("how", BREAK)
def test_a_broken_labels_csv_is_one_line_also_in_a_real_process(tmp_path, kaggle, how):
    """click would take gzip's EOFError for Ctrl-D ("Aborted.", exit 1): a real process shows what a user sees."""
    images, labels = kaggle
    labels.write_bytes(gzip.decompress(labels.read_bytes()))
    BREAK[how](labels)
    run = run_torchtools("transfer", "--data", images, "--labels", labels, "--weights", "none", "--epochs", "1",
                         "--no-tensorboard", cwd=tmp_path)
    assert_user_error(run, str(labels), "not a complete gzip file")
    assert "Aborted" not in run.stderr


@pytest.mark.parametrize("how", BREAK)
def test_a_broken_idx_file_is_one_line(cli, tmp_path, how):
    root = write_mnist(tmp_path / "data", train=20, test=10)
    path = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.decompress(path.read_bytes()))
    BREAK[how](path)
    assert_user_error(cli("mnist", "--data", root, "--epochs", "1", "--no-download"), str(path),
                      "not a complete gzip file")


@pytest.mark.parametrize("how", BREAK)
@pytest.mark.parametrize("command", ["diabetes", "fit-linear", "fit-logistic"])
def test_a_broken_table_is_one_line(cli, tmp_path, how, command):
    table = write_table(tmp_path / "table.csv.gz", rows=60)
    table.write_bytes(gzip.decompress(table.read_bytes()))
    BREAK[how](table)
    assert_user_error(cli(command, "--data", table, "--epochs", "1", "--no-tensorboard"), str(table),
                      "not a complete gzip file")


@pytest.mark.parametrize("how", BREAK)
@pytest.mark.parametrize("option", ["--data", "--test"])
def test_a_broken_names_csv_is_one_line(cli, tmp_path, how, option):
    good = write_names_csv(tmp_path / "good.csv", names_rows(0, per_label=10), gzipped=False)
    broken = write_names_csv(tmp_path / "broken.csv.gz", names_rows(1, per_label=10), gzipped=False)
    BREAK[how](broken)
    files = ("--data", broken, "--test", good) if option == "--data" else ("--data", good, "--test", broken)
    assert_user_error(cli("names-rnn", *files, "--epochs", "1", *NAMES_SMALL), str(broken), "not a complete gzip")


def test_a_line_past_the_limit_is_named_with_file_and_line(cli, tmp_path):
    """A 10-million-letter name in --predict-file is refused by its line, not encoded (it took 18.6 GB)."""
    names = write_names_csv(tmp_path / "names.csv", names_rows(0, per_label=10), gzipped=False)
    saved = tmp_path / "m.pt"
    assert cli("names-rnn", "--data", names, "--epochs", "1", *NAMES_SMALL, "--save", saved).exit_code == 0
    predict = tmp_path / "predict.txt"
    predict.write_text("Smith\nIvanov\n" + "a" * 10_000_000 + "\nSato\n")
    assert_user_error(cli("names-rnn", "--checkpoint", saved, "--predict-file", predict), str(predict), "line 3",
                      "characters")


def test_a_csv_field_past_the_limit_is_named_with_its_line(cli, tmp_path, kaggle):
    images, labels = kaggle
    text = gzip.decompress(labels.read_bytes()).decode() + f'"{"x" * 10_000_000}",a\n' + "7.png,b\n"
    labels.write_bytes(gzip.compress(text.encode()))
    run = cli("transfer", "--data", images, "--labels", labels, "--weights", "none", "--epochs", "1",
              "--no-tensorboard")
    assert_user_error(run, str(labels), "line 10")


# --- a file named .gz that is not gzip: the one reader's error, not what a reader makes of its bytes -----------

@pytest.fixture
def names_checkpoint(cli, tmp_path):
    names = write_names_csv(tmp_path / "names.csv", names_rows(0, per_label=10), gzipped=False)
    saved = tmp_path / "m.pt"
    assert cli("names-rnn", "--data", names, "--epochs", "1", *NAMES_SMALL, "--save", saved).exit_code == 0
    return saved


def reader_of_a_gz(reader: str, tmp_path, request):
    """(the command that reads a .gz through `reader`, the .gz it reads): every reader of .gz files."""
    if reader == "labels":
        images, labels = request.getfixturevalue("kaggle")
        return ("transfer", "--data", images, "--labels", labels, "--weights", "none", "--epochs", "1",
                "--no-tensorboard"), labels
    if reader == "idx":
        root = write_mnist(tmp_path / "data", train=20, test=10)
        return ("mnist", "--data", root, "--epochs", "1", "--no-download"), \
            root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    if reader == "table":
        table = write_table(tmp_path / "table.csv.gz", rows=60)
        return ("diabetes", "--data", table, "--epochs", "1", "--no-tensorboard"), table
    if reader == "names":
        names = write_names_csv(tmp_path / "names.csv.gz", names_rows(1, per_label=10), gzipped=True)
        return ("names-rnn", "--data", names, "--epochs", "1", *NAMES_SMALL), names
    predict = tmp_path / "predict.txt.gz"
    predict.write_bytes(gzip.compress(b"Smith\nIvanov\n"))
    return ("names-rnn", "--checkpoint", request.getfixturevalue("names_checkpoint"), "--predict-file", predict), \
        predict


@pytest.mark.parametrize("how", ["uncompressed", "zero bytes"])
@pytest.mark.parametrize("reader", ["labels", "idx", "table", "names", "predict-file"])
def test_a_gz_that_is_not_gzip_is_one_line_naming_it(cli, tmp_path, request, reader, how):
    """Issue 25: plain CSV text (or nothing) named .csv.gz was read as it is: "holds no data rows"."""
    command, path = reader_of_a_gz(reader, tmp_path, request)
    path.write_bytes(gzip.decompress(path.read_bytes()) if how == "uncompressed" else b"")
    assert_user_error(cli(*command), str(path), "is not gzip, though named .gz",
                      "it is empty" if how == "zero bytes" else "magic bytes")


def test_a_gzip_of_nothing_is_the_readers_own_message(cli, tmp_path):
    table = tmp_path / "table.csv.gz"
    table.write_bytes(gzip.compress(b""))
    assert_user_error(cli("diabetes", "--data", table, "--epochs", "1", "--no-tensorboard"), str(table),
                      "holds no data rows")
