"""ImageNet-style preprocessing as batch ops on the device: random-resized-crop + flip, centre crop, normalise.

The images arrive as uint8 squares whose side is the "resize 256" of the classic recipe (scaled with
the input size). One `grid_sample` per batch crops, rescales and mirrors every image at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from torchtools.data.vision import BatchTransform

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def stored_size(image_size: int) -> int:
    """The side images are kept at: 256 for 224 inputs (resize 256, crop 224), in proportion otherwise."""
    return round(image_size * 256 / 224)


class RandomResizedCropFlip:
    """torchvision's RandomResizedCrop(scale=(0.08, 1), ratio=(3/4, 4/3)) + RandomHorizontalFlip, batched.

    Each image gets its own box (ten tries at a box that fits, else the whole image, as torchvision
    does) from a seeded generator, so runs repeat exactly.
    """

    TRIES = 10

    def __init__(self, size: int, device: torch.device, *, seed: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.size, self.scale = size, scale
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        self.generator = torch.Generator(device=device).manual_seed(seed)

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


def train_transform(size: int, device: torch.device, *, seed: int, channels_last: bool) -> Callable[[Tensor], Tensor]:
    crop = RandomResizedCropFlip(size, device, seed=seed)
    normalise = BatchTransform(IMAGENET_MEAN, IMAGENET_STD, device, channels_last=channels_last)
    return lambda batch: normalise(crop(batch))


def eval_transform(size: int, device: torch.device, *, channels_last: bool) -> Callable[[Tensor], Tensor]:
    """Centre size x size of the stored squares, normalised."""
    normalise = BatchTransform(IMAGENET_MEAN, IMAGENET_STD, device, channels_last=channels_last)

    def centre(batch: Tensor) -> Tensor:
        offset = (batch.shape[-1] - size) // 2
        return normalise(batch[..., offset:offset + size, offset:offset + size])

    return centre
