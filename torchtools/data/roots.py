"""One data root for every command, and where in it each dataset lives.

The root is `--data ROOT`, else $TORCHTOOLS_DATA, else ./data. Under it (the layout torchvision and the
course use):

    ROOT/MNIST/raw/                     train-images-idx3-ubyte.gz ... (FashionMNIST/raw, KMNIST/raw alike)
    ROOT/cifar-10-batches-py/           data_batch_1..5, test_batch, batches.meta
    ROOT/cifar-100-python/              train, test, meta
    ROOT/train/<class>/*, ROOT/test/<class>/*   an image-folder tree for cifar
    ROOT/diabetes/diabetes.csv.gz
    ROOT/names/names_train.csv.gz, names_test.csv.gz
    ROOT/hymenoptera_data/{train,val}/<class>/*

`--data` may also name the dataset's own file or folder (the raw folder, the batches folder, the CSV).
Downloads go where the layout says, under the root the user chose. The diabetes table and the names
CSVs also ship inside the package (torchtools/datasets/): with no --data and nothing under the root,
those built-in copies are used, and the caller says so.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from torchtools.core.errors import UserError
from torchtools.data import cifar_batches

MNIST_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
DIABETES_FILES = ("diabetes.csv.gz", "diabetes.csv")
NAMES_TRAIN, NAMES_TEST = "names_train.csv.gz", "names_test.csv.gz"
TRANSFER_FOLDER = "hymenoptera_data"
BUILTIN_PACKAGE = "torchtools.datasets"

# Built-in files reached through importlib.resources stay valid until exit (a zipped install unpacks them).
_builtin_files = contextlib.ExitStack()
atexit.register(_builtin_files.close)


@dataclass(frozen=True)
class Found:
    """A dataset's file (or folder), and whether it is the copy built into the package."""

    path: Path
    test: Path | None = None  # the matching test file, where the layout has one
    builtin: bool = False

    @property
    def note(self) -> str | None:
        """The line to tell the user when the built-in copy is used."""
        if not self.builtin:
            return None
        where = (f"none under $TORCHTOOLS_DATA ({os.environ['TORCHTOOLS_DATA']})" if os.environ.get("TORCHTOOLS_DATA")
                 else "pass --data or set $TORCHTOOLS_DATA to use your own")
        return f"using the built-in course table ({self.path.name}, shipped with torchtools): {where}"


def default_root() -> Path:
    """$TORCHTOOLS_DATA, else data/ in the current folder. It may not exist yet (a download creates it); a
    variable naming a file is the user's mistake, said, not passed over for another data set."""
    named = os.environ.get("TORCHTOOLS_DATA")
    if named and os.path.exists(named) and not Path(named).is_dir():
        raise UserError(f"$TORCHTOOLS_DATA is {named}, which is not a folder: point it at the data root, or unset it")
    return Path(named or "data")


def builtin_file(name: str) -> Path:
    """A file of torchtools/datasets/ as a real path."""
    return Path(_builtin_files.enter_context(resources.as_file(resources.files(BUILTIN_PACKAGE) / name)))


def mnist_raw_folder(data: Path | None, kind: str) -> Path:
    """Where kind's IDX files are (or a download puts them): `data` may be the root, ROOT/<Name> or the raw
    folder itself."""
    root = Path(data) if data is not None else default_root()
    for folder in (root, root / "raw"):
        if any((folder / name).is_file() or (folder / f"{name}.gz").is_file() for name in MNIST_FILES):
            return folder
    return root / MNIST_FOLDERS[kind] / "raw"


def cifar_source(data: Path | None, kind: str) -> tuple[str, Path]:
    """("images", tree) for a train/ + test/ image-folder tree, else ("batches", the pickle batches folder)."""
    root = _existing(data) if data is not None else default_root()
    if (root / "train").is_dir() and (root / "test").is_dir():
        return "images", root
    present = [name for name in ("train", "val", "test") if (root / name).is_dir()]
    if present:  # an image-folder tree in another layout (transfer's train/ + val/): not CIFAR batches
        raise UserError(f"{root} holds {' and '.join(f'{name}/' for name in present)}: cifar reads image folders as "
                        f"{root}/train/<class>/* and {root}/test/<class>/* (rename val/ to test/), or CIFAR batches "
                        f"from {cifar_batches_folder(root, kind)}")
    return "batches", cifar_batches_folder(root, kind)


def cifar_batches_folder(data: Path | None, kind: str) -> Path:
    """Where kind's pickle batches are (or a download puts them): the root or the batches folder itself
    (given as it is, named as the archive names it)."""
    root = Path(data) if data is not None else default_root()
    layout = cifar_batches.LAYOUTS[kind]
    return root if (root / layout.meta).is_file() or root.name == layout.folder else root / layout.folder


def diabetes_table(data: Path | None, option: str = "--data") -> Found:
    """The diabetes CSV: the file itself, ROOT/diabetes/diabetes.csv.gz or a folder holding diabetes.csv.gz;
    with no --data and none under the root, the built-in copy."""
    if data is not None and Path(data).is_file():
        return Found(Path(data))
    root = _existing(data, option) if data is not None else default_root()
    folders = [root, root / "diabetes"]
    for folder in folders:
        for name in DIABETES_FILES:
            if (folder / name).is_file():
                return Found(folder / name)
    if data is None:
        return Found(builtin_file(DIABETES_FILES[0]), builtin=True)
    raise _not_found(folders, DIABETES_FILES[0])


def names_files(data: Path | None, option: str = "--data") -> Found:
    """The names data: a CSV file, a folder of <Label>.txt files, or a folder holding names_train.csv.gz (and
    names_test.csv.gz) directly or under names/; with no --data and none under the root, the built-in copies."""
    if data is not None and Path(data).is_file():
        return Found(Path(data))
    root = _existing(data, option) if data is not None else default_root()
    folders = [root, root / "names"]
    for folder in folders:
        if (folder / NAMES_TRAIN).is_file():
            test = folder / NAMES_TEST
            return Found(folder / NAMES_TRAIN, test if test.is_file() else None)
    if data is not None and any(root.glob("*.txt")):
        return Found(root)
    if data is None:
        return Found(builtin_file(NAMES_TRAIN), builtin_file(NAMES_TEST), builtin=True)
    raise _not_found(folders, f"{NAMES_TRAIN} (or <Label>.txt files)")


def transfer_folder(data: Path | None) -> Path:
    """The ants/bees image folder: ROOT/hymenoptera_data, or the image folder itself."""
    if data is not None:
        root = _existing(data)
        nested = root / TRANSFER_FOLDER
        return nested if nested.is_dir() else root
    folder = default_root() / TRANSFER_FOLDER
    if not folder.is_dir():
        raise _not_found([default_root()], f"{TRANSFER_FOLDER}/ folder (train/<class>/*, val/<class>/*)",
                         "FOLDER")
    return folder


def _existing(path: Path, option: str = "--data") -> Path:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{option} {path}: no such file or folder")
    return path


def _not_found(folders: list[Path], wanted: str, argument: str = "FILE") -> UserError:
    places = " or ".join(str(folder) for folder in folders)
    return UserError(f"no {wanted} found in {places}: put it there or pass --data {argument}")
