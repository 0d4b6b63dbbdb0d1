"""transfer: fine-tune a torchvision classifier from a pretrained weights file on your image folders."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torchtools.core.command import command
from torchtools.core.config import READS, WRITES, Setting
from torchtools.core.options import (BATCH_SIZE, COMPILE, COMPILE_MODE, DATA, EPOCHS, LOADER, LR_OR_AUTO, MOMENTUM,
                                     OPTIMIZER, OUTPUT, PLOT, TRAINING, TRUST_PICKLE, VAL_SPLIT,
                                     ImageClassifierSettings, LabelsCsvSettings)

if TYPE_CHECKING:
    from torchtools.core.run import Run

MODEL = "Model and weights"


def _weights_meaning(value: str | None) -> str | None:
    """--weights none is what a checkpoint saves as None; a file, whatever path names it."""
    if value is None or value.lower() == "none":
        return None
    return os.path.realpath(value) if os.path.isfile(value) else value


@dataclass(frozen=True, kw_only=True)
class TransferConfig(ImageClassifierSettings, LabelsCsvSettings):
    weights: str | None = Setting(
        "--weights", panel=MODEL, show_default=False, role=READS, meaning=_weights_meaning,
        help="Pretrained weights: a torchvision-style state_dict (.pth/.pt loaded with weights_only=True, or "
             ".safetensors) or a checkpoint holding one under 'model'/'state_dict' ('module.' prefixes are "
             "stripped); 'imagenet' or a torchvision name such as ResNet34_Weights.IMAGENET1K_V1 for torchvision's "
             "published weights (fetched once into torch.hub's cache, hash-checked); 'none' trains from scratch.")()
    classes: int | None = Setting(
        "--classes", panel=MODEL, saved=False, show_default=False, min=1, max=2**20,
        help="Number of classes; must equal the number of class folders. Default: that number.")()
    arch: str | None = Setting(
        "--arch", panel=MODEL, show_default=False,
        help="torchvision classifier: resnet18/34/50/101/152, vgg16, densenet121, efficientnet_b0, ... "
             "Default: inferred from the weights' keys and shapes, else resnet34.")()
    load: str = Setting(
        "--load", panel=MODEL, choices=("replace-head", "drop-head"),
        help="replace-head: load every tensor, then swap the last layer for --classes outputs; drop-head: build for "
             "--classes, delete the head's keys, load with strict=False.")("replace-head")
    mode: str = Setting(
        "--mode", panel=MODEL, choices=("finetune", "freeze"),
        help="finetune: train every layer; freeze: train only the new head (fixed feature extractor).")("finetune")
    data: Path | None = Setting(
        DATA.flag, saved=False, show_default=False, role=READS,
        help="Image folder: DATA/train/<class>/* and DATA/val/<class>/*, or DATA/<class>/* split by --val-split. "
             "Default: hymenoptera_data under $TORCHTOOLS_DATA, else data/.")()
    val_split: float = VAL_SPLIT(0.2)
    augment: str = Setting(
        "--augment", choices=("resized-crop-flip", "none"),
        help="Training pictures: random-resized crops and flips (the tutorial's), or none (the centre crop, as "
             "validated). With --mode freeze and none, the frozen backbone's features are computed once and each "
             "epoch trains only the head on them.")("resized-crop-flip")
    image_size: int = Setting(
        "--image-size", min=16, max=4096,
        help="Input size: train on random-resized crops of this size, validate on the centre crop after resizing "
             "the shorter side to size*256/224.")(224)
    loader: str = LOADER("auto")
    plot: Path | None = Setting(PLOT.flag, panel=OUTPUT, saved=False, show_default=False, role=WRITES,
                                suffixes=PLOT.suffixes,
                                help="Draw the val confusion matrix as a PNG heatmap to this file.")()
    epochs: int = EPOCHS(25)
    batch_size: int = BATCH_SIZE(32)
    lr: float = LR_OR_AUTO(0.01)
    optimizer: str = OPTIMIZER("sgd")
    momentum: float = MOMENTUM(0.9)
    lr_step: int = Setting("--lr-step", panel=TRAINING, min=1, max=10**6,
                           help="Multiply the learning rate by --lr-gamma every this many epochs (StepLR).")(7)
    lr_gamma: float = Setting("--lr-gamma", panel=TRAINING, min=0.0, max=1.0,
                              help="Learning-rate decay factor (StepLR).")(0.1)
    trust_pickle: bool = TRUST_PICKLE(False)
    compile: bool = COMPILE(False)
    compile_mode: str = COMPILE_MODE("default")
    # The tutorial's recipe, fixed: StepLR, no weight decay or label smoothing.
    schedule: str = "step"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0

    def data_reads(self) -> list:
        from torchtools.data import reads

        return reads.transfer_reads(self)


@command("transfer", TransferConfig)
def transfer(run: Run[TransferConfig]) -> None:
    """Fine-tune a pretrained torchvision classifier on your image folders (transfer learning).

    The defaults follow the transfer-learning tutorial: ImageNet normalisation, random-resized-crop +
    flip for training, resize + centre crop for validation, SGD momentum 0.9 with the learning rate
    divided by 10 every 7 epochs. Images are decoded once (OpenCV; unreadable files are skipped and
    counted) and augmented on the device in whole batches. With --checkpoint, label the --predict
    images, or evaluate on the val images of --data.
    """
    from torchtools.commands import image_classifier as classifier
    from torchtools.core.errors import UserError
    from torchtools.core.output import say, warn
    from torchtools.data import labels_csv, roots
    from torchtools.data.folders import read_folders
    from torchtools.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ImageFormat, stored_size
    from torchtools.models import pretrained

    config = run.config
    fresh = run.trains and not run.resuming
    if fresh and config.weights is None:
        raise UserError("pass --weights FILE (a state_dict or checkpoint), --weights imagenet for torchvision's "
                        "published weights, or --weights none to train from scratch")
    source = None if config.weights is None or config.weights.lower() == "none" else \
        pretrained.read_weights(config.weights, arch=config.arch, trust_pickle=config.trust_pickle)
    if fresh:  # the architecture inferred from the weights, and the file they came from, are what is saved
        resolved, inferred = pretrained.resolve_arch(source, config.arch) if source is not None else \
            (config.arch, False)
        config = run.config = dataclasses.replace(config, weights=str(source.path) if source else None,
                                                  arch=resolved or pretrained.DEFAULT_ARCH)
    pretrained.check_arch(config.arch)
    if config.mode == "freeze" and config.weights is None:
        raise UserError("--mode freeze trains only the head on pretrained features: it needs --weights FILE")
    pictures = classifier.pictures(run)
    fmt = ImageFormat(stored_size(config.image_size), IMAGENET_MEAN, IMAGENET_STD, fit="centre",
                      crop=config.image_size, augment=config.augment)
    images = None
    if classifier.needs_data(run, pictures):
        root, listing = labels_csv.from_settings(config, config.data)
        root = root if listing is not None else roots.transfer_folder(config.data)
        images = read_folders(root, fmt.prepare, key=fmt.key, val_split=config.val_split, seed=config.seed,
                              loader=config.loader, size=fmt.size, listing=listing and listing.as_tuple(),
                              device=run.device, max_pixels=config.max_pixels)
        if listing is not None:
            listing.add_missing(images)
        _check_classes(config.classes if run.trains else len(classifier.saved_classes(run)), images, root)
        classifier.describe(images, "val")
    class_names = images.classes if images is not None else classifier.saved_classes(run)

    if fresh and source is None:  # a --resume or --checkpoint run loads its own weights
        warn(f"--weights none: training {config.arch} from scratch (random weights); expect far lower accuracy "
             "than from pretrained weights")
    network, report = _network(config, source if fresh else None, len(class_names), fresh and inferred)
    trainable = (pretrained.freeze_backbone(network, report.head) if config.mode == "freeze"
                 else sum(parameter.numel() for parameter in network.parameters()))
    if run.trains:
        say(f"{config.mode}: training {trainable:,} of {sum(p.numel() for p in network.parameters()):,} parameters")
    pretrained.check_input_size(network, config.arch, config.image_size)
    loaded_keys = fresh and source is not None
    classifier.train_evaluate_predict(
        run, network, images, fmt, pictures, eval_name="val", plot=config.plot,
        frozen_head=report.head if config.mode == "freeze" else None,
        held_out_asked=images is not None and (config.val_split > 0 or len(images.test_labels) > 0),
        arch=config.arch, weights=config.weights, load=config.load, mode=config.mode,
        missing_keys=report.missing_keys if loaded_keys else None,
        unexpected_keys=report.unexpected_keys if loaded_keys else None,
        train_images=len(images.train_labels) if images is not None else 0,
        val_images=len(images.test_labels) if images is not None else 0,
        skipped_images=len(images.skipped) if images is not None else 0, trainable_params=trainable)


def _check_classes(expected: int | None, images, root: Path) -> None:
    from torchtools.core.errors import UserError

    if expected is not None and expected != len(images.classes):
        raise UserError(f"--classes is {expected} but {root} holds {len(images.classes)} class folders "
                        f"({', '.join(images.classes)})")


def _network(config: TransferConfig, source, classes: int, inferred: bool):
    """The pretrained model (or, from scratch or to be resumed/loaded, the bare architecture) with a
    `classes`-way head, and what loading the weights did."""
    from torchtools.core.output import say
    from torchtools.models import pretrained

    if source is None:
        network = pretrained.build(config.arch, classes)
        return network, pretrained.LoadReport(config.arch, pretrained.head_name(network), None)
    network, report = pretrained.load_pretrained(source, config.arch, classes, drop_head=config.load == "drop-head")
    say(f"{source.path}: {source.kind}, {config.arch}{' (inferred)' if inferred else ''}; head {report.head}: "
        f"{report.file_classes or 'none'} -> {classes} classes ({config.load})")
    for name, keys in (("missing keys", report.missing_keys), ("unexpected keys", report.unexpected_keys)):
        say(f"{name}: {pretrained.key_summary(keys)}")
    untouched = [key for key in report.missing_keys if not pretrained.in_head(key, report.head)]
    if untouched:
        warn(f"{len(untouched)} tensor(s) of {config.arch} outside the head are not in {source.path} and keep "
             "random values; is --arch right?")
    return network, report
