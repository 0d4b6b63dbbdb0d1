"""Speed and peak memory of predicting a folder of photos to CSV (transfer --predict DIR --output FILE.csv).

Generates COUNT photo-sized JPEGs (500x375) in nested folders, trains (or takes, --checkpoint) a
transfer checkpoint, then times `transfer --checkpoint X --predict DIR --output predictions.csv` in its
own process: images per second over the whole run (model loading included) and the child's peak
resident memory, which must stay flat as COUNT grows (the images are read a batch at a time).

    .venv/bin/python benchmarks/predict_folder.py --count 5000
    .venv/bin/python benchmarks/predict_folder.py --count 5000 --checkpoint runs/transfer.pt --image-size 224
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from folders import PHOTO_SIZE, cpu_model, mib, table, torchtools, write_photos


def train_checkpoint(workdir: Path, args: argparse.Namespace) -> Path:
    """A resnet18 trained one epoch on a few photos: predicting costs the same whatever its accuracy."""
    folder = write_photos(workdir / "training-photos", 16, seed=1)
    path = workdir / "transfer.pt"
    torchtools("transfer", "--weights", "none", "--arch", args.arch, "--data", str(folder), "--epochs", "1",
               "--image-size", str(args.image_size), "--batch-size", "8", "--save", str(path), "--no-tensorboard",
               "--json", "--quiet", cwd=workdir)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="photos to predict")
    parser.add_argument("--image-size", type=int, default=224, help="the trained checkpoint's input size")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--checkpoint", type=Path, help="a transfer checkpoint (default: train a small one)")
    parser.add_argument("--dir", type=Path, help="generate (and keep) the photos here instead of a temp dir")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="torchtools-predict-") as scratch:
        workdir = Path(scratch)
        checkpoint = args.checkpoint or train_checkpoint(workdir, args)
        started = time.perf_counter()
        photos = write_photos(args.dir or workdir / "photos", args.count)
        print(f"{args.count:,} photos {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} ready in {time.perf_counter() - started:.1f} s",
              flush=True)
        output = workdir / "predictions.csv"
        run = torchtools("transfer", "--checkpoint", str(checkpoint), "--predict", str(photos), "--output",
                         str(output), "--json", "--quiet", cwd=workdir)
        with output.open(newline="") as file:
            rows = sum(1 for _ in csv.DictReader(file))
    print(f"transfer --predict DIR --output FILE.csv with {checkpoint.name}; CPU: {cpu_model()}")
    print(table(["photos", "CSV rows", "images/s", "wall s", "peak RSS MiB", "with workers MiB"],
                [[f"{args.count:,}", f"{rows:,}", f"{rows / run.seconds:,.1f}", f"{run.seconds:,.1f}",
                  mib(run.peak_rss), mib(run.peak_tree_rss)]]))


if __name__ == "__main__":
    main()
