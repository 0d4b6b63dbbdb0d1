"""One command's run: the shared options, checked before any work, and the one JSON summary at the end.

`@command` builds the Run from the options every command shares (device, seed, amp, save, checkpoint,
resume, TensorBoard, early stopping, quiet, json). `Run.start` checks everything the run will read or
write before any data is loaded: a user's mistake costs seconds, never an epoch. The flow then asks the
run for its config (`run.config`), its fit plan (`run.plan`) and ends with `run.finish`.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from torchtools.core import distributed, output
from torchtools.core.checkpoints import load_checkpoint, open_tensorboard
from torchtools.core.config import Config
from torchtools.core.devices import autocast_dtype, resolve_device
from torchtools.core.engine import FitPlan, FitResult
from torchtools.core.errors import UserError
from torchtools.core.paths import check_readable_files, check_writable_file, check_writable_folder

ConfigType = TypeVar("ConfigType", bound=Config)


def seed_everything(seed: int) -> None:
    """Same seed, same numbers on CPU: Python, NumPy and torch generators all start from it."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Run:
    command: str
    device: torch.device = torch.device("cpu")
    explicit: frozenset[str] = frozenset()  # options the user typed (the rest are defaults)
    seed: int = 0
    amp: bool = False
    compile: bool = False
    save: Path | None = None
    save_every: int = 0
    checkpoint: Path | None = None
    resume: Path | None = None
    patience: int | None = None
    target_accuracy: float | None = None
    runs_dir: Path = Path("runs")
    no_tensorboard: bool = False
    options: frozenset[str] = frozenset()  # the shared options this command takes
    loaded: dict[str, Any] | None = None  # the --checkpoint or --resume file, read and checked by start
    started: float = field(default_factory=time.perf_counter)
    _writer: Any = None

    @classmethod
    def start(cls, command: str, *, device: str = "cpu", quiet: bool = False, json: bool = False,
              explicit: frozenset[str] = frozenset(), **options: Any) -> Run:
        """Check the options, then join the device (under torchrun, this process's own) and seed."""
        output.configure(quiet=quiet, json=json)
        run = cls(command, explicit=explicit, options=frozenset(options), **options)
        run._check_options()
        run.device = distributed.start(resolve_device(device))
        seed_everything(run.seed)
        return run

    def _check_options(self) -> None:
        if self.checkpoint is not None and self.resume is not None:
            raise UserError("--checkpoint loads a finished model and --resume continues training: pass one of them")
        if self.checkpoint is not None:
            unused = [option for option, value in (("--save", self.save), ("--save-every", self.save_every),
                                                   ("--patience", self.patience),
                                                   ("--target-accuracy", self.target_accuracy)) if value]
            if unused:
                raise UserError(f"{', '.join(unused)} apply to training; --checkpoint {self.checkpoint} trains "
                                "nothing (use --resume to train on)")
        if self.save_every and self.save is None:
            raise UserError("--save-every keeps every N-th epoch's checkpoint beside --save PATH: pass --save too")
        if self.save is not None:
            check_writable_file(self.save, "--save")
        if self.trains and not self.no_tensorboard:
            check_writable_folder(self.runs_dir, "--runs-dir", hint="pass --runs-dir DIR or --no-tensorboard")
        source = self.checkpoint or self.resume
        if source is not None:
            self.loaded = load_checkpoint(source, command=self.command)
            if self.resume is not None and self.loaded.get("optimizer") is None:
                raise UserError(f"{source} holds no optimizer state (it was not saved by a training run): "
                                "use it with --checkpoint, or train anew")

    @property
    def trains(self) -> bool:
        """True for a training command, unless it only loads a --checkpoint (to evaluate or predict)."""
        return "resume" in self.options and self.checkpoint is None

    @property
    def writer(self):
        """The TensorBoard writer of a training run (opened on first use), else None."""
        if self._writer is None and self.trains:
            self._writer = open_tensorboard(self.runs_dir, self.command, enabled=not self.no_tensorboard)
        return self._writer

    def config(self, config: ConfigType) -> ConfigType:
        """The run's config: as built from the options, or the checkpoint's.

        --checkpoint: the saved config rebuilds the model, and an option typed that would change it is an
        error. --resume: options left at their defaults take the checkpoint's values; a typed option that
        differs is applied where the run can (epochs), else refused naming both values, never ignored.
        """
        if self.loaded is None:
            return config
        source = self.checkpoint or self.resume
        saved = type(config).from_dict(self.loaded.get("config") or {}, source=source)
        changed = {}
        for name, value in config.as_dict().items():
            old = getattr(saved, name)
            if value == old or name not in self.explicit:
                continue
            if self.resume is not None and name in saved.resumable():
                changed[name] = value
                continue
            action = "continues with" if self.resume is not None else "was trained with"
            raise UserError(f"{config.option(name)} {_shown(value)} differs from the checkpoint: {source} "
                            f"{action} {config.option(name)} {_shown(old)}; drop the option, or start a new run")
        return dataclasses.replace(saved, **changed)

    def inputs(self, items: list[Path] | None, option: str) -> list[Path]:
        """Files the run will read, checked now: each exists and can be opened."""
        items = [Path(item) for item in items or []]
        check_readable_files(items, option)
        return items

    def check_output(self, path: Path | None, option: str, *, suffixes: tuple[str, ...]) -> Path | None:
        """A file the run will write at the end (a plot, predictions): checked now, not after training."""
        if path is not None:
            check_writable_file(path, option, suffixes=suffixes)
        return path

    def check_resumed(self, name: str, value: Any, what: str) -> None:
        """A resumed run's data-derived state (classes, vocabulary...) must be the checkpoint's."""
        if self.resume is not None and self.loaded is not None and self.loaded.get(name) != value:
            raise UserError(f"{what} differs from the checkpoint's: this data gives {_shown(value)}, "
                            f"{self.resume} was trained on {_shown(self.loaded.get(name))}")

    def plan(self, config: Config, *, extra: dict[str, Any] | None = None, scheduler: Any = None,
             step_scheduler: bool = False, eval_name: str = "test") -> FitPlan:
        """How the engine trains this run: epochs, checkpoints, schedule, autocast, TensorBoard, stopping."""
        return FitPlan(self.command, config.epochs, self.device, config=config.as_dict(), extra=extra or {},
                       save=self.save, save_every=self.save_every, resumed=self.loaded if self.resume else None,
                       resume_path=self.resume, scheduler=scheduler, step_scheduler=step_scheduler,
                       amp_dtype=autocast_dtype(self.device) if self.amp else None, compile=self.compile,
                       writer=self.writer,
                       eval_name=eval_name, patience=self.patience, target_accuracy=self.target_accuracy)

    def finish(self, result: FitResult | None = None, *, metrics: dict[str, Any] | None = None,
               **extra: Any) -> dict[str, Any]:
        """Build the summary every command ends with; print it as JSON on stdout under --json
        (under torchrun, from process 0 only: one job, one summary).

        The keys below are a public contract (README, "JSON summary"): add, never rename.
        """
        if self._writer is not None:
            self._writer.close()
        if metrics is None:
            metrics = result.metrics if result is not None else {}
        summary = {
            "command": self.command,
            "device": str(self.device),
            "seconds": round(time.perf_counter() - self.started, 4),
            "train_seconds": round(result.train_seconds, 4) if result else 0.0,
            "epochs": result.epochs if result else 0,
            "metrics": {key: value for key, value in metrics.items() if value is not None},
            "checkpoint": str(result.checkpoint) if result and result.checkpoint else None,
            "world_size": distributed.world_size(),
            **({"stopped_early": result.stopped_early if result else None} if "patience" in self.options else {}),
            **extra,
        }
        output.emit_summary(summary)
        return summary


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
