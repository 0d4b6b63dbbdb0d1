"""What each dataset makes a run read, for the output check (core/paths.py) before any work: found with the
functions the readers use (the walk, the CSV's rows, the root's layout), nothing decoded. A command's
config returns these from `data_reads`; an error in the data is left to the reader, which says it in turn.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torchtools.core.paths import FILES, Input
from torchtools.data import cifar_batches, labels_csv, roots
from torchtools.data.folders import class_roots
from torchtools.data.image_inputs import expand_image_inputs
from torchtools.data.images import image_folder_reads, pictures_read
from torchtools.data.vision import idx_path


def transfer_reads(config) -> list[Input]:
    return _with_predicted(config, lambda: _tree_reads(config, lambda: roots.transfer_folder(config.data)))


def cifar_reads(config) -> list[Input]:
    """cifar: a class-folder tree (or a --labels CSV's pictures), else the pickle batches and their folder."""
    def batches() -> list[Input]:
        layout, folder = roots.cifar_source(config.data, config.dataset)
        if layout == "images":
            return image_folder_reads(_class_roots(folder), "--data")
        names = cifar_batches.LAYOUTS[config.dataset]
        return [Input(folder, "--data", holds=FILES)] + [Input(folder / name, "--data") for name in
                                                         (*names.train, names.test, names.meta)]
    return _with_predicted(config, lambda: _tree_reads(config, None) or batches())


def mnist_reads(config) -> list[Input]:
    """mnist: the raw folder (a download writes there, and nothing else may) and its four IDX files."""
    def raw() -> list[Input]:
        folder = roots.mnist_raw_folder(config.data or roots.default_root(), config.dataset)
        return [Input(folder, "--data", holds=FILES)] + [Input(idx_path(folder, name), "--data")
                                                         for name in roots.MNIST_FILES]
    return _with_predicted(config, raw)


def names_reads(data: Path | None, option: str = "--data") -> list[Input]:
    """names-rnn: a folder of <Label>.txt files (each, and the folder: a new .txt there is a label), or the
    CSVs."""
    found = roots.names_files(data, option)
    if found.path.is_dir():
        return [Input(found.path, option, holds=FILES)] + [Input(file, option)
                                                            for file in sorted(found.path.glob("*.txt"))]
    return [Input(path, option) for path in (found.path, found.test) if path is not None]


def table_reads(data: Path | None) -> list[Input]:
    """diabetes: its table, wherever under the root it was found."""
    return [Input(roots.diabetes_table(data).path, "--data")]


def _with_predicted(config, data: Callable[[], list[Input]]) -> list[Input]:
    """The --predict pictures, and the data unless the run only labels pictures (image_classifier.needs_data)."""
    predicted = expand_image_inputs(config.predict) if config.predict else []
    inputs = pictures_read(predicted, "--predict", folders=False)
    return inputs if predicted and config.checkpoint is not None else inputs + data()


def _tree_reads(config, tree: Callable[[], Path] | None) -> list[Input]:
    """The pictures a --labels CSV names (those missing too: a file made there would be read next time), else
    the class-folder tree `tree` gives."""
    _, listing = labels_csv.from_settings(config, config.data, quiet=True)  # the run lists it again, saying so
    if listing is not None:
        return pictures_read(listing.train_paths + listing.held_paths + listing.missing, "--labels")
    return image_folder_reads(_class_roots(tree()), "--data") if tree is not None else []


def _class_roots(root: Path) -> list[Path]:
    return [folder for folder in class_roots(root) if folder is not None]
