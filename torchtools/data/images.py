"""The one image reader (OpenCV) and image-folder listing.

Every command that reads pictures (predict, image folders, conv-demo) goes through `read_image`, so
JPEG/PNG/BMP/GIF, grey or colour, behave the same everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from torchtools.core.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def decode_image(path: Path, *, grayscale: bool = False) -> np.ndarray | None:
    """Decode an image file to uint8 RGB (H, W, 3) or grey (H, W); None when it cannot be decoded."""
    data = np.fromfile(str(path), dtype=np.uint8)  # fromfile + imdecode: also non-ASCII paths
    flags = cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None and Path(path).suffix.lower() == ".gif":
        image = _first_gif_frame(path, grayscale)  # older OpenCV builds decode GIF only as video
    if image is None:
        return None
    return image if grayscale else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_images(paths: Sequence[Path], prepare: Callable[[np.ndarray], np.ndarray], *,
                  grayscale: bool = False) -> list[np.ndarray | None]:
    """`decode_image` over many files in threads (OpenCV releases the GIL), each result passed through
    `prepare` (resize, crop); None where a file cannot be read or decoded."""

    def decode(path: Path) -> np.ndarray | None:
        try:
            image = decode_image(path, grayscale=grayscale)
        except OSError:  # unreadable (permissions, vanished): like an undecodable file
            return None
        return None if image is None else prepare(image)

    workers = os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(decode, paths, chunksize=max(1, len(paths) // (8 * workers))))


def read_image(path: Path, *, grayscale: bool = False) -> np.ndarray:
    """`decode_image` for a file the user named: a missing or unreadable file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image not found: {path}")
    image = decode_image(path, grayscale=grayscale)
    if image is None:
        raise UserError(f"{path} is not an image OpenCV can read")
    return image


def _first_gif_frame(path: Path, grayscale: bool) -> np.ndarray | None:
    capture = cv2.VideoCapture(str(path))
    ok, frame = capture.read()
    capture.release()
    if not ok:
        return None
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if grayscale else frame


def list_image_folder(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """An ImageFolder layout: root/<class>/<image>. Returns (paths, labels, sorted class names)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder not found: {root}")
    classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise UserError(f"{root} holds no class folders (expected {root}/<class>/<image>)")
    paths, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                paths.append(path)
                labels.append(label)
    if not paths:
        raise UserError(f"{root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return paths, labels, classes
