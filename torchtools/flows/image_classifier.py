"""The pictures of mnist, cifar and transfer in the one classifier flow (flows/classifier.py).

A command brings its data (an ImageSet), its model and its ImageFormat (how a picture becomes an input);
ImageTask gives the flow what is particular to pictures: batches sliced from uint8 tensors on the device,
the pictures shown in TensorBoard and --report, a --checkpoint's evaluation, and batched prediction of the
user's pictures.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchtools.core import distributed
from torchtools.core.devices import channels_last
from torchtools.core.engine import EvalResult, Objective, evaluate
from torchtools.core.errors import UserError, first_line
from torchtools.core.output import format_metrics, path_text, say, warn, warn_skipped
from torchtools.core.prediction_output import PredictionWriter
from torchtools.core.run import Run
from torchtools.data.folders import FolderFiles
from torchtools.data.image_inputs import expand_image_inputs, image_batches
from torchtools.data.images import DEFAULT_MAX_PIXELS, UNREADABLE
from torchtools.data.loaders import TensorBatches, every_sample
from torchtools.data.streaming import StreamedImages
from torchtools.data.transforms import ImageFormat
from torchtools.data.vision import ImageSet
from torchtools.flows import classifier, image_report
from torchtools.models.frozen_features import FrozenBackbone, head_inputs, precomputable

PREDICT_CHUNK = 256  # pictures decoded and labelled at a time: memory stays bounded for any number
SKIPPED_SHOWN = 3


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
                           plot: Path | None = None, frozen_head: str | None = None,
                           class_weights: list[float] | None = None, **summary: Any) -> None:
    """The classifier flow (flows/classifier.py) on pictures: `images` to train on or evaluate (None: only label
    `pictures`), and the summary with `summary`'s keys. `frozen_head` names the one trained module of a frozen
    backbone (--mode freeze); `class_weights` weight the training loss per class (saved with the model)."""
    classifier.train_evaluate_predict(run, ImageTask(run, network, images, fmt, pictures, eval_name=eval_name,
                                                     held_out_asked=held_out_asked, plot=plot,
                                                     frozen_head=frozen_head, class_weights=class_weights,
                                                     summary=summary))


class ImageTask(classifier.Task):
    """Pictures for the classifier flow: batches sliced from uint8 tensors on the device (or streamed files),
    a --checkpoint's held-out images evaluated as in training, the user's pictures labelled."""

    def __init__(self, run: Run, network: nn.Module, images: ImageSet | None, fmt: ImageFormat,
                 pictures: list[Path], *, eval_name: str, held_out_asked: bool, plot: Path | None,
                 frozen_head: str | None, class_weights: list[float] | None, summary: dict[str, Any]):
        classes = images.classes if images is not None else saved_classes(run)
        super().__init__(run, prepare_model(network, run.device), classes,
                         {"classes": classes, "image_format": dataclasses.asdict(fmt),
                          **({"class_weights": class_weights} if class_weights is not None else {})},
                         source=images.source if images is not None else run.source, eval_name=eval_name, plot=plot)
        self.images, self.fmt, self.pictures, self.frozen_head, self._summary = images, fmt, pictures, frozen_head, \
            summary
        if images is not None:
            self.train_count, self.held_out_count = len(images.train_labels), len(images.test_labels)
        self.held_out_asked, self._sample, self.class_weights = held_out_asked, None, class_weights

    def batches(self):
        config = self.run.config
        return batches(self.images.to(self.run.device), self.fmt, self.run.device, batch_size=config.batch_size,
                       seed=config.seed)

    def finder_batches(self):  # a twin of the training batches: the range test and batch.png use none of its draws
        return self.batches()[0]

    def sample(self, train_batches) -> Tensor:
        """The first training pictures (decoded once, where streamed): the summary's, TensorBoard's, batch.png's."""
        if self._sample is None:
            self._sample = train_batches.peek(64) if isinstance(train_batches, StreamedImages) else \
                self.images.train_images[:64]
        return self._sample

    def summary_input(self, train_batches) -> tuple[Tensor, str]:
        sample = self.sample(train_batches)
        return self.fmt.eval_transform(self.run.device, channels_last=False)(sample[:2]), \
            _model_title(self.run, self.model, sample)

    def before_fit(self, train_batches) -> None:
        run, sample = self.run, self.sample(train_batches)
        _log_inputs(run.writer, self.model, sample, self.fmt.eval_transform(run.device, channels_last=False))
        if run.report is not None:
            # A twin of the training batches: the batch training sees first, shuffled and augmented, none of its
            # draws used up.
            image_report.training_batch(run.report.path("batch.png"), self.finder_batches(), self.fmt, self.classes)

    def fit_inputs(self, train_batches, held_out):
        if self.frozen_head is None:
            return self.model, train_batches, held_out
        return on_frozen_features(self.model, self.frozen_head, self.fmt, train_batches, held_out, self.run.device)

    def after_fit(self, train_batches, held_out) -> None:
        _note_skipped(self.images, train_batches, held_out)

    def evaluate_loaded(self) -> EvalResult | None:
        images, run = self.images, self.run
        if images is None:
            return None
        if images.classes != saved_classes(run):
            raise UserError(f"{images.source} holds classes {', '.join(images.classes)}; {run.source} was "
                            f"trained on {', '.join(saved_classes(run))}")
        evaluation = evaluate_images(self.model, images, self.fmt, run.device,
                                     class_weights=run.loaded.get("class_weights"))
        metrics = {f"{self.eval_name}_loss": evaluation.loss, f"{self.eval_name}_accuracy": evaluation.accuracy}
        say(f"{format_metrics(metrics)} ({len(images.test_labels):,} images)")
        return evaluation

    def report_more(self, evaluation: EvalResult) -> None:
        image_report.mistakes(self.run.report.path("mistakes.png"), evaluation, self.images, self.fmt, self.classes)

    def predict(self) -> dict[str, Any]:
        config = self.run.config
        return predict(self.model, self.pictures, self.classes, self.fmt, self.run.device, output=config.output,
                       top_k=config.top_k, max_pixels=config.max_pixels)

    def summary(self) -> dict[str, Any]:
        return {**self._summary, "classes": self.classes}


def _model_title(run: Run, model: nn.Module, sample: Tensor) -> str:
    """"CourseCNN, 1x28x28 input"; a bare nn.Sequential (cifar's) is named by --model instead."""
    name = type(model).__name__
    if type(model) is nn.Sequential and vars(run.config).get("model"):
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


def evaluate_images(model: nn.Module, images: ImageSet | FolderFiles, fmt: ImageFormat, device: torch.device, *,
                    class_weights: list[float] | None = None) -> EvalResult:
    """The held-out images scored as during training (same batches, the loss weighted as it was; evaluation is
    fp32 in both)."""
    held_out = held_out_batches(images.to(device), fmt, device)
    evaluation = evaluate(prepare_model(model, device), Objective.classification(class_weights=class_weights,
                                                                                 device=device), held_out, device)
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
