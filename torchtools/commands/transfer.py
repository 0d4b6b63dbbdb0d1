"""transfer: fine-tune a torchvision classifier from a pretrained weights file on your image folders."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from torchtools.core import options

MODEL = "Model and weights"


class Load(str, Enum):
    replace_head = "replace-head"
    drop_head = "drop-head"


class Mode(str, Enum):
    finetune = "finetune"
    freeze = "freeze"


def transfer(
    weights: Annotated[Optional[str], typer.Option(
        "--weights", help="Pretrained weights: a torchvision-style state_dict (.pth/.pt) or a checkpoint holding "
                          "one under 'model'/'state_dict' ('module.' prefixes are stripped); 'none' trains from "
                          "scratch. Loaded with weights_only=True.", show_default=False, rich_help_panel=MODEL)] = None,
    classes: Annotated[Optional[int], typer.Option(
        "--classes", min=1, help="Number of classes; must equal the number of class folders. Default: that number.",
        show_default=False, rich_help_panel=MODEL)] = None,
    arch: Annotated[Optional[str], typer.Option(
        "--arch", help="torchvision classifier: resnet18/34/50/101/152, vgg16, densenet121, efficientnet_b0, ... "
                       "Default: inferred from the weights' keys and shapes, else resnet34.",
        show_default=False, rich_help_panel=MODEL)] = None,
    load: Annotated[Load, typer.Option(
        help="replace-head: load every tensor, then swap the last layer for --classes outputs; drop-head: build "
             "for --classes, delete the head's keys, load with strict=False.", rich_help_panel=MODEL)
    ] = Load.replace_head,
    mode: Annotated[Mode, typer.Option(
        help="finetune: train every layer; freeze: train only the new head (fixed feature extractor).",
        rich_help_panel=MODEL)] = Mode.finetune,
    data: Annotated[Optional[Path], typer.Option(
        "--data", help="Image folder: DATA/train/<class>/* and DATA/val/<class>/*, or DATA/<class>/* split by "
                       "--val-split. Default: hymenoptera_data under $TORCHTOOLS_DATA, else data/.",
        show_default=False)] = None,
    val_split: Annotated[float, typer.Option(
        "--val-split", min=0.0, max=1.0,
        help="Share of each class held out for validation when DATA has no val/ folder (seeded).")] = 0.2,
    image_size: Annotated[int, typer.Option(
        "--image-size", min=16, help="Input size: train on random-resized crops of this size, validate on the centre "
                                     "crop after resizing the shorter side to size*256/224.")] = 224,
    predict: options.PredictImages = None,
    plot: Annotated[Optional[Path], typer.Option(
        "--plot", help="Draw the val confusion matrix as a PNG heatmap to this file.", show_default=False,
        rich_help_panel=options.OUTPUT)] = None,
    epochs: options.Epochs = 25,
    batch_size: options.BatchSize = 32,
    lr: options.LearningRate = 0.01,
    optimizer: options.Optimizer = options.OptimizerName.sgd,
    momentum: options.Momentum = 0.9,
    lr_step: Annotated[int, typer.Option(
        "--lr-step", min=1, help="Multiply the learning rate by --lr-gamma every this many epochs (StepLR).",
        rich_help_panel=options.TRAINING)] = 7,
    lr_gamma: Annotated[float, typer.Option(
        "--lr-gamma", min=0.0, help="Learning-rate decay factor (StepLR).", rich_help_panel=options.TRAINING)] = 0.1,
    seed: options.Seed = 0,
    device: options.Device = "auto",
    amp: options.Amp = True,
    save: options.Save = None,
    save_every: options.SaveEvery = 0,
    checkpoint: options.Checkpoint = None,
    resume: options.Resume = None,
    runs_dir: options.RunsDir = Path("runs"),
    no_tensorboard: options.NoTensorboard = False,
    trust_pickle: options.TrustPickle = False,
    quiet: options.Quiet = False,
    json: options.Json = False,
) -> None:
    """Fine-tune a pretrained torchvision classifier on your image folders (transfer learning).

    The defaults follow the transfer-learning tutorial: ImageNet normalisation, random-resized-crop +
    flip for training, resize + centre crop for validation, SGD momentum 0.9 with the learning rate
    divided by 10 every 7 epochs. Images are decoded once (OpenCV; unreadable files are skipped and
    counted) and augmented on the device in whole batches. With --checkpoint, label the --predict
    images, or evaluate on the val images of --data.
    """
    from torchtools import transfer as core
    from torchtools.core.checkpoints import open_tensorboard
    from torchtools.core.errors import UserError
    from torchtools.core.run import Session

    session = Session.start("transfer", device=device, seed=seed, json=json, quiet=quiet)
    if checkpoint is not None:
        if resume is not None:
            raise UserError("--checkpoint loads a finished model and --resume continues training: pass one of them")
        core.from_checkpoint(checkpoint, session, data=data, predict=predict, plot=plot, quiet=quiet)
        return
    if weights is None:
        raise UserError("pass --weights FILE (a state_dict or checkpoint), or --weights none to train from scratch")
    settings = core.Settings(
        data=data or options.default_data_root() / "hymenoptera_data",
        weights=None if weights.lower() == "none" else Path(weights), arch=arch, classes=classes, load=load.value,
        mode=mode.value, image_size=image_size, val_split=val_split, epochs=epochs, batch_size=batch_size,
        optimizer=optimizer.value, lr=lr, momentum=momentum, lr_step=lr_step, lr_gamma=lr_gamma, seed=seed,
        trust_pickle=trust_pickle)
    writer = open_tensorboard(runs_dir, "transfer", enabled=not no_tensorboard)
    core.train(settings, session, amp=amp, save=save, save_every=save_every, resume=resume, writer=writer,
               predict=predict, plot=plot, quiet=quiet)
