"""The one training engine: train_one_epoch / evaluate / fit, with checkpoints, TensorBoard and progress.

Every training command builds a model, an objective, an optimizer and batches, then calls `fit`.
Batches are any re-iterable of (inputs, targets) with a length: a DataLoader or a TensorBatches.
`inputs` may be a tuple, which is unpacked into the model call (e.g. padded names and their lengths).

Under torchrun (see torchtools.core.distributed) the same calls train with DistributedDataParallel: each
process takes its share of the batches, metrics are summed over all of them, and only process 0
shows progress and saves checkpoints, which hold the unwrapped model.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchtools.core import distributed, stopping
from torchtools.core.checkpoints import best_path, save_checkpoint, save_epoch_files
from torchtools.core.paths import epoch_path
from torchtools.core.errors import TrainingDiverged, UserError, first_line
from torchtools.core.output import EpochProgress, say

# How many batches pass between progress redraws / TensorBoard step scalars. Reading a running loss
# forces a device sync, so it is done sparingly rather than every step.
REFRESH_EVERY = 10
LOG_EVERY = 100  # batches between TensorBoard train/loss_step scalars


@dataclass
class Objective:
    """How a model's output is scored: the loss, and for classifiers how the output becomes a label."""

    loss: Callable[[Tensor, Tensor], Tensor]
    predict: Callable[[Tensor], Tensor] | None = None  # None for regression: no accuracy

    @classmethod
    def classification(cls, label_smoothing: float = 0.0) -> Objective:
        return cls(nn.CrossEntropyLoss(label_smoothing=label_smoothing), lambda output: output.argmax(dim=1))

    @classmethod
    def binary(cls) -> Objective:
        """One logit per sample; BCE on logits is the numerically stable form of sigmoid + BCELoss."""
        bce = nn.BCEWithLogitsLoss()
        return cls(
            lambda output, target: bce(output.squeeze(-1), target.float()),
            lambda output: (output.squeeze(-1) > 0).long(),
        )

    @classmethod
    def regression(cls) -> Objective:
        """MSE of one output per sample: (N, 1) outputs are matched to (N,) targets."""
        mse = nn.MSELoss()
        return cls(lambda output, target: mse(output.reshape(target.shape), target))


@dataclass
class EvalResult:
    loss: float
    accuracy: float | None
    outputs: Tensor  # model outputs on the CPU, in batch order
    targets: Tensor


@dataclass
class FitResult:
    history: list[dict[str, float | None]]
    metrics: dict[str, float | None]
    evaluation: EvalResult | None
    train_seconds: float
    epochs: int
    checkpoint: Path | None  # the --save file, once an epoch has been written to it
    stopped_early: str | None = None  # None, "patience" or "target"
    best_epoch: int | None = None


def make_optimizer(config, parameters: Iterable[Tensor]) -> torch.optim.Optimizer:
    """The config's optimizer (its optimizer, lr, momentum and weight_decay fields) over `parameters`."""
    weight_decay = getattr(config, "weight_decay", 0.0)
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=getattr(config, "momentum", 0.0),
                               weight_decay=weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=weight_decay)
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=weight_decay)


def make_scheduler(config, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> tuple[Any, bool]:
    """(scheduler or None, stepped every batch?) for the config's schedule: constant, one-cycle (stepped every
    batch; none where a run of one step leaves no room for a cycle) or step (StepLR, every epoch)."""
    schedule = getattr(config, "schedule", "constant")
    if schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step, config.lr_gamma), False
    total = config.epochs * steps_per_epoch
    if schedule == "constant" or total < 2:
        return None, False
    # OneCycleLR divides by each phase's length, warmup * total - 1 and the rest: both must stay above 0.
    warmup = min(max(config.warmup, 1.5 / total), 1 - 0.5 / total)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, pct_start=warmup, total_steps=total,
        # Adam has no momentum to cycle; for SGD the cycle of momentum adds nothing measurable here.
        cycle_momentum=False), True


def check_trainable(source: object, classes: list[str], train: int, held_out: int, *, held_out_asked: bool,
                    unit: str, kinds: str = "class(es)") -> None:
    """Refuse, before any epoch, a classifier that cannot learn or cannot be scored."""
    if len(classes) < 2:
        raise UserError(f"{source} holds {unit} of {len(classes)} {kinds} ({', '.join(classes) or 'none'}): "
                        "a classifier needs two or more")
    if train == 0:
        raise UserError(f"{source} leaves no training {unit}")
    if held_out_asked and held_out == 0:
        raise UserError(f"{source}: the held-out split came out empty ({train} {unit}); add {unit}, "
                        "or pass --val-split 0 to hold none out")


def forward(model: nn.Module, inputs: Tensor | tuple[Tensor, ...]) -> Tensor:
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def to_device(value: Tensor | tuple[Tensor, ...], device: torch.device):
    if isinstance(value, tuple):
        return tuple(item.to(device, non_blocking=True) for item in value)
    return value.to(device, non_blocking=True)


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


def _sum(device: torch.device) -> Tensor:
    """A running sum kept on the device (read only when needed: reading it syncs); float64 where it exists."""
    return torch.zeros((), device=device, dtype=torch.float32 if device.type == "mps" else torch.float64)


def train_one_epoch(model, objective: Objective, optimizer, batches, *, device: torch.device, epoch: int,
                    amp_dtype: torch.dtype | None = None, scaler: torch.amp.GradScaler | None = None,
                    batch_scheduler: Any = None, writer: Any = None, progress: EpochProgress | None = None,
                    last_checkpoint: Path | None = None) -> dict[str, float | None]:
    """One pass over `batches`, under autocast to `amp_dtype` (None: fp32).

    `scaler` is the fit's GradScaler (`make_scaler`), required for fp16; `batch_scheduler` is stepped after
    every batch (one-cycle; None where the schedule steps per epoch). The loss and accuracy sums stay on the
    device and are read every REFRESH_EVERY batches (under torchrun, summed over the job there).
    `last_checkpoint` is named if the loss diverges.
    """
    if amp_dtype == torch.float16 and (scaler is None or not scaler.is_enabled()):
        raise ValueError("fp16 autocast needs the fit's GradScaler (make_scaler)")
    model.train()
    loss_sum = _sum(device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    steps_per_epoch = len(batches)
    for step, (inputs, targets) in enumerate(batches, start=1):
        inputs, targets = to_device(inputs, device), targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            output = forward(model, inputs)
            loss = objective.loss(output, targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if batch_scheduler is not None:
            batch_scheduler.step()
        batch_size = len(targets)
        seen += batch_size
        loss_sum += loss.detach() * batch_size
        if objective.predict is not None:
            correct += (objective.predict(output.detach()) == targets).sum()
        if writer is not None and step % LOG_EVERY == 0:
            writer.add_scalar("train/loss_step", loss.item(), (epoch - 1) * steps_per_epoch + step)
        if step % REFRESH_EVERY == 0 or step == steps_per_epoch:
            # Under torchrun, the whole job's totals: every process sees, and stops on, the same loss.
            total_loss, total_correct, total_seen = distributed.sum_across(loss_sum, correct, seen)
            running_loss = total_loss / total_seen
            _check_finite(running_loss, epoch, last_checkpoint)
            if progress is not None:
                stats = {"loss": running_loss}
                if objective.predict is not None:
                    stats["acc"] = total_correct / total_seen
                progress.update(step, total_seen, stats)
    if seen == 0:
        raise UserError("the training set is empty")
    return {
        "train_loss": total_loss / total_seen,
        "train_accuracy": total_correct / total_seen if objective.predict is not None else None,
    }


# Model outputs gathered on the device before one copy to the host (64 MiB of fp32): evaluation reads the
# device once per this many outputs, not once per batch.
OUTPUTS_PER_COPY = 2 ** 24


@torch.no_grad()
@distributed.reporting_lost_peers
def evaluate(model, objective: Objective, batches, device: torch.device) -> EvalResult:
    """Loss, accuracy and outputs over all of `batches`, in fp32.

    fp32 always, whatever the training autocast: the accuracy is the weights', the same after each
    training epoch, with --checkpoint and on any machine (there is deliberately no precision argument to
    differ). The loss sum stays on the device and outputs are copied to the host in a few large chunks,
    so the device is not synchronised per batch.

    Under torchrun, TensorBatches are split over the processes (each sample once) and the results
    gathered, so every process returns the whole set's. Pass the unwrapped model (fit does): shares
    may differ by one batch, so its forward must not wait on the other processes as DDP's may.
    """
    shared = hasattr(batches, "shard") and batches.world_size > 1  # TensorBatches under torchrun
    if shared:
        batches = copy.copy(batches).shard(batches.rank, batches.world_size, every_sample=True)
    model.eval()
    outputs, targets_seen, pending_outputs, pending_targets = [], [], [], []
    pending, seen, loss_sum = 0, 0, _sum(device)

    def copy_pending() -> None:
        if pending_outputs:
            outputs.append(torch.cat(pending_outputs).cpu())
            targets_seen.append(torch.cat(pending_targets).cpu())
            pending_outputs.clear()
            pending_targets.clear()

    for inputs, targets in batches:
        inputs, targets = to_device(inputs, device), targets.to(device, non_blocking=True)
        output = forward(model, inputs).float()
        loss_sum += objective.loss(output, targets) * len(targets)
        seen += len(targets)
        pending_outputs.append(output)
        pending_targets.append(targets)
        pending += output.numel()
        if pending >= OUTPUTS_PER_COPY:
            copy_pending()
            pending = 0
    copy_pending()
    loss_total, seen = distributed.sum_across(loss_sum, seen) if shared else (loss_sum.item(), seen)
    if seen == 0:
        raise UserError("the evaluation set is empty")
    if shared:
        all_outputs, all_targets = (distributed.gather_strided(torch.cat(parts) if parts else None)
                                    for parts in (outputs, targets_seen))
    else:
        all_outputs, all_targets = torch.cat(outputs), torch.cat(targets_seen)
    accuracy = None
    if objective.predict is not None:
        accuracy = (objective.predict(all_outputs) == all_targets).float().mean().item()
    return EvalResult(loss_total / seen, accuracy, all_outputs, all_targets)


@distributed.reporting_lost_peers
def fit(model: nn.Module, objective: Objective, optimizer: torch.optim.Optimizer, train_batches, eval_batches,
        run, *, scheduler=None, step_scheduler: bool = False, state: dict[str, Any] | None = None,
        eval_name: str = "test") -> FitResult:
    """Train for run.config.epochs, evaluating after each epoch; save last/best/periodic checkpoints.

    `scheduler` is stepped every batch (`step_scheduler`) or every epoch; `state` is the command's own
    (classes, vocabulary, standardisation) saved in every checkpoint beside the model.
    """
    config, state = run.config, state or {}
    if config.target_accuracy is not None and objective.predict is None:
        raise UserError("--target-accuracy needs a classifier; this model has no accuracy")
    history: list[dict[str, float | None]] = []
    start_epoch = 0
    if run.resuming:
        start_epoch, history = _resume(model, optimizer, scheduler, run)  # every process loads it
    # One scaler for the whole fit (fp16 only), its scale carried from epoch to epoch and across --resume.
    scaler = make_scaler(run.device, run.amp_dtype, run.loaded.get("scaler") if run.resuming else None)
    trained = distributed.wrap(model)
    if getattr(config, "compile", False):
        trained = torch.compile(trained, mode=config.compile_mode)
    monitor, higher_is_better = _monitored_metric(objective, eval_batches, eval_name)
    best_epoch = _best_epoch(history, monitor, higher_is_better)
    progress = EpochProgress(config.epochs)
    train_seconds, evaluation, epoch, stopped_early = 0.0, None, start_epoch, None

    def payload(epoch: int) -> dict[str, Any]:
        return checkpoint_payload(run, model, optimizer, scheduler, epoch, history, state, scaler=scaler)

    # Whether the weights moved since the last whole epoch: set just before each optimizer step changes them.
    stepped = False

    def note_step(*_) -> None:
        nonlocal stepped
        stepped = True

    step_hook = optimizer.register_step_pre_hook(note_step)
    if config.save is None:
        stopping.note("nothing saved (no --save)")  # also for a stop once training is over (predicting, say)
    try:
        for epoch in range(start_epoch + 1, config.epochs + 1):
            _set_epoch(train_batches, epoch - 1)
            progress.start_epoch(epoch, len(train_batches))
            started = time.perf_counter()
            metrics = train_one_epoch(trained, objective, optimizer, train_batches, device=run.device, epoch=epoch,
                                      amp_dtype=run.amp_dtype, scaler=scaler,
                                      batch_scheduler=scheduler if step_scheduler else None, writer=run.writer,
                                      progress=progress, last_checkpoint=run.written)
            distributed.share_buffers(model)
            if run.device.type == "cuda":
                torch.cuda.synchronize(run.device)
            train_seconds += time.perf_counter() - started
            metrics["lr"] = optimizer.param_groups[0]["lr"]
            if scheduler is not None and not step_scheduler:
                scheduler.step()
            if eval_batches is not None:
                evaluation = evaluate(model, objective, eval_batches, run.device)
                metrics[f"{eval_name}_loss"] = evaluation.loss
                metrics[f"{eval_name}_accuracy"] = evaluation.accuracy
                _check_finite(evaluation.loss, epoch, run.written)
            metrics["seconds"] = time.perf_counter() - started  # the epoch's, evaluation included
            # A stop (signal, closed pipe) waits for this block: the epoch is recorded and saved whole, so a
            # finished epoch is never labelled partial, nor its checkpoint left without its best file.
            with stopping.deferred():
                progress.end_epoch({key: value for key, value in metrics.items() if key not in ("lr", "seconds")})
                history.append(metrics)
                _log_epoch(run.writer, metrics, epoch)
                improved = best_epoch is None or _better(metrics[monitor], history[best_epoch - 1][monitor],
                                                         higher_is_better)
                if improved:
                    best_epoch = epoch
                _save_epoch(run, payload(epoch), epoch, best=improved)
                stepped = False
            stopped_early = _stop_reason(config, history, epoch, best_epoch, monitor)
            if stopped_early is not None:
                break
    except KeyboardInterrupt:  # a stop (core.stopping): Ctrl-C, SIGTERM or a closed pipe
        progress.close()
        _save_interrupted(run, lambda: payload(len(history)), len(history), stepped=stepped)
        raise
    finally:
        step_hook.remove()
        progress.close()
        if run.writer is not None:
            run.writer.flush()
    if stopped_early is not None:
        say(_stop_message(stopped_early, config, history, best_epoch, monitor))
    return FitResult(history, last_metrics(history), evaluation, train_seconds, len(history), run.written,
                     stopped_early, best_epoch)


def last_metrics(history: list[dict[str, float | None]]) -> dict[str, float | None]:
    """The last epoch's metrics (the summary's, the checkpoint's): its history row without the wall time."""
    return {key: value for key, value in history[-1].items() if key != "seconds"} if history else {}


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
        **state,
    }


def _set_epoch(batches, epoch: int) -> None:
    """Shuffle this epoch's order from the shared seed and the epoch, so a resumed run goes on as it
    would have: TensorBatches, or a DataLoader's DistributedSampler."""
    target = getattr(batches, "sampler", batches)
    if hasattr(target, "set_epoch"):
        target.set_epoch(epoch)


def _monitored_metric(objective: Objective, eval_batches, eval_name: str) -> tuple[str, bool]:
    prefix = eval_name if eval_batches is not None else "train"
    if objective.predict is not None:
        return f"{prefix}_accuracy", True
    return f"{prefix}_loss", False


def _better(value: float, best: float, higher_is_better: bool) -> bool:
    return value > best if higher_is_better else value < best


def _best_epoch(history, monitor: str, higher_is_better: bool) -> int | None:
    """The 1-based epoch of the best monitored value so far (the first, on ties), or None."""
    best = None
    for epoch, row in enumerate(history, start=1):
        if row.get(monitor) is not None and (best is None or _better(row[monitor], history[best - 1][monitor],
                                                                     higher_is_better)):
            best = epoch
    return best


def _stop_reason(config, history, epoch: int, best_epoch: int, monitor: str) -> str | None:
    """"target" once the monitored accuracy reaches --target-accuracy; "patience" after --patience epochs
    without improvement. Every torchrun process sees the same metrics, so all stop together."""
    if config.target_accuracy is not None and history[-1][monitor] >= config.target_accuracy:
        return "target"
    if config.patience is not None and epoch - best_epoch >= config.patience and epoch < config.epochs:
        return "patience"
    return None


def _stop_message(reason: str, config, history, best_epoch: int, monitor: str) -> str:
    epoch, best = len(history), history[best_epoch - 1][monitor]
    kept = f"; the best is kept as {best_path(config.save)}" if config.save is not None else ""
    if reason == "target":
        return (f"stopped after epoch {epoch}: {monitor} {history[-1][monitor]:.4f} reached --target-accuracy "
                f"{config.target_accuracy}{kept}")
    return (f"stopped after epoch {epoch}: {monitor} has not improved for {config.patience} epoch(s) "
            f"(best {best:.4f} in epoch {best_epoch}){kept}")


def _check_finite(value: float, epoch: int, last_checkpoint: Path | None) -> None:
    if not math.isfinite(value):
        kept = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written"
        raise TrainingDiverged(f"loss became {value} in epoch {epoch}; training stopped ({kept}). "
                               "Try a lower --lr")


def _log_epoch(writer, metrics: dict[str, float | None], epoch: int) -> None:
    """train_loss -> train/loss, test_accuracy -> test/accuracy, lr -> lr."""
    if writer is None:
        return
    for name, value in metrics.items():
        if value is not None:
            split, _, metric = name.partition("_")
            writer.add_scalar(f"{split}/{metric}" if metric else name, value, epoch)


def _save_epoch(run, payload: dict[str, Any], epoch: int, *, best: bool) -> None:
    save = run.config.save
    if save is None:
        return
    if distributed.is_main():
        every = getattr(run.config, "save_every", 0)
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


def _save_interrupted(run, payload: Callable[[], dict[str, Any]], complete: int, *, stepped: bool) -> None:
    """What a stop leaves, said in the stop's line: weights from inside an epoch saved as "`complete` epochs
    done, the next partial" (no metrics claimed for them; --resume redoes it). Where no step ran since the
    last whole epoch, its checkpoint and best file stay as they are: nothing partial is written over them."""
    save, interrupted = run.config.save, complete + 1
    if save is None:
        stopping.note("nothing saved (no --save)")
    elif not stepped:
        kept = (f"{save} holds epoch {complete} complete, as saved" if run.written else
                f"nothing saved; --resume {run.config.resume} holds epoch {complete}" if run.resuming else
                "nothing saved")
        stopping.note(f"{kept} (no step of epoch {interrupted} ran)")
    else:
        if distributed.is_main():
            with stopping.deferred():
                save_checkpoint(save, {**payload(), "metrics": {}, "partial_epoch": interrupted})
        stopping.note(f"saved {save} with epoch {complete} complete and epoch {interrupted} partial; "
                      f"--resume {save} redoes epoch {interrupted}")


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
