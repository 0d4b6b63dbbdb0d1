"""mnist: the course's four MNIST networks on MNIST, Fashion-MNIST or KMNIST, trained from memory."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from torchtools.core import options


class Model(str, Enum):
    mlp = "mlp"
    cnn = "cnn"
    inception = "inception"
    resnet = "resnet"


class Dataset(str, Enum):
    mnist = "mnist"
    fashion_mnist = "fashion-mnist"
    kmnist = "kmnist"


def mnist(
    model: Annotated[Model, typer.Option(
        help="mlp: 784-512-256-128-64-10; cnn: two conv + fc 320; inception: two InceptionA, fc 1408; "
             "resnet: two residual blocks, fc 512 (the course's networks).")] = Model.cnn,
    dataset: Annotated[Dataset, typer.Option(help="Which 28x28 ten-class set (torchvision).")] = Dataset.mnist,
    data: Annotated[Optional[Path], typer.Option(
        "--data", help="Dataset root: the IDX files (plain or .gz) go in DATA/MNIST/raw, DATA/FashionMNIST/raw "
                       "or DATA/KMNIST/raw. Default: $TORCHTOOLS_DATA, else data/.",
        show_default=False)] = None,
    download: options.Download = True,
    predict: options.PredictImages = None,
    epochs: options.Epochs = 10,
    batch_size: options.BatchSize = 64,
    lr: options.LearningRate = 0.01,
    optimizer: options.Optimizer = options.OptimizerName.sgd,
    momentum: options.Momentum = 0.5,
    seed: options.Seed = 0,
    device: options.Device = "auto",
    amp: options.Amp = True,
    save: options.Save = None,
    save_every: options.SaveEvery = 0,
    checkpoint: options.Checkpoint = None,
    resume: options.Resume = None,
    runs_dir: options.RunsDir = Path("runs"),
    no_tensorboard: options.NoTensorboard = False,
    quiet: options.Quiet = False,
    json: options.Json = False,
) -> None:
    """Classify handwritten digits (or clothes, or kana) with the course's networks; predict your own images.

    The defaults are the course's: batch 64, SGD lr 0.01 momentum 0.5, normalise (0.1307, 0.3081),
    10 epochs. The data stays in memory as one tensor on the device, so an epoch is much faster than
    the course's DataLoader loop with the same numbers.
    """
    from torchtools.core import image_classifier as classifier
    from torchtools.core.checkpoints import open_tensorboard
    from torchtools.data.vision import MNIST_MEAN, MNIST_STD, load_mnist
    from torchtools.models.mnist import build
    from torchtools.core.run import Session

    session = Session.start("mnist", device=device, seed=seed, json=json, quiet=quiet)
    root = data or options.default_data_root()

    def load_images(config):
        images = load_mnist(config["dataset"], root, download=download)
        if config["dataset"] == Dataset.mnist.value:
            images.classes = [str(digit) for digit in range(10)]  # "7", not torchvision's "7 - seven"
        return images

    task = classifier.Task("mnist", build=lambda config: build(config["model"]), load_images=load_images,
                           stats=lambda images: (MNIST_MEAN, MNIST_STD), image_size=28, grayscale=True,
                           invert_light_background=True)
    recipe = classifier.Recipe(batch_size=batch_size, optimizer=optimizer.value, lr=lr, momentum=momentum)
    config = {"model": model.value, "dataset": dataset.value, "epochs": epochs, "batch_size": batch_size,
              "lr": lr, "optimizer": optimizer.value, "momentum": momentum, "seed": seed}
    writer = None if checkpoint else open_tensorboard(runs_dir, "mnist", enabled=not no_tensorboard)
    classifier.run(task, session, config=config, recipe=recipe, epochs=epochs, amp=amp, seed=seed,
                   predict=predict, checkpoint=checkpoint, resume=resume, save=save, save_every=save_every,
                   writer=writer, quiet=quiet)
