"""The GPU check: everything torchtools does on CUDA, run once, in one table (under 8 minutes on one GPU).

    python benchmarks/gpu_check.py --out gpu-check/            # on a machine with a GPU, as it is
    python benchmarks/gpu_check.py --dry-run --out /tmp/check  # every step at tiny sizes on the CPU

Steps, each timed and put in the table (seconds, epochs, accuracy, images/s, ratio to the course loop):
1. the fast test tier (`pytest`) with CUDA visible;
2. each training command once on the GPU, as a user runs it (`python -m torchtools ... --json`): mnist's
   course and fast recipes, cifar quick and resnet, transfer resnet18 and resnet34 on the ants/bees
   photos with and without --compile, names-rnn;
3. to-gpu-bench;
4. torchrun: 2 processes with NCCL where the machine has 2 GPUs, else 1;
5. the course loops (benchmarks/vision.py, benchmarks/names.py, the transfer tutorial's loop) on the same
   GPU, one epoch each: the "ratio" column is torchtools' images/s over the course loop's.

Data: --data ROOT (default $TORCHTOOLS_DATA, else ../shared/data): ROOT/MNIST/raw, ROOT/hymenoptera_data,
CIFAR-10 as ROOT/cifar-10-batches-py or ROOT/cifar10-jpg.tar.gz (unpacked into the work folder), names
from ROOT/names or the copy in the package. transfer's weights: --weights-dir holding resnet18.pth and
resnet34.pth (torchvision's), else randomly initialised ones are written (speed is the same; accuracy is
then from scratch). A step whose data is missing is "skipped" with the reason; a failing step is "failed"
with its last error line, and the check goes on.

--dry-run generates tiny data (MNIST IDX files, CIFAR batches, photo folders, names CSVs, random weights)
and runs every step on the CPU in seconds (--compile steps with TORCHDYNAMO_DISABLE=1: the step's code
path without the compiler's minutes), so the script is known to work before it first meets a GPU.
Results: not measured yet (no GPU was at hand where this was written).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))  # the course loops of vision.py and names.py, the photos of folders.py


@dataclass
class Row:
    step: str
    status: str = "ok"  # ok | failed | skipped
    seconds: float | None = None  # wall time of the step
    epochs: int | None = None
    accuracy: float | None = None
    images_per_s: float | None = None  # training images (or names) per second of training
    ratio: float | None = None  # images_per_s over the matching course loop's
    note: str = ""


@dataclass
class Setup:
    dry: bool
    device: str  # "cuda" or "cpu" (dry run)
    root: Path  # the data root
    work: Path
    photos: Path | None
    cifar: Path | None  # a root cifar reads (batches) or an image-folder layout
    weights: dict[str, Path]
    names: Path  # folder holding names_train.csv.gz and names_test.csv.gz

    @property
    def epochs(self) -> str:
        return "1" if self.dry else "2"


# --- data -----------------------------------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def tiny_data(root: Path) -> None:
    """What the dry run trains on: every dataset the steps read, a few dozen samples each."""
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", 64), ("t10k", 32)):
        labels = np.arange(count) % 10
        images = rng.integers(0, 50, (count, 28, 28)) + (labels[:, None, None] * 20)
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels)
    cifar = root / "cifar-10-batches-py"
    cifar.mkdir()
    for name, count in [(f"data_batch_{index}", 16) for index in range(1, 6)] + [("test_batch", 16)]:
        labels = [index % 10 for index in range(count)]
        data = rng.integers(0, 256, (count, 3 * 32 * 32), dtype=np.uint8)
        (cifar / name).write_bytes(pickle.dumps({"data": data, "labels": labels}))
    (cifar / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"class{index}" for index in range(10)]}))
    from folders import write_photos

    write_photos(root / "hymenoptera_data", 16)
    (root / "names").mkdir()
    for split, count in (("train", 90), ("test", 30)):
        rows = [f"{'Ivan' if index % 3 == 0 else 'Tanaka' if index % 3 == 1 else 'Smith'}{'ov' * (index % 2)}"
                f"{index},{('Russian', 'Japanese', 'English')[index % 3]}\n" for index in range(count)]
        with gzip.open(root / "names" / f"names_{split}.csv.gz", "wt") as file:
            file.writelines(rows)


def random_weights(folder: Path) -> dict[str, Path]:
    from torchvision import models

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for arch in ("resnet18", "resnet34"):
        paths[arch] = folder / f"{arch}.pth"
        if not paths[arch].is_file():
            torch.manual_seed(0)
            torch.save(models.get_model(arch, weights=None).state_dict(), paths[arch])
    return paths


def set_up(args) -> Setup:
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.dry_run:
        root = work / "data"
        if not root.is_dir():
            tiny_data(root)
    else:
        root = Path(args.data or os.environ.get("TORCHTOOLS_DATA") or REPO.parent / "shared" / "data")
    cifar = root if (root / "cifar-10-batches-py").is_dir() else None
    if cifar is None and (root / "cifar10-jpg.tar.gz").is_file():
        cifar = work / "cifar10"
        if not (cifar / "test").is_dir():
            with tarfile.open(root / "cifar10-jpg.tar.gz") as archive:
                archive.extractall(cifar, filter="data")
    weights_dir = Path(args.weights_dir) if args.weights_dir else work / "weights"
    weights = {arch: weights_dir / f"{arch}.pth" for arch in ("resnet18", "resnet34")}
    if not all(path.is_file() for path in weights.values()):
        weights = random_weights(weights_dir)
    names = root / "names" if (root / "names" / "names_train.csv.gz").is_file() else REPO / "torchtools" / "datasets"
    photos = root / "hymenoptera_data"
    return Setup(args.dry_run, "cpu" if args.dry_run else "cuda", root, work, photos if photos.is_dir() else None,
                 cifar, weights, names)


# --- steps ----------------------------------------------------------------------------------------------------
def run_process(command: list[str], setup: Setup, *, env: dict | None = None, timeout: float = 900,
                cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, float]:
    environment = {**os.environ, "TORCHTOOLS_DATA": str(setup.root), "TORCHTOOLS_CACHE": str(setup.work / "cache"),
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                   **(env or {})}
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd or setup.work, env=environment, capture_output=True, text=True,
                               timeout=timeout)
    return completed, time.perf_counter() - started


def last_error(completed: subprocess.CompletedProcess) -> str:
    lines = [line for line in (completed.stderr + completed.stdout).strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else f"exit {completed.returncode}"


@dataclass
class Step:
    """One torchtools command of the check; `course` names the course loop its images/s is compared with."""

    name: str
    arguments: list[str]
    course: str | None = None
    images: int | None = None  # training images (or names) an epoch, where the summary does not say
    env: dict | None = None
    launcher: list[str] | None = None
    skipped: str | None = None  # why it cannot run here


def run_step(step: Step, setup: Setup) -> Row:
    """The command as a user runs it; images/s from its summary (train images x epochs / train_seconds)."""
    if step.skipped:
        return Row(step.name, "skipped", note=step.skipped)
    quiet = ["--json"] + (["--no-tensorboard"] if step.arguments[0] != "to-gpu-bench" else [])
    command = (step.launcher or [sys.executable, "-m", "torchtools"]) + step.arguments + quiet
    completed, seconds = run_process(command, setup, env=step.env)
    if completed.returncode != 0:
        return Row(step.name, "failed", seconds, note=last_error(completed))
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    metrics = summary.get("metrics", {})
    accuracy = next((metrics[key] for key in ("test_accuracy", "val_accuracy") if key in metrics), None)
    images = summary.get("train_images", step.images)
    rate = images * summary["epochs"] / summary["train_seconds"] if images and summary.get("train_seconds") else None
    return Row(step.name, "ok", seconds, summary.get("epochs"), accuracy, rate,
               note=f"world_size {summary['world_size']}" if summary.get("world_size", 1) > 1 else "")


def steps(setup: Setup, counts: dict[str, int]) -> list[Step]:
    """Every command of the check, in the table's order."""
    device, epochs = ["--device", setup.device], ["--epochs", setup.epochs]
    mnist = counts.get("mnist")
    missing_mnist = None if mnist else f"no MNIST under {setup.root}/MNIST/raw"
    planned = [Step("mnist course", ["mnist", *device, *epochs], "mnist", mnist, skipped=missing_mnist),
               Step("mnist fast", ["mnist", "--recipe", "fast", *device] + (epochs if setup.dry else []), "mnist",
                    mnist, skipped=missing_mnist),
               # A small model's GPU step is launch-bound: CUDA graphs (reduce-overhead) are what can pay there.
               Step("mnist fast --compile reduce-overhead",
                    ["mnist", "--recipe", "fast", *device, "--compile", "--compile-mode", "reduce-overhead"]
                    + (epochs if setup.dry else []), "mnist", mnist, skipped=missing_mnist,
                    env={"TORCHDYNAMO_DISABLE": "1"} if setup.dry else None)]
    for model in ("quick", "resnet"):
        planned.append(Step(f"cifar {model}", ["cifar", "--model", model, "--data", str(setup.cifar), *device, *epochs],
                            "cifar", counts.get("cifar"),
                            skipped=None if setup.cifar else f"no CIFAR-10 under {setup.root}"))
    small = ["--image-size", "32", "--batch-size", "4"] if setup.dry else []
    for arch in ("resnet18", "resnet34"):
        for compiled in (False, True):
            arguments = ["transfer", "--weights", str(setup.weights[arch]), "--arch", arch, "--data",
                         str(setup.photos), *epochs, *device, *small] + ["--compile"] * compiled
            planned.append(Step(f"transfer {arch}{' --compile' if compiled else ''}", arguments, f"tutorial {arch}",
                                env={"TORCHDYNAMO_DISABLE": "1"} if compiled and setup.dry else None,
                                skipped=None if setup.photos else f"no photos at {setup.root}/hymenoptera_data"))
    small = ["--hidden", "16", "--layers", "1"] if setup.dry else []
    planned.append(Step("names-rnn", ["names-rnn", "--data", str(setup.names / "names_train.csv.gz"), "--test",
                                      str(setup.names / "names_test.csv.gz"), *device, *epochs, *small], "names",
                        counts.get("names")))
    planned.append(Step("to-gpu-bench", ["to-gpu-bench", "--device", setup.device] + (
        ["--quick", "--repeats", "1", "--matmul-size", "64", "--batch-size", "4"] if setup.dry else [])))
    processes = 2 if not setup.dry and torch.cuda.device_count() >= 2 else 1
    planned.append(Step(f"torchrun {processes} process(es), {'nccl' if setup.device == 'cuda' else 'gloo'}",
                        ["mnist", "--device", setup.device, "--epochs", "1"], images=mnist, skipped=missing_mnist,
                        launcher=[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                                  str(processes), "-m", "torchtools"]))
    return planned


def test_tier(setup: Setup) -> Row:
    """The fast tier with CUDA visible (the dry run: one quick file, to check the step)."""
    # The whole tier on the GPU (less this script's own dry run: the check itself runs it for real).
    selection = ["tests/test_devices.py", "-k", "prepare or autocast"] if setup.dry else [
        "--ignore", "tests/test_gpu_check.py"]
    completed, seconds = run_process([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                      *selection], setup, env={"TORCHTOOLS_SHARED_DATA": str(setup.root)},
                                     timeout=1800, cwd=REPO)
    summary = last_error(completed)
    return Row("tests (fast tier)", "ok" if completed.returncode == 0 else "failed", seconds, note=summary)


# --- the course loops, on the same device ---------------------------------------------------------------------
def course_loops(setup: Setup) -> tuple[dict[str, Row], dict[str, int]]:
    """One epoch of each course loop on the device: its images/s, and the training-set sizes."""
    from torchvision import transforms

    import vision
    from torchtools.core import output
    from torchtools.data.transforms import channel_stats
    from torchtools.data.vision import MNIST_MEAN, MNIST_STD, load_mnist
    from torchtools.models import cifar as cifar_models
    from torchtools.models import mnist as mnist_models

    output.configure(quiet=True, json=False)
    device = torch.device(setup.device)
    loops, counts = {}, {}

    def timed(name: str, loop, count: int) -> None:
        started = time.perf_counter()
        loop.train_epoch()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        accuracy = loop.test_accuracy() if hasattr(loop, "test_accuracy") else loop.test()
        loops[name] = Row(f"course loop: {name}", "ok", time.perf_counter() - started, 1, accuracy, count / seconds)

    if (setup.root / "MNIST" / "raw").is_dir():
        images = load_mnist("mnist", setup.root, download=False)
        counts["mnist"] = len(images.train_labels)
        course = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MNIST_MEAN, MNIST_STD)])
        timed("mnist", vision.CourseLoop(mnist_models.build("cnn"), vision.CourseDataset(
            images.train_images, images.train_labels, course), vision.CourseDataset(
            images.test_images, images.test_labels, course), 0.01, 0.5, 0, device), counts["mnist"])
    if setup.cifar is not None:
        images = cifar_images(setup.cifar)
        counts["cifar"] = len(images.train_labels)
        course = transforms.Compose([transforms.ToTensor(), transforms.Normalize(*channel_stats(images.train_images))])
        timed("cifar", vision.CourseLoop(cifar_models.build("quick", 10), vision.CourseDataset(
            images.train_images, images.train_labels, course), vision.CourseDataset(
            images.test_images, images.test_labels, course), 0.01, 0.0, 0, device), counts["cifar"])
    if setup.photos is not None:
        for arch in ("resnet18", "resnet34"):
            loop = TutorialLoop(setup.photos, setup.weights[arch], arch, device, size=32 if setup.dry else 224)
            timed(f"tutorial {arch}", loop, len(loop.train))
    import names

    loop = names.CourseLoop(setup.names, device=device)
    counts["names"] = len(loop.train)
    timed("names", loop, counts["names"])
    return loops, counts


def cifar_images(root: Path):
    from torchtools.data.folders import read_folders
    from torchtools.data.transforms import ImageFormat
    from torchtools.data.vision import load_cifar

    if (root / "cifar-10-batches-py").is_dir():
        return load_cifar("cifar10", root, download=False)
    fmt = ImageFormat(32, mean=(0.5,) * 3, std=(0.5,) * 3)  # cifar's own format: its decode cache is shared
    return read_folders(root, fmt.prepare, key=fmt.key, loader="memory", size=32)


class TutorialLoop:
    """The transfer-learning tutorial's loop: ImageFolder, per-sample transforms, DataLoader (batch 4, 4 workers,
    fewer on a smaller machine), SGD lr 0.001 momentum 0.9, the model and each batch moved to the device."""

    def __init__(self, photos: Path, weights: Path, arch: str, device: torch.device, size: int = 224):
        from torchvision import datasets, models, transforms

        normalise = transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        self.train = datasets.ImageFolder(photos / "train", transforms.Compose([
            transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalise]))
        self.val = datasets.ImageFolder(photos / "val", transforms.Compose([
            transforms.Resize(round(size * 256 / 224)), transforms.CenterCrop(size), transforms.ToTensor(), normalise]))
        model = models.get_model(arch, weights=None)
        model.load_state_dict(torch.load(weights, weights_only=True))
        model.fc = torch.nn.Linear(model.fc.in_features, len(self.train.classes))
        self.model, self.device = model.to(device), device
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
        self.loaders = {split: torch.utils.data.DataLoader(data, batch_size=4, shuffle=split == "train",
                                                           num_workers=min(4, os.cpu_count() or 1))
                        for split, data in (("train", self.train), ("val", self.val))}

    def train_epoch(self) -> float:
        started = time.perf_counter()
        self.model.train()
        for inputs, labels in self.loaders["train"]:
            inputs, labels = inputs.to(self.device), labels.to(self.device)
            self.optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(self.model(inputs), labels)
            loss.backward()
            self.optimizer.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - started

    @torch.no_grad()
    def test(self) -> float:
        self.model.eval()
        correct = 0
        for inputs, labels in self.loaders["val"]:
            correct += (self.model(inputs.to(self.device)).argmax(1).cpu() == labels).sum().item()
        return correct / len(self.val)


# --- report ---------------------------------------------------------------------------------------------------
def table(rows: list[Row]) -> str:
    def shown(value, width: int, spec: str) -> str:
        return f"{'-' if value is None else format(value, spec):>{width}}"

    lines = [f"{'step':34} {'status':8} {'seconds':>8} {'epochs':>6} {'accuracy':>8} {'images/s':>10} "
             f"{'ratio':>6}  note"]
    for row in rows:
        ratio = None if row.ratio is None else f"{row.ratio:.2f}x"
        lines.append(f"{row.step:34} {row.status:8} {shown(row.seconds, 8, '.1f')} {shown(row.epochs, 6, 'd')} "
                     f"{shown(row.accuracy, 8, '.4f')} {shown(row.images_per_s, 10, ',.0f')} {shown(ratio, 6, 's')}"
                     f"  {row.note}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="every step at tiny sizes on the CPU")
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON into this folder")
    parser.add_argument("--data", default=None, help="the data root (default $TORCHTOOLS_DATA, else ../shared/data)")
    parser.add_argument("--weights-dir", default=None, help="folder holding torchvision's resnet18.pth, resnet34.pth")
    parser.add_argument("--work", default=None, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--skip-tests", action="store_true", help="leave out the test tier")
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA device here: run with --dry-run to check the script on the CPU", file=sys.stderr)
        return 2
    setup = set_up(args)
    started = time.perf_counter()
    rows = [] if args.skip_tests else [test_tier(setup)]
    loops, counts = course_loops(setup)
    planned = steps(setup, counts)
    # On the GPU one at a time, so each is timed alone; the dry run's tiny steps side by side.
    with ThreadPoolExecutor(max_workers=3 if setup.dry else 1) as pool:
        done = list(pool.map(lambda step: run_step(step, setup), planned))
    for step, row in zip(planned, done):
        if row.images_per_s and step.course in loops:
            row.ratio = row.images_per_s / loops[step.course].images_per_s
            row.note = (row.note + f" vs {loops[step.course].step}").strip()
    rows += done + list(loops.values())
    device = "cpu (dry run)" if args.dry_run else torch.cuda.get_device_name(0)
    title = f"torchtools GPU check on {device}, torch {torch.__version__}, {time.perf_counter() - started:.0f} s"
    print(title + "\n" + table(rows))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(json.dumps(
            {"title": title, "device": device, "dry_run": args.dry_run, "rows": [asdict(row) for row in rows]},
            indent=2))
    return 0 if all(row.status != "failed" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
