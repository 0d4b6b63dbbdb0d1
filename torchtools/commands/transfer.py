"""transfer: fine-tune a torchvision or timm classifier from a pretrained weights file on your image folders."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torchtools.core.command import command
from torchtools.core.config import READS, Setting, comma_separated_floats
from torchtools.core.errors import UserError
from torchtools.core.options import (BATCH_SIZE, DATA, EPOCHS, LOADER, LR_OR_AUTO, MOMENTUM, OPTIMIZER, PLOT,
                                     TRAINING, TRUST_PICKLE, VAL_SPLIT, CompiledSettings, ImageClassifierSettings)
from torchtools.data.labels_settings import LabelsCsvSettings

if TYPE_CHECKING:
    from torchtools.core.run import Run

MODEL = "Model and weights"
PREPROCESSING = "Preprocessing (default: what the weights say, else ImageNet's)"
# What the pictures become when neither the options nor the weights say: torchvision's ImageNet recipe.
IMAGENET_INPUT = {"interpolation": "bilinear", "crop_pct": 0.875, "image_size": 224}
FAR_SMALLER = 5  # a class with under a fifth of the largest class's training pictures is warned about


def _weights_meaning(value: str | None) -> str | None:
    """--weights none is what a checkpoint saves as None; a file or a Hub folder, whatever path names it (hub/,
    ./hub, its absolute path); a published name as it is, imagenet in any case (as --weights reads it), as is
    the file in torch.hub's cache that imagenet reads."""
    from torchtools.models.pretrained import imagenet_meaning

    if value is None or value.lower() == "none":
        return None
    return imagenet_meaning(os.path.realpath(value) if os.path.exists(value) else value)


@dataclass(frozen=True, kw_only=True)
class TransferConfig(ImageClassifierSettings, CompiledSettings, LabelsCsvSettings):
    STATE = {**ImageClassifierSettings.STATE, "class_weights": (
        lambda value: isinstance(value, list) and all(type(item) is float and math.isfinite(item) and item > 0
                                                      for item in value), "a list of positive weights")}
    weights: str | None = Setting(
        "--weights", panel=MODEL, show_default=False, role=READS, meaning=_weights_meaning,
        none_word="none",
        help="Pretrained weights: a state_dict or checkpoint (.pth/.pt read weights_only, or .safetensors) with "
             "torchvision's or timm's keys; a Hugging Face Hub folder (config.json + model.safetensors); "
             "'imagenet' or a torchvision weights name (fetched once, hash-checked); 'none' trains from scratch. "
             "Required to train.")()
    classes: int | None = Setting(
        "--classes", panel=MODEL, saved=False, show_default=False, min=1, max=2**20,
        help="Classes; must equal the class folders. Default: their number.")()
    arch: str | None = Setting(
        "--arch", panel=MODEL, show_default=False,
        help="A torchvision classifier (resnet18/34/50, vgg16, efficientnet_b0, ...) or timm/NAME (needs "
             "torchtools[timm]). Default: a Hub folder's, else inferred from the weights; resnet34 for none.")()
    load: str = Setting(
        "--load", panel=MODEL, choices=("replace-head", "drop-head"),
        help="replace-head: load every tensor, then swap the last layer; drop-head: build for --classes, load "
             "all but the head (strict=False).")("replace-head")
    mode: str = Setting(
        "--mode", panel=MODEL, choices=("finetune", "freeze"),
        help="finetune: train every layer; freeze: train only the new head (fixed feature extractor).")("finetune")
    data: Path | None = dataclasses.replace(
        DATA, help="Image folder: DATA/train/<class>/* and DATA/val/<class>/*, or DATA/<class>/* split by "
                   "--val-split. Default: hymenoptera_data under $TORCHTOOLS_DATA, else data/.")()
    val_split: float = VAL_SPLIT(0.2)
    augment: str = Setting(
        "--augment", panel=TRAINING, choices=("resized-crop-flip", "none"),
        help="Training pictures: random-resized crops and flips, or none (the centre crop; with --mode freeze the "
             "backbone's features are then computed once).")("resized-crop-flip")
    image_size: int | None = Setting(
        "--image-size", panel=PREPROCESSING, min=16, max=4096, show_default=False,
        help="Input size: training crops and the centre crop of the resized picture. Default: the weights', else "
             "224.")()
    crop_pct: float | None = Setting(
        "--crop-pct", panel=PREPROCESSING, min=0.1, max=1.0, show_default=False,
        help="The centre crop's share (timm's crop_pct; 0.875: resize 256, crop 224). Default: the weights', else "
             "0.875.")()
    interpolation: str | None = Setting(
        "--interpolation", panel=PREPROCESSING, choices=("bilinear", "bicubic", "nearest"), show_default=False,
        help="How pictures are resized (shrinking is antialiased). Default: the weights', else bilinear.")()
    mean: list[float] | None = Setting(
        "--mean", panel=PREPROCESSING, min=-10.0, max=10.0, parse=comma_separated_floats, metavar="R,G,B",
        length=3, show_default=False,
        help="Per-channel mean of 0..1 pixels, as the weights were trained (0.5,0.5,0.5 for TensorFlow ports). "
             "Default: the weights', else ImageNet's.")()
    std: list[float] | None = Setting(
        "--std", panel=PREPROCESSING, min=1e-4, max=10.0, parse=comma_separated_floats, metavar="R,G,B",
        length=3, show_default=False,
        help="Per-channel standard deviation, three numbers above zero. Default: the weights', else ImageNet's.")()
    class_weights: str = Setting(
        "--class-weights", panel=TRAINING, choices=("none", "balanced"),
        help="balanced: weight the loss by inverse class frequency (n / (classes x count)); saved with the "
             "model.")("none")
    loader: str = LOADER("auto")
    plot: Path | None = dataclasses.replace(PLOT, help="Draw the val confusion matrix as a PNG heatmap to this file.")()
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
    # The tutorial's recipe, fixed: StepLR (no weight decay or label smoothing: Hyperparameters' neutral values).
    schedule: str = "step"

    def settle(self, run) -> TransferConfig:
        """The architecture and preprocessing, settled from the weights before any picture is read: the file is
        read and checked against the architecture here, so a wrong one costs no decoding."""
        from torchtools.models import pretrained

        config, source = self, None
        if run.trains and not run.resuming:
            if config.weights is None:
                raise UserError("pass --weights FILE (a state_dict, checkpoint or Hub folder), --weights imagenet for "
                                "torchvision's published weights, or --weights none to train from scratch")
            source = weights_of(config)
            arch = config.arch or pretrained.DEFAULT_ARCH
            if source is not None:
                arch = pretrained.resolve_arch(source, config.arch)[0]
                pretrained.check_fits(source, arch)
            # Published weights are saved by the name typed (imagenet), not their place in this machine's torch.hub
            # cache: --resume and --config replay them as typed, and so does another machine.
            weights = None if source is None else config.weights if source.published else str(source.path)
            config = dataclasses.replace(config, weights=weights, arch=pretrained.check_arch(arch))
        pretrained.check_arch(config.arch)  # a --checkpoint of a timm model needs timm too
        if config.mode == "freeze" and config.weights is None:
            raise UserError("--mode freeze trains only the head on pretrained features: it needs --weights FILE")
        return _with_preprocessing(config, source, saved_in=None if run.trains and not run.resuming else run.source)

    def data_reads(self) -> list:
        from torchtools.data import reads

        return reads.transfer_reads(self)


def weights_of(config: TransferConfig):
    """The --weights file (or Hub folder, or published weights) read, or None for --weights none."""
    from torchtools.models import pretrained

    if config.weights is None or config.weights.lower() == "none":
        return None
    return pretrained.read_weights(config.weights, arch=config.arch, trust_pickle=config.trust_pickle)


def _with_preprocessing(config: TransferConfig, source, *, saved_in) -> TransferConfig:
    """Each preprocessing setting not given: the weights' (a Hub folder's or timm model's pretrained_cfg), else
    ImageNet's; says which it used and from where. A --checkpoint or --resume run has its saved ones already."""
    from torchtools.core.output import say
    from torchtools.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from torchtools.models import pretrained

    said, origin = pretrained.preprocessing(source, config.arch) if config.mean is None or config.std is None \
        or config.interpolation is None or config.crop_pct is None or config.image_size is None else ({}, "")
    input_size = said.get("input_size")
    offered = {"mean": said.get("mean"), "std": said.get("std"), "interpolation": said.get("interpolation"),
               "crop_pct": said.get("crop_pct"),
               "image_size": input_size[-1] if isinstance(input_size, (list, tuple)) and len(input_size) == 3
               and input_size[-1] == input_size[-2] else None}
    fallback = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), **IMAGENET_INPUT}
    values, sources = {}, {}
    for name, default in fallback.items():
        given = vars(config)[name]
        try:  # the weights' value through the option's own checks: one outside them is not taken
            weights_value = None if offered[name] is None else type(config).settings()[name][0].check(
                name, list(offered[name]) if isinstance(offered[name], (list, tuple)) else offered[name],
                type(config).settings()[name][1], typed=False)
        except UserError:
            weights_value = None
        given_by = f"{saved_in}'s" if saved_in is not None else "given"
        values[name], sources[name] = (given, given_by) if given is not None else \
            (weights_value, origin) if weights_value is not None else (default, "ImageNet's")
    settled = dataclasses.replace(config, **values)
    by_source: dict[str, list[str]] = {}
    for name, where in sources.items():
        by_source.setdefault(where, []).append(name)
    shown = {"mean": f"mean {_triple(settled.mean)}", "std": f"std {_triple(settled.std)}",
             "interpolation": settled.interpolation, "crop_pct": f"crop-pct {settled.crop_pct:g}",
             "image_size": f"{settled.image_size} px"}
    say("preprocessing: " + "; ".join(f"{', '.join(shown[name] for name in names)} ({where})"
                                      for where, names in by_source.items()))
    return settled


def _triple(values) -> str:
    return ",".join(f"{value:g}" for value in values)


@command("transfer", TransferConfig)
def transfer(run: Run[TransferConfig]) -> None:
    """Fine-tune a pretrained torchvision or timm classifier on your image folders (transfer learning).

    The defaults follow the transfer-learning tutorial: the weights' normalisation (else ImageNet's),
    random-resized-crop + flip for training, resize + centre crop for validation, SGD momentum 0.9 with the
    learning rate divided by 10 every 7 epochs. Images are decoded once (OpenCV; unreadable files are skipped and
    counted) and augmented on the device in whole batches. With --checkpoint, label the --predict
    images, or evaluate on the val images of --data.
    """
    from torchtools.flows import image_classifier as classifier
    from torchtools.core.output import say, warn
    from torchtools.data import labels_csv, roots
    from torchtools.data.folders import read_folders
    from torchtools.data.transforms import ImageFormat, stored_size
    from torchtools.models import pretrained

    config = run.config
    fresh = run.trains and not run.resuming
    # Read again as settle read it (and checked it against the architecture): the state is not kept in the config.
    source = weights_of(config) if fresh else None
    pictures = classifier.pictures(run)
    fmt = ImageFormat(stored_size(config.image_size, config.crop_pct), tuple(config.mean), tuple(config.std),
                      fit="centre", crop=config.image_size, augment=config.augment, interpolation=config.interpolation)
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
        if run.trains:
            _say_class_counts(images)
    class_names = images.classes if images is not None else classifier.saved_classes(run)

    inferred = fresh and source is not None and "arch" not in run.explicit
    if fresh and source is None:  # a --resume or --checkpoint run loads its own weights
        warn(f"--weights none: training {config.arch} from scratch (random weights); expect far lower accuracy "
             "than from pretrained weights")
    network, report = _network(config, source, class_names, inferred)
    trainable = (pretrained.freeze_backbone(network, report.head) if config.mode == "freeze"
                 else sum(parameter.numel() for parameter in network.parameters()))
    if run.trains:
        say(f"{config.mode}: training {trainable:,} of {sum(p.numel() for p in network.parameters()):,} parameters")
    if fresh and config.mode == "freeze" and _never_trained(network):
        warn(f"--mode freeze on {config.weights}: its BatchNorm statistics are the initial ones (mean 0, variance "
             "1), so these weights were never trained and the frozen features are random; expect large losses "
             "(hundreds or more) that may grow from epoch to epoch rather than fall. Use trained weights "
             "(--weights imagenet) or --mode finetune")
    pretrained.check_input_size(network, config.arch, config.image_size)
    loaded_keys = fresh and source is not None
    classifier.train_evaluate_predict(
        run, network, images, fmt, pictures, eval_name="val", plot=config.plot,
        frozen_head=report.head if config.mode == "freeze" else None,
        class_weights=_class_weights(run, images) if run.trains else None,
        held_out_asked=images is not None and (config.val_split > 0 or len(images.test_labels) > 0),
        arch=config.arch, weights=str(source.path) if source else config.weights, load=config.load, mode=config.mode,
        missing_keys=report.missing_keys if loaded_keys else None,
        unexpected_keys=report.unexpected_keys if loaded_keys else None,
        train_images=len(images.train_labels) if images is not None else 0,
        val_images=len(images.test_labels) if images is not None else 0,
        skipped_images=len(images.skipped) if images is not None else 0, trainable_params=trainable)


def _never_trained(network) -> bool:
    """Every BatchNorm at its initial statistics (running mean 0, variance 1): weights saved untrained. A network
    without BatchNorm (vgg16) cannot tell: False."""
    import torch

    norms = [module for module in network.modules() if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)]
    return bool(norms) and all(bool((norm.running_mean == 0).all() and (norm.running_var == 1).all())
                               for norm in norms)


def _say_class_counts(images) -> None:
    """Each class's training pictures, and a warning where one has far fewer than the largest."""
    from torchtools.core.output import say, warn

    counts = images.train_labels.bincount(minlength=len(images.classes)).tolist()
    say("training pictures per class: " + ", ".join(f"{name} {count:,}" for name, count in zip(images.classes, counts)))
    largest = max(range(len(counts)), key=counts.__getitem__)
    for name, count in zip(images.classes, counts):
        if count * FAR_SMALLER < counts[largest]:
            warn(f"class {name} has {count:,} training pictures, under 1/{FAR_SMALLER} of {images.classes[largest]}'s "
                 f"{counts[largest]:,}: the model may rarely predict it; consider --class-weights balanced")


def _class_weights(run, images) -> list[float] | None:
    """--class-weights balanced: n / (classes x count) per class, from the training pictures; a resumed run goes
    on with the weights it saved."""
    if run.config.class_weights != "balanced":
        return None
    if run.resuming and run.loaded.get("class_weights") is not None:
        return list(run.loaded["class_weights"])
    counts = images.train_labels.bincount(minlength=len(images.classes)).double()
    return (counts.sum() / (len(counts) * counts.clamp(min=1))).tolist()


def _check_classes(expected: int | None, images, root: Path) -> None:
    if expected is not None and expected != len(images.classes):
        raise UserError(f"--classes is {expected} but {root} holds {len(images.classes)} class folders "
                        f"({', '.join(images.classes)})")


def build_model(config: TransferConfig, state: dict):
    """The bare network a transfer config describes, for `state`'s classes (the pretrained weights are loaded
    into it by `_network`; a checkpoint's by the run)."""
    from torchtools.models import pretrained

    return pretrained.build(config.arch, len(state["classes"]))


def _network(config: TransferConfig, source, class_names: list[str], inferred: bool):
    """The pretrained model (or, from scratch or to be resumed/loaded, the bare architecture) with a head of
    one output per class, and what loading the weights did."""
    from torchtools.core.output import say, warn
    from torchtools.models import pretrained

    classes = len(class_names)
    if source is None:
        network = build_model(config, {"classes": class_names})
        return network, pretrained.LoadReport(config.arch, pretrained.head_name(network), None)
    network, report = pretrained.load_pretrained(source, config.arch, classes, drop_head=config.load == "drop-head")
    labels = (source.hub or {}).get("label_names")
    named = f" ({', '.join(map(str, labels))})" if isinstance(labels, list) and len(labels) <= 10 else ""
    say(f"{source.path}: {source.kind}, {config.arch}{' (inferred)' if inferred else ''}; head {report.head}: "
        f"{report.file_classes or 'none'}{named} -> {classes} classes ({config.load})")
    for name, keys in (("missing keys", report.missing_keys), ("unexpected keys", report.unexpected_keys)):
        say(f"{name}: {pretrained.key_summary(keys)}")
    untouched = [key for key in report.missing_keys if not pretrained.in_head(key, report.head)]
    if untouched:
        warn(f"{len(untouched)} tensor(s) of {config.arch} outside the head are not in {source.path} and keep "
             "random values; is --arch right?")
    return network, report
