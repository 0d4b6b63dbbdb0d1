"""A command's hyperparameters: one frozen dataclass, built once from its options and saved in its checkpoints.

The checkpoint holds the config as a plain dict; `--checkpoint` rebuilds the model from it and `--resume`
checks the new run against it (see Run.config). Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torchtools.core.errors import UserError


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of every command's config. Subclasses are frozen dataclasses whose field names are the
    command's option names (so a value given on the command line can be told from a default)."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: object) -> Config:
        names = [field.name for field in dataclasses.fields(cls)]
        missing = [name for name in names if name not in values]
        if missing:
            raise UserError(f"{source} was saved by another version of torchtools: its config lacks "
                            f"{', '.join(missing)}")
        return cls(**{name: values[name] for name in names})

    def resumable(self) -> frozenset[str]:
        """Fields a resumed run may change; every other field must match the checkpoint's."""
        return frozenset({"epochs"})

    def option(self, name: str) -> str:
        """How the user spells a field: batch_size -> --batch-size."""
        return "--" + name.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class RecipeConfig(Config):
    """The hyperparameters a --recipe gives values (torchtools.recipes), shared by mnist, cifar and names-rnn;
    each adds its model's own fields."""

    recipe: str  # course | fast
    epochs: int
    batch_size: int
    lr: float  # one-cycle: the peak
    optimizer: str
    momentum: float
    weight_decay: float
    schedule: str  # constant | one-cycle (stepped every batch)
    warmup: float  # one-cycle: share of the steps rising to lr
    label_smoothing: float
    augment: str  # none | shift-flip

    def resumable(self) -> frozenset[str]:
        """A one-cycle schedule is laid out over all epochs: their number is fixed once training starts."""
        return frozenset() if self.schedule == "one-cycle" else super().resumable()
