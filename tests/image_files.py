"""Small generated image folders with what real folders hold: nesting, odd names, grey/RGBA/16-bit PNGs,
a corrupt file and an empty one."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def picture(rng, height: int = 24, width: int = 30) -> np.ndarray:
    """A BGR uint8 picture, random so every file differs (the tests compare pixels)."""
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(path.suffix, image)  # imencode + tofile: non-ASCII names on every platform
    assert ok
    encoded.tofile(str(path))
    return path


def messy_folder(root: Path, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Write the folder; return (readable images, unreadable files), each sorted by path."""
    rng = np.random.default_rng(seed)
    readable = [
        write(root / "cats" / "plain.jpg", picture(rng)),
        write(root / "cats" / "with space.png", picture(rng)),
        write(root / "cats" / "nested" / "deeper" / "ünïcodé é.png", picture(rng)),
        write(root / "dogs" / "grey.png", picture(rng)[:, :, 0]),
        write(root / "dogs" / "rgba.png", np.dstack([picture(rng), np.full((24, 30), 128, np.uint8)])),
        # 40,000 plus noise in the low byte: read as 8 bits it must be 156 or 157 (the high byte) everywhere.
        write(root / "dogs" / "sixteen-bit.png", 40000 + picture(rng).astype(np.uint16)),
        write(root / "dogs" / "wide.bmp", picture(rng, 20, 40)),
    ]
    corrupt = root / "cats" / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is no JPEG")
    empty = root / "dogs" / "empty.png"
    empty.write_bytes(b"")
    return sorted(readable), sorted([corrupt, empty])


def labelled_folder(root: Path, count: int, seed: int = 0) -> tuple[list[Path], list[int]]:
    """`count` readable PNGs in two class folders; the label of file i is i (so batches show which files)."""
    rng = np.random.default_rng(seed)
    paths = [write(root / f"class{index % 2}" / f"image {index:03d}.png", picture(rng)) for index in range(count)]
    return paths, list(range(count))
