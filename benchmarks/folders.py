"""Peak memory and speed of transfer on image folders: --loader memory against --loader stream.

Generates folders of photo-sized JPEGs (500x375, two classes, train/ and val/), then trains transfer
(resnet18 from scratch, 224 px, one epoch) on each, once per loader, each run its own process. For
each it reports the child's peak resident memory (and the most it held together with its decoding
workers), the training images per second (the summary's train_images / train_seconds) and the whole run's wall
time (which includes memory's up-front decoding). memory's peak grows with the folder; stream's must
not.

    .venv/bin/python benchmarks/folders.py --sizes 1000,8000
    .venv/bin/python benchmarks/folders.py --sizes 1000 --loaders default   # the CLI without --loader

Folders go to a temp dir (removed afterwards) or --dir (kept, and reused when the images are there).
`default` runs transfer without --loader, so the script also measures a build that lacks the option.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
PHOTO_SIZE = (500, 375)  # width, height: a typical downsized camera photo
CLASSES = ("circles", "squares")


def photo(rng: np.random.Generator, label: int) -> np.ndarray:
    """A 500x375 BGR picture that compresses like a photo: smooth gradients, a few shapes, light noise."""
    width, height = PHOTO_SIZE
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, size=3).astype(np.float32)
    tilt = rng.uniform(-0.2, 0.2, size=(2, 3)).astype(np.float32)
    image = base + ys[..., None] * tilt[0] + xs[..., None] * tilt[1]
    image = np.clip(image + rng.normal(0, 6, size=image.shape), 0, 255).astype(np.uint8)
    for _ in range(rng.integers(3, 7)):
        colour = tuple(int(value) for value in rng.integers(0, 256, size=3))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        extent = int(rng.integers(20, 90))
        if label == 0:
            cv2.circle(image, centre, extent, colour, -1)
        else:
            cv2.rectangle(image, (centre[0] - extent, centre[1] - extent), (centre[0] + extent, centre[1] + extent),
                          colour, -1)
    return cv2.GaussianBlur(image, (3, 3), 0)


def write_photos(root: Path, count: int, *, seed: int = 0, val_share: float = 0.2) -> Path:
    """root/{train,val}/{circles,squares}/NNNNN.jpg, `count` in all (classes alternate); kept if present."""
    marker = root / f".complete-{count}"
    if marker.is_file():
        return root
    rng = np.random.default_rng(seed)
    val_every = round(1 / val_share) if val_share else 0
    for index in range(count):
        label = index % 2
        split = "val" if val_every and (index // 2) % val_every == 0 else "train"
        path = root / split / CLASSES[label] / f"{index:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), photo(rng, label), [cv2.IMWRITE_JPEG_QUALITY, 90])
    marker.touch()
    return root


@dataclass
class ChildRun:
    returncode: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes: the child's own high-water resident memory (VmHWM)
    peak_tree_rss: int  # bytes: the most the child and its descendants (decoding workers) held at once
    seconds: float

    def summary(self) -> dict:
        return json.loads(self.stdout.strip().splitlines()[-1])


def run_measured(command: list[str], *, cwd: Path, interval: float = 0.05) -> ChildRun:
    """Run `command`, returning its output, wall time and peak memory, sampled every `interval` seconds.

    The child's own peak is the kernel's high-water mark of its address space, read until it exits.
    Not rusage: Linux carries the parent's RSS at fork/exec into the child's ru_maxrss, so a large
    parent would hide a small child. DataLoader workers are separate processes: the tree figure adds
    up their RSS at each sample (pages shared with the parent count in each, so it is an upper bound).
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    peak = tree_peak = 0
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err, text=True)
        while not (finished := os.wait4(child.pid, os.WNOHANG))[0]:
            peak = max(peak, _status_bytes(child.pid, "VmHWM"))
            tree_peak = max(tree_peak, sum(_status_bytes(pid, "VmRSS") for pid in _process_tree(child.pid)))
            time.sleep(interval)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(finished[1])  # reaped here: Popen must not wait again
        if not peak:  # gone before the first sample, or no /proc: rusage (kB on Linux, bytes on macOS)
            peak = finished[2].ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        out.seek(0)
        err.seek(0)
        return ChildRun(child.returncode, out.read(), err.read(), peak, max(tree_peak, peak), seconds)


def _status_bytes(pid: int, field: str) -> int:
    """A /proc/PID/status memory field in bytes; 0 once the process is gone (or has no such field)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _process_tree(pid: int) -> list[int]:
    """pid and all its descendants (from each thread's children list)."""
    tree, index = [pid], 0
    while index < len(tree):
        for children in Path(f"/proc/{tree[index]}/task").glob("*/children"):
            try:
                tree.extend(int(child) for child in children.read_text().split())
            except OSError:  # the thread or process ended meanwhile
                pass
        index += 1
    return tree


def torchtools(*args: str, cwd: Path) -> ChildRun:
    """`python -m torchtools ARGS` measured; stops the benchmark with the CLI's own words if it fails."""
    run = run_measured([sys.executable, "-m", "torchtools", *args], cwd=cwd)
    if run.returncode != 0:
        # Click's usage errors come in a box drawn with │ and ╭─╮: keep the words.
        lines = [line.strip(" │╭╮╰╯─") for line in run.stderr.splitlines()]
        lines = [line for line in lines if line] or ["(no stderr)"]
        rejected = next((line for line in lines if "No such option" in line), None)
        if rejected:
            raise SystemExit(f"this torchtools does not take an option the benchmark needs ({rejected}); "
                             "it measures the --loader/--output options of issue 13 once they are wired")
        raise SystemExit(f"torchtools {args[0]} failed (exit {run.returncode}): {lines[-1]}")
    return run


def cpu_model() -> str:
    from torchtools.core.devices import cpu_name  # imported late: the script itself needs no torch until here

    return f"{cpu_name()}, {os.cpu_count()} cores"


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = [header, ["-" * width for width in widths], *rows]
    return "\n".join("  ".join(str(cell).rjust(width) for cell, width in zip(line, widths)) for line in lines)


def mib(count: int) -> str:
    return f"{count / 2 ** 20:,.0f}"


def train_once(folder: Path, loader: str, args: argparse.Namespace, workdir: Path) -> list[str]:
    options = [] if loader == "default" else ["--loader", loader]
    run = torchtools("transfer", "--weights", "none", "--arch", args.arch, "--data", str(folder), "--epochs", "1",
                     "--image-size", str(args.image_size), "--batch-size", str(args.batch_size), *options,
                     "--no-tensorboard", "--json", "--quiet", cwd=workdir)
    summary = run.summary()
    rate = summary["train_images"] / summary["train_seconds"] if summary["train_seconds"] else float("nan")
    return [loader, f"{summary['train_images']:,}", mib(run.peak_rss), mib(run.peak_tree_rss), f"{rate:,.1f}",
            f"{run.seconds:,.1f}", f"{summary['metrics'].get('val_accuracy', float('nan')):.3f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,8000", help="images per generated folder, comma-separated")
    parser.add_argument("--loaders", default="memory,stream", help="--loader values to compare ('default': none)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--dir", type=Path, help="generate (and keep) the folders here instead of a temp dir")
    args = parser.parse_args()
    print(f"transfer, {args.arch} from scratch, 1 epoch at {args.image_size} px, batch {args.batch_size}; "
          f"CPU: {cpu_model()}")
    with tempfile.TemporaryDirectory(prefix="torchtools-folders-") as scratch:
        base = args.dir or Path(scratch)
        rows = []
        for size in (int(text) for text in args.sizes.split(",")):
            started = time.perf_counter()
            folder = write_photos(base / f"photos-{size}", size)
            print(f"{size:,} photos {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} ready in {time.perf_counter() - started:.1f} s: "
                  f"{folder}", flush=True)
            for loader in args.loaders.split(","):
                rows.append([f"{size:,}", *train_once(folder, loader, args, Path(scratch))])
                print("  ".join(rows[-1]), flush=True)  # as they come: a long run shows progress
    print(table(["folder", "loader", "train images", "peak RSS MiB", "with workers MiB", "train img/s", "wall s",
                 "val acc"], rows))


if __name__ == "__main__":
    main()
