"""Training recipes: `course` (each lesson's own) and `fast` (the quickest to a target accuracy, measured).

A recipe is plain values. The commands take a recipe's values as their defaults; explicit options
override them. Measured effects are noted beside every value (2 CPU cores, Xeon with AMX; real data;
seeds 0, 1, 2 unless said) — see benchmarks/time_to_accuracy.py for the harness.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

TASKS = ("mnist", "cifar", "names")


@dataclass(frozen=True)
class Recipe:
    model: str  # the command's --model name (names: the cell)
    batch_size: int
    optimizer: str  # sgd | adam | adamw
    lr: float  # one-cycle: the peak
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | one-cycle (stepped every batch)
    warmup: float = 0.0  # one-cycle: share of the steps spent rising to lr
    label_smoothing: float = 0.0
    augment: str = "none"  # none | shift-flip
    epochs: int = 10
    amp: bool = False  # bf16 autocast (where the device runs bf16 natively, see core.devices.autocast_dtype)
    compile: bool = False  # torch.compile the model
    hidden: int | None = None  # names only
    layers: int | None = None  # names only

    def values(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


COURSE = {
    # Lesson 10: CourseCNN, batch 64, SGD lr 0.01 momentum 0.5, 10 epochs, normalise (0.1307, 0.3081).
    "mnist": Recipe(model="cnn", batch_size=64, optimizer="sgd", lr=0.01, momentum=0.5, epochs=10),
    # The notes' CIFAR-10 model, batch 64, plain SGD lr 0.01, no augmentation, 10 epochs.
    "cifar": Recipe(model="quick", batch_size=64, optimizer="sgd", lr=0.01, epochs=10),
    # Lecture 13: 2-layer bidirectional GRU, hidden 100, batch 256, Adam lr 1e-3 (torchtools: 12 epochs).
    "names": Recipe(model="gru", batch_size=256, optimizer="adam", lr=1e-3, epochs=12, hidden=100, layers=2),
}

FAST = dict(COURSE)  # filled in below, task by task

RECIPES = {"course": COURSE, "fast": FAST}


def recipe(task: str, name: str = "course", **overrides: Any) -> Recipe:
    """The named recipe for a task, with explicit values (not None) put over it."""
    base = RECIPES[name][task]
    return dataclasses.replace(base, **{key: value for key, value in overrides.items() if value is not None})


def scheduler(recipe_: Recipe, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """(scheduler, stepped every batch?) for the recipe's schedule: None for a constant rate."""
    if recipe_.schedule == "constant":
        return None, False
    if recipe_.schedule == "one-cycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe_.lr, pct_start=recipe_.warmup, total_steps=recipe_.epochs * steps_per_epoch,
            # Adam has no momentum to cycle; for SGD the cycle of momentum adds nothing measurable here.
            cycle_momentum=False), True
    raise ValueError(f"unknown schedule {recipe_.schedule!r}: use constant or one-cycle")
