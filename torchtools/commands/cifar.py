"""cifar: the notes' CIFAR-10 model, or a ResNet-9, on torchvision's CIFAR or an image-folder layout."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from torchtools.core import options


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
# random crop + flip), for a strong CIFAR-10 result.
RECIPES = {
    Model.quick: dict(batch_size=64, lr=0.01, momentum=0.0),
    Model.resnet: dict(batch_size=512, lr=0.4, momentum=0.9, weight_decay=5e-4, label_smoothing=0.2,
                       one_cycle=True, crop_padding=4, flip=True),
}


def cifar(
    model: Annotated[Model, typer.Option(
        help="quick: the notes' conv-pool x3 + linear model; resnet: ResNet-9 with augmentation, label "
             "smoothing and a one-cycle schedule.")] = Model.quick,
    dataset: Annotated[Dataset, typer.Option(
        help="torchvision's CIFAR under --data (ignored when --data holds train/ and test/ image folders).")
    ] = Dataset.cifar10,
    data: Annotated[Optional[Path], typer.Option(
        "--data", help="Dataset root for torchvision (DATA/cifar-10-batches-py, DATA/cifar-100-python), or a "
                       "folder holding train/<class>/* and test/<class>/* images. Default: $TORCHTOOLS_DATA, "
                       "else data/.", show_default=False)] = None,
    download: options.Download = True,
    predict: options.PredictImages = None,
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
    """Classify 32x32 colour images: CIFAR-10/100 or your own train/ and test/ image folders.

    Images are read once into a uint8 tensor on the device (image folders are decoded with OpenCV and
    cached as DIR/<split>/.torchtools-cache-32.pt); normalising and augmenting run on whole batches.
    """
    from torchtools.core import image_classifier as classifier
    from torchtools.core.checkpoints import open_tensorboard
    from torchtools.data.vision import channel_stats, is_image_folder_split, load_cifar, load_image_folders
    from torchtools.models.cifar import build
    from torchtools.core.run import Session

    session = Session.start("cifar", device=device, seed=seed, json=json, quiet=quiet)
    root = data or options.default_data_root()

    def load_images(config):
        if config["dataset"] == IMAGE_FOLDERS:
            return load_image_folders(data or Path(config["data"]), IMAGE_SIZE)
        return load_cifar(config["dataset"], root, download=download)

    recipe = classifier.Recipe(optimizer=optimizer.value, **{
        **RECIPES[model],
        **{name: value for name, value in (("batch_size", batch_size), ("lr", lr), ("momentum", momentum))
           if value is not None}})
    folders = is_image_folder_split(root)
    config = {"model": model.value, "dataset": IMAGE_FOLDERS if folders else dataset.value,
              "data": str(root.resolve()) if folders else None, "epochs": epochs, "batch_size": recipe.batch_size,
              "lr": recipe.lr, "optimizer": recipe.optimizer, "momentum": recipe.momentum, "seed": seed}
    task = classifier.Task("cifar", build=lambda config: build(config["model"], config["num_classes"]),
                           load_images=load_images, stats=lambda images: channel_stats(images.train_images),
                           image_size=IMAGE_SIZE, grayscale=False)
    writer = None if checkpoint else open_tensorboard(runs_dir, "cifar", enabled=not no_tensorboard)
    classifier.run(task, session, config=config, recipe=recipe, epochs=epochs, amp=amp, seed=seed,
                   predict=predict, checkpoint=checkpoint, resume=resume, save=save, save_every=save_every,
                   writer=writer, quiet=quiet)
