"""The optimizer and the learning-rate schedule of a training run, built from its hyperparameters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from torchtools.core.options import Hyperparameters


def make_optimizer(config: Hyperparameters, parameters: Iterable[Tensor]) -> torch.optim.Optimizer:
    """The config's optimizer (its optimizer, lr, momentum and weight_decay) over `parameters`."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(config: Hyperparameters, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> tuple[Any, bool]:
    """(scheduler or None, stepped every batch?) for the config's schedule: constant, one-cycle (stepped every
    batch; none where a run of one step leaves no room for a cycle) or step (StepLR, every epoch)."""
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step, config.lr_gamma), False
    total = config.epochs * steps_per_epoch
    if config.schedule == "constant" or total < 2:
        return None, False
    # OneCycleLR divides by each phase's length, warmup * total - 1 and the rest: both must stay above 0.
    warmup = min(max(config.warmup, 1.5 / total), 1 - 0.5 / total)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, pct_start=warmup, total_steps=total,
        # Adam has no momentum to cycle; for SGD the cycle of momentum adds nothing measurable here.
        cycle_momentum=False), True
