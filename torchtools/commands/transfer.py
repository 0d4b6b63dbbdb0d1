"""transfer: fine-tune a torchvision classifier from a pretrained weights file on your image folders."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from torchtools.core import options
from torchtools.core.command import command
from torchtools.core.config import Config

MODEL = "Model and weights"


class Load(str, Enum):
    replace_head = "replace-head"
    drop_head = "drop-head"


class Mode(str, Enum):
    finetune = "finetune"
    freeze = "freeze"


@dataclass(frozen=True)
class TransferConfig(Config):
    arch: str
    weights: str | None  # None: trained from scratch
    load: str
    mode: str
    image_size: int
    val_split: float
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    lr_step: int
    lr_gamma: float


@command("transfer", options.TRAINING_RUN + ("amp", "save_every"))
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
        "--val-split", min=0.0, max=0.9,
        help="Share of each class held out for validation when DATA has no val/ folder (seeded); 0: none.")] = 0.2,
    image_size: Annotated[int, typer.Option(
        "--image-size", min=16, help="Input size: train on random-resized crops of this size, validate on the centre "
                                     "crop after resizing the shorter side to size*256/224.")] = 224,
    predict: options.PredictImages = None,
    output: options.PredictOutput = None,
    top_k: options.TopK = 3,
    loader: options.Loader = options.LoaderName.auto,
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
    trust_pickle: options.TrustPickle = False,
    *,
    run,
) -> None:
    """Fine-tune a pretrained torchvision classifier on your image folders (transfer learning).

    The defaults follow the transfer-learning tutorial: ImageNet normalisation, random-resized-crop +
    flip for training, resize + centre crop for validation, SGD momentum 0.9 with the learning rate
    divided by 10 every 7 epochs. Images are decoded once (OpenCV; unreadable files are skipped and
    counted) and augmented on the device in whole batches. With --checkpoint, label the --predict
    images, or evaluate on the val images of --data.
    """
    import torch

    from torchtools.commands import image_classifier as classifier
    from torchtools.core.engine import make_optimizer
    from torchtools.core.errors import UserError
    from torchtools.core.output import say
    from torchtools.data import roots
    from torchtools.data.folders import read_folders
    from torchtools.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ImageFormat, stored_size
    from torchtools.models import pretrained

    fresh = run.trains and run.resume is None
    if fresh and weights is None:
        raise UserError("pass --weights FILE (a state_dict or checkpoint), or --weights none to train from scratch")
    source = None if weights is None or weights.lower() == "none" else \
        pretrained.read_weights(Path(weights), trust_pickle=trust_pickle)
    resolved, inferred = pretrained.resolve_arch(source, arch) if source is not None and fresh else (arch, False)
    config = run.config(TransferConfig(
        pretrained.check_arch(resolved or pretrained.DEFAULT_ARCH), str(source.path) if source else None, load.value,
        mode.value, image_size, val_split, epochs, batch_size, optimizer.value, lr, momentum, lr_step, lr_gamma))
    if config.mode == Mode.freeze.value and config.weights is None:
        raise UserError("--mode freeze trains only the head on pretrained features: it needs --weights FILE")
    pictures = classifier.pictures(predict, output)
    run.check_output(plot, "--plot", suffixes=(".png",))
    fmt = ImageFormat(stored_size(config.image_size), IMAGENET_MEAN, IMAGENET_STD, fit="centre",
                      crop=config.image_size, augment="resized-crop-flip")
    images = None
    if run.trains or not pictures:
        root = roots.transfer_folder(data)
        images = read_folders(root, fmt.prepare, key=fmt.key, val_split=config.val_split, seed=run.seed,
                              loader=loader.value, size=fmt.size)
        _check_classes(classes if run.trains else len(classifier.saved_classes(run)), images, root)
        classifier.describe(images, "val")
    class_names = images.classes if images is not None else classifier.saved_classes(run)

    network, report = _network(config, source if fresh else None, len(class_names), inferred)
    trainable = (pretrained.freeze_backbone(network, report.head) if config.mode == Mode.freeze.value
                 else sum(parameter.numel() for parameter in network.parameters()))
    say(f"{config.mode}: training {trainable:,} of {sum(p.numel() for p in network.parameters()):,} parameters")
    pretrained.check_input_size(network, config.arch, config.image_size)
    outcome = classifier.fit_or_evaluate(
        run, config, network, images, fmt, eval_name="val", plot=plot,
        held_out_asked=config.val_split > 0 or len(images.test_labels) > 0 if images is not None else False,
        optimizer=lambda parameters: make_optimizer(config.optimizer, parameters, config.lr, config.momentum),
        schedule=lambda optimizer, _: (torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step, config.lr_gamma),
                                       False))
    predicted = classifier.predict(network, pictures, class_names, fmt, run.device, output=output, top_k=top_k)
    loaded_keys = fresh and source is not None
    run.finish(outcome.result, metrics=outcome.metrics, arch=config.arch, weights=config.weights, load=config.load,
               mode=config.mode, classes=class_names, missing_keys=report.missing_keys if loaded_keys else None,
               unexpected_keys=report.unexpected_keys if loaded_keys else None,
               train_images=len(images.train_labels) if images is not None else 0,
               val_images=len(images.test_labels) if images is not None else 0,
               skipped_images=len(images.skipped) if images is not None else 0, trainable_params=trainable,
               per_class_accuracy=outcome.per_class_accuracy, confusion_matrix=outcome.confusion_matrix,
               **predicted)


def _check_classes(expected: int | None, images, root: Path) -> None:
    from torchtools.core.errors import UserError

    if expected is not None and expected != len(images.classes):
        raise UserError(f"--classes is {expected} but {root} holds {len(images.classes)} class folders "
                        f"({', '.join(images.classes)})")


def _network(config: TransferConfig, source, classes: int, inferred: bool):
    """The pretrained model (or, from scratch or to be resumed/loaded, the bare architecture) with a
    `classes`-way head, and what loading the weights did."""
    from torchtools.core.output import say, warn
    from torchtools.models import pretrained

    if source is None:
        if config.weights is None:
            warn(f"--weights none: training {config.arch} from scratch (random weights); expect far lower accuracy "
                 "than from pretrained weights")
        network = pretrained.build(config.arch, classes)
        return network, pretrained.LoadReport(config.arch, pretrained.head_name(network), None)
    network, report = pretrained.load_pretrained(source, config.arch, classes,
                                                 drop_head=config.load == Load.drop_head.value)
    say(f"{source.path}: {source.kind}, {config.arch}{' (inferred)' if inferred else ''}; head {report.head}: "
        f"{report.file_classes or 'none'} -> {classes} classes ({config.load})")
    for name, keys in (("missing keys", report.missing_keys), ("unexpected keys", report.unexpected_keys)):
        say(f"{name}: {pretrained.key_summary(keys)}")
    untouched = [key for key in report.missing_keys if not pretrained.in_head(key, report.head)]
    if untouched:
        warn(f"{len(untouched)} tensor(s) of {config.arch} outside the head are not in {source.path} and keep "
             "random values; is --arch right?")
    return network, report
