"""Checkpoints and runs: atomic saves (core/files.py), safe loads, and the TensorBoard logs."""

from __future__ import annotations

import contextlib
import pickle
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from torchtools.core import distributed
from torchtools.core.files import link_atomically, write_atomically
from torchtools.core.output import warn
from torchtools.core.paths import best_path  # noqa: F401 (where the engine and the commands find it)
from torchtools.core.errors import UserError, first_line, not_a_file

FORMAT = "torchtools-checkpoint-1"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write `payload` atomically: a temp file beside the target, fsync, then rename over it.

    A crash or Ctrl-C mid-write leaves the previous checkpoint (or nothing), never a torn file.
    """
    return write_atomically(path, lambda file: torch.save({"format": FORMAT, **payload}, file))


def save_epoch_files(payload: dict[str, Any], destinations: list[Path]) -> list[Path]:
    """Write one payload to several files (an epoch's last and every-N-th checkpoints), serialising
    and fsyncing it once: the first is written by `save_checkpoint`, the others are hard links to it, each
    put in place atomically (core/files.link_atomically). Later writes replace a file by rename and never
    write into it, so files linked today stay apart tomorrow.
    """
    first, *others = [Path(path) for path in destinations]
    save_checkpoint(first, payload)
    for path in others:
        link_atomically(first, path)
    return [first, *others]


def load_file(path: Path, *, trust_pickle: bool = False) -> Any:
    """torch.load with weights_only=True (tensors and plain types only) unless the user trusts the file.

    Loading allocates only the storages the file holds; a tensor is a view of one, and a view can claim far
    more elements than its storage has (stride 0: a 1.5 KB file "holding" 16 GB, a head of 2**31 rows).
    Every tensor is checked against its storage before it is returned, so nothing is materialised or built
    from such shapes."""
    path = Path(path)
    if not path.is_file():
        raise not_a_file(path)
    program = _program_kind(path)
    if program is not None:
        raise UserError(f"{path} is {program}, not weights or a checkpoint: pass the checkpoint it was exported from")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as error:
        if trust_pickle:
            raise UserError(f"{path} is not a readable PyTorch file: {first_line(error)}") from None
        raise UserError(
            f"{path} needs arbitrary unpickling (e.g. a whole pickled model), which can run code; refused. "
            "Pass --trust-pickle only if you trust where the file came from"
        ) from None
    except Exception as error:  # other bytes fail in many ways: KeyError, IndexError, struct.error, ...
        raise UserError(f"{path} is not a readable PyTorch file: {first_line(error)}") from None
    _check_tensor_sizes(loaded, path)
    return loaded


def _program_kind(path: Path) -> str | None:
    """What an exported program is (export writes them), told from its layout; None for anything else."""
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [name.split("/", 1)[-1] for name in archive.namelist()]
            if "archive_format" in names or any(name.startswith("models/") for name in names):
                return "an ExportedProgram (torch.export.load reads it)"
            if "constants.pkl" in names or any(name.startswith("code/") for name in names):
                return "a TorchScript program (torch.jit.load reads it)"
            return None
        with open(path, "rb") as file:
            head = file.read(64)
    except OSError:
        return None
    # An ONNX model is a protobuf whose first field is ir_version (tag 0x08), soon followed by the producer
    # name; no pickle or zip starts so.
    return "an ONNX model (onnxruntime runs it)" if head[:1] == b"\x08" and b"pytorch" in head.lower() else None


def _check_tensor_sizes(loaded: Any, path: Path) -> None:
    """A UserError for the first tensor whose elements need more bytes than its storage in the file holds."""
    stack, seen = [("", loaded)], set()
    while stack:
        name, value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, torch.nn.Module):  # a pickled model (--trust-pickle)
            value = value.state_dict(keep_vars=True)
        if isinstance(value, dict):
            stack.extend((f"{name}.{key}" if name else str(key), item) for key, item in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{name}[{index}]", item) for index, item in enumerate(value))
        elif isinstance(value, torch.Tensor):
            _check_tensor(value, name, path)


def _check_tensor(tensor: torch.Tensor, name: str, path: Path) -> None:
    if tensor.layout != torch.strided:
        raise UserError(f"{path}: tensor {name} is {tensor.layout}, not a dense tensor; refused (re-save the "
                        "weights as dense tensors)")
    needed = tensor.numel() * tensor.element_size()
    stored = tensor.untyped_storage().nbytes()
    if needed > stored:
        raise UserError(f"{path}: tensor {name} of shape {list(tensor.shape)} would take {needed:,} bytes but the "
                        f"file stores {stored:,} for it (a crafted or damaged file); refused. Use the file it was "
                        "meant to be, saved with torch.save")


def load_checkpoint(path: Path, *, command: str | None = None, trust_pickle: bool = False) -> dict[str, Any]:
    """Load a torchtools checkpoint, checking it was written by `command` when one is given."""
    checkpoint = load_file(path, trust_pickle=trust_pickle)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise UserError(f"{path} is not a torchtools checkpoint")
    if command is not None and checkpoint.get("command") != command:
        raise UserError(f"{path} was saved by `torchtools {checkpoint.get('command')}`, not `torchtools {command}`")
    return checkpoint


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
