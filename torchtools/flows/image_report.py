"""The image commands' pictures in --report: one training batch as the network sees it, and the held-out
pictures it gets most confidently wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from torchtools.core import plots
from torchtools.core.engine import EvalResult
from torchtools.core.output import warn
from torchtools.data.image_inputs import image_batches
from torchtools.data.transforms import ImageFormat

SHOWN = 32  # pictures in each grid


def training_batch(path: Path, batches, fmt: ImageFormat, classes: list[str]) -> None:
    """The first training batch, shuffled and augmented as training draws it, denormalised: `batches` is a
    twin of training's (same seed), so training's own draws are not touched."""
    inputs, labels = next(iter(batches))
    if hasattr(batches, "close"):  # streamed: stop the twin's decoding workers
        batches.close()
    seen = inputs[:SHOWN].float().cpu()
    mean = torch.tensor(fmt.mean).view(1, -1, 1, 1)
    std = torch.tensor(fmt.std).view(1, -1, 1, 1)
    pictures = _displayable((seen * std + mean).mul(255).clamp(0, 255).to(torch.uint8))
    captions = [classes[int(label)] for label in labels[:len(pictures)].tolist()]
    augmented = "no augmentation" if fmt.augment == "none" else f"augmented: {fmt.augment}"
    plots.picture_grid(path, pictures, captions, title=f"the first training batch as training sees it (shuffled, "
                                                       f"{augmented})")


def mistakes(path: Path, evaluation: EvalResult, images, fmt: ImageFormat, classes: list[str]) -> None:
    """The held-out pictures the model is most confident about and wrong on: true and predicted label, and the
    probability it gave the wrong label."""
    probabilities = torch.softmax(evaluation.outputs.float(), dim=1)
    confidence, predicted = probabilities.max(dim=1)
    wrong = torch.nonzero(predicted != evaluation.targets).flatten()
    order = wrong[torch.argsort(confidence[wrong], descending=True)][:SHOWN].tolist()
    if len(evaluation.targets) != len(images.test_labels):
        warn("mistakes.png left out: some held-out files could not be read, so the pictures do not line up")
        return
    pictures = _held_out_pictures(images, fmt, order)
    captions = [f"true {classes[int(evaluation.targets[index])]}\npredicted {classes[int(predicted[index])]} "
                f"{float(confidence[index]):.2f}" for index in order]
    title = (f"most confident mistakes ({len(wrong):,} of {len(evaluation.targets):,} wrong)" if order
             else f"no mistakes among {len(evaluation.targets):,} held-out pictures")
    plots.picture_grid(path, pictures, captions, title=title)


def _held_out_pictures(images, fmt: ImageFormat, order: list[int]) -> list[np.ndarray]:
    if not order:
        return []
    if isinstance(images.test_images, Tensor):
        return _displayable(images.test_images[order].cpu())
    paths = [images.test_images[index] for index in order]
    batches = image_batches(paths, fmt.prepare, grayscale=fmt.grayscale, batch_size=len(paths), workers=0,
                            max_pixels=images.max_pixels)
    return [picture for _, batch, _ in batches for picture in _displayable(batch)]


def _displayable(batch: Tensor) -> list[np.ndarray]:
    """uint8 (N, C, H, W) -> HW (grey) or HWC (colour) arrays."""
    array = batch.cpu().numpy()
    return [picture[0] if picture.shape[0] == 1 else picture.transpose(1, 2, 0) for picture in array]
