"""The one image-classifier flow of mnist, cifar and transfer: train or load, evaluate, report per class, predict.

A command brings its data (an ImageSet), its model and its ImageFormat (how a picture becomes an input);
everything after that is the same for the three, in this order: batches sliced from uint8 tensors on the
device, the optimizer and schedule of the config, resume, the engine's fit, the per-class report, batched
prediction of the user's pictures, and the summary.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchtools.core import distributed
from torchtools.core.devices import channels_last
from torchtools.core.engine import (EvalResult, FitResult, Objective, check_trainable, evaluate, fit, make_optimizer,
                                    make_scheduler)
from torchtools.commands import image_report
from torchtools.core.errors import UserError, first_line
from torchtools.core.lr_finder import run_finder
from torchtools.core.output import format_metrics, path_text, say, warn, warn_skipped
from torchtools.core.prediction_output import PredictionWriter
from torchtools.core.report import report
from torchtools.core.run import Run
from torchtools.core.summary import summarise
from torchtools.data.folders import FolderFiles
from torchtools.data.image_inputs import expand_image_inputs, image_batches
from torchtools.data.images import DEFAULT_MAX_PIXELS, UNREADABLE
from torchtools.data.loaders import TensorBatches, every_sample
from torchtools.data.streaming import StreamedImages
from torchtools.data.transforms import ImageFormat
from torchtools.data.vision import ImageSet
from torchtools.models.frozen_features import FrozenBackbone, head_inputs, precomputable

PREDICT_CHUNK = 256  # pictures decoded and labelled at a time: memory stays bounded for any number
SKIPPED_SHOWN = 3


@dataclass
class Outcome:
    """What training (or loading) produced, for the report and the summary."""

    result: FitResult | None  # None when a --checkpoint was loaded
    evaluation: EvalResult | None
    metrics: dict[str, float | None]
    per_class_accuracy: dict[str, float | None] | None = None
    confusion_matrix: list[list[int]] | None = None
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)  # model_summary, suggested_lr


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move the model to the device, in the memory format its batches will come in."""
    return model.to(device, memory_format=torch.channels_last if channels_last(device) else torch.contiguous_format)


def saved_format(run: Run, fmt: ImageFormat) -> ImageFormat:
    """The format a --checkpoint model was trained with (its normalisation too), else `fmt`."""
    if run.trains:
        return fmt
    try:
        return ImageFormat(**run.loaded["image_format"])
    except (TypeError, ValueError, KeyError) as error:
        raise UserError(f"{run.source}: its image_format is not a picture format ({first_line(error)}); the file "
                        "was edited or comes from elsewhere") from None


def saved_classes(run: Run) -> list[str]:
    return list(run.loaded["classes"])


def describe(images: ImageSet, eval_name: str) -> None:
    say(f"{images.source}: {len(images.train_labels):,} train and {len(images.test_labels):,} {eval_name} images, "
        f"{len(images.classes)} classes")
    warn_skipped(UNREADABLE, images.skipped)


def training_sample(images: ImageSet | FolderFiles, fmt: ImageFormat, count: int = 5000) -> Tensor:
    """Training images as one uint8 tensor: all of them in memory, or the first `count` streamed files
    (enough for per-channel statistics)."""
    if isinstance(images.train_images, Tensor):
        return images.train_images
    batches = image_batches(images.train_images[:count], fmt.prepare, grayscale=fmt.grayscale, batch_size=512,
                            max_pixels=images.max_pixels)
    return torch.cat([batch for readable, batch, _ in batches if readable])


def eval_batch_size(fmt: ImageFormat) -> int:
    """Evaluation needs no gradients: bigger batches, same numbers (small for photo-sized inputs)."""
    return 1024 if fmt.size <= 64 else 64


def needs_data(run: Run, pictures: list[Path]) -> bool:
    """Training reads the data; a --checkpoint run reads it to evaluate, unless it only labels pictures."""
    return run.trains or not pictures


def train_evaluate_predict(run: Run, network: nn.Module, images: ImageSet | None, fmt: ImageFormat,
                           pictures: list[Path], *, eval_name: str = "test", held_out_asked: bool = True,
                           plot: Path | None = None, frozen_head: str | None = None, **summary: Any) -> None:
    """The flow after data and model: fit (or load), report, predict, and the summary with `summary`'s keys.
    `frozen_head` names the one trained module of a frozen backbone (--mode freeze)."""
    outcome = fit_or_evaluate(run, network, images, fmt, eval_name=eval_name, held_out_asked=held_out_asked,
                              plot=plot, frozen_head=frozen_head)
    classes = images.classes if images is not None else saved_classes(run)
    predicted = predict(network, pictures, classes, fmt, run.device, output=run.config.output, top_k=run.config.top_k,
                        max_pixels=run.config.max_pixels)
    run.finish(outcome.result, metrics=outcome.metrics, **summary, **outcome.summary, classes=classes,
               per_class_accuracy=outcome.per_class_accuracy, confusion_matrix=outcome.confusion_matrix,
               **predicted)


def fit_or_evaluate(run: Run, model: nn.Module, images: ImageSet | None, fmt: ImageFormat, *,
                    eval_name: str = "test", held_out_asked: bool = True, plot: Path | None = None,
                    frozen_head: str | None = None) -> Outcome:
    """Train `model` on images (--resume included), or load the --checkpoint weights into it and evaluate
    on `images` where given; then report per class."""
    config, device = run.config, run.device
    prepare_model(model, device)
    if run.trains:
        check_trainable(images.source, images.classes, len(images.train_labels), len(images.test_labels),
                        held_out_asked=held_out_asked, unit="images")
        run.check_resumed("classes", images.classes, "the class list")
        train_batches, eval_batches = batches(images.to(device), fmt, device, batch_size=config.batch_size,
                                              seed=config.seed)
        trained = [parameter for parameter in model.parameters() if parameter.requires_grad]
        objective = Objective.classification(config.label_smoothing)
        sample = train_batches.peek(64) if isinstance(train_batches, StreamedImages) else images.train_images[:64]
        eval_transform = fmt.eval_transform(device, channels_last=False)
        summary = {"model_summary": summarise(model, eval_transform(sample[:2]), _model_title(run, model, sample))}

        def twin_batches():  # a twin of train_batches: the range test and batch.png use up none of its draws
            return batches(images.to(device), fmt, device, batch_size=config.batch_size, seed=config.seed)[0]

        finding = run_finder(run, model, objective, twin_batches, trained)
        if finding is not None:
            summary["suggested_lr"] = finding.suggested
        if run.finds_lr_only:
            return Outcome(None, None, {}, summary=summary)
        config = run.config  # --lr auto: now the suggestion
        optimizer = make_optimizer(config, trained)
        scheduler, per_step = make_scheduler(config, optimizer, len(train_batches))
        _log_inputs(run.writer, model, sample, eval_transform)
        if run.report is not None:
            image_report.training_batch(run.report.path("batch.png"), twin_batches(), fmt, images.classes)
        trained_model, fit_train, fit_eval = (model, train_batches, eval_batches) if frozen_head is None else \
            on_frozen_features(model, frozen_head, fmt, train_batches, eval_batches, device)
        result = fit(trained_model, objective, optimizer, fit_train, fit_eval,
                     run, scheduler=scheduler, step_scheduler=per_step, eval_name=eval_name,
                     state={"classes": images.classes, "image_format": dataclasses.asdict(fmt)})
        _note_skipped(images, train_batches, eval_batches)
        evaluation, metrics = result.evaluation, dict(result.metrics)
    else:
        run.load_model(model, f"{len(saved_classes(run))} classes")
        result, evaluation, metrics, summary = None, None, {}, {}
        if images is not None:
            if images.classes != saved_classes(run):
                raise UserError(f"{images.source} holds classes {', '.join(images.classes)}; {run.source} was "
                                f"trained on {', '.join(saved_classes(run))}")
            evaluation = evaluate_images(model, images, fmt, device)
            metrics = {f"{eval_name}_loss": evaluation.loss, f"{eval_name}_accuracy": evaluation.accuracy}
            say(f"{format_metrics(metrics)} ({len(images.test_labels):,} images)")
    outcome = Outcome(result, evaluation, metrics, summary=summary)
    if evaluation is not None:
        classes = images.classes if images is not None else saved_classes(run)
        outcome.per_class_accuracy, outcome.confusion_matrix = report(
            evaluation, classes, split=eval_name, plot=plot, writer=run.writer, folder=run.report)
        if run.report is not None:
            image_report.mistakes(run.report.path("mistakes.png"), evaluation, images, fmt, classes)
    return outcome


def _model_title(run: Run, model: nn.Module, sample: Tensor) -> str:
    """"CourseCNN, 1x28x28 input"; a bare nn.Sequential (cifar's) is named by --model instead."""
    name = type(model).__name__
    if type(model) is nn.Sequential and getattr(run.config, "model", None):
        name = f"{run.config.model} (nn.Sequential)"
    return f"{name}, {'x'.join(map(str, sample.shape[1:]))} input"


def batches(images: ImageSet | FolderFiles, fmt: ImageFormat, device: torch.device, *, batch_size: int,
            seed: int) -> tuple[TensorBatches, TensorBatches | None]:
    """(train, held-out) batches, sliced from the in-memory images or decoded from streamed files;
    augmentation only on the training side."""
    count = len(images.train_labels)
    batch_size = min(batch_size, count)
    train = _slices(images, "train", fmt, device, batch_size=batch_size, shuffle=True,
                    seed=seed,
                    # Under torchrun each process draws its own augmentation (the order stays shared).
                    transform=fmt.train_transform(device, seed=seed + distributed.rank(),
                                                  channels_last=channels_last(device)),
                    # A last batch of one image breaks BatchNorm in training mode where maps are 1x1.
                    drop_last=count % batch_size == 1)
    return train, held_out_batches(images, fmt, device)


def on_frozen_features(model: nn.Module, head: str, fmt: ImageFormat, train: TensorBatches,
                       held_out: TensorBatches | None, device: torch.device):
    """--mode freeze: (model, train, held-out) for fit, where the frozen backbone's features of the held-out
    pictures are computed once, and those of the training pictures too where every epoch shows them alike
    (no augmentation): an epoch then runs the backbone only on what changes."""
    frozen = FrozenBackbone(model, head)
    train_once, why = precomputable(fmt.augment)
    say(f"freeze: {why}")

    def features(batches: TensorBatches, **batching) -> TensorBatches:
        inputs, targets = head_inputs(model, head, every_sample(batches), device)
        return TensorBatches(inputs, targets, **batching)  # sharded under torchrun, as the pictures were

    try:
        if held_out is not None:
            held_out = features(held_out, batch_size=held_out.batch_size)
        if train_once:
            train = features(train, batch_size=train.batch_size, shuffle=True, seed=train.seed,
                             drop_last=train.drop_last)
    except ValueError as error:  # the head is not the model's last step: its input cannot stand in for it
        warn(f"freeze: {error}; the backbone runs on every picture every epoch")
    return frozen, train, held_out


def held_out_batches(images: ImageSet | FolderFiles, fmt: ImageFormat, device: torch.device) -> TensorBatches | None:
    if not len(images.test_labels):
        return None
    return _slices(images, "test", fmt, device, batch_size=eval_batch_size(fmt),
                   transform=fmt.eval_transform(device, channels_last=channels_last(device)))


def _slices(images: ImageSet | FolderFiles, split: str, fmt: ImageFormat, device: torch.device,
            **batching) -> TensorBatches:
    """TensorBatches over the `split` ("train", "test") uint8 images already in memory, or StreamedImages
    decoding its files in workers."""
    inputs, labels = getattr(images, f"{split}_images"), getattr(images, f"{split}_labels")
    if isinstance(inputs, Tensor):
        return TensorBatches(inputs, labels, **batching)
    return StreamedImages(inputs, labels.tolist(), fmt.prepare, grayscale=fmt.grayscale, device=device,
                          max_pixels=images.max_pixels, **batching)


def evaluate_images(model: nn.Module, images: ImageSet | FolderFiles, fmt: ImageFormat, device: torch.device
                    ) -> EvalResult:
    """The held-out images scored as during training (same batches; evaluation is fp32 in both)."""
    held_out = held_out_batches(images.to(device), fmt, device)
    evaluation = evaluate(prepare_model(model, device), Objective.classification(), held_out, device)
    _note_skipped(images, held_out)
    return evaluation


def _note_skipped(images: ImageSet | FolderFiles, *streams) -> None:
    """Streamed files turn out unreadable only as epochs meet them: add them to the set's list, and say so."""
    found = [path for stream in streams for path in getattr(stream, "skipped", [])]
    new = [path for path in dict.fromkeys(found) if path not in images.skipped]
    images.skipped.extend(new)
    warn_skipped(UNREADABLE, new)


def _log_inputs(writer, model: nn.Module, sample: Tensor, transform: Callable[[Tensor], Tensor]) -> None:
    """TensorBoard as in the notes: a grid of input images and the model graph."""
    if writer is None or len(sample) == 0:
        return
    writer.add_images("inputs", sample.float().cpu() / 255)
    model.eval()
    with warnings.catch_warnings():  # add_graph traces with torch.jit, which warns it is deprecated
        warnings.simplefilter("ignore")
        writer.add_graph(model, transform(sample[:8].to(next(model.parameters()).device)))


def pictures(run: Run) -> list[Path]:
    """The --predict pictures (files, folders walked recursively, quoted globs); --output needs them (Run.start
    has checked where it goes)."""
    items, output = run.config.predict, run.config.output
    if output is not None and not items:
        raise UserError("--output writes the --predict results: pass --predict FILE, FOLDER or GLOB too")
    return expand_image_inputs(items) if items else []


@torch.no_grad()
def predict(model: nn.Module, paths: list[Path], classes: list[str], fmt: ImageFormat, device: torch.device, *,
            output: Path | None = None, top_k: int = 3, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    """Label each picture as held-out images are seen (the one reader, prepared, normalised), PREDICT_CHUNK
    at a time so memory stays bounded; unreadable files (and those over `max_pixels`) are skipped and named.
    Returns the summary keys."""
    model = prepare_model(model, device).eval()
    transform = fmt.eval_transform(device, channels_last=channels_last(device))
    workers = 0 if len(paths) <= PREDICT_CHUNK else None  # worker processes pay off only for many pictures
    with PredictionWriter(output, top_k, classes=len(classes)) as writer:
        chunks = image_batches(paths, fmt.prepare, grayscale=fmt.grayscale, batch_size=PREDICT_CHUNK, workers=workers,
                               max_pixels=max_pixels)
        for readable, batch, unreadable in chunks:
            writer.skip(unreadable)
            if not readable:
                continue
            probabilities = torch.softmax(model(transform(batch.to(device))).float(), dim=1).cpu()
            for path, row in zip(readable, probabilities.tolist()):
                writer.add(path, classes, row)
        if paths and not writer.count:
            raise UserError(f"none of the {len(paths)} picture(s) to label can be read: "
                            + ", ".join(path_text(path) for path in writer.skipped[:SKIPPED_SHOWN])
                            + " (not regular picture files, damaged, or over --max-pixels)")
    return writer.report(len(paths), UNREADABLE)
