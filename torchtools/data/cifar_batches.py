"""CIFAR-10/100 "python version" batches, unpickled with a loader that can build arrays and nothing else.

The batches are pickles, and an ordinary `pickle.load` runs whatever code a crafted file names. The real
files hold only dicts, lists, strings, ints and one numpy uint8 array each; building that array needs
numpy's `_reconstruct`, `ndarray` and `dtype` (or `_frombuffer`, protocol 5), and protocol-2 pickles
written by Python 3 spell its bytes as `_codecs.encode(text, "latin1")`. Those, and numpy's scalar
constructor, are the only globals admitted: any other is refused before it is called. Every batch is then checked for the shapes and label ranges the layout promises.
"""

from __future__ import annotations

import codecs
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from torchtools.core.errors import UserError, first_line

try:  # numpy 2 moved the array reconstruction into numpy._core; pickles from numpy 1 still name numpy.core
    from numpy._core.multiarray import _reconstruct, scalar
    from numpy._core.numeric import _frombuffer
except ImportError:  # numpy 1
    from numpy.core.multiarray import _reconstruct, scalar
    from numpy.core.numeric import _frombuffer

IMAGE_BYTES = 3 * 32 * 32


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it for bytes: latin-1 only, so no other codec is reachable."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1", errors)


ADMITTED = {
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    # Protocol-5 pickles (pickle.dump's default from Python 3.14) rebuild arrays from a buffer instead.
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    # Hand-made batches often hold labels as numpy integers (list(array)): plain values, no code.
    ("numpy._core.multiarray", "scalar"): scalar,
    ("numpy.core.multiarray", "scalar"): scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle names a global outside ADMITTED."""

    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.qualified = f"{module}.{name}"


class ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return ADMITTED[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None


def load_pickle(path: Path) -> object:
    """Unpickle a dataset file admitting only arrays, dicts, lists, strings and numbers.

    encoding="latin1": the original CIFAR release is Python 2 pickles, whose byte strings (the array
    data among them) must come through byte for byte.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        return ArraysOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except RefusedGlobal as refused:
        raise UserError(f"{path} holds pickled code ({refused.qualified}); refused: a dataset file must hold "
                        f"only arrays, lists and strings") from None
    except Exception as error:  # a torn or foreign file fails in many ways inside pickle and numpy
        reason = first_line(error)
        raise UserError(f"{path} is not a readable CIFAR pickle ({reason})") from None


@dataclass(frozen=True)
class Layout:
    """Where a CIFAR variant keeps its files and which keys hold the labels."""

    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: str
    names_key: str


LAYOUTS = {
    "cifar10": Layout("cifar-10-batches-py", tuple(f"data_batch_{index}" for index in range(1, 6)), "test_batch",
                      "batches.meta", "labels", "label_names"),
    "cifar100": Layout("cifar-100-python", ("train",), "test", "meta", "fine_labels", "fine_label_names"),
}


@dataclass
class Batches:
    """One split: images (N, 3, 32, 32) uint8 in RGB and their labels."""

    images: np.ndarray
    labels: np.ndarray


def read_class_names(folder: Path, layout: Layout) -> list[str]:
    path = Path(folder) / layout.meta
    meta = load_pickle(path)
    names = meta.get(layout.names_key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise UserError(f"{path} has no list of class names under {layout.names_key!r}")
    return names


def read_split(folder: Path, files: tuple[str, ...], layout: Layout, classes: int) -> Batches:
    """The named batch files, checked and joined in order."""
    parts = [_read_batch(Path(folder) / name, layout.label_key, classes) for name in files]
    return Batches(np.concatenate([part.images for part in parts]), np.concatenate([part.labels for part in parts]))


def _read_batch(path: Path, label_key: str, classes: int) -> Batches:
    batch = load_pickle(path)
    if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
        raise UserError(f"{path} is not a CIFAR batch: it needs a dict with 'data' and {label_key!r}")
    data, labels = batch["data"], _labels(path, batch[label_key], label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        shape = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"{path}: 'data' must be an N x {IMAGE_BYTES} uint8 array, found {shape}")
    if len(labels) != len(data):
        raise UserError(f"{path} holds {len(data)} images and {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        raise UserError(f"{path}: labels must lie in 0..{classes - 1}, found {labels.min()}..{labels.max()}")
    return Batches(data.reshape(-1, 3, 32, 32), labels)


def _labels(path: Path, labels: object, key: str) -> np.ndarray:
    """A list (or 1-d array) of integers as int64."""
    values = np.asarray(labels) if isinstance(labels, (list, np.ndarray)) else None
    if values is None or values.ndim != 1 or (len(values) and values.dtype.kind not in "iu"):
        raise UserError(f"{path}: {key!r} must be a list of integer labels")
    return values.astype(np.int64)
