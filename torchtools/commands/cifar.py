"""cifar: the notes' CIFAR-10 model, or a ResNet-9, on CIFAR-10/100 batches or an image-folder layout."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from torchtools.core import options
from torchtools.core.command import command
from torchtools.core.config import Config


class Model(str, Enum):
    quick = "quick"
    resnet = "resnet"


class Dataset(str, Enum):
    cifar10 = "cifar10"
    cifar100 = "cifar100"


IMAGE_SIZE = 32
IMAGE_FOLDERS = "images"  # the config's dataset name for a train/ + test/ folder layout

# Per-model training defaults. quick: the notes' recipe (plain SGD lr 0.01, batch 64, no augmentation).
# resnet: the ResNet-9 recipe (one-cycle to lr 0.4, momentum 0.9, weight decay 5e-4, label smoothing 0.2,
# 4-pixel shifts + flips), for a strong CIFAR-10 result.
RECIPES = {
    Model.quick: dict(batch_size=64, lr=0.01, momentum=0.0, weight_decay=0.0, label_smoothing=0.0,
                      one_cycle=False, augment="none"),
    Model.resnet: dict(batch_size=512, lr=0.4, momentum=0.9, weight_decay=5e-4, label_smoothing=0.2,
                       one_cycle=True, augment="shift-flip"),
}


@dataclass(frozen=True)
class CifarConfig(Config):
    model: str
    dataset: str
    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    momentum: float
    weight_decay: float
    label_smoothing: float
    one_cycle: bool  # lr rises to `lr` then anneals, stepped every batch
    augment: str  # none | shift-flip

    def resumable(self) -> frozenset[str]:
        """A one-cycle schedule is laid out over all epochs: their number is fixed once training starts."""
        return frozenset() if self.one_cycle else super().resumable()


@command("cifar", options.TRAINING_RUN + ("amp", "save_every"))
def cifar(
    model: Annotated[Model, typer.Option(
        help="quick: the notes' conv-pool x3 + linear model; resnet: ResNet-9 with augmentation, label "
             "smoothing and a one-cycle schedule.")] = Model.quick,
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
    epochs: options.Epochs = 10,
    batch_size: Annotated[Optional[int], typer.Option(
        "--batch-size", "-b", min=1, help="Samples per batch. Default: 64 (quick), 512 (resnet).",
        show_default=False, rich_help_panel=options.TRAINING)] = None,
    lr: Annotated[Optional[float], typer.Option(
        "--lr", min=0.0, help="Learning rate (resnet: the one-cycle peak). Default: 0.01 (quick), 0.4 (resnet).",
        show_default=False, rich_help_panel=options.TRAINING)] = None,
    optimizer: options.Optimizer = options.OptimizerName.sgd,
    momentum: Annotated[Optional[float], typer.Option(
        "--momentum", min=0.0, help="SGD momentum. Default: 0 (quick), 0.9 (resnet).", show_default=False,
        rich_help_panel=options.TRAINING)] = None,
    *,
    run,
) -> None:
    """Classify 32x32 colour images: CIFAR-10/100 or your own train/ and test/ image folders.

    Images are read once into a uint8 tensor on the device (image folders are decoded with OpenCV,
    unreadable files skipped, and cached under ~/.cache/torchtools); normalising and augmenting run on
    whole batches.
    """
    import torch

    from torchtools.core import image_classifier as classifier
    from torchtools.core.engine import make_optimizer
    from torchtools.data import roots
    from torchtools.data.folders import read_folders
    from torchtools.data.transforms import ImageFormat, channel_stats
    from torchtools.data.vision import load_cifar
    from torchtools.models.cifar import build

    layout, root = roots.cifar_source(data, dataset.value)
    folders = layout == "images"
    given = {"batch_size": batch_size, "lr": lr, "momentum": momentum}
    config = run.config(CifarConfig(model.value, IMAGE_FOLDERS if folders else dataset.value, epochs,
                                    optimizer=optimizer.value, **{**RECIPES[model], **{
                                        name: value for name, value in given.items() if value is not None}}))
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

    def one_cycle(optimizer, steps_per_epoch):
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, pct_start=0.25,
                                                   total_steps=config.epochs * steps_per_epoch), True

    outcome = classifier.fit_or_evaluate(
        run, config, network, images, fmt, label_smoothing=config.label_smoothing,
        optimizer=lambda parameters: make_optimizer(config.optimizer, parameters, config.lr, config.momentum,
                                                    config.weight_decay),
        schedule=one_cycle if config.one_cycle else None)
    predicted = classifier.predict(network, pictures, classes, fmt, run.device, output=output, top_k=top_k)
    run.finish(outcome.result, metrics=outcome.metrics, model=config.model, dataset=config.dataset, classes=classes,
               per_class_accuracy=outcome.per_class_accuracy, confusion_matrix=outcome.confusion_matrix,
               **predicted)
