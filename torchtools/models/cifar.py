"""CIFAR networks: the notes' conv-pool x3 + linear model, and a ResNet-9 for a strong result."""

from __future__ import annotations

from torch import nn


def quick(num_classes: int = 10) -> nn.Sequential:
    """The notes' model exactly: three 5x5 conv + 2x2 max-pool stages, flatten, 1024->64->classes.

    It has no activation functions, as in the notes (it is nearly linear, hence ~55% on CIFAR-10).
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


MODELS = {"quick": quick, "resnet": resnet9}


def build(name: str, num_classes: int = 10) -> nn.Module:
    return MODELS[name](num_classes)
