"""How pictures become model inputs: one ImageFormat per command, used alike in training, evaluation and
prediction, with normalisation and augmentation as batch ops on the device.

A picture is decoded once (OpenCV) and `prepare`d to a stored uint8 square; every batch is then
gathered from those squares and turned into normalised floats in one op on its device. Nothing converts
images one by one per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CROP_PCT = 224 / 256  # resize 256, centre crop 224
# How a picture is resized when it grows; shrinking goes through INTER_AREA first (antialiased, as PIL resizes).
INTERPOLATIONS = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}


def _numbers(values, count: int) -> bool:
    return isinstance(values, (list, tuple)) and len(values) == count and all(
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) for value in values)


@dataclass(frozen=True)
class ImageFormat:
    """What a command's model takes and how its training images are augmented."""

    size: int  # side of the stored uint8 squares
    mean: tuple[float, ...]
    std: tuple[float, ...]
    grayscale: bool = False
    fit: str = "stretch"  # stretch: resize to size x size; centre: shorter side to size, centre square
    crop: int | None = None  # the model's input side, cut from the stored square (ImageNet's 224 of 256)
    augment: str = "none"  # none | shift-flip (4-pixel shifts, mirror) | resized-crop-flip (ImageNet)
    invert_light_background: bool = False  # MNIST digits are light on dark: a dark digit on paper is inverted
    interpolation: str = "bilinear"  # how a picture is resized to `size` (transfer's --interpolation)

    def __post_init__(self):
        """Also a checkpoint's saved format comes through here: a wrong one is a ValueError, not a crash later."""
        def side(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 65536

        channels = 1 if self.grayscale else 3
        checks = {
            "size": side(self.size),
            "crop": self.crop is None or (side(self.crop) and self.crop <= self.size),
            "mean": _numbers(self.mean, channels),
            "std": _numbers(self.std, channels) and all(value > 0 for value in self.std),
            "fit": self.fit in ("stretch", "centre"),
            "augment": self.augment in ("none", "shift-flip", "resized-crop-flip"),
            "grayscale": isinstance(self.grayscale, bool),
            "invert_light_background": isinstance(self.invert_light_background, bool),
            "interpolation": self.interpolation in INTERPOLATIONS,
        }
        wrong = [name for name, fine in checks.items() if not fine]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} out of place in {self}")
        object.__setattr__(self, "mean", tuple(self.mean))
        object.__setattr__(self, "std", tuple(self.std))

    @property
    def key(self) -> str:
        """Names what `prepare` does, so cached decodings of another format stay apart."""
        resize = "" if self.interpolation == "bilinear" else f"-{self.interpolation}"
        return f"{self.fit}-{self.size}{'-inverted' if self.invert_light_background else ''}{resize}"

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """A decoded picture (HWC RGB or HW grey uint8) as a stored square."""
        if self.invert_light_background:
            border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
            if border.mean() > 127:
                image = 255 - image
        if self.fit == "centre":
            return centre_square(image, self.size, self.interpolation)
        return fit_size(image, self.size, self.interpolation)

    def train_transform(self, device: torch.device, *, seed: int, channels_last: bool) -> Callable[[Tensor], Tensor]:
        """Augment (if any) and normalise. Its `set_epoch(epoch)` reseeds the augmentation for an epoch, as
        TensorBatches does before each: epoch N draws the same crops and flips in an unbroken and a resumed
        run, so the generators need no saving in checkpoints."""
        if self.augment == "resized-crop-flip":
            crop = RandomResizedCropFlip(self.crop or self.size, device, seed=seed)
            return Chain(crop, BatchTransform(self.mean, self.std, device, channels_last=channels_last))
        shifts = self.augment == "shift-flip"
        return BatchTransform(self.mean, self.std, device, crop_padding=4 if shifts else 0, flip=shifts,
                              channels_last=channels_last, seed=seed)

    def eval_transform(self, device: torch.device, *, channels_last: bool) -> Callable[[Tensor], Tensor]:
        """The centre `crop` of the stored squares (if any), normalised."""
        normalise = BatchTransform(self.mean, self.std, device, channels_last=channels_last)
        if self.crop is None or self.crop == self.size:
            return normalise
        offset = (self.size - self.crop) // 2
        return lambda batch: normalise(batch[..., offset:offset + self.crop, offset:offset + self.crop])


def stored_size(input_size: int, crop_pct: float = IMAGENET_CROP_PCT) -> int:
    """The side ImageNet-style images are kept at before the centre crop: 256 for 224 inputs at crop_pct 0.875."""
    return max(input_size, round(input_size / crop_pct))


def resize(image: np.ndarray, width: int, height: int, interpolation: str = "bilinear") -> np.ndarray:
    """`image` at width x height: shrinking bilinear is the area filter (antialiased, as PIL's resize); bicubic
    shrinks by area to twice the size first, then by its own filter; nearest is nearest throughout."""
    shrinking = image.shape[0] > height or image.shape[1] > width
    if interpolation == "bilinear" and shrinking:
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    if interpolation == "bicubic" and (image.shape[0] > 2 * height or image.shape[1] > 2 * width):
        image = cv2.resize(image, (min(image.shape[1], 2 * width), min(image.shape[0], 2 * height)),
                           interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (width, height), interpolation=INTERPOLATIONS[interpolation])


def centre_square(image: np.ndarray, size: int, interpolation: str = "bilinear") -> np.ndarray:
    """Resize the shorter side to `size` (antialiased when shrinking), keep the centre size x size."""
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_height, new_width) != (height, width):
        image = resize(image, new_width, new_height, interpolation)
    top, left = (new_height - size) // 2, (new_width - size) // 2
    return np.ascontiguousarray(image[top:top + size, left:left + size])


def fit_size(image: np.ndarray, size: int, interpolation: str = "bilinear") -> np.ndarray:
    """Resize an HWC/HW uint8 image to size x size (antialiased when shrinking)."""
    if image.shape[:2] == (size, size):
        return image
    return resize(image, size, size, interpolation)


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (unbiased, as Tensor.std) of uint8 images, on the 0..1 scale ToTensor gives.

    Exact, from each channel's 256-bin histogram: one integer pass over the pixels, where a float64 copy
    of all of them (1.2 GB for CIFAR-10's 50,000) took seconds before every run.
    """
    levels = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).double().cpu()
        total = counts.sum()
        mean = (counts * levels).sum() / total
        variance = (counts * (levels - mean) ** 2).sum() / (total - 1)
        means.append(mean.item())
        stds.append(variance.sqrt().item())
    return tuple(means), tuple(stds)


def epoch_seed(seed: int, epoch: int) -> int:
    """A generator seed for one epoch of a run seeded `seed`: well mixed, the same on every machine."""
    return int(np.random.SeedSequence([seed % 2**64, epoch]).generate_state(1, np.uint64)[0])


class Chain:
    """Transforms applied in turn; `set_epoch` reaches those that augment."""

    def __init__(self, *steps: Callable[[Tensor], Tensor]):
        self.steps = steps

    def __call__(self, batch: Tensor) -> Tensor:
        for step in self.steps:
            batch = step(batch)
        return batch

    def set_epoch(self, epoch: int) -> None:
        for step in self.steps:
            if hasattr(step, "set_epoch"):
                step.set_epoch(epoch)


class BatchTransform:
    """uint8 batch -> normalised float batch on its device, with optional random crop and flip.

    Normalising is one fused multiply-add: (x/255 - mean)/std = x * (1/(255 std)) - mean/std.
    Augmentation draws from its own seeded generator, reseeded per epoch (`set_epoch`), so runs repeat
    exactly, resumed ones included.
    """

    def __init__(self, mean, std, device: torch.device, *, crop_padding: int = 0, flip: bool = False,
                 channels_last: bool = False, seed: int = 0):
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale, self.shift = 1 / (255 * std_t), -mean_t / std_t
        self.crop_padding, self.flip, self.channels_last, self.seed = crop_padding, flip, channels_last, seed
        self.generator = torch.Generator(device=device).manual_seed(seed) if crop_padding or flip else None

    def set_epoch(self, epoch: int) -> None:
        if self.generator is not None:
            self.generator.manual_seed(epoch_seed(self.seed, epoch))

    def __call__(self, batch: Tensor) -> Tensor:
        images = torch.addcmul(self.shift, batch.float(), self.scale)
        if self.crop_padding:
            images = random_crop(images, self.crop_padding, self.generator)
        if self.flip:
            images = random_flip(images, self.generator)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images


def random_crop(images: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Each image shifted by up to `padding` pixels each way (reflect padding), in one gather."""
    count, channels, height, width = images.shape
    padded = F.pad(images, (padding,) * 4, mode="reflect")
    dy, dx = (torch.randint(0, 2 * padding + 1, (2, count), device=images.device, generator=generator))
    rows = (dy[:, None] + torch.arange(height, device=images.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(width, device=images.device))[:, None, None, :]
    batch = torch.arange(count, device=images.device)[:, None, None, None]
    channel = torch.arange(channels, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_flip(images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each image mirrored left-right with probability 1/2."""
    flip = torch.rand(len(images), device=images.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(3), images)


class RandomResizedCropFlip:
    """torchvision's RandomResizedCrop(scale=(0.08, 1), ratio=(3/4, 4/3)) + RandomHorizontalFlip, batched.

    Each image gets its own box (ten tries at a box that fits, else the whole image, as torchvision
    does) from a seeded generator, so runs repeat exactly.
    """

    TRIES = 10

    def __init__(self, size: int, device: torch.device, *, seed: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size, self.scale, self.seed = size, scale, seed
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(epoch_seed(self.seed, epoch))

    def _uniform(self, shape, low: float, high: float, device) -> Tensor:
        return torch.rand(shape, device=device, generator=self.generator) * (high - low) + low

    def __call__(self, batch: Tensor) -> Tensor:
        count, channels, device = len(batch), batch.shape[1], batch.device
        # Box width and height as fractions of the (square) source.
        area = self._uniform((count, self.TRIES), *self.scale, device)
        aspect = torch.exp(self._uniform((count, self.TRIES), *self.log_ratio, device))
        width, height = torch.sqrt(area * aspect), torch.sqrt(area / aspect)
        fits = (width <= 1) & (height <= 1)
        first = fits.int().argmax(dim=1, keepdim=True)
        any_fits = fits.any(dim=1)
        width = torch.where(any_fits, width.gather(1, first).squeeze(1), 1.0)
        height = torch.where(any_fits, height.gather(1, first).squeeze(1), 1.0)
        left = self._uniform(count, 0, 1, device) * (1 - width)
        top = self._uniform(count, 0, 1, device) * (1 - height)
        mirror = torch.where(self._uniform(count, 0, 1, device) < 0.5, -1.0, 1.0)
        # affine_grid maps output coordinates in [-1, 1] to input coordinates: scale, then shift to the box centre.
        theta = torch.zeros(count, 2, 3, device=device)
        theta[:, 0, 0] = width * mirror
        theta[:, 0, 2] = 2 * left + width - 1
        theta[:, 1, 1] = height
        theta[:, 1, 2] = 2 * top + height - 1
        grid = F.affine_grid(theta, [count, channels, self.size, self.size], align_corners=False)
        return F.grid_sample(batch.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
