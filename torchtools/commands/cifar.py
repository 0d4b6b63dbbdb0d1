"""cifar: the notes' CIFAR-10 model, or a ResNet-9, on CIFAR-10/100 batches or an image-folder layout."""

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
    quick = "quick"
    resnet = "resnet"
    fast = "fast"


class Dataset(str, Enum):
    cifar10 = "cifar10"
    cifar100 = "cifar100"


IMAGE_SIZE = 32
IMAGE_FOLDERS = "images"  # the config's dataset name for a train/ + test/ folder layout


@dataclass(frozen=True)
class CifarConfig(RecipeConfig):
    model: str
    dataset: str


@command("cifar", options.TRAINING_RUN + ("amp", "compile", "save_every"))
def cifar(
    recipe: options.Recipe = options.RecipeName.course,
    model: Annotated[Optional[Model], typer.Option(
        help="quick: the notes' conv-pool x3 + linear model; resnet: ResNet-9 (with --recipe course: shifts + "
             "flips, label smoothing 0.2, one-cycle to lr 0.4, batch 512); fast: an airbench-style conv-BN net. "
             "Default: quick.", show_default=False)] = None,
    dataset: Annotated[Dataset, typer.Option(
        help="CIFAR batches under --data (ignored when --data holds train/ and test/ image folders).")
    ] = Dataset.cifar10,
    data: Annotated[Optional[Path], typer.Option(
        "--data", help="Dataset root (DATA/cifar-10-batches-py, DATA/cifar-100-python), or a folder holding "
                       "train/<class>/* and test/<class>/* images. Default: $TORCHTOOLS_DATA, else data/.",
        show_default=False)] = None,
    download: options.Download = True,
    predict: options.PredictImages = None,
    output: options.PredictOutput = None,
    top_k: options.TopK = 3,
    loader: options.Loader = options.LoaderName.auto,
    epochs: options.RecipeEpochs = None,
    batch_size: options.RecipeBatchSize = None,
    lr: options.RecipeLearningRate = None,
    optimizer: options.RecipeOptimizer = None,
    momentum: options.RecipeMomentum = None,
    *,
    run,
) -> None:
    """Classify 32x32 colour images: CIFAR-10/100 or your own train/ and test/ image folders.

    Images are read once into a uint8 tensor on the device (image folders are decoded with OpenCV,
    unreadable files skipped, and cached under ~/.cache/torchtools); normalising and augmenting run on
    whole batches.
    """
    from torchtools import recipes
    from torchtools.commands import image_classifier as classifier
    from torchtools.core.engine import make_optimizer
    from torchtools.core.output import say
    from torchtools.data import roots
    from torchtools.data.folders import read_folders
    from torchtools.data.transforms import ImageFormat, channel_stats
    from torchtools.data.vision import load_cifar
    from torchtools.models.cifar import build

    layout, root = roots.cifar_source(data, dataset.value)
    folders = layout == "images"
    # The course recipe of ResNet-9 is its own (cifar-resnet); every other model takes the recipe's values.
    task = "cifar-resnet" if recipe is options.RecipeName.course and model is Model.resnet else "cifar"
    config = run.config(CifarConfig(recipe=recipe.value, dataset=IMAGE_FOLDERS if folders else dataset.value,
                                    **recipes.values(task, recipe.value, model=model and model.value, epochs=epochs,
                                                     batch_size=batch_size, lr=lr, momentum=momentum,
                                                     optimizer=optimizer and optimizer.value)))
    say(recipes.describe(task, config.recipe, config))
    pictures = classifier.pictures(predict, output)
    fmt = ImageFormat(IMAGE_SIZE, mean=(0.5,) * 3, std=(0.5,) * 3, augment=config.augment)
    images = None
    if run.trains or not pictures:
        images = (read_folders(root, fmt.prepare, key=fmt.key, loader=loader.value, size=IMAGE_SIZE) if folders
                  else load_cifar(config.dataset, root, download=download))
        classifier.describe(images, "test")
        if run.trains:
            mean, std = channel_stats(classifier.training_sample(images, fmt))
            fmt = ImageFormat(IMAGE_SIZE, mean=mean, std=std, augment=config.augment)
    fmt = classifier.saved_format(run, fmt)
    classes = images.classes if images is not None else classifier.saved_classes(run)
    network = build(config.model, len(classes))
    outcome = classifier.fit_or_evaluate(
        run, config, network, images, fmt, label_smoothing=config.label_smoothing,
        optimizer=lambda parameters: make_optimizer(config.optimizer, parameters, config.lr, config.momentum,
                                                    config.weight_decay),
        schedule=lambda optimizer, steps: recipes.scheduler(config, optimizer, steps))
    predicted = classifier.predict(network, pictures, classes, fmt, run.device, output=output, top_k=top_k)
    run.finish(outcome.result, metrics=outcome.metrics, model=config.model, dataset=config.dataset, classes=classes,
               per_class_accuracy=outcome.per_class_accuracy, confusion_matrix=outcome.confusion_matrix,
               **predicted)
