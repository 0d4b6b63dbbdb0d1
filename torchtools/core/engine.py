"""The one training loop: train_one_epoch / evaluate / fit (its bookkeeping: core.checkpoints.EpochKeeper).

Every training command builds a model, an objective, an optimizer and batches, then calls `fit`. Batches
are any re-iterable of (inputs, targets) with a length: a DataLoader or a TensorBatches. `inputs` may be a
tuple, which is unpacked into the model call (e.g. padded names and their lengths).

Under torchrun (core.distributed) the same calls train with DistributedDataParallel: each process takes its
share of the batches, metrics are summed over all of them, and only process 0 shows progress and saves.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchtools.core import distributed, threads
from torchtools.core.checkpoints import EpochKeeper, last_metrics
from torchtools.core.devices import device_line
from torchtools.core.errors import TrainingDiverged, UserError
from torchtools.core.options import CompiledSettings
from torchtools.core.output import EpochProgress, say


# Batches between progress redraws: reading a running loss forces a device sync, so it is done sparingly.
REFRESH_EVERY = 10
LOG_EVERY = 100  # batches between TensorBoard train/loss_step scalars


@dataclass
class Objective:
    """How a model's output is scored: the loss, and for classifiers how the output becomes a label."""

    loss: Callable[[Tensor, Tensor], Tensor]
    predict: Callable[[Tensor], Tensor] | None = None  # None for regression: no accuracy

    @classmethod
    def classification(cls, label_smoothing: float = 0.0, class_weights: list[float] | None = None,
                       device: torch.device | None = None) -> Objective:
        """Cross-entropy; `class_weights` (--class-weights, as a checkpoint saves them) weight each class's loss."""
        weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32, device=device)
        return cls(nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing),
                   lambda output: output.argmax(dim=1))

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


def forward(model: nn.Module, inputs: Tensor | tuple[Tensor, ...]) -> Tensor:
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def to_device(value: Tensor | tuple[Tensor, ...], device: torch.device):
    if isinstance(value, tuple):
        return tuple(item.to(device, non_blocking=True) for item in value)
    return value.to(device, non_blocking=True)


def _sum(device: torch.device) -> Tensor:
    """A running sum kept on the device (read only when needed: reading it syncs); float64 where it exists."""
    return torch.zeros((), device=device, dtype=torch.float32 if device.type == "mps" else torch.float64)


def train_one_epoch(model, objective: Objective, optimizer, batches, *, device: torch.device, epoch: int,
                    amp_dtype: torch.dtype | None = None, scaler: torch.amp.GradScaler | None = None,
                    batch_scheduler: Any = None, writer: Any = None, progress: EpochProgress | None = None,
                    last_checkpoint: Path | None = None) -> dict[str, float | None]:
    """One pass over `batches`, under autocast to `amp_dtype` (None: fp32).

    `scaler` is the fit's GradScaler (`checkpoints.make_scaler`), required for fp16; `batch_scheduler` is stepped after
    every batch (one-cycle; None where the schedule steps per epoch). The loss and accuracy sums stay on the
    device and are read every REFRESH_EVERY batches (under torchrun, summed over the job there).
    `last_checkpoint` is named if the loss diverges.
    """
    if amp_dtype == torch.float16 and (scaler is None or not scaler.is_enabled()):
        raise ValueError("fp16 autocast needs the fit's GradScaler (checkpoints.make_scaler)")
    model.train()
    loss_sum = _sum(device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    steps_per_epoch = len(batches)
    for step, (inputs, targets) in enumerate(batches, start=1):
        threads.adjust()  # the CPU pool resized to what other processes leave, at most once a second
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
        if progress is not None:
            progress.advance(step)  # the count and the clock only: no device sync
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
@distributed.reporting_lost_peers()
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


def fit(model: nn.Module, objective: Objective, optimizer: torch.optim.Optimizer, train_batches, eval_batches,
        run, *, scheduler=None, step_scheduler: bool = False, state: dict[str, Any] | None = None,
        eval_name: str = "test") -> FitResult:
    """Train for run.config.epochs, evaluating after each epoch; save last/best/periodic checkpoints.

    `scheduler` is stepped every batch (`step_scheduler`) or every epoch; `state` is the command's own
    (classes, vocabulary, standardisation) saved in every checkpoint beside the model.
    """
    config = run.config
    if config.target_accuracy is not None and objective.predict is None:
        raise UserError("--target-accuracy needs a classifier; this model has no accuracy")
    split = eval_name if eval_batches is not None else "train"
    monitor = f"{split}_accuracy" if objective.predict is not None else f"{split}_loss"
    train_seconds, evaluation = 0.0, None
    say(device_line(run.device, run.amp_dtype))
    # The keeper resumes (every process loads the --resume file), records and saves each epoch, saves a stop's:
    # a collective that fails as another process was stopped reaches it as that stop (core/distributed.py).
    with EpochKeeper(run, model, optimizer, scheduler, state or {}, monitor=monitor) as keeper, \
            distributed.reporting_lost_peers():
        scaler, progress = keeper.scaler, keeper.progress
        trained = distributed.wrap(model)
        if isinstance(config, CompiledSettings) and config.compile:
            trained = torch.compile(trained, mode=config.compile_mode)
        for epoch in range(keeper.epoch + 1, config.epochs + 1):
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
            if keeper.end_epoch(epoch, metrics):
                break
    return FitResult(keeper.history, last_metrics(keeper.history), evaluation, train_seconds, len(keeper.history),
                     run.written, keeper.stopped_early, keeper.best_epoch)


def _set_epoch(batches, epoch: int) -> None:
    """Shuffle this epoch's order from the shared seed and the epoch, so a resumed run goes on as it
    would have: TensorBatches, or a DataLoader's DistributedSampler."""
    target = getattr(batches, "sampler", batches)
    if hasattr(target, "set_epoch"):
        target.set_epoch(epoch)


def _check_finite(value: float, epoch: int, last_checkpoint: Path | None) -> None:
    if not math.isfinite(value):
        kept = f"the last good checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written"
        raise TrainingDiverged(f"loss became {value} in epoch {epoch}; training stopped ({kept}). "
                               "Try a lower --lr")
