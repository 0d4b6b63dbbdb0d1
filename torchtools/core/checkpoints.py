"""Checkpoints: atomic saves (core/files.py), safe loads, the checks a loaded file passes, and what `fit` keeps
from epoch to epoch (the history, the best epoch, the files, the stop path's note): `EpochKeeper`.

Every checkpoint is one payload (`checkpoint_payload`): plain types and tensors only, so it loads with
weights_only=True. Its state beside the weights (classes, vocabulary, ...) is checked by `check_state`, with
the checks of the command that saved it (its config's STATE).
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchtools.core import distributed, stopping
from torchtools.core.errors import UserError, first_line, not_a_file
from torchtools.core.files import link_atomically, write_atomically
from torchtools.core.options import SEED_MAX, AcceleratedSettings, SeededSettings
from torchtools.core.output import EpochProgress, say
from torchtools.core.paths import best_path, epoch_path
from torchtools.core.tensorboard import log_epoch

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
    other = _other_kind(path)
    if other is not None:  # no PyTorch file starts so: say what it is, not that it needs unpickling
        raise UserError(f"{path} is not a readable PyTorch file: it holds {other}, not a checkpoint or a "
                        "state_dict (.pt, .pth)")
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


def _other_kind(path: Path) -> str | None:
    """What a file is that torch.save never writes (a zip archive, or a protocol-2 pickle: b"\\x80"), told from
    its first bytes; None for a file torch.load may read."""
    try:
        if zipfile.is_zipfile(path):
            return None
        with open(path, "rb") as file:
            head = file.read(8)
    except OSError:
        return None
    if head[:1] == b"\x80":
        return None
    kinds = {b"\x1f\x8b": "gzip-compressed data", b"\xff\xd8\xff": "a JPEG picture", b"\x89PNG": "a PNG picture",
             b"GIF8": "a GIF picture", b"\x00\x00\x08\x03": "an IDX file (MNIST)"}
    for magic, kind in kinds.items():
        if head.startswith(magic):
            return kind
    if not head:
        return "nothing"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "bytes that begin neither a zip archive nor a pickle"


def _program_kind(path: Path) -> str | None:
    """What an exported program is (export writes them), told from its layout; None for anything else."""
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


# --- what a loaded checkpoint must hold ----------------------------------------------------------------------

# The state every training command saves beside the weights, by key: what each must be. A command's own keys
# (classes, vocabulary, ...) are its config's STATE, checked the same way.
STATE = {
    "model": (lambda value: isinstance(value, dict) and all(isinstance(item, torch.Tensor) for item in value.values()),
              "tensors by name"),
    "metrics": (lambda value: isinstance(value, dict), "metrics by name"),
    "history": (lambda value: isinstance(value, list) and all(isinstance(item, dict) for item in value),
                "a list of each epoch's metrics"),
    # What --resume loads into the optimizer, schedule and scaler (None in a weights-only best file).
    "optimizer": (lambda value: value is None or (isinstance(value, dict) and {"state", "param_groups"} <= set(value)),
                  "an optimizer's state"),
    "scheduler": (lambda value: value is None or isinstance(value, dict), "a schedule's state"),
    "scaler": (lambda value: value is None or isinstance(value, dict), "a gradient scaler's state"),
    "data": (lambda value: value is None or isinstance(value, str), "where the data was (a path)"),
    "seed": (lambda value: value is None or (type(value) is int and 0 <= value <= SEED_MAX), "a seed"),
}


def check_state(loaded: dict[str, Any], source: Path, task_state: dict[str, tuple[Callable, str]]) -> None:
    """A checkpoint's state must be what torchtools saved: the right kinds (STATE, and the command's own
    `task_state`), and finite weights."""
    if "model" not in loaded:
        raise _foreign(source, "it holds no model weights")
    _check_epoch(loaded, source)
    for key, (valid, meaning) in {**STATE, **task_state}.items():
        if key in loaded and not valid(loaded[key]):
            raise _foreign(source, f"its {key} is not {meaning}")
    broken = [name for name, tensor in loaded.get("model", {}).items()
              if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if broken:
        raise UserError(f"{source} holds non-finite weights (NaN or inf) in {len(broken)} tensor(s), e.g. "
                        f"{broken[0]}: it would label everything nan; use an earlier checkpoint")


def _check_epoch(loaded: dict[str, Any], source: Path) -> None:
    epoch = loaded.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise _foreign(source, f"its epoch is {epoch!r}, not a count of epochs")
    partial = loaded.get("partial_epoch")  # a stop's file: epoch N complete, N + 1 partial (core/stopping.py)
    if partial is not None and (type(partial) is not int or partial != epoch + 1):
        raise _foreign(source, f"its partial_epoch {partial!r} is not the epoch after its epoch {epoch}")


def _foreign(source: Path, what: str) -> UserError:
    return UserError(f"{source}: {what}; the file was edited or comes from elsewhere")


# --- what fit keeps from epoch to epoch ----------------------------------------------------------------------

def last_metrics(history: list[dict[str, float | None]]) -> dict[str, float | None]:
    """The last epoch's metrics (the summary's, the checkpoint's): its history row without the wall time."""
    return {key: value for key, value in history[-1].items() if key != "seconds"} if history else {}


def make_scaler(device: torch.device, amp_dtype: torch.dtype | None,
                state: dict[str, Any] | None = None) -> torch.amp.GradScaler:
    """The fit's one GradScaler: loss scaling for fp16 autocast (bf16 and fp32 need none: a disabled scaler
    passes the steps through). Created once per fit, so the scale carries over from epoch to epoch; `state`
    (the checkpoint's "scaler", see `scaler_state`) restores it on --resume."""
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    if state and scaler.is_enabled():
        scaler.load_state_dict(state)
    return scaler


def scaler_state(scaler: torch.amp.GradScaler | None) -> dict[str, Any] | None:
    """What a checkpoint keeps of the scaler (plain numbers, weights_only-safe); None when there is none."""
    return scaler.state_dict() if scaler is not None and scaler.is_enabled() else None


def checkpoint_payload(run, model: nn.Module, optimizer, scheduler, epoch: int, history: list,
                       state: dict[str, Any], *, scaler: torch.amp.GradScaler | None = None) -> dict[str, Any]:
    """What every checkpoint holds: plain types and tensors only, so it loads with weights_only=True."""
    return {
        "command": run.command,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler_state(scaler),
        "epoch": epoch,
        "metrics": last_metrics(history),
        "history": history,
        "config": run.config.saved(),
        "data": run.data_location(),
        "seed": run.config.seed if isinstance(run.config, SeededSettings) else None,
        **state,
    }


class EpochKeeper:
    """fit's bookkeeping, behind one call an epoch (`end_epoch`): the history (resumed from --resume), the best
    epoch of the `monitor`ed metric, the --save files, early stopping (--patience, --target-accuracy) and the
    stop path's note of what is saved; it holds the fit's GradScaler and progress display. Used as a context
    manager around the epochs, it saves what a stop (Ctrl-C, SIGTERM, a closed pipe: a KeyboardInterrupt,
    core.stopping) leaves of the epoch under way."""

    def __init__(self, run, model: nn.Module, optimizer, scheduler, state: dict[str, Any], *, monitor: str):
        self.run, self.model, self.optimizer, self.scheduler, self.state = run, model, optimizer, scheduler, state
        self.monitor, self.higher_is_better = monitor, monitor.endswith("_accuracy")
        self.epoch, self.history = _resume(model, optimizer, scheduler, run) if run.resuming else (0, [])
        # One scaler for the whole fit (fp16 only), its scale carried from epoch to epoch and across --resume.
        self.scaler = make_scaler(run.device, run.amp_dtype, run.loaded.get("scaler") if run.resuming else None)
        self.progress = EpochProgress(run.config.epochs)
        self.best_epoch = self._best_epoch()
        self.stopped_early: str | None = None  # None, "patience" or "target"
        # Whether the weights moved since the last whole epoch: set just before each optimizer step changes them.
        self.stepped = False
        self._hook = optimizer.register_step_pre_hook(self._note_step)
        if run.config.save is None:
            stopping.note("nothing saved (no --save)")  # also for a stop once training is over (predicting, say)

    def __enter__(self) -> EpochKeeper:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self._hook.remove()
        self.progress.close()
        if kind is not None and issubclass(kind, KeyboardInterrupt):
            self._save_interrupted()
        # Another process failed: process 0's weights are the job's (DDP averaged every step it took), so it
        # keeps them as a stop would; a process that does not save cannot say what the save holds.
        lost = kind is not None and issubclass(kind, distributed.LostPeers) and distributed.is_main()
        if lost:
            left = self._save_interrupted()
        if self.run.writer is not None:
            self.run.writer.flush()
        if lost:
            raise distributed.LostPeers(f"{error}; {left}") from None  # its one error line says what is saved
        if kind is None and self.stopped_early is not None:
            say(self._stop_message())

    def end_epoch(self, epoch: int, metrics: dict[str, float | None]) -> bool:
        """Record a whole epoch (shown, logged, saved) and say whether training stops early."""
        # A stop (signal, closed pipe) waits for this block: the epoch is recorded and saved whole, so a
        # finished epoch is never labelled partial, nor its checkpoint left without its best file.
        with stopping.deferred():
            self.progress.end_epoch({key: value for key, value in metrics.items() if key not in ("lr", "seconds")})
            self.history.append(metrics)
            log_epoch(self.run.writer, metrics, epoch)
            improved = self.best_epoch is None or self._better(metrics[self.monitor],
                                                               self.history[self.best_epoch - 1][self.monitor])
            if improved:
                self.best_epoch = epoch
            self._save_epoch(epoch, best=improved)
            self.stepped = False
        self.stopped_early = self._stop_reason(epoch)
        return self.stopped_early is not None

    def _note_step(self, *_) -> None:
        self.stepped = True

    def _payload(self, epoch: int) -> dict[str, Any]:
        return checkpoint_payload(self.run, self.model, self.optimizer, self.scheduler, epoch, self.history,
                                  self.state, scaler=self.scaler)

    def _better(self, value: float, best: float) -> bool:
        return value > best if self.higher_is_better else value < best

    def _best_epoch(self) -> int | None:
        """The 1-based epoch of the best monitored value so far (the first, on ties), or None."""
        best = None
        for epoch, row in enumerate(self.history, start=1):
            if row.get(self.monitor) is not None and (
                    best is None or self._better(row[self.monitor], self.history[best - 1][self.monitor])):
                best = epoch
        return best

    def _stop_reason(self, epoch: int) -> str | None:
        """"target" once the monitored accuracy reaches --target-accuracy; "patience" after --patience epochs
        without improvement. Every torchrun process sees the same metrics, so all stop together."""
        config = self.run.config
        if config.target_accuracy is not None and self.history[-1][self.monitor] >= config.target_accuracy:
            return "target"
        if config.patience is not None and epoch - self.best_epoch >= config.patience and epoch < config.epochs:
            return "patience"
        return None

    def _stop_message(self) -> str:
        config, history, monitor = self.run.config, self.history, self.monitor
        epoch, best = len(history), history[self.best_epoch - 1][monitor]
        kept = f"; the best is kept as {best_path(config.save)}" if config.save is not None else ""
        if self.stopped_early == "target":
            return (f"stopped after epoch {epoch}: {monitor} {history[-1][monitor]:.4f} reached --target-accuracy "
                    f"{config.target_accuracy}{kept}")
        return (f"stopped after epoch {epoch}: {monitor} has not improved for {config.patience} epoch(s) "
                f"(best {best:.4f} in epoch {self.best_epoch}){kept}")

    def _save_epoch(self, epoch: int, *, best: bool) -> None:
        run, save = self.run, self.run.config.save
        if save is None:
            return
        if distributed.is_main():
            payload = self._payload(epoch)
            every = run.config.save_every if isinstance(run.config, AcceleratedSettings) else 0
            periodic = epoch_path(save, epoch)
            # The last and every-N-th files hold the same payload, serialised once (the others link to it).
            save_epoch_files(payload, [save, *([periodic] if every and epoch % every == 0 else [])])
            if best:
                # The best epoch's file is for --checkpoint and export: the optimizer state (as large again as the
                # model with momentum, twice with Adam) lives in the last file only, the one --resume continues.
                save_checkpoint(best_path(save), {**payload, "optimizer": None, "scheduler": None, "scaler": None})
        run.written = save
        stopping.note(f"{save} holds epoch {epoch} complete")
        # The others wait: no process runs ahead of the last checkpoint, and a failed save stops them all.
        distributed.barrier()

    def _save_interrupted(self) -> str:
        """What a stop (or a lost torchrun peer) leaves, said in its line and returned: weights from inside an
        epoch saved as "`complete` epochs done, the next partial" (no metrics claimed for them; --resume redoes
        it). Where no step ran since the last whole epoch, its checkpoint and best file stay as they are:
        nothing partial is written over them."""
        run = self.run
        save, complete = run.config.save, len(self.history)
        interrupted = complete + 1
        if save is None:
            left = "nothing saved (no --save)"
        elif not self.stepped:
            kept = (f"{save} holds epoch {complete} complete, as saved" if run.written else
                    f"nothing saved; --resume {run.config.resume} holds epoch {complete}" if run.resuming else
                    "nothing saved")
            left = f"{kept} (no step of epoch {interrupted} ran)"
        else:
            if distributed.is_main():
                with stopping.deferred():
                    save_checkpoint(save, {**self._payload(complete), "metrics": {}, "partial_epoch": interrupted})
            left = (f"saved {save} with epoch {complete} complete and epoch {interrupted} partial; "
                    f"--resume {save} redoes epoch {interrupted}")
        stopping.note(left)
        return left


def _resume(model, optimizer, scheduler, run) -> tuple[int, list]:
    """Load the --resume checkpoint's model, optimizer and schedule. The Run has checked its config
    against this run's, so a failure here means a damaged or hand-edited file."""
    checkpoint, path = run.loaded, run.config.resume
    epoch = checkpoint["epoch"]
    if epoch >= run.config.epochs:
        raise UserError(f"{path} already holds {epoch} epoch(s); pass --epochs above {epoch} to go on")
    try:
        model.load_state_dict(checkpoint["model"])
        made = [dict(group) for group in optimizer.param_groups]
        optimizer.load_state_dict(checkpoint["optimizer"])
        for group, fresh in zip(optimizer.param_groups, made):  # a schedule the saved run had not (one step)
            for key, value in fresh.items():
                group.setdefault(key, value)
        if scheduler is not None and checkpoint.get("scheduler") is not None:
            scheduler.load_state_dict(_relaid(checkpoint["scheduler"], scheduler))
    except (RuntimeError, KeyError, ValueError, TypeError) as error:
        raise UserError(f"{path} does not fit this model and optimizer: {first_line(error)}") from None
    partial = checkpoint.get("partial_epoch")
    say(f"resumed from {path} after epoch {epoch}" + (f" (redoing the interrupted epoch {partial})" if partial else ""))
    return epoch, list(checkpoint.get("history", []))[:epoch]  # one row per whole epoch, whatever the file says


def _relaid(state: dict, scheduler) -> dict:
    """A one-cycle schedule saved for another --epochs (the README: --epochs is applied on --resume): its cycle
    laid over this run's steps, going on from the step it reached."""
    total = getattr(scheduler, "total_steps", None)
    if total is None or state.get("total_steps") in (None, total):
        return state
    return {**state, "total_steps": total, "_schedule_phases": scheduler._schedule_phases}
