"""TensorBoard: a training run's logs under RUNS_DIR/<command>/<timestamp>, which never stop the run."""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime
from pathlib import Path

from torchtools.core import distributed
from torchtools.core.files import write_bytes
from torchtools.core.output import warn


def open_tensorboard(runs_dir: Path, command: str, *, enabled: bool = True) -> TensorBoard | None:
    """The TensorBoard logs under runs/<command>/<timestamp>; None with --no-tensorboard, and in torchrun
    processes other than 0 (one job, one run folder)."""
    if not enabled or not distributed.is_main():
        return None
    return TensorBoard(Path(runs_dir) / command / datetime.now().strftime("%Y%m%d-%H%M%S-%f"))


class TensorBoard:
    """A SummaryWriter whose failed write (a full disk, a folder gone) stops the logs with one warning, not
    the run: the logs are a by-product, the checkpoints are what the run is for. `log_dir` is None once
    stopped; every call is then a no-op."""

    _writer = None

    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter  # imported late: it pulls in tensorboard

        self.log_dir: str | None = str(log_dir)  # as SummaryWriter gives it
        _quiet_log_threads()
        try:
            self._writer = SummaryWriter(log_dir=str(log_dir))
        except OSError as error:
            self._stop(error)

    def __getattr__(self, name: str):
        if self._writer is not None:
            getattr(self._writer, name)  # an AttributeError for a name SummaryWriter lacks, as before

        def call(*args, **kwargs):
            if self._writer is None:
                return None
            try:
                return getattr(self._writer, name)(*args, **kwargs)
            except OSError as error:
                self._stop(error)
                return None

        return call

    def record(self, name: str, text: str) -> None:
        """A text file beside the logs (the run's config.yaml), failing as a log write does."""
        if self._writer is not None:
            try:
                write_bytes(Path(self.log_dir) / name, text.encode())
            except OSError as error:
                self._stop(error)

    def _stop(self, error: OSError) -> None:
        warn(f"TensorBoard logs stopped: cannot write {self.log_dir} ({error.strerror or error}); the run goes on "
             "without them (--no-tensorboard leaves them out)")
        writer, self._writer, self.log_dir = self._writer, None, None
        if writer is not None:
            with contextlib.suppress(OSError):
                writer.close()


def _quiet_log_threads() -> None:
    """TensorBoard's writer thread prints a traceback when a write fails, then hands the error to the next
    call, where TensorBoard._stop reports it in one line: its traceback is left out, every other thread's kept."""
    if getattr(threading.excepthook, "torchtools", False):
        return
    default = threading.excepthook

    def hook(args) -> None:
        if not (type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, OSError)):
            default(args)

    hook.torchtools = True
    threading.excepthook = hook


def log_epoch(writer, metrics: dict[str, float | None], epoch: int) -> None:
    """train_loss -> train/loss, test_accuracy -> test/accuracy, lr -> lr."""
    if writer is None:
        return
    for name, value in metrics.items():
        if value is not None:
            split, _, metric = name.partition("_")
            writer.add_scalar(f"{split}/{metric}" if metric else name, value, epoch)
