"""The course's four MNIST networks, layer for layer (Liu Er, lessons 9-11), and FastCNN, the course CNN
widened and given BatchNorm for the `fast` recipe (torchtools.recipes).

`flatten(1)` stands where the course writes `x.view(batch, -1)`: the same numbers, and it also
accepts channels_last inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class CourseMLP(nn.Module):
    """784-512-256-128-64-10 with ReLU (lesson 9)."""

    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = nn.Linear(784, 512), nn.Linear(512, 256), nn.Linear(256, 128)
        self.l4, self.l5 = nn.Linear(128, 64), nn.Linear(64, 10)

    def forward(self, x):
        x = x.flatten(1)
        for layer in (self.l1, self.l2, self.l3, self.l4):
            x = F.relu(layer(x))
        return self.l5(x)


class CourseCNN(nn.Module):
    """conv 1->10 k5, pool, relu, conv 10->20 k5, pool, relu, fc 320->10 (lesson 10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.pooling = nn.MaxPool2d(2)
        self.fc = nn.Linear(320, 10)

    def forward(self, x):
        x = F.relu(self.pooling(self.conv1(x)))
        x = F.relu(self.pooling(self.conv2(x)))
        return self.fc(x.flatten(1))


class InceptionA(nn.Module):
    """Four branches (1x1; 1x1-5x5; 1x1-3x3-3x3; avgpool-1x1) concatenated to 16+24+24+24 = 88 channels."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch1x1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch5x5_1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch5x5_2 = nn.Conv2d(16, 24, kernel_size=5, padding=2)
        self.branch3x3_1 = nn.Conv2d(in_channels, 16, kernel_size=1)
        self.branch3x3_2 = nn.Conv2d(16, 24, kernel_size=3, padding=1)
        self.branch3x3_3 = nn.Conv2d(24, 24, kernel_size=3, padding=1)
        self.branch_pool = nn.Conv2d(in_channels, 24, kernel_size=1)

    def forward(self, x):
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3 = self.branch3x3_3(self.branch3x3_2(self.branch3x3_1(x)))
        branch_pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3, branch_pool], dim=1)


class ResidualBlock(nn.Module):
    """relu(x + conv(relu(conv(x)))), channels kept."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class TwoBlockNet(nn.Module):
    """Lesson 11's two networks: conv k5, max-pool, ReLU and a block, twice, then fc to the ten classes.

    The blocks are registered after the convs under the course's names (incep1/incep2, rblock1/rblock2), as the
    course's classes had them: the same state_dict keys and parameter order, so their checkpoints (optimizer state
    too) load, and a seed gives the same initial weights.
    """

    def __init__(self, block: Callable[[int], nn.Module], name: str,
                 convs: tuple[tuple[int, int], tuple[int, int]], features: int):
        super().__init__()
        (in1, out1), (in2, out2) = convs
        self.conv1 = nn.Conv2d(in1, out1, kernel_size=5)
        self.conv2 = nn.Conv2d(in2, out2, kernel_size=5)
        self.blocks = (f"{name}1", f"{name}2")
        for block_name, channels in zip(self.blocks, (out1, out2)):
            self.add_module(block_name, block(channels))
        self.mp = nn.MaxPool2d(2)
        self.fc = nn.Linear(features, 10)

    def forward(self, x):
        for conv, block in zip((self.conv1, self.conv2), self.blocks):
            # The residual lesson pools after the ReLU: the same numbers (max-pool and ReLU commute), 4x fewer ReLUs.
            x = getattr(self, block)(F.relu(self.mp(conv(x))))
        return self.fc(x.flatten(1))


class InceptionNet(TwoBlockNet):  # a class of its own: the run's model line and summary name it
    """conv 1->10, InceptionA, conv 88->20, InceptionA, fc 1408->10 (lesson 11)."""

    def __init__(self):
        super().__init__(InceptionA, "incep", ((1, 10), (88, 20)), 1408)


class ResidualNet(TwoBlockNet):
    """conv 1->16, ResidualBlock(16), conv 16->32, ResidualBlock(32), fc 512->10 (lesson 11)."""

    def __init__(self):
        super().__init__(ResidualBlock, "rblock", ((1, 16), (16, 32)), 512)


class FastCNN(nn.Module):
    """The course CNN's shape (conv k5, pool, conv k5, pool, fc) with BatchNorm after each conv and wider maps.

    BatchNorm lets a one-cycle schedule run at a high learning rate from the first step; the widths are
    those that reach 99% soonest in training seconds on 2 CPU cores (see torchtools.recipes).
    """

    def __init__(self, channels: tuple[int, int] = (16, 32)):
        super().__init__()
        first, second = channels
        self.conv1 = nn.Conv2d(1, first, kernel_size=5, bias=False)
        self.bn1 = nn.BatchNorm2d(first)
        self.conv2 = nn.Conv2d(first, second, kernel_size=5, bias=False)
        self.bn2 = nn.BatchNorm2d(second)
        self.pooling = nn.MaxPool2d(2)
        self.fc = nn.Linear(second * 16, 10)

    def forward(self, x):
        # ReLU after the pool, as the course CNN does: the same numbers (max-pool and ReLU commute), 4x fewer.
        x = F.relu(self.pooling(self.bn1(self.conv1(x))))
        x = F.relu(self.pooling(self.bn2(self.conv2(x))))
        return self.fc(x.flatten(1))


MODELS = {"mlp": CourseMLP, "cnn": CourseCNN, "inception": InceptionNet, "resnet": ResidualNet, "fast": FastCNN}


def build(name: str) -> nn.Module:
    return MODELS[name]()
