"""The convolution lessons as computations: output sizes, padding modes, corr2d, edges, a learned
kernel, pooling, and feature maps of a picture. `torchtools conv-demo` prints what these return.

Every function returns plain lists and numbers (JSON-ready) next to the tensors it explains.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchtools.data.images import DEFAULT_MAX_PIXELS, read_image
from torchtools.core.errors import TrainingDiverged, UserError
from torchtools.core.files import write_bytes

# The course notes' F.conv2d example: this 5x5 input and 3x3 kernel give [[10,12,12],[18,16,16],[13,9,3]].
NOTES_INPUT = [[1, 2, 0, 3, 1], [0, 1, 2, 3, 1], [1, 2, 1, 0, 0], [5, 2, 3, 1, 1], [2, 1, 0, 1, 1]]
NOTES_KERNEL = [[1, 2, 1], [0, 1, 0], [2, 1, 0]]
# The notes' corr2d example (gives [[19, 25], [37, 43]]).
CORR2D_INPUT = [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]
CORR2D_KERNEL = [[0.0, 1.0], [2.0, 3.0]]
EDGE_KERNEL = [[1.0, -1.0]]

NAMED_KERNELS = {
    "sobel-x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel-y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "blur": [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]],  # 3x3 Gaussian
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
}


def output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """floor((n + 2p - d(k-1) - 1) / s) + 1, nn.Conv2d's formula; with d=1 the notes' (n - k + 2p) / s + 1."""
    span = dilation * (kernel - 1) + 1
    if size + 2 * padding < span:
        raise UserError(f"a kernel of {kernel} with dilation {dilation} spans {span} pixels, more than the "
                        f"input of {size} padded by {padding} on each side")
    return (size + 2 * padding - span) // stride + 1


def conv2d_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """What F.conv2d itself gives, on shape-only (meta) tensors, so any size costs no memory."""
    output_size(size, kernel, stride, padding, dilation)  # same check, same message
    inputs = torch.empty(1, 1, size, size, device="meta")
    weight = torch.empty(1, 1, kernel, kernel, device="meta")
    return F.conv2d(inputs, weight, stride=stride, padding=padding, dilation=dilation).shape[-1]


def conv2d(image: Tensor, kernel: Tensor, **options) -> Tensor:
    """F.conv2d on one 2-D image and one 2-D kernel (adds and removes the batch and channel axes)."""
    return F.conv2d(image[None, None], kernel[None, None], **options)[0, 0]


def arithmetic(input_size: int, kernel: int, stride: int, padding: int, dilation: int) -> dict:
    """The notes' 5x5 example at stride 1, stride 2 and padding 1, and the size formula for the user's numbers."""
    image, weights = torch.tensor(NOTES_INPUT), torch.tensor(NOTES_KERNEL)
    runs = [{"stride": s, "padding": p, "output": conv2d(image, weights, stride=s, padding=p).tolist()}
            for s, p in ((1, 0), (2, 0), (1, 1))]
    formula = {"input_size": input_size, "kernel": kernel, "stride": stride, "padding": padding,
               "dilation": dilation, "output_size": output_size(input_size, kernel, stride, padding, dilation),
               "conv2d_output_size": conv2d_output_size(input_size, kernel, stride, padding, dilation)}
    return {"input": NOTES_INPUT, "kernel": NOTES_KERNEL, "convolutions": runs, "formula": formula}


def mode_padding(mode: str, kernel: int) -> tuple[int, int]:
    """Zeros added (before, after) on each axis. SAME with an even kernel pads one more after, as PyTorch does."""
    if mode == "valid":
        return 0, 0
    if mode == "same":
        return (kernel - 1) // 2, kernel - 1 - (kernel - 1) // 2
    if mode == "full":
        return kernel - 1, kernel - 1
    raise ValueError(mode)


def padded_conv2d(image: Tensor, kernel: Tensor, mode: str) -> Tensor:
    before, after = mode_padding(mode, kernel.shape[-1])
    return conv2d(F.pad(image, (before, after, before, after)), kernel)


def modes(input_size: int, kernels: list[int]) -> dict:
    """VALID, SAME and FULL: the padding each needs and the output size, checked against PyTorch's own
    padding='valid'/'same' where it has them; plus the three outputs of the notes' 5x5 example."""
    sizes = []
    for kernel in kernels:
        image = torch.empty(input_size, input_size, device="meta")
        weight = torch.empty(kernel, kernel, device="meta")
        for mode in ("valid", "same", "full"):
            before, after = mode_padding(mode, kernel)
            if input_size + before + after < kernel:
                continue  # VALID with a kernel larger than the input has no output
            entry = {"mode": mode, "kernel": kernel, "padding": [before, after],
                     "output_size": padded_conv2d(image, weight, mode).shape[-1]}
            if mode != "full":
                with warnings.catch_warnings():  # even kernels: PyTorch warns that it pads a copy; we know
                    warnings.simplefilter("ignore", UserWarning)
                    entry["pytorch_output_size"] = conv2d(image, weight, padding=mode).shape[-1]
            sizes.append(entry)
    image, weights = torch.tensor(NOTES_INPUT), torch.tensor(NOTES_KERNEL)
    outputs = {mode: padded_conv2d(image, weights, mode).tolist() for mode in ("valid", "same", "full")}
    return {"input_size": input_size, "sizes": sizes, "notes_outputs": outputs}


def corr2d(image: Tensor, kernel: Tensor) -> Tensor:
    """The notes' hand-written 2-D cross-correlation: slide the kernel, multiply, sum."""
    h, w = kernel.shape
    result = torch.zeros(image.shape[0] - h + 1, image.shape[1] - w + 1)
    for i in range(result.shape[0]):
        for j in range(result.shape[1]):
            result[i, j] = (image[i:i + h, j:j + w] * kernel).sum()
    return result


def corr2d_check(seed: int, shape: tuple[int, int] = (6, 7), kernel_shape: tuple[int, int] = (3, 3)) -> dict:
    """corr2d on the notes' example, then on random input against F.conv2d (which is cross-correlation too)."""
    example = corr2d(torch.tensor(CORR2D_INPUT), torch.tensor(CORR2D_KERNEL))
    generator = torch.Generator().manual_seed(seed)
    image, kernel = torch.randn(shape, generator=generator), torch.randn(kernel_shape, generator=generator)
    by_hand, by_torch = corr2d(image, kernel), conv2d(image, kernel)
    difference = (by_hand - by_torch).abs().max().item()
    return {"example": {"input": CORR2D_INPUT, "kernel": CORR2D_KERNEL, "output": example.tolist()},
            "random": {"input": image.tolist(), "kernel": kernel.tolist(), "corr2d": by_hand.tolist(),
                       "conv2d": by_torch.tolist(), "max_abs_difference": difference,
                       "match": torch.allclose(by_hand, by_torch, atol=1e-5)}}


def edge_image() -> Tensor:
    """The notes' 6x8 image: ones, with a zero stripe in columns 2..5."""
    image = torch.ones(6, 8)
    image[:, 2:6] = 0
    return image


def edge() -> dict:
    """[1, -1] finds vertical edges: 1 where white turns black, -1 where black turns white; on the
    transposed image the edges are horizontal and it finds none, until the kernel is transposed too."""
    image, kernel = edge_image(), torch.tensor(EDGE_KERNEL)
    found = corr2d(image, kernel)
    return {"input": image.tolist(), "kernel": EDGE_KERNEL, "output": found.tolist(),
            "rising_columns": _columns(found, -1.0), "falling_columns": _columns(found, 1.0),
            "transposed_output": corr2d(image.t(), kernel).tolist(),
            "transposed_with_transposed_kernel": corr2d(image.t(), kernel.t()).tolist()}


def _columns(found: Tensor, value: float) -> list[int]:
    return sorted({int(column) for column in torch.nonzero(found == value)[:, 1].tolist()})


def learn_kernel(steps: int, lr: float, seed: int, every: int = 2) -> dict:
    """The notes' loop: learn the 1x2 kernel back from X and Y = corr2d(X, [1, -1]) by gradient descent
    on the summed squared error, updating conv.weight.data by hand. Loss recorded every `every` steps."""
    image = edge_image()
    target = corr2d(image, torch.tensor(EDGE_KERNEL))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = nn.Conv2d(1, 1, kernel_size=(1, 2), bias=False)
    initial = layer.weight.detach().reshape(2).tolist()
    inputs, target = image.reshape(1, 1, 6, 8), target.reshape(1, 1, 6, 7)
    losses = []
    for step in range(1, steps + 1):
        loss = ((layer(inputs) - target) ** 2).sum()
        if not math.isfinite(loss.item()):  # the NaN stop of every training loop (core/engine.py)
            raise TrainingDiverged(f"learn-kernel: loss became {loss.item()} at step {step}; learning stopped. "
                                   "Try a lower --lr")
        layer.zero_grad()
        loss.backward()
        layer.weight.data -= lr * layer.weight.grad
        if step % every == 0 or step == steps:
            losses.append({"step": step, "loss": loss.item()})
    return {"steps": steps, "lr": lr, "initial_kernel": initial, "losses": losses,
            "kernel": layer.weight.detach().reshape(2).tolist()}


def pool(kernel: int = 3) -> dict:
    """MaxPool2d on the notes' 5x5 input: ceil_mode keeps the windows that run off the edge."""
    image = torch.tensor(NOTES_INPUT, dtype=torch.float32)[None, None]
    runs = []
    for ceil_mode in (False, True):
        pooled = nn.MaxPool2d(kernel, ceil_mode=ceil_mode)(image)[0, 0]
        rounding = math.ceil if ceil_mode else math.floor
        runs.append({"ceil_mode": ceil_mode, "output_size": rounding((len(NOTES_INPUT) - kernel) / kernel) + 1,
                     "output": pooled.int().tolist()})
    return {"input": NOTES_INPUT, "kernel": kernel, "stride": kernel, "runs": runs}


@dataclass
class FeatureMaps:
    """The image demo's result: the grey input and each stage's named maps (H, W float arrays)."""

    image: np.ndarray
    stages: dict[str, list[tuple[str, np.ndarray]]]


def pattern_image(size: int = 128) -> np.ndarray:
    """A grey picture with edges in every direction: a gradient, a square, a disc, a diagonal and stripes."""
    image = np.tile(np.linspace(40, 120, size, dtype=np.float32), (size, 1)).astype(np.uint8)
    quarter = size // 4
    cv2.rectangle(image, (quarter // 2, quarter // 2), (quarter * 2 - 4, quarter * 2 - 4), 230, -1)
    cv2.circle(image, (size - quarter - 4, quarter + 4), quarter - 6, 10, -1)
    cv2.line(image, (0, size - 1), (size // 2, size // 2), 255, 2)
    for x in range(size // 2 + 8, size - 4, 8):
        cv2.rectangle(image, (x, size // 2 + 8), (x + 3, size - 8), 255, -1)
    return image


def load_picture(path: Path | None, max_side: int, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The grey uint8 picture to convolve: the user's file (through the one image reader) or the test
    pattern; pictures larger than `max_side` on the long side are scaled down to it."""
    picture = read_image(path, grayscale=True, max_pixels=max_pixels) if path is not None else pattern_image()
    height, width = picture.shape
    if min(height, width) < 2:
        raise UserError(f"{path} is {width}x{height} pixels; the image demo needs at least 2x2 (it max-pools by 2)")
    if max(height, width) > max_side:
        scale = max_side / max(height, width)
        size = (max(2, round(width * scale)), max(2, round(height * scale)))
        picture = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
    return picture


GRIDS = ("named-kernels", "conv-layer", "max-pool")  # the image demo's stages: --out/<stage>.png each


def feature_maps(image: np.ndarray, *, channels: int, seed: int) -> FeatureMaps:
    """Run a grey uint8 image through the named kernels, and through a random Conv2d layer + MaxPool2d(2)."""
    pixels = torch.from_numpy(image.astype(np.float32) / 255.0)[None, None]
    kernels = torch.tensor(list(NAMED_KERNELS.values()), dtype=torch.float32)[:, None]
    named = F.conv2d(pixels, kernels, padding=1)[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = nn.Conv2d(1, channels, kernel_size=3, padding=1)
    with torch.no_grad():
        convolved = layer(pixels)
        pooled = F.max_pool2d(convolved, 2)
    return FeatureMaps(image, dict(zip(GRIDS, [
        [("input", pixels[0, 0].numpy())] + list(zip(NAMED_KERNELS, named.numpy())),
        [(f"conv {index}", plane) for index, plane in enumerate(convolved[0].numpy())],
        [(f"pool {index}", plane) for index, plane in enumerate(pooled[0].numpy())],
    ])))


def map_grid(maps: list[tuple[str, np.ndarray]], *, tile: int, columns: int = 3) -> np.ndarray:
    """Lay maps out as a captioned grey uint8 grid; each map is stretched to 0..255 on its own and
    scaled (nearest) to `tile` pixels on its long side, so pooled maps line up with the others."""
    caption, gap = 16, 4
    scaled = []
    for name, plane in maps:
        low, high = float(plane.min()), float(plane.max())
        levels = (plane - low) / (high - low) * 255 if high > low else np.zeros_like(plane)
        height, width = plane.shape
        factor = tile / max(height, width)
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        scaled.append((name, cv2.resize(levels.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)))
    cell_h = max(picture.shape[0] for _, picture in scaled) + caption + gap
    cell_w = max(max(picture.shape[1] for _, picture in scaled), 8 * max(len(name) for name, _ in scaled)) + gap
    rows = -(-len(scaled) // columns)
    grid = np.full((rows * cell_h + gap, min(columns, len(scaled)) * cell_w + gap), 255, dtype=np.uint8)
    for index, (name, picture) in enumerate(scaled):
        top, left = (index // columns) * cell_h + gap, (index % columns) * cell_w + gap
        cv2.putText(grid, name, (left, top + caption - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 0, 1, cv2.LINE_AA)
        grid[top + caption:top + caption + picture.shape[0], left:left + picture.shape[1]] = picture
    return grid


def grid_path(out: Path, stage: str) -> Path:
    return out / f"{stage}.png"


def write_grids(maps: FeatureMaps, out: Path, writer=None) -> list[Path]:
    """One PNG grid per stage under `out` (and the same image to TensorBoard when a writer is given)."""
    tile = max(96, min(192, max(maps.image.shape)))
    files = []
    for stage, planes in maps.stages.items():
        grid = map_grid(planes, tile=tile)
        target = grid_path(out, stage)
        ok, encoded = cv2.imencode(".png", grid)
        if not ok:
            raise UserError(f"cannot write {target}: OpenCV could not encode the grid as PNG")
        write_bytes(target, encoded.tobytes())  # atomically; a failed write is one error line
        files.append(target)
        if writer is not None:
            writer.add_image(f"conv-demo/{stage}", grid, dataformats="HW")
    return files
