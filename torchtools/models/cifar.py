"""CIFAR networks: the notes' conv-pool x3 + linear model, a small airbench-style net for the `fast` recipe,
and a ResNet-9 for a strong result."""

from __future__ import annotations

from torch import nn

FAST_WIDTHS = (32, 64, 128)  # the `fast` net's channels per stage (see torchtools.recipes for the choice)


def quick(num_classes: int = 10) -> nn.Sequential:
    """The notes' model exactly: three 5x5 conv + 2x2 max-pool stages, flatten, 1024->64->classes.

    It has no activation functions, as in the notes, so it is nearly linear: the notes report 53-55% after
    10 epochs of their loop; the fast recipe reaches 65.8-66.1% in 2 (torchtools/recipes.py).
    """
    return nn.Sequential(
        nn.Conv2d(3, 32, 5, padding=2), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 5, padding=2), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 64),
        nn.Linear(64, num_classes),
    )


def _conv_bn(channels_in: int, channels_out: int, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out),
              nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, x):
        return x + self.block(x)


class Scale(nn.Module):
    """Multiplies the logits by a constant: keeps the softmax soft early in training (as in ResNet-9)."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def resnet9(num_classes: int = 10) -> nn.Sequential:
    """The DAWNBench ResNet-9 (Myrtle.ai / airbench lineage): 64-128-256-512 channels, two residual stages."""
    return nn.Sequential(
        _conv_bn(3, 64),
        _conv_bn(64, 128, pool=True),
        Residual(nn.Sequential(_conv_bn(128, 128), _conv_bn(128, 128))),
        _conv_bn(128, 256, pool=True),
        _conv_bn(256, 512, pool=True),
        Residual(nn.Sequential(_conv_bn(512, 512), _conv_bn(512, 512))),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(512, num_classes, bias=False),
        Scale(0.125),
    )


def _conv_pool_bn(channels_in: int, channels_out: int) -> list[nn.Module]:
    """conv 3x3, max-pool 2, BatchNorm, GELU: pooling before the norm and activation does them on 4x fewer pixels."""
    return [nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False), nn.MaxPool2d(2),
            nn.BatchNorm2d(channels_out), nn.GELU()]


def fast(num_classes: int = 10, widths: tuple[int, int, int] = FAST_WIDTHS) -> nn.Sequential:
    """The notes' three conv + pool stages made trainable fast (airbench's shape, narrowed for 2 CPU cores):
    a 3x3 stem, then three conv-pool-BN-GELU stages (32 -> 16 -> 8 -> 4 pixels), global max-pool, linear."""
    first, second, third = widths
    return nn.Sequential(
        nn.Conv2d(3, first, 3, padding=1, bias=False), nn.BatchNorm2d(first), nn.GELU(),
        *_conv_pool_bn(first, first), *_conv_pool_bn(first, second), *_conv_pool_bn(second, third),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(third, num_classes, bias=False),
        Scale(1 / 8),
    )


MODELS = {"quick": quick, "fast": fast, "resnet": resnet9}


def build(name: str, num_classes: int = 10) -> nn.Module:
    return MODELS[name](num_classes)
