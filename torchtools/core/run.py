"""A command's run from start to summary: device, seed, wall clock, and the one JSON summary."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchtools.core import distributed
from torchtools.core.devices import resolve_device
from torchtools.core.output import emit_summary


def seed_everything(seed: int) -> None:
    """Same seed, same numbers on CPU: Python, NumPy and torch generators all start from it."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Session:
    command: str
    device: torch.device
    json: bool = False
    quiet: bool = False
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def start(cls, command: str, *, device: str = "auto", seed: int | None = None, json: bool = False,
              quiet: bool = False) -> Session:
        """Under torchrun this joins the job: the device becomes this process's own (cuda:LOCAL_RANK)."""
        session = cls(command, distributed.start(resolve_device(device), quiet=quiet), json=json, quiet=quiet)
        if seed is not None:
            seed_everything(seed)
        return session

    def finish(self, *, epochs: int = 0, train_seconds: float = 0.0, metrics: dict[str, Any] | None = None,
               checkpoint: Path | None = None, **extra: Any) -> dict[str, Any]:
        """Build the summary every command ends with; print it as JSON on stdout under --json
        (under torchrun, from process 0 only: one job, one summary).

        The keys below are a public contract (README, "JSON summary"): add, never rename.
        """
        summary = {
            "command": self.command,
            "device": str(self.device),
            "seconds": round(time.perf_counter() - self.started, 4),
            "train_seconds": round(train_seconds, 4),
            "epochs": epochs,
            "metrics": {key: value for key, value in (metrics or {}).items() if value is not None},
            "checkpoint": str(checkpoint) if checkpoint is not None else None,
            "world_size": distributed.world_size(),
            **extra,
        }
        if self.json and distributed.is_main():
            emit_summary(summary)
        return summary
