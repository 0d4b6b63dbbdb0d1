"""mnist: the course's four MNIST networks on MNIST, Fashion-MNIST or KMNIST, trained from memory."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torchtools import recipes
from torchtools.core.command import command
from torchtools.core.config import DEPENDS, Setting
from torchtools.core.options import DATA
from torchtools.recipes import DatasetRecipeSettings

if TYPE_CHECKING:
    from torchtools.core.run import Run


@dataclass(frozen=True, kw_only=True)
class MnistConfig(DatasetRecipeSettings):
    TASK = "mnist"

    model: str = Setting(
        "--model", choices=("mlp", "cnn", "inception", "resnet", "fast"),
        help="mlp: 784-512-256-128-64-10; cnn: two conv + fc 320; inception: two InceptionA, fc 1408; "
             "resnet: two residual blocks, fc 512 (the course's networks); fast: the course CNN with BatchNorm, "
             "conv 16/32.")(DEPENDS)
    dataset: str = Setting("--dataset", choices=("mnist", "fashion-mnist", "kmnist"),
                           help="Which 28x28 ten-class set.")("mnist")
    data: Path | None = dataclasses.replace(
        DATA, help="Dataset root: the IDX files (plain or .gz) go in DATA/MNIST/raw, DATA/FashionMNIST/raw or "
                   "DATA/KMNIST/raw. Default: $TORCHTOOLS_DATA, else data/.")()

    def data_reads(self) -> list:
        from torchtools.data import reads

        return reads.mnist_reads(self)


@command("mnist", MnistConfig)
def mnist(run: Run[MnistConfig]) -> None:
    """Classify handwritten digits (or clothes, or kana) with the course's networks; predict your own images.

    --recipe course (the default) is the course's lesson; --recipe fast is the quickest measured to 99%
    (each option's help names both recipes' values). The data stays in memory as one tensor on the device.
    """
    from torchtools.flows import image_classifier as classifier
    from torchtools.core.output import say
    from torchtools.data import roots
    from torchtools.data.transforms import ImageFormat
    from torchtools.data.vision import MNIST_MEAN, MNIST_STD, load_mnist

    config = run.config
    if run.trains:
        say(recipes.describe(config))
    pictures = classifier.pictures(run)
    fmt = classifier.saved_format(run, ImageFormat(28, MNIST_MEAN, MNIST_STD, grayscale=True, augment=config.augment,
                                                   invert_light_background=True))
    images = None
    if classifier.needs_data(run, pictures):
        images = load_mnist(config.dataset, config.data or roots.default_root(), download=config.download)
        if config.dataset == "mnist":
            images.classes = [str(digit) for digit in range(10)]  # "7", not torchvision's "7 - seven"
        classifier.describe(images, "test")
    classifier.train_evaluate_predict(run, build_model(config, {}), images, fmt, pictures, model=config.model,
                                      dataset=config.dataset)


def build_model(config: MnistConfig, state: dict):
    """The network an mnist config describes (its ten classes need no state)."""
    from torchtools.models.mnist import build

    return build(config.model)
