"""mnist: the course's four MNIST networks on MNIST, Fashion-MNIST or KMNIST, trained from memory."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from torchtools.core import options
from torchtools.core.command import command
from torchtools.core.config import RecipeConfig


class Model(str, Enum):
    mlp = "mlp"
    cnn = "cnn"
    inception = "inception"
    resnet = "resnet"
    fast = "fast"


class Dataset(str, Enum):
    mnist = "mnist"
    fashion_mnist = "fashion-mnist"
    kmnist = "kmnist"


@dataclass(frozen=True)
class MnistConfig(RecipeConfig):
    model: str
    dataset: str


@command("mnist", options.TRAINING_RUN + ("amp", "compile", "save_every"))
def mnist(
    recipe: options.Recipe = options.RecipeName.course,
    model: Annotated[Optional[Model], typer.Option(
        help="mlp: 784-512-256-128-64-10; cnn: two conv + fc 320; inception: two InceptionA, fc 1408; "
             "resnet: two residual blocks, fc 512 (the course's networks); fast: the course CNN with BatchNorm, "
             "conv 16/32. Default: cnn (course), fast (fast).", show_default=False)] = None,
    dataset: Annotated[Dataset, typer.Option(help="Which 28x28 ten-class set.")] = Dataset.mnist,
    data: Annotated[Optional[Path], typer.Option(
        "--data", help="Dataset root: the IDX files (plain or .gz) go in DATA/MNIST/raw, DATA/FashionMNIST/raw "
                       "or DATA/KMNIST/raw. Default: $TORCHTOOLS_DATA, else data/.",
        show_default=False)] = None,
    download: options.Download = True,
    predict: options.PredictImages = None,
    output: options.PredictOutput = None,
    top_k: options.TopK = 3,
    epochs: options.RecipeEpochs = None,
    batch_size: options.RecipeBatchSize = None,
    lr: options.RecipeLearningRate = None,
    optimizer: options.RecipeOptimizer = None,
    momentum: options.RecipeMomentum = None,
    *,
    run,
) -> None:
    """Classify handwritten digits (or clothes, or kana) with the course's networks; predict your own images.

    --recipe course (the default) is the course's: cnn, batch 64, SGD lr 0.01 momentum 0.5, normalise
    (0.1307, 0.3081), 10 epochs. --recipe fast: the fast CNN, batch 256, SGD one-cycle to lr 0.4, 2 epochs
    (99.0% in about 5 s of training on 2 CPU cores). The data stays in memory as one tensor on the device.
    """
    from torchtools import recipes
    from torchtools.commands import image_classifier as classifier
    from torchtools.core.engine import make_optimizer
    from torchtools.core.output import say
    from torchtools.data import roots
    from torchtools.data.transforms import ImageFormat
    from torchtools.data.vision import MNIST_MEAN, MNIST_STD, load_mnist
    from torchtools.models.mnist import build

    config = run.config(MnistConfig(recipe=recipe.value, dataset=dataset.value, **recipes.values(
        "mnist", recipe.value, model=model and model.value, epochs=epochs, batch_size=batch_size, lr=lr,
        optimizer=optimizer and optimizer.value, momentum=momentum)))
    say(recipes.describe("mnist", config.recipe, config))
    pictures = classifier.pictures(predict, output)
    fmt = classifier.saved_format(run, ImageFormat(28, MNIST_MEAN, MNIST_STD, grayscale=True, augment=config.augment,
                                                   invert_light_background=True))
    images = None
    if run.trains or not pictures:
        images = load_mnist(config.dataset, data or roots.default_root(), download=download)
        if config.dataset == Dataset.mnist.value:
            images.classes = [str(digit) for digit in range(10)]  # "7", not torchvision's "7 - seven"
        classifier.describe(images, "test")
    network = build(config.model)
    outcome = classifier.fit_or_evaluate(
        run, config, network, images, fmt, label_smoothing=config.label_smoothing,
        optimizer=lambda parameters: make_optimizer(config.optimizer, parameters, config.lr, config.momentum,
                                                    config.weight_decay),
        schedule=lambda optimizer, steps: recipes.scheduler(config, optimizer, steps))
    classes = images.classes if images is not None else classifier.saved_classes(run)
    predicted = classifier.predict(network, pictures, classes, fmt, run.device, output=output, top_k=top_k)
    run.finish(outcome.result, metrics=outcome.metrics, model=config.model, dataset=config.dataset, classes=classes,
               per_class_accuracy=outcome.per_class_accuracy, confusion_matrix=outcome.confusion_matrix,
               **predicted)
