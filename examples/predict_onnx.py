"""Label a folder of pictures with a model from `torchtools export --format onnx`, without torch or torchtools.

    python examples/predict_onnx.py model.onnx photos/ > predictions.csv

Needs onnxruntime, OpenCV and NumPy only. Prints CSV rows `path,label,probability` (with a header) for
every picture under FOLDER (recursively, sorted, hidden files skipped), the same labels and probabilities
as `torchtools transfer --checkpoint m.pt --predict FOLDER --output p.csv`. The model takes the pictures
as torchtools stores them (uint8, NCHW, decoded RGB or grey, resized as its `preprocessing` metadata
says) and crops and normalises inside; this script does only the decoding and resizing, as torchtools does.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
BATCH = 64


def pictures(folder: Path) -> list[Path]:
    found = []
    for root, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        found += [Path(root) / name for name in files
                  if not name.startswith(".") and Path(name).suffix.lower() in SUFFIXES]
    return sorted(found)


def prepared(path: Path, spec: dict) -> np.ndarray | None:
    """A picture as the model's stored square (C, size, size) uint8, or None when it cannot be decoded."""
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE if spec["grayscale"] else cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        return None
    if not spec["grayscale"]:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if spec["invert_light_background"]:  # MNIST digits are light on dark
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        if border.mean() > 127:
            image = 255 - image
    size, (height, width) = spec["size"], image.shape[:2]
    if spec["fit"] == "centre":  # shorter side to size, then the centre square
        scale = size / min(height, width)
        new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))
        if (new_height, new_width) != (height, width):
            image = cv2.resize(image, (new_width, new_height),
                               interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        top, left = (new_height - size) // 2, (new_width - size) // 2
        image = image[top:top + size, left:left + size]
    elif (height, width) != (size, size):
        shrinking = height > size or width > size
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return np.ascontiguousarray(image[None] if image.ndim == 2 else image.transpose(2, 0, 1))


def main(model: str, folder: str) -> None:
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    metadata = {key: json.loads(value) for key, value in session.get_modelmeta().custom_metadata_map.items()}
    classes, spec = metadata["classes"], metadata["preprocessing"]
    writer = csv.writer(sys.stdout)
    writer.writerow(["path", "label", "probability"])
    paths = pictures(Path(folder))
    for start in range(0, len(paths), BATCH):
        batch = [(path, prepared(path, spec)) for path in paths[start:start + BATCH]]
        for path, image in batch:
            if image is None:
                print(f"skipped {path}: OpenCV cannot read it", file=sys.stderr)
        readable = [(path, image) for path, image in batch if image is not None]
        if not readable:
            continue
        logits = session.run(None, {"images": np.stack([image for _, image in readable])})[0].astype(np.float64)
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        for (path, _), row in zip(readable, probabilities):
            writer.writerow([str(path), classes[int(row.argmax())], f"{row.max():.6f}"])


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python examples/predict_onnx.py MODEL.onnx FOLDER")
    main(sys.argv[1], sys.argv[2])
