"""Writers of small datasets in the real on-disk formats (IDX, CIFAR pickles, image folders, CSV tables and
name lists), shared by the tests: every test builds its data with these, in a temp dir."""

from __future__ import annotations

import gzip
import pickle
import random
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def pattern(label: int, rng, scale: int = 1) -> np.ndarray:
    """A learnable 28x28 'digit': a bright bar whose place on a 2x5 grid is the label, jittered, on noise."""
    image = rng.integers(0, 40, size=(28, 28), dtype=np.uint8)
    top = 3 + 12 * (label // 5) + rng.integers(-1, 2)
    left = 2 + 5 * (label % 5) + rng.integers(0, 2)
    image[top:top + 10, left:left + 4] = 255
    return cv2.resize(image, (28 * scale, 28 * scale), interpolation=cv2.INTER_NEAREST) if scale > 1 else image


def write_idx(path, array: np.ndarray) -> None:
    """The IDX format: magic (0, 0, ubyte=0x08, ndim), big-endian dims, then the bytes; gzipped."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def write_mnist(root, folder="MNIST", train=300, test=100, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = np.arange(count) % 10
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", np.stack([pattern(label, rng) for label in labels]))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


COLOURS = [(230, 40, 40), (40, 230, 40), (40, 40, 230)]  # RGB: one dominant channel per learnable class


def coloured_picture(label: int, rng) -> np.ndarray:
    """A 32x32 RGB image whose colour is its label, with noise and a random dark square."""
    image = np.clip(np.array(COLOURS[label]) + rng.normal(0, 25, size=(32, 32, 3)), 0, 255).astype(np.uint8)
    top, left = rng.integers(0, 24, size=2)
    image[top:top + 8, left:left + 8] //= 3
    return image


def write_cifar10_batches(root, train=150, test=60, seed=0):
    """torchvision's cifar-10-batches-py: five training pickles, a test pickle and batches.meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def batch(count):
        labels = [index % len(COLOURS) for index in range(count)]
        images = np.stack([coloured_picture(label, rng) for label in labels])  # (N, 32, 32, 3)
        return {"data": images.transpose(0, 3, 1, 2).reshape(count, -1), "labels": labels}

    for index in range(1, 6):
        (folder / f"data_batch_{index}").write_bytes(pickle.dumps(batch(train // 5)))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(test)))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR10_NAMES}))
    return root


def write_image_folders(root, train=30, test=12, seed=0):
    """root/{train,test}/<class>/*.png|jpg written with OpenCV (BGR on disk), as the CIFAR JPEG tar unpacks."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        for label, name in enumerate(("blue", "green", "red")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count // 3):
                suffix = ".jpg" if index % 2 else ".png"
                # RGB red read as BGR: blue
                cv2.imwrite(str(folder / f"{index:04d}{suffix}"), coloured_picture(label, rng))
    return root


ENDINGS = {"Russian": "ov", "Spanish": "ez", "Japanese": "moto"}


# Options that train the tiny names model in seconds.
NAMES_SMALL = ["--hidden", "16", "--layers", "1", "--batch-size", "32", "--lr", "0.02", "--no-tensorboard"]


def names_rows(seed: int, per_label: int = 60) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label, ending in ENDINGS.items():
        for _ in range(per_label):
            stem = "".join(rng.choice("bcdfgklmnprstv") + rng.choice("aeiou") for _ in range(rng.randint(1, 4)))
            rows.append((stem.capitalize() + ending, label))
    rng.shuffle(rows)
    return rows


def write_names_csv(path, rows, *, gzipped: bool):
    text = "".join(f'"{name}","{label}"\r\n' for name, label in rows)
    if gzipped:
        with gzip.open(path, "wt", encoding="utf-8") as file:
            file.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def write_names_folder(folder, rows):
    folder.mkdir()
    for label in ENDINGS:
        (folder / f"{label}.txt").write_text(
            "\n".join(name for name, row_label in rows if row_label == label) + "\n", encoding="utf-8")
    return folder


def write_image(path: Path, label: int, rng) -> None:
    """A learnable 40x40 coloured_picture: class 0 bright on top, class 1 bright on the left, on noise."""
    image = rng.integers(0, 60, size=(40, 40, 3), dtype=np.uint8)
    if label:
        image[:, :20] = 220
    else:
        image[:20] = 220
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def write_photo_folders(root: Path, *, train: int, val: int, prefix: str = "") -> Path:
    """train/ and val/ with ants and bees, JPEG and PNG, and one corrupt JPEG among the training ants."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        for label, name in enumerate(("ants", "bees")):
            for index in range(count):
                write_image(root / split / name / f"{prefix}{index}.{'png' if index % 2 else 'jpg'}", label, rng)
    (root / "train" / "ants" / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    return root


def write_table(path, rows=240, *, header=False, crlf=False, seed=0):
    """A learnable table in the course's layout: 8 features in [-1, 1], a 0/1 label last."""
    rng = np.random.default_rng(seed)
    features = rng.uniform(-1, 1, size=(rows, 8))
    labels = (features[:, 0] + 0.5 * features[:, 1] - features[:, 2] > 0).astype(int)
    newline = "\r\n" if crlf else "\n"
    lines = ([",".join(f"f{i}" for i in range(8)) + ",label"] if header else []) + [
        ",".join(f"{value:.3f}" for value in row) + f",{label}" for row, label in zip(features, labels)]
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as handle:
        handle.write(newline.join(lines) + newline)
    return path


def write_png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that says width x height in its header, with a few bytes of pixels: a size check can read it,
    decoding it fails (a whole 20000x20000 picture would take 1.2 GB to decode)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64)))
                     + chunk(b"IEND", b""))
    return path
