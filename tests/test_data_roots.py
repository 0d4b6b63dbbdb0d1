"""One data root: where each command's data is found under --data / $TORCHTOOLS_DATA, and the built-in tables."""

import gzip
from pathlib import Path

import pytest

from torchtools.core.errors import UserError
from torchtools.data import roots


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A clean current folder, with no TORCHTOOLS_DATA set: the default root is ./data."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TORCHTOOLS_DATA", raising=False)
    return tmp_path


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_default_root_is_the_environment_variable_else_data(here, monkeypatch):
    assert roots.default_root() == Path("data")
    monkeypatch.setenv("TORCHTOOLS_DATA", str(here / "elsewhere"))
    assert roots.default_root() == here / "elsewhere"


def test_mnist_root_name_folder_or_raw_folder(here):
    raw = touch(here / "d" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz").parent
    assert roots.mnist_raw_folder(here / "d", "fashion-mnist") == raw
    assert roots.mnist_raw_folder(raw.parent, "fashion-mnist") == raw
    assert roots.mnist_raw_folder(raw, "fashion-mnist") == raw
    assert roots.mnist_raw_folder(None, "kmnist") == Path("data") / "KMNIST" / "raw"  # where a download goes


def test_cifar_batches_images_or_the_folder_itself(here):
    batches = touch(here / "d" / "cifar-100-python" / "meta").parent
    assert roots.cifar_source(here / "d", "cifar100") == ("batches", batches)
    assert roots.cifar_source(batches, "cifar100") == ("batches", batches)
    assert roots.cifar_source(None, "cifar10") == ("batches", Path("data") / "cifar-10-batches-py")
    (here / "images" / "train").mkdir(parents=True)
    (here / "images" / "test").mkdir()
    assert roots.cifar_source(here / "images", "cifar10") == ("images", here / "images")


def test_diabetes_in_the_layout_the_file_or_its_folder(here):
    table = touch(here / "data" / "diabetes" / "diabetes.csv.gz")
    assert roots.diabetes_table(None) == roots.Found(Path("data") / "diabetes" / "diabetes.csv.gz")
    assert roots.diabetes_table(here / "data").path == table
    assert roots.diabetes_table(table.parent).path == table
    assert roots.diabetes_table(table).path == table and roots.diabetes_table(table).note is None
    own = touch(here / "mine" / "pima.csv")
    assert roots.diabetes_table(own).path == own


def test_diabetes_falls_back_to_the_built_in_table_only_without_data(here):
    found = roots.diabetes_table(None)
    assert found.builtin and found.path.name == "diabetes.csv.gz" and found.path.is_file()
    assert "built-in course table" in found.note
    (here / "empty").mkdir()
    with pytest.raises(UserError) as error:
        roots.diabetes_table(here / "empty")
    message = str(error.value)
    assert str(here / "empty") in message and str(here / "empty" / "diabetes") in message
    assert "diabetes.csv.gz" in message
    with pytest.raises(UserError, match="no such file or folder"):
        roots.diabetes_table(here / "missing.csv")


def test_names_layouts(here, monkeypatch):
    train = touch(here / "root" / "names" / "names_train.csv.gz")
    test = touch(train.with_name("names_test.csv.gz"))
    assert roots.names_files(here / "root") == roots.Found(train, test)
    assert roots.names_files(train.parent) == roots.Found(train, test)
    assert roots.names_files(train) == roots.Found(train)
    monkeypatch.setenv("TORCHTOOLS_DATA", str(here / "root"))
    assert roots.names_files(None) == roots.Found(train, test)
    folder = touch(here / "tutorial" / "Czech.txt").parent
    assert roots.names_files(folder) == roots.Found(folder)
    (here / "nothing").mkdir()
    with pytest.raises(UserError, match="names_train.csv.gz .or <Label>.txt files. found in .*nothing"):
        roots.names_files(here / "nothing")


def test_names_fall_back_to_the_built_in_split(here):
    found = roots.names_files(None)
    assert found.builtin and found.path.name == "names_train.csv.gz" and found.test.name == "names_test.csv.gz"


def test_transfer_folder(here):
    (here / "data" / "hymenoptera_data" / "train").mkdir(parents=True)
    assert roots.transfer_folder(None) == Path("data") / "hymenoptera_data"
    assert roots.transfer_folder(here / "data") == here / "data" / "hymenoptera_data"
    assert roots.transfer_folder(here / "data" / "hymenoptera_data") == here / "data" / "hymenoptera_data"


def test_transfer_folder_missing_names_where_it_looked(here, monkeypatch):
    monkeypatch.setenv("TORCHTOOLS_DATA", str(here / "root"))
    with pytest.raises(UserError, match=r"no hymenoptera_data/ folder .train/<class>/\*, val/<class>/\*. found in "):
        roots.transfer_folder(None)
    with pytest.raises(UserError, match="no such file or folder"):
        roots.transfer_folder(here / "nope")


def test_the_built_in_tables_are_the_course_data():
    from torchtools.data.names import read_names
    from torchtools.data.tables import check_binary_labels, read_numeric_csv

    diabetes = roots.builtin_file("diabetes.csv.gz")
    table = read_numeric_csv(diabetes)
    assert table.values.shape == (759, 9) and table.header is None
    check_binary_labels(table.last_column, diabetes)
    assert int(table.last_column.sum()) == 496
    train = read_names(roots.builtin_file("names_train.csv.gz"))
    test = read_names(roots.builtin_file("names_test.csv.gz"))
    assert len(set(train.labels)) == 18 and set(test.labels) <= set(train.labels)
    assert len(train.names) + train.blank + train.junk == 13374
    assert len(test.names) + test.blank + test.junk == 6700
    assert (Path(roots.__file__).parents[1] / "datasets" / "README.md").is_file()


def test_the_built_in_tables_are_package_data():
    """pyproject.toml ships torchtools/datasets/*.csv.gz in wheels and sdists."""
    import tomllib

    config = tomllib.loads((Path(roots.__file__).parents[2] / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["torchtools.datasets"]
    shipped = {path.name for path in (Path(roots.__file__).parents[1] / "datasets").iterdir()
               if any(path.match(pattern) for pattern in patterns)}
    assert {"diabetes.csv.gz", "names_train.csv.gz", "names_test.csv.gz"} <= shipped
    with gzip.open(roots.builtin_file("names_test.csv.gz"), "rt") as handle:
        assert handle.readline().count(",") == 1
