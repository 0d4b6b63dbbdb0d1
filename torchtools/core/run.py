"""One command's run: its config checked before any work, the checkpoint it continues, and the JSON summary.

`@command` collects the options into the command's config and calls `Run.start`, which checks everything
the run will read or write before any data is loaded: a user's mistake costs seconds, never an epoch.
A --checkpoint or --resume file is loaded here, its config validated like the command line's, and merged
with this run's. The flow reads `run.config`, and ends with `run.finish`.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch
import typer

from torchtools.core import config_files, distributed, files, output, stopping
from torchtools.core.checkpoints import check_state, load_checkpoint
from torchtools.core.config import Config, shown
from torchtools.core.devices import autocast_dtype, prepare, resolve_device
from torchtools.core.errors import UserError, first_line
from torchtools.core.options import (AUTO, AcceleratedSettings, CompiledSettings, FindLrSettings, SeededSettings,
                                     TrainingSettings)
from torchtools.core.paths import best_path, check_paths, check_readable_files
from torchtools.core.report import ReportFolder
from torchtools.core.tensorboard import open_tensorboard

C = TypeVar("C", bound=Config)
REPORT_LOCK = ".torchtools-report.lock"


def seed_everything(seed: int) -> None:
    """Same seed, same numbers on CPU: Python, NumPy and torch generators all start from it."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Run(Generic[C]):
    command: str
    config: C
    explicit: frozenset[str] = frozenset()  # options the user typed (the rest are defaults)
    device: torch.device = torch.device("cpu")
    loaded: dict[str, Any] | None = None  # the --checkpoint or --resume file, read and checked by start
    written: Path | None = None  # set once this run has saved an epoch to --save
    started: float = field(default_factory=time.perf_counter)
    report: ReportFolder | None = None  # the --report folder, checked by start
    builtin_data: bool = False  # set by a command that fell back to the copy built into torchtools
    _writer: Any = None
    auto_lr: bool = False  # --lr auto as typed (the config's lr becomes the suggestion once it is found)
    _locks: list[files.Lock] = field(default_factory=list)  # --save's and --report's, held until close

    @classmethod
    def start(cls, command: str, config_type: type[C], values: dict[str, Any], explicit: frozenset[str]) -> Run[C]:
        """Check the options, load the checkpoint, then join the device (under torchrun, this process's own)."""
        output.configure(quiet=bool(values.get("quiet")), json=bool(values.get("json")))
        run = cls(command, config_type.build(values), explicit=explicit)
        run.auto_lr = vars(run.config).get("lr") == AUTO
        stopping.note("nothing saved (stopped before training)" if run.trains else "nothing saved")
        training = isinstance(run.config, TrainingSettings)
        if training:
            run._check_training_options()
        # Every file and folder the run will write, in one place (after a checkpoint's config is merged: its
        # --epochs names the --save-every files).
        check_paths(run.config.writes(), run.config.reads())
        run.config = run.config.settle(run)
        if run.config.print_config:  # the run is settled and checked: say it, and start nothing
            print(config_files.dump(command, config_files.replayed(run.config), as_json=run.config.json), end="",
                  flush=True)
            raise typer.Exit()
        if training:
            device = resolve_device(run.config.device, prefer_cpu=type(run.config).prefer_cpu)
            run.device = distributed.start(prepare(device))
            if distributed.is_main():  # one job, one writer: process 0's locks
                run._take_locks()
            if not distributed.is_main():
                run.report = None  # under torchrun, process 0 writes the one report
        if isinstance(run.config, SeededSettings):
            seed_everything(run.config.seed)
        return run

    def _take_locks(self) -> None:
        """--save's file and --report's folder, each written by one run at a time."""
        try:
            if self.config.save is not None:
                self._locks.append(files.Lock(self.config.save, "--save"))
            if self.report is not None:
                self._locks.append(files.Lock(self.report.folder, "--report", name=REPORT_LOCK))
        except UserError:
            self.close()
            raise

    def _check_training_options(self) -> None:
        config = self.config
        if config.checkpoint is not None and config.resume is not None:
            raise UserError("--checkpoint loads a finished model and --resume continues training: pass one of them")
        if config.checkpoint is not None:
            self._refuse_training_options(("save", "save_every", "patience", "target_accuracy"),
                                          f"--checkpoint {config.checkpoint} trains nothing (use --resume to train on)")
        if isinstance(config, CompiledSettings) and config.compile_mode != "default" and not config.compile:
            raise UserError(f"--compile-mode {config.compile_mode} says how --compile compiles: pass --compile too")
        if isinstance(config, AcceleratedSettings) and config.save_every and config.save is None:
            raise UserError("--save-every keeps every N-th epoch's checkpoint beside --save PATH: pass --save too")
        if self.finds_lr_only:
            self._refuse_training_options(
                ("save", "save_every", "patience", "target_accuracy", "resume", "checkpoint"),
                "--find-lr alone trains nothing (add --lr auto to train at its suggestion)")
        if config.report is not None:
            self.report = ReportFolder(config.report, type(config).REPORT_FILES)
        source = config.checkpoint or config.resume
        if source is not None:
            self.loaded = load_checkpoint(source, command=self.command)
            check_state(self.loaded, source, type(config).STATE)
            if config.resume is not None and self.loaded.get("optimizer") is None:
                raise UserError(f"{source} holds no optimizer state (it was not saved by a training run): "
                                "use it with --checkpoint, or train anew")
            self.config = self._with_checkpoint(source)
            self._take_saved_data(source)
            self._take_saved_seed(source)

    def data_location(self) -> str | None:
        """Where this run's data is, saved in its checkpoints (state, not config: it says where, not what the
        model is): --data as given, else the root it defaulted to ($TORCHTOOLS_DATA, else data/, as
        data/roots.py's default_root), absolute; a file option spelt --data (fit-linear's --csv) as given.
        None for a command without one, or its built-in data."""
        name = _data_field(type(self.config))
        if name is None or self.builtin_data:
            return None
        value = vars(self.config)[name]
        if value is None and type(self.config).settings()[name][0].flag == "--data":
            value = os.environ.get("TORCHTOOLS_DATA") or "data"
        return str(Path(value).absolute()) if value is not None else None

    def _take_saved_data(self, source: Path) -> None:
        """--resume and --checkpoint without --data: the data the checkpoint trained on, said, where it is."""
        name, saved = _data_field(type(self.config)), self.loaded.get("data")
        if name is None or saved is None or vars(self.config)[name] is not None:
            return
        if not self.resuming and vars(self.config).get("predict"):  # labelling --predict reads no data
            return
        if not os.path.exists(saved):
            output.say(f"{source} trained on {output.path_text(saved)}, which is not there now: "
                       f"pass {self.config.option(name)}")
            return
        self.config = dataclasses.replace(self.config, **{name: Path(saved)})
        output.say(f"data: {output.path_text(saved)}, where {source} trained ({self.config.option(name)} reads "
                   "other data)")

    def _take_saved_seed(self, source: Path) -> None:
        """--resume and --checkpoint without --seed: the seed the checkpoint trained with, so a seeded held-out
        split is the one it was scored on (not pictures it trained on), and --print-config replays it."""
        saved = self.loaded.get("seed")
        if isinstance(self.config, SeededSettings) and saved is not None and "seed" not in self.explicit \
                and saved != self.config.seed:
            self.config = dataclasses.replace(self.config, seed=saved)
            output.say(f"seed: {saved}, as {source} trained (--seed sets another)")

    def _refuse_training_options(self, names: tuple[str, ...], reason: str) -> None:
        """Options that apply to training, given to a run that trains nothing, are refused, not ignored."""
        values = vars(self.config)  # the fields' values by name (save_every is not every command's)
        given = [self.config.option(name) for name in names if values.get(name)]
        if given:
            raise UserError(f"{', '.join(given)} apply to training; {reason}")

    def _with_checkpoint(self, source: Path) -> C:
        """This run's config with the checkpoint's hyperparameters.

        --checkpoint: the saved config rebuilds the model, and an option typed that would change it is an
        error. --resume: options left at their defaults take the checkpoint's values; a typed option that
        differs is applied where the run can (epochs), else refused naming both values, never ignored.
        """
        config = self.config
        saved = type(config).from_saved(self.loaded.get("config"), source=source)
        taken, settings = {}, config.settings()
        for name in config.saved_names():
            value, old = vars(config)[name], vars(saved)[name]
            if name not in self.explicit or (settings[name][0].same(value, old) if name in settings else value == old):
                taken[name] = old
            elif self.resuming and name in saved.resumable():
                continue
            else:
                action = "continues with" if self.resuming else "was trained with"
                raise UserError(f"{config.option(name)} {shown(value)} differs from the checkpoint: {source} "
                                f"{action} {config.option(name)} {shown(old)}; drop the option, or start a new run")
        return dataclasses.replace(config, **taken)

    def settle_lr(self, lr: float) -> None:
        """--lr auto resolved: the range test's suggestion becomes the config's lr, once and before any training,
        so the optimizer, the schedule and every checkpoint take the one settled config. Nothing else changes
        the config after `start`; the finding itself goes into the summary (suggested_lr)."""
        if self.config.lr != AUTO:
            raise RuntimeError("settle_lr resolves --lr auto, once")
        self.config = dataclasses.replace(self.config, lr=lr)

    @property
    def trains(self) -> bool:
        """True for a training command, unless it only loads a --checkpoint (to evaluate or predict)."""
        return isinstance(self.config, TrainingSettings) and self.config.checkpoint is None

    @property
    def finds_lr_only(self) -> bool:
        """--find-lr without --lr auto: the range test runs on the training data, and nothing is trained."""
        return isinstance(self.config, FindLrSettings) and self.config.find_lr and not self.auto_lr

    @property
    def finds_lr(self) -> bool:
        """The run starts with the learning-rate range test (--find-lr, or --lr auto)."""
        return (isinstance(self.config, FindLrSettings) and self.config.find_lr) or self.auto_lr

    @property
    def resuming(self) -> bool:
        return isinstance(self.config, TrainingSettings) and self.config.resume is not None

    @property
    def source(self) -> Path | None:
        """The checkpoint this run loaded (--checkpoint or --resume)."""
        return self.config.checkpoint or self.config.resume if isinstance(self.config, TrainingSettings) else None

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype of training (None: full precision); evaluation is fp32 (engine.evaluate)."""
        return autocast_dtype(self.device) if isinstance(self.config, AcceleratedSettings) and self.config.amp \
            else None

    @property
    def writer(self):
        """The TensorBoard writer of a training run (opened on first use), else None."""
        if self._writer is None and self.trains:
            self._writer = open_tensorboard(self.config.runs_dir, self.command, enabled=not self.config.no_tensorboard)
            if self._writer is not None:
                self._writer.record("config.yaml", config_files.dump(self.command, self.config))
        return self._writer

    def load_model(self, model: torch.nn.Module, what: str = "") -> torch.nn.Module:
        """The --checkpoint weights into `model`; a file that does not fit it is one error line."""
        try:
            model.load_state_dict(self.loaded["model"])
        except (RuntimeError, KeyError, TypeError, ValueError) as error:
            raise UserError(f"{self.source} does not fit the model its config describes: {first_line(error)}"
                            ) from None
        output.say(f"loaded {self.source} (trained {self.loaded['epoch']} epoch(s){', ' + what if what else ''})")
        return model

    def inputs(self, items: list[Path] | None, option: str) -> list[Path]:
        """Files the run will read, checked now: each exists and can be opened."""
        items = [Path(item) for item in items or []]
        check_readable_files(items, option)
        return items

    def check_resumed(self, name: str, value: Any, what: str) -> None:
        """A resumed run's data-derived state (classes, vocabulary...) must be the checkpoint's."""
        if self.resuming and self.loaded.get(name) != value:
            raise UserError(f"{what} differs from the checkpoint's: this data gives {shown(value)}, "
                            f"{self.config.resume} was trained on {shown(self.loaded.get(name))}")

    def finish(self, result=None, *, metrics: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        """Build the summary every command ends with; print it as JSON on stdout under --json
        (under torchrun, from process 0 only: one job, one summary).

        The keys below are a public contract (README, "JSON summary"): add, never rename.
        """
        if self._writer is not None:
            self._writer.close()
            if self._writer.log_dir is not None:  # None: the logs were stopped by a failed write (warned then)
                output.wrote("TensorBoard run", self._writer.log_dir)
        history = [{"epoch": epoch, **row} for epoch, row in enumerate(result.history if result else [], start=1)]
        if result is not None and result.checkpoint is not None:
            self._say_checkpoints(result.checkpoint)
        if self.report is not None:
            files.write_bytes(self.report.path("config.yaml"), config_files.dump(self.command, self.config).encode())
            self.report.history(history, title=self.command)
            self.report.announce()
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
            **({"stopped_early": result.stopped_early if result else None}
               if isinstance(self.config, TrainingSettings) else {}),
            **({"history": history, "report": self.report.files if self.report else None}
               if isinstance(self.config, TrainingSettings) else {}),
            **extra,
        }
        output.emit_summary(summary)
        return summary

    def close(self) -> None:
        """The end of the command, however it ends: another run may take --save now."""
        while self._locks:
            self._locks.pop().release()

    def _say_checkpoints(self, last: Path) -> None:
        output.wrote("checkpoint (last epoch)", last)
        if best_path(last).exists():
            output.wrote("checkpoint (best epoch)", best_path(last))
        if isinstance(self.config, AcceleratedSettings) and self.config.save_every:
            every = self.config.save_every
            output.wrote(f"checkpoints (every {every} epochs)", last.with_name(f"{last.stem}.epoch*{last.suffix}"))


def _data_field(config_type: type[Config]) -> str | None:
    """The config field spelt --data (its flag, or an alias), if the command has one."""
    return next((name for name, (setting, _) in config_type.settings().items()
                 if "--data" in (setting.flag, *setting.aliases)), None)
