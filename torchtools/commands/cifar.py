"""cifar: the notes' CIFAR-10 model, or a ResNet-9, on CIFAR-10/100 batches or an image-folder layout."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torchtools import recipes
from torchtools.core.command import command
from torchtools.core.config import DEPENDS, Setting
from torchtools.core.options import DATA, LOADER
from torchtools.data.labels_settings import LabelsCsvSettings
from torchtools.recipes import DatasetRecipeSettings

if TYPE_CHECKING:
    from torchtools.core.run import Run

IMAGE_SIZE = 32
IMAGE_FOLDERS = "images"  # the summary's dataset name for a train/ + test/ folder layout


@dataclass(frozen=True, kw_only=True)
class CifarConfig(DatasetRecipeSettings, LabelsCsvSettings):
    TASK = "cifar"

    model: str = Setting(
        "--model", choices=("quick", "resnet", "fast"),
        help="quick: the notes' conv-pool x3 + linear model; resnet: ResNet-9 (with --recipe course, a recipe of its "
             "own: README, \"Recipes\"); fast: an airbench-style conv-BN net.")(DEPENDS)
    dataset: str = Setting(
        "--dataset", choices=("cifar10", "cifar100"),
        help="CIFAR batches under --data (ignored when --data holds train/ and test/ image folders).")("cifar10")
    data: Path | None = dataclasses.replace(
        DATA, help="Dataset root (DATA/cifar-10-batches-py, DATA/cifar-100-python), or a folder holding "
                   "train/<class>/* and test/<class>/* images. Default: $TORCHTOOLS_DATA, else data/.")()
    loader: str = LOADER("auto")

    @classmethod
    def recipe_task(cls, values: dict) -> str:
        """The course recipe of ResNet-9 is its own; every other model takes the recipe's values."""
        return "cifar-resnet" if values["recipe"] == "course" and values.get("model") == "resnet" else "cifar"

    def data_reads(self) -> list:
        from torchtools.data import reads

        return reads.cifar_reads(self)


@command("cifar", CifarConfig)
def cifar(run: Run[CifarConfig]) -> None:
    """Classify 32x32 colour images: CIFAR-10/100 or your own train/ and test/ image folders.

    Images are read once into a uint8 tensor on the device (image folders are decoded with OpenCV,
    unreadable files skipped, and cached under ~/.cache/torchtools); normalising and augmenting run on
    whole batches.
    """
    from torchtools.flows import image_classifier as classifier
    from torchtools.core.output import say
    from torchtools.data import labels_csv, roots
    from torchtools.data.folders import read_folders
    from torchtools.data.transforms import ImageFormat, channel_stats
    from torchtools.data.vision import load_cifar

    config = run.config
    root, listing = labels_csv.from_settings(config, config.data)
    layout, root = ("images", root) if listing is not None else roots.cifar_source(config.data, config.dataset)
    folders = layout == "images"
    if run.trains:
        say(recipes.describe(config))
    pictures = classifier.pictures(run)
    fmt = ImageFormat(IMAGE_SIZE, mean=(0.5,) * 3, std=(0.5,) * 3, augment=config.augment)
    images = None
    if classifier.needs_data(run, pictures):
        images = (read_folders(root, fmt.prepare, key=fmt.key, loader=config.loader, size=IMAGE_SIZE, seed=config.seed,
                               listing=listing and listing.as_tuple(), device=run.device, max_pixels=config.max_pixels)
                  if folders
                  else load_cifar(config.dataset, root, download=config.download))
        if listing is not None:
            listing.add_missing(images)
        classifier.describe(images, "test")
        if run.trains:
            mean, std = channel_stats(classifier.training_sample(images, fmt))
            fmt = ImageFormat(IMAGE_SIZE, mean=mean, std=std, augment=config.augment)
    fmt = classifier.saved_format(run, fmt)
    classes = images.classes if images is not None else classifier.saved_classes(run)
    classifier.train_evaluate_predict(run, build_model(config, {"classes": classes}), images, fmt, pictures,
                                      model=config.model, dataset=IMAGE_FOLDERS if folders else config.dataset)


def build_model(config: CifarConfig, state: dict):
    """The network a cifar config describes, for `state`'s classes."""
    from torchtools.models.cifar import build

    return build(config.model, len(state["classes"]))
