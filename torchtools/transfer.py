"""Transfer learning end to end: image folders + a weights file -> a fine-tuned classifier; reload and predict.

Images are decoded once and held as uint8 tensors on the device; augmentation and normalisation run on
whole batches (torchtools.data.imagenet), so an epoch costs the model's forward and backward passes only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchtools.core import distributed
from torchtools.core.checkpoints import best_path, load_checkpoint
from torchtools.core.image_classifier import ranked_predictions, report as class_report, use_channels_last
from torchtools.data.folders import FolderImages, centre_square, read_folders
from torchtools.data.imagenet import eval_transform, stored_size, train_transform
from torchtools.data.images import read_image
from torchtools.data.loaders import TensorBatches
from torchtools.core.engine import FitPlan, Objective, evaluate, fit, make_optimizer
from torchtools.core.errors import UserError
from torchtools.models import pretrained
from torchtools.core.output import say, warn

COMMAND = "transfer"
EVAL_BATCH_SIZE = 64


@dataclass
class Settings:
    data: Path
    weights: Path | None  # None: train from scratch
    arch: str | None  # None: inferred from the weights
    classes: int | None  # None: one per class folder
    load: str  # replace-head | drop-head
    mode: str  # finetune | freeze
    image_size: int
    val_split: float
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    lr_step: int
    lr_gamma: float
    seed: int
    trust_pickle: bool = False


def train(settings: Settings, session, *, amp: bool, save: Path | None, save_every: int, resume: Path | None,
          writer, predict: list[Path] | None, plot: Path | None, quiet: bool) -> dict[str, Any]:
    from torchtools.core.devices import autocast_dtype

    device = session.device
    images = read_folders(settings.data, stored_size(settings.image_size), val_split=settings.val_split,
                          seed=settings.seed, classes=settings.classes)
    say(f"{images.layout}: {len(images.train_labels)} train and {len(images.val_labels)} val images, "
        f"classes {', '.join(images.classes)}", quiet=quiet)
    if images.skipped:
        shown = ", ".join(str(path) for path in images.skipped[:3])
        warn(f"skipped {len(images.skipped)} file(s) OpenCV cannot read: {shown}"
             + (" ..." if len(images.skipped) > 3 else ""))
    model, report = _model(settings, len(images.classes), quiet)
    trainable = (pretrained.freeze_backbone(model, report.head) if settings.mode == "freeze"
                 else sum(parameter.numel() for parameter in model.parameters()))
    say(f"{settings.mode}: training {trainable:,} of {sum(p.numel() for p in model.parameters()):,} parameters",
        quiet=quiet)
    pretrained.check_input_size(model, report.arch, settings.image_size)
    channels_last = use_channels_last(device)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    train_batches, val_batches = _batches(images, settings, device, channels_last)
    optimizer = make_optimizer(settings.optimizer, [p for p in model.parameters() if p.requires_grad],
                               settings.lr, settings.momentum)
    plan = FitPlan(COMMAND, settings.epochs, device, config=_config(settings, report.arch),
                   extra={"classes": images.classes}, save=save, save_every=save_every, resume=resume,
                   scheduler=torch.optim.lr_scheduler.StepLR(optimizer, settings.lr_step, settings.lr_gamma),
                   amp_dtype=autocast_dtype(device) if amp else None, writer=writer, eval_name="val", quiet=quiet)
    result = fit(model, Objective.classification(), optimizer, train_batches, val_batches, plan)
    best_epoch, best = max(enumerate(row["val_accuracy"] for row in result.history), key=lambda item: item[1])
    saved = f"; saved to {best_path(save)}" if save else ""
    say(f"best val accuracy {best:.4f} (epoch {best_epoch + 1}){saved}", quiet=quiet)
    per_class, matrix = class_report(result.evaluation, images.classes, split="val", plot=plot, writer=writer,
                                     quiet=quiet)
    predictions = predict_images(model, predict, images.classes, settings.image_size, device, quiet=quiet) \
        if predict else None
    return session.finish(
        epochs=result.epochs, train_seconds=result.train_seconds, metrics=result.metrics, checkpoint=save,
        arch=report.arch, weights=str(settings.weights) if settings.weights else None, load=settings.load,
        mode=settings.mode, classes=images.classes, missing_keys=report.missing_keys if settings.weights else None,
        unexpected_keys=report.unexpected_keys if settings.weights else None, train_images=len(images.train_labels),
        val_images=len(images.val_labels), skipped_images=len(images.skipped), trainable_params=trainable,
        per_class_accuracy=per_class, confusion_matrix=matrix, predictions=predictions)


def _model(settings: Settings, classes: int, quiet: bool) -> tuple[nn.Module, pretrained.LoadReport]:
    """The pretrained (or, with --weights none, random) model with a `classes`-way head."""
    if settings.weights is None:
        if settings.mode == "freeze":
            raise UserError("--mode freeze trains only the head on pretrained features: it needs --weights FILE")
        arch = pretrained.check_arch(settings.arch or pretrained.DEFAULT_ARCH)
        warn(f"--weights none: training {arch} from scratch (random weights); expect far lower accuracy "
             "than from pretrained weights")
        model = pretrained.build(arch, classes)
        return model, pretrained.LoadReport(arch, pretrained.head_name(model), None)
    weights = pretrained.read_weights(settings.weights, trust_pickle=settings.trust_pickle)
    arch, inferred = pretrained.resolve_arch(weights, settings.arch)
    model, report = pretrained.load_pretrained(weights, arch, classes, drop_head=settings.load == "drop-head")
    say(f"{weights.path}: {weights.kind}, {arch}{' (inferred)' if inferred else ''}; head {report.head}: "
        f"{report.file_classes or 'none'} -> {classes} classes ({settings.load})", quiet=quiet)
    for name, keys in (("missing keys", report.missing_keys), ("unexpected keys", report.unexpected_keys)):
        say(f"{name}: {pretrained.key_summary(keys)}", quiet=quiet)
    untouched = [key for key in report.missing_keys if not pretrained.in_head(key, report.head)]
    if untouched:
        warn(f"{len(untouched)} tensor(s) of {arch} outside the head are not in {weights.path} and keep random "
             "values; is --arch right?")
    return model, report


def _batches(images: FolderImages, settings: Settings, device: torch.device,
             channels_last: bool) -> tuple[TensorBatches, TensorBatches]:
    count = len(images.train_labels)
    batch_size = min(settings.batch_size, count)
    train_batches = TensorBatches(
        images.train_images.to(device), images.train_labels.to(device), batch_size=batch_size, shuffle=True,
        seed=settings.seed,
        # Under torchrun each process draws its own crops (the shuffle order stays shared).
        transform=train_transform(settings.image_size, device, seed=settings.seed + distributed.rank(),
                                  channels_last=channels_last),
        # A last batch of one image breaks BatchNorm in training mode where the feature maps are 1x1.
        drop_last=count % batch_size == 1)
    val_batches = _eval_batches(images, settings.image_size, device, channels_last)
    return train_batches, val_batches


def _eval_batches(images: FolderImages, image_size: int, device: torch.device, channels_last: bool) -> TensorBatches:
    return TensorBatches(images.val_images.to(device), images.val_labels.to(device), batch_size=EVAL_BATCH_SIZE,
                         transform=eval_transform(image_size, device, channels_last=channels_last))


def _config(settings: Settings, arch: str) -> dict[str, Any]:
    """What the checkpoint needs to rebuild the model and repeat the split; the rest is a record."""
    return {"arch": arch, "image_size": settings.image_size, "val_split": settings.val_split, "seed": settings.seed,
            "weights": str(settings.weights) if settings.weights else None, "load": settings.load,
            "mode": settings.mode, "epochs": settings.epochs, "batch_size": settings.batch_size,
            "optimizer": settings.optimizer, "lr": settings.lr, "momentum": settings.momentum,
            "lr_step": settings.lr_step, "lr_gamma": settings.lr_gamma, "data": str(settings.data)}


def from_checkpoint(path: Path, session, *, data: Path | None, predict: list[Path] | None, plot: Path | None,
                    quiet: bool) -> dict[str, Any]:
    """--checkpoint: label the --predict images, or else evaluate on the val images of --data."""
    state = load_checkpoint(path, command=COMMAND)
    config, classes = state["config"], state["classes"]
    model = pretrained.build(config["arch"], len(classes))
    model.load_state_dict(state["model"])
    say(f"loaded {path} ({config['arch']}, {len(classes)} classes, trained {state['epoch']} epochs)", quiet=quiet)
    device, metrics, predictions, per_class, matrix = session.device, {}, None, None, None
    if predict:
        predictions = predict_images(model, predict, classes, config["image_size"], device, quiet=quiet)
    else:
        root = data or Path(config["data"])
        images = read_folders(root, stored_size(config["image_size"]), val_split=config["val_split"],
                              seed=config["seed"], classes=len(classes))
        if images.classes != classes:
            raise UserError(f"{root} holds classes {images.classes}, the checkpoint was trained on {classes}")
        plan = FitPlan(COMMAND, 0, device, eval_name="val", quiet=quiet)
        evaluation = evaluate(model.to(device), Objective.classification(),
                              _eval_batches(images, config["image_size"], device, channels_last=False), plan)
        metrics = {"val_loss": evaluation.loss, "val_accuracy": evaluation.accuracy}
        say(f"val loss {evaluation.loss:.4f}  val accuracy {evaluation.accuracy:.4f} "
            f"({len(images.val_labels)} images)", quiet=quiet)
        per_class, matrix = class_report(evaluation, classes, split="val", plot=plot, quiet=quiet)
    return session.finish(metrics=metrics, arch=config["arch"], weights=config["weights"], load=config["load"],
                          mode=config["mode"], classes=classes, missing_keys=None, unexpected_keys=None,
                          per_class_accuracy=per_class, confusion_matrix=matrix, predictions=predictions)


@torch.no_grad()
def predict_images(model: nn.Module, paths: list[Path], classes: list[str], image_size: int, device: torch.device,
                   *, quiet: bool, top: int = 3) -> list[dict[str, Any]]:
    """Label each picture as validation images are seen: shorter side resized, centre crop, normalised."""
    squares = [centre_square(read_image(path), stored_size(image_size)) for path in paths]
    batch = torch.stack([torch.from_numpy(square).permute(2, 0, 1) for square in squares]).to(device)
    model.to(device).eval()
    output = model(eval_transform(image_size, device, channels_last=False)(batch))
    probabilities = torch.softmax(output.float(), dim=1).cpu()
    return ranked_predictions(paths, probabilities, classes, top=top, quiet=quiet)
