"""Image classifiers end to end: train on an in-memory ImageSet, report per class, reload, predict.

This is the flow `mnist` and `cifar` share; each command only picks its model, data and recipe.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchtools.core import distributed
from torchtools.core.checkpoints import load_checkpoint
from torchtools.data.loaders import TensorBatches
from torchtools.data.vision import BatchTransform, ImageSet, image_for_model
from torchtools.core.engine import EvalResult, FitPlan, FitResult, Objective, evaluate, fit, make_optimizer
from torchtools.core.metrics import confusion_matrix, per_class_accuracy
from torchtools.core.output import print_table, say

EVAL_BATCH_SIZE = 1024  # evaluation needs no gradients: bigger slices, same numbers
CONFUSION_MATRIX_MAX_CLASSES = 20  # wider matrices are in the JSON summary, not on the terminal


@dataclass
class Recipe:
    """How to train: the optimizer and its schedule, and the augmentation."""

    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    one_cycle: bool = False  # lr rises to `lr` then anneals, stepped every batch
    crop_padding: int = 0  # random crop after reflect-padding this many pixels; 0 = none
    flip: bool = False  # random left-right mirror


def use_channels_last(device: torch.device) -> bool:
    """channels_last (NHWC) convolutions: faster on CUDA and, measured here, about 1.5x on CPU (oneDNN)."""
    return device.type in ("cpu", "cuda")


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move the model to the device, in the memory format its batches will come in."""
    return model.to(device, memory_format=torch.channels_last if use_channels_last(device) else torch.contiguous_format)


def make_batches(images: ImageSet, mean, std, recipe: Recipe, device: torch.device, *,
                 seed: int) -> tuple[TensorBatches, TensorBatches]:
    """(train, test) batches sliced from the in-memory images; augmentation only on the training side."""
    train_transform = BatchTransform(mean, std, device, crop_padding=recipe.crop_padding, flip=recipe.flip,
                                     channels_last=use_channels_last(device),
                                     seed=seed + distributed.rank())  # torchrun: each process its own crops
    train_batches = TensorBatches(images.train_images, images.train_labels, batch_size=recipe.batch_size,
                                  shuffle=True, seed=seed, transform=train_transform)
    return train_batches, _eval_batches(images.test_images, images.test_labels, mean, std, device)


def train_classifier(model: nn.Module, images: ImageSet, mean, std, recipe: Recipe, plan: FitPlan, *,
                     seed: int) -> FitResult:
    """Fit `model` on images.train_*, evaluating on images.test_* each epoch (images already on plan.device)."""
    prepare_model(model, plan.device)
    train_batches, test_batches = make_batches(images, mean, std, recipe, plan.device, seed=seed)
    optimizer = make_optimizer(recipe.optimizer, model.parameters(), recipe.lr, recipe.momentum, recipe.weight_decay)
    if recipe.one_cycle:
        plan.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.lr, total_steps=plan.epochs * len(train_batches), pct_start=0.25)
        plan.step_scheduler = True
    _log_inputs(plan.writer, model, images.train_images[:64], test_batches.transform)
    return fit(model, Objective.classification(recipe.label_smoothing), optimizer, train_batches, test_batches, plan)


def evaluate_classifier(model: nn.Module, images: ImageSet, mean, std, plan: FitPlan) -> EvalResult:
    prepare_model(model, plan.device)
    batches = _eval_batches(images.test_images, images.test_labels, mean, std, plan.device)
    return evaluate(model, Objective.classification(), batches, plan)


def _eval_batches(images: Tensor, labels: Tensor, mean, std, device: torch.device) -> TensorBatches:
    transform = BatchTransform(mean, std, device, channels_last=use_channels_last(device))
    return TensorBatches(images, labels, batch_size=EVAL_BATCH_SIZE, transform=transform)


def _log_inputs(writer, model: nn.Module, sample: Tensor, transform: Callable[[Tensor], Tensor]) -> None:
    """TensorBoard as in the notes: a grid of input images and the model graph."""
    if writer is None or len(sample) == 0:
        return
    writer.add_images("inputs", sample.float().cpu() / 255)
    model.eval()
    with warnings.catch_warnings():  # add_graph traces with torch.jit, which warns it is deprecated
        warnings.simplefilter("ignore")
        writer.add_graph(model, transform(sample[:8]))


def report(evaluation: EvalResult, classes: list[str], *, split: str = "test", plot: Path | None = None,
           writer=None, quiet: bool) -> tuple[dict[str, float | None], list]:
    """Per-class accuracy and the confusion matrix: rich tables, optional PNG heatmap and TensorBoard figure.

    Returns both for the JSON summary ({class: accuracy}, matrix rows = true classes).
    """
    from torchtools.core import plots

    matrix = confusion_matrix(evaluation.outputs.argmax(dim=1), evaluation.targets, len(classes))
    accuracy = dict(zip(classes, per_class_accuracy(matrix)))
    totals = matrix.sum(dim=1).tolist()
    rows = [(name, count, int(matrix[index, index]), value if value is not None else "-")
            for index, ((name, value), count) in enumerate(zip(accuracy.items(), totals))]
    print_table(f"per-class accuracy ({split})", ["class", "samples", "correct", "accuracy"], rows, quiet=quiet)
    if len(classes) <= CONFUSION_MATRIX_MAX_CLASSES:
        # Many classes: 4-letter column heads keep the matrix inside a terminal; rows keep the full names.
        heads = [name[:4] for name in classes] if len(classes) > 10 else classes
        print_table(f"confusion matrix ({split}; rows: true, columns: predicted)", ["true \\ predicted", *heads],
                    [(name, *row) for name, row in zip(classes, matrix.tolist())], quiet=quiet)
    else:
        say(f"confusion matrix: {len(classes)} classes, in the --json summary", quiet=quiet)
    title = f"{split} confusion matrix (accuracy {evaluation.accuracy:.1%})"
    if plot is not None:
        plots.heatmap(plot, matrix.numpy(), classes, title=title)
        say(f"confusion matrix drawn to {plot}", quiet=quiet)
    if writer is not None:
        writer.add_figure(f"{split}/confusion_matrix", plots.heatmap_figure(matrix.numpy(), classes, title=title))
        for name, value in accuracy.items():
            if value is not None:
                writer.add_scalar(f"{split}/accuracy_by_class/{name}", value)
        writer.flush()
    return accuracy, matrix.tolist()


def load_classifier(path: Path, command: str, build: Callable[[dict[str, Any]], nn.Module]) -> tuple[nn.Module, dict]:
    """Rebuild a trained model from its checkpoint's config; returns (model, checkpoint)."""
    checkpoint = load_checkpoint(path, command=command)
    model = build(checkpoint["config"])
    model.load_state_dict(checkpoint["model"])
    return model, checkpoint


@torch.no_grad()
def predict_images(model: nn.Module, paths: list[Path], classes: list[str], mean, std, device: torch.device, *,
                   size: int, grayscale: bool, invert_light_background: bool = False, top: int = 3,
                   quiet: bool = False) -> list[dict[str, Any]]:
    """Label each picture: read with OpenCV, resize to the training size, normalise like training."""
    batch = torch.stack([image_for_model(path, size, grayscale=grayscale,
                                         light_background_inverted=invert_light_background) for path in paths])
    model.to(device).eval()
    probabilities = torch.softmax(model(BatchTransform(mean, std, device)(batch.to(device))).float(), dim=1).cpu()
    return ranked_predictions(paths, probabilities, classes, top=top, quiet=quiet)


def ranked_predictions(paths: list[Path], probabilities: Tensor, classes: list[str], *, top: int,
                       quiet: bool) -> list[dict[str, Any]]:
    """Each image's top classes, printed as `IMAGE: label (label p, ...)`; the JSON `predictions` rows."""
    predictions = []
    for path, row in zip(paths, probabilities):
        values, indices = row.topk(min(top, len(classes)))
        ranked = [[classes[index], round(value, 6)] for value, index in zip(values.tolist(), indices.tolist())]
        predictions.append({"image": str(path), "label": ranked[0][0], "top": ranked})
        say(f"{path}: {ranked[0][0]}  (" + ", ".join(f"{label} {p:.3f}" for label, p in ranked) + ")", quiet=quiet)
    return predictions


@dataclass
class Task:
    """What a vision command supplies to `run`: how to build its model and read its data."""

    command: str
    build: Callable[[dict[str, Any]], nn.Module]  # config -> untrained model
    load_images: Callable[[dict[str, Any]], ImageSet]  # config -> the dataset, on the CPU
    stats: Callable[[ImageSet], tuple[tuple[float, ...], tuple[float, ...]]]  # -> normalisation mean, std
    image_size: int
    grayscale: bool
    invert_light_background: bool = False


def run(task: Task, session, *, config: dict[str, Any], recipe: Recipe, epochs: int, amp: bool, seed: int,
        predict: list[Path] | None, checkpoint: Path | None, resume: Path | None, save: Path | None,
        save_every: int, writer, quiet: bool) -> dict[str, Any]:
    """Train (or load --checkpoint and evaluate), report per class, predict, and finish the session."""
    from torchtools.core.devices import autocast_dtype
    from torchtools.core.errors import UserError

    if checkpoint is not None and resume is not None:
        raise UserError("--checkpoint loads a finished model and --resume continues training: pass one of them")
    device = session.device
    plan = FitPlan(task.command, epochs, device, config=config, save=save, save_every=save_every, resume=resume,
                   amp_dtype=autocast_dtype(device) if amp else None, writer=writer, quiet=quiet)
    evaluation, result = None, None
    if checkpoint is not None:
        model, state = load_classifier(checkpoint, task.command, task.build)
        config, classes, mean, std = state["config"], state["classes"], state["mean"], state["std"]
        say(f"loaded {checkpoint} ({config['model']}, trained {state['epoch']} epochs)", quiet=quiet)
        if not predict:
            evaluation = evaluate_classifier(model, task.load_images(config).to(device), mean, std, plan)
            say(f"test loss {evaluation.loss:.4f}  test accuracy {evaluation.accuracy:.4f}", quiet=quiet)
    else:
        images = task.load_images(config)
        classes = images.classes
        say(f"{images.source}: {len(images.train_labels):,} train and {len(images.test_labels):,} test images, "
            f"{len(classes)} classes", quiet=quiet)
        mean, std = task.stats(images)
        config["num_classes"] = len(classes)
        plan.extra = {"classes": classes, "mean": mean, "std": std}
        model = task.build(config)
        result = train_classifier(model, images.to(device), mean, std, recipe, plan, seed=seed)
        evaluation = result.evaluation
    per_class, matrix = (report(evaluation, classes, writer=writer, quiet=quiet) if evaluation is not None
                         else (None, None))
    predictions = None
    if predict:
        predictions = predict_images(model, predict, classes, mean, std, device, size=task.image_size,
                                     grayscale=task.grayscale, invert_light_background=task.invert_light_background,
                                     quiet=quiet)
    metrics = dict(result.metrics) if result else {}
    if result is None and evaluation is not None:
        metrics = {"test_loss": evaluation.loss, "test_accuracy": evaluation.accuracy}
    return session.finish(
        epochs=result.epochs if result else 0, train_seconds=result.train_seconds if result else 0.0, metrics=metrics,
        checkpoint=save if result else None, model=config["model"], dataset=config["dataset"], classes=classes,
        per_class_accuracy=per_class, confusion_matrix=matrix, predictions=predictions)
