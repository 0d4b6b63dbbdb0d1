"""Time torchtools' vision fast path against the course's DataLoader loop, in one run, on the real data.

Reference (the course's way): a dataset doing what torchvision's MNIST/CIFAR10 do per sample (uint8 array
-> PIL image) + per-sample ToTensor/Normalize + DataLoader(batch 64,
shuffle) + the lesson's training loop. torchtools: the same model, optimizer, batch size and epochs,
with the data as one uint8 tensor on the device, batch normalisation, channels_last and the engine.
The two alternate epoch by epoch, so both see the same machine load.

    .venv/bin/python benchmarks/vision.py --task mnist --epochs 3
    .venv/bin/python benchmarks/vision.py --task cifar --epochs 2 --cifar-batches /tmp/cifar-batches

MNIST reads DATA/MNIST/raw (the four IDX .gz files). CIFAR-10 needs the pickle batches: build them from
the JPEG tar with ../shared/tools/cifar10_jpg_to_batches.py (into /tmp, never into the repository).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from torchtools.flows import image_classifier as classifier
from torchtools.core import output
from torchtools.core.engine import Objective, evaluate, train_one_epoch
from torchtools.core.optim import make_optimizer
from torchtools.core.options import Hyperparameters
from torchtools.core.run import seed_everything
from torchtools.data.transforms import ImageFormat, channel_stats
from torchtools.data.vision import MNIST_MEAN, MNIST_STD, load_cifar, load_mnist
from torchtools.models import cifar as cifar_models
from torchtools.models import mnist as mnist_models

REPO = Path(__file__).resolve().parents[1]


class CourseDataset(Dataset):
    """torchvision's MNIST/CIFAR10 __getitem__ over tensors already read (its classes would unpickle the
    batches unrestricted and want MNIST's IDX files unpacked): uint8 image -> PIL -> transform."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        image = self.images[index]
        pixels = image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()
        return self.transform(Image.fromarray(pixels)), int(self.labels[index])


class CourseLoop:
    """The lesson's code: DataLoader over a torchvision dataset, per-sample transforms, SGD; on a GPU each
    batch is moved there as the lesson does (`.to(device)`)."""

    def __init__(self, model, train_set, test_set, lr, momentum, seed, device=torch.device("cpu")):
        self.device = torch.device(device)
        self.model = model.to(self.device)
        generator = torch.Generator().manual_seed(seed)
        self.train_loader = DataLoader(train_set, batch_size=64, shuffle=True, generator=generator)
        self.test_loader = DataLoader(test_set, batch_size=64, shuffle=False)
        self.criterion = torch.nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)

    def train_epoch(self) -> float:
        self.model.train()
        started = time.perf_counter()
        running_loss = 0.0
        for inputs, target in self.train_loader:
            inputs, target = inputs.to(self.device), target.to(self.device)
            self.optimizer.zero_grad()
            loss = self.criterion(self.model(inputs), target)
            loss.backward()
            self.optimizer.step()
            running_loss += loss.item()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - started

    @torch.no_grad()
    def test(self) -> float:
        self.model.eval()
        correct = total = 0
        for images, labels in self.test_loader:
            images, labels = images.to(self.device), labels.to(self.device)
            predicted = self.model(images).argmax(dim=1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
        return correct / total


class FastPath:
    """torchtools' way: classifier.batches + the engine's train_one_epoch/evaluate."""

    def __init__(self, model, images, fmt: ImageFormat, lr, momentum, seed, device=torch.device("cpu")):
        device = self.device = torch.device(device)
        self.model = classifier.prepare_model(model, device)
        self.train_batches, self.test_batches = classifier.batches(images.to(device), fmt, device, batch_size=64,
                                                                   seed=seed)
        self.optimizer = make_optimizer(Hyperparameters(optimizer="sgd", lr=lr, momentum=momentum), model.parameters())
        self.objective = Objective.classification()
        self.epoch = 0

    def train_epoch(self) -> float:
        self.epoch += 1
        started = time.perf_counter()
        train_one_epoch(self.model, self.objective, self.optimizer, self.train_batches, device=self.device,
                        epoch=self.epoch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - started

    def test(self) -> float:
        return evaluate(self.model, self.objective, self.test_batches, self.device).accuracy


def mnist_pair(data: Path, model_name: str, seed: int):
    load_started = time.perf_counter()
    images = load_mnist("mnist", data, download=False)
    load_seconds = time.perf_counter() - load_started
    course = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MNIST_MEAN, MNIST_STD)])
    train_set = CourseDataset(images.train_images, images.train_labels, course)
    test_set = CourseDataset(images.test_images, images.test_labels, course)
    seed_everything(seed)
    reference = CourseLoop(mnist_models.build(model_name), train_set, test_set, 0.01, 0.5, seed)
    seed_everything(seed)
    fast = FastPath(mnist_models.build(model_name), images, ImageFormat(28, MNIST_MEAN, MNIST_STD, grayscale=True),
                    0.01, 0.5, seed)
    return reference, fast, len(images.train_labels), load_seconds


def cifar_pair(batches_root: Path, seed: int):
    load_started = time.perf_counter()
    images = load_cifar("cifar10", batches_root, download=False)
    mean, std = channel_stats(images.train_images)
    load_seconds = time.perf_counter() - load_started
    course = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    train_set = CourseDataset(images.train_images, images.train_labels, course)
    test_set = CourseDataset(images.test_images, images.test_labels, course)
    seed_everything(seed)
    reference = CourseLoop(cifar_models.build("quick"), train_set, test_set, 0.01, 0.0, seed)
    seed_everything(seed)
    fast = FastPath(cifar_models.build("quick"), images, ImageFormat(32, mean, std), 0.01, 0.0, seed)
    return reference, fast, len(images.train_labels), load_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["mnist", "cifar"], required=True)
    parser.add_argument("--model", default="cnn", help="mnist: mlp, cnn, inception or resnet (default cnn)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--cifar-batches", type=Path, default=Path("/tmp/cifar-batches"),
                        help="root holding cifar-10-batches-py (built from the JPEG tar)")
    args = parser.parse_args()

    output.configure(quiet=True, json=False)  # the engine's progress lines would interleave with the table
    if args.task == "mnist":
        reference, fast, samples, load_seconds = mnist_pair(args.data, args.model, args.seed)
        title = f"MNIST, course {args.model}, SGD lr 0.01 momentum 0.5, batch 64"
    else:
        reference, fast, samples, load_seconds = cifar_pair(args.cifar_batches, args.seed)
        title = "CIFAR-10, the notes' quick model, SGD lr 0.01, batch 64"
    print(f"{title}; torch threads {torch.get_num_threads()}; torchtools data load {load_seconds:.1f}s")
    print(f"{'epoch':>5} {'course s':>9} {'torchtools s':>13} {'ratio':>6} {'course acc':>11} {'torchtools acc':>15}")
    totals = {"course": 0.0, "torchtools": 0.0}
    accuracy = {}
    for epoch in range(1, args.epochs + 1):
        seconds = {"course": reference.train_epoch(), "torchtools": fast.train_epoch()}
        accuracy = {"course": reference.test(), "torchtools": fast.test()}
        for name in totals:
            totals[name] += seconds[name]
        print(f"{epoch:>5} {seconds['course']:>9.2f} {seconds['torchtools']:>13.2f} "
              f"{seconds['course'] / seconds['torchtools']:>5.2f}x {accuracy['course']:>11.4f} "
              f"{accuracy['torchtools']:>15.4f}")
    for name in totals:
        per_epoch = totals[name] / args.epochs
        print(f"{name:>10}: {per_epoch:.2f} s/epoch, {samples / per_epoch:,.0f} images/s, "
              f"test accuracy {accuracy[name]:.4f} after {args.epochs} epochs")
    print(f"speed ratio (course / torchtools per epoch): {totals['course'] / totals['torchtools']:.2f}x; "
          f"accuracy difference {100 * (accuracy['torchtools'] - accuracy['course']):+.2f} points")


if __name__ == "__main__":
    main()
