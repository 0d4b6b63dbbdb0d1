"""Numeric CSV tables: what is a header, which cell is wrong, and checks for a classifier's labels and split."""

import gzip

import numpy as np
import pytest

from conftest import assert_user_error
from torchtools.core.errors import UserError
from torchtools.data.tables import check_binary_labels, check_split_sizes, read_numeric_csv

BOM = "\ufeff"
ROW = "0.1,-0.2,0.3,0.4,-0.5,0.6,0.7,-0.8"


def diabetes_rows(count: int, label=lambda index: index % 2) -> list[str]:
    return [f"{ROW},{label(index)}" for index in range(count)]


def write(path, lines, *, gz=False, newline="\n"):
    text = newline.join(lines) + newline
    if gz:
        with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
            handle.write(text)
    else:
        path.write_bytes(text.encode("utf-8"))
    return path


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_a_bom_before_a_numeric_first_row_keeps_the_row(tmp_path, gz):
    path = write(tmp_path / "t.csv", [BOM + "1,2", "3,4", "5,6"], gz=gz, newline="\r\n")
    table = read_numeric_csv(path)
    assert table.header is None and table.values.tolist() == [[1, 2], [3, 4], [5, 6]]


def test_a_bom_before_a_header_is_not_part_of_its_first_name(tmp_path):
    path = write(tmp_path / "t.csv", [BOM + "hours,score", "# a comment", "", "1,2", "3,4"])
    table = read_numeric_csv(path)
    assert table.header == ["hours", "score"] and len(table.values) == 2


def test_a_bom_file_trains_through_the_cli(cli, tmp_path):
    path = write(tmp_path / "t.csv", [BOM + "1,2", "2,4", "3,6"])
    run = cli("fit-linear", "--csv", path, "--epochs", "2", "--no-tensorboard", "--json")
    assert run.exit_code == 0, run.stderr


def test_a_mistyped_cell_in_the_first_row_is_an_error_not_a_header(cli, tmp_path):
    path = write(tmp_path / "d.csv", ["0.1,-0.2,0.3,0.4,-0.5,O.6,0.7,-0.8,1", *diabetes_rows(20)])
    assert_user_error(cli("diabetes", "--data", path), str(path), "line 1, column 6", "'O.6' is not a number")


def test_a_mistyped_cell_later_names_line_and_column(cli, tmp_path):
    path = write(tmp_path / "d.csv", ["# exported", *diabetes_rows(3), "0.1,-0.2,0.3,0.4,-0.5,0.6,0.7,-0.8,yes"])
    assert_user_error(cli("diabetes", "--data", path), "line 5, column 9", "'yes'")
    path = write(tmp_path / "xy.csv", ["x,y", "1,2", "2,"])
    assert_user_error(cli("fit-linear", "--csv", path), "line 3, column 2", "'' is not a number")


@pytest.mark.parametrize("cell", ["nan", "NaN", "inf", "-Infinity", "1e39"])
def test_nan_and_infinite_cells_are_named(cli, tmp_path, cell):
    path = write(tmp_path / "d.csv", [*diabetes_rows(4), f"0.1,-0.2,{cell},0.4,-0.5,0.6,0.7,-0.8,1"])
    assert_user_error(cli("diabetes", "--data", path), str(path), "line 5, column 3")
    path = write(tmp_path / "xy.csv", ["1,2", f"{cell},3"])
    assert_user_error(cli("fit-linear", "--csv", path), "line 2, column 1")


def test_column_count_mismatch_names_the_line(tmp_path):
    path = write(tmp_path / "t.csv", ["a,b,c", "1,2,3", "4,5"])
    with pytest.raises(UserError, match="line 3: 2 columns where 3 were expected"):
        read_numeric_csv(path)


def test_a_header_only_file_has_no_rows(tmp_path):
    with pytest.raises(UserError, match="holds no data rows"):
        read_numeric_csv(write(tmp_path / "t.csv", [BOM + "x,y"]))


def test_binary_labels_need_both_classes(tmp_path):
    check_binary_labels(np.array([0, 1, 1, 0], dtype=np.float32), tmp_path / "d.csv")
    with pytest.raises(UserError, match="all 40 rows have label 1: a classifier needs both classes"):
        check_binary_labels(np.ones(40, dtype=np.float32), tmp_path / "d.csv")
    with pytest.raises(UserError, match="all 3 rows have label 0"):
        check_binary_labels(np.zeros(3), tmp_path / "d.csv")
    with pytest.raises(UserError, match="0/1 label; data row 2 has 0.5"):
        check_binary_labels(np.array([1, 0.5, 0]), tmp_path / "d.csv")


def test_split_sizes(tmp_path):
    path = tmp_path / "d.csv"
    check_split_sizes(path, 608, 151, 0.2)
    check_split_sizes(path, 2, 0, 0.0)
    with pytest.raises(UserError, match="2 data row.*too few for a training and a held-out split"):
        check_split_sizes(path, 2, 0, 0.2)
    with pytest.raises(UserError, match="1 data row.*too few to train on"):
        check_split_sizes(path, 1, 0, 0.0)
    with pytest.raises(UserError, match="2 data row.*leaves 1 to train on, 1 held out"):
        check_split_sizes(path, 1, 1, 0.5)


def test_a_one_row_file_is_too_few_for_the_split(tmp_path):
    """The check the diabetes command makes after its stratified split (a one-row file holds none out)."""
    from torchtools.data.loaders import stratified_split

    path = write(tmp_path / "d.csv", diabetes_rows(1))
    table = read_numeric_csv(path)
    train, held_out = stratified_split(table.last_column.astype(int), 0.2, seed=0)
    with pytest.raises(UserError, match="1 data row.*too few for a training and a held-out split"):
        check_split_sizes(path, len(train), len(held_out), 0.2)


def test_one_class_is_refused_for_classification(tmp_path):
    path = write(tmp_path / "d.csv", diabetes_rows(40, label=lambda index: 1))
    table = read_numeric_csv(path)
    with pytest.raises(UserError, match="all 40 rows have label 1"):
        check_binary_labels(table.last_column, path)
