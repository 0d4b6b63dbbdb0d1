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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from torchtools.core import distributed
from torchtools.core.checkpoints import best_path, load_checkpoint, save_checkpoint
from torchtools.data.loaders import TensorBatches
from torchtools.core.errors import TrainingDiverged, UserError
from torchtools.core.output import EpochProgress, say

# How many batches pass between progress redraws / TensorBoard step scalars. Reading a running loss
# forces a device sync, so it is done sparingly rather than every step.
REFRESH_EVERY = 10


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
class FitPlan:
    """Everything about a training run that is not the model, objective, optimizer or data."""

    command: str
    epochs: int
    device: torch.device
    config: dict[str, Any] = field(default_factory=dict)  # rebuilds the model from a checkpoint
    extra: dict[str, Any] = field(default_factory=dict)  # command state saved with it (classes, stats...)
    save: Path | None = None
    save_every: int = 0
    resume: Path | None = None
    scheduler: Any = None
    step_scheduler: bool = False  # True: scheduler.step() after every batch (one-cycle), else per epoch
    amp_dtype: torch.dtype | None = None
    writer: Any = None  # a SummaryWriter or None
    log_every: int = 100  # batches between TensorBoard train/loss_step scalars
    eval_name: str = "test"  # metric prefix for the held-out set: test_accuracy, val_loss...
    quiet: bool = False


@dataclass
class FitResult:
    history: list[dict[str, float | None]]
    metrics: dict[str, float | None]
    evaluation: EvalResult | None
    train_seconds: float
    epochs: int
    checkpoint: Path | None


def make_optimizer(name: str, parameters: Iterable[Tensor], lr: float, momentum: float = 0.0,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    name = name.lower()
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    raise UserError(f"unknown optimizer {name!r}: use sgd, adam or adamw")


def forward(model: nn.Module, inputs: Tensor | tuple[Tensor, ...]) -> Tensor:
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def to_device(value: Tensor | tuple[Tensor, ...], device: torch.device):
    if isinstance(value, tuple):
        return tuple(item.to(device, non_blocking=True) for item in value)
    return value.to(device, non_blocking=True)


def train_one_epoch(model, objective: Objective, optimizer, batches, plan: FitPlan, *, epoch: int,
                    progress: EpochProgress | None = None) -> dict[str, float | None]:
    model.train()
    scaler = torch.amp.GradScaler(plan.device.type, enabled=plan.amp_dtype == torch.float16)
    # Sums stay on the device; they are read only every REFRESH_EVERY batches.
    loss_sum = torch.zeros((), device=plan.device)
    correct = torch.zeros((), device=plan.device, dtype=torch.long)
    seen = 0
    steps_per_epoch = len(batches)
    for step, (inputs, targets) in enumerate(batches, start=1):
        inputs, targets = to_device(inputs, plan.device), targets.to(plan.device, non_blocking=True)
        with torch.autocast(plan.device.type, dtype=plan.amp_dtype, enabled=plan.amp_dtype is not None):
            output = forward(model, inputs)
            loss = objective.loss(output, targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if plan.scheduler is not None and plan.step_scheduler:
            plan.scheduler.step()
        batch_size = len(targets)
        seen += batch_size
        loss_sum += loss.detach() * batch_size
        if objective.predict is not None:
            correct += (objective.predict(output.detach()) == targets).sum()
        if plan.writer is not None and step % plan.log_every == 0:
            plan.writer.add_scalar("train/loss_step", loss.item(), (epoch - 1) * steps_per_epoch + step)
        if step % REFRESH_EVERY == 0 or step == steps_per_epoch:
            # Under torchrun, the whole job's totals: every process sees, and stops on, the same loss.
            total_loss, total_correct, total_seen = distributed.sum_across(loss_sum, correct, seen)
            running_loss = total_loss / total_seen
            _check_finite(running_loss, epoch, plan)
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


@torch.no_grad()
@distributed.reporting_lost_peers
def evaluate(model, objective: Objective, batches, plan: FitPlan) -> EvalResult:
    """Loss, accuracy and outputs over all of `batches`.

    Under torchrun, TensorBatches are split over the processes (each sample once) and the results
    gathered, so every process returns the whole set's. Pass the unwrapped model (fit does): shares
    may differ by one batch, so its forward must not wait on the other processes as DDP's may.
    """
    shared = isinstance(batches, TensorBatches) and batches.world_size > 1
    if shared:
        batches = copy.copy(batches).shard(batches.rank, batches.world_size, every_sample=True)
    model.eval()
    outputs, targets_seen = [], []
    loss_sum, seen = 0.0, 0
    for inputs, targets in batches:
        inputs, targets = to_device(inputs, plan.device), targets.to(plan.device, non_blocking=True)
        with torch.autocast(plan.device.type, dtype=plan.amp_dtype, enabled=plan.amp_dtype is not None):
            output = forward(model, inputs)
            loss = objective.loss(output, targets)
        loss_sum += loss.item() * len(targets)
        seen += len(targets)
        outputs.append(output.float().cpu())
        targets_seen.append(targets.cpu())
    if shared:
        loss_sum, seen = distributed.sum_across(loss_sum, seen)
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
    return EvalResult(loss_sum / seen, accuracy, all_outputs, all_targets)


@distributed.reporting_lost_peers
def fit(model: nn.Module, objective: Objective, optimizer: torch.optim.Optimizer, train_batches,
        eval_batches, plan: FitPlan) -> FitResult:
    """Train for plan.epochs, evaluating after each epoch; save last/best/periodic checkpoints."""
    history: list[dict[str, float | None]] = []
    start_epoch = 0
    if plan.resume is not None:
        start_epoch, history = _resume(model, optimizer, plan)  # every process loads it
    trained = distributed.wrap(model)
    monitor, higher_is_better = _monitored_metric(objective, eval_batches, plan)
    best_value = _best_so_far(history, monitor, higher_is_better)
    progress = EpochProgress(plan.epochs, quiet=plan.quiet)
    train_seconds, evaluation, epoch = 0.0, None, start_epoch
    try:
        for epoch in range(start_epoch + 1, plan.epochs + 1):
            _set_epoch(train_batches, epoch - 1)
            progress.start_epoch(epoch, len(train_batches))
            started = time.perf_counter()
            metrics = train_one_epoch(trained, objective, optimizer, train_batches, plan, epoch=epoch,
                                      progress=progress)
            distributed.share_buffers(model)
            if plan.device.type == "cuda":
                torch.cuda.synchronize(plan.device)
            train_seconds += time.perf_counter() - started
            metrics["lr"] = optimizer.param_groups[0]["lr"]
            if plan.scheduler is not None and not plan.step_scheduler:
                plan.scheduler.step()
            if eval_batches is not None:
                evaluation = evaluate(model, objective, eval_batches, plan)
                metrics[f"{plan.eval_name}_loss"] = evaluation.loss
                metrics[f"{plan.eval_name}_accuracy"] = evaluation.accuracy
                _check_finite(evaluation.loss, epoch, plan)
            progress.end_epoch({key: value for key, value in metrics.items() if key != "lr"})
            history.append(metrics)
            _log_epoch(plan.writer, metrics, epoch)
            improved = best_value is None or (
                metrics[monitor] > best_value if higher_is_better else metrics[monitor] < best_value)
            if improved:
                best_value = metrics[monitor]
            _save_epoch(model, optimizer, plan, epoch, history, best=improved)
    except KeyboardInterrupt:
        progress.close()
        if plan.save is not None and distributed.is_main():
            # Mid-epoch weights, recorded as the last whole epoch so --resume redoes the interrupted one.
            save_checkpoint(plan.save, _payload(model, optimizer, plan, epoch - 1, history))
            say(f"interrupted: checkpoint saved to {plan.save}")
        raise
    finally:
        progress.close()
        if plan.writer is not None:
            plan.writer.flush()
    return FitResult(history, history[-1] if history else {}, evaluation, train_seconds,
                     len(history), plan.save)


def _set_epoch(batches, epoch: int) -> None:
    """Shuffle this epoch's order from the shared seed and the epoch, so a resumed run goes on as it
    would have: TensorBatches, or a DataLoader's DistributedSampler."""
    target = getattr(batches, "sampler", batches)
    if hasattr(target, "set_epoch"):
        target.set_epoch(epoch)


def _monitored_metric(objective: Objective, eval_batches, plan: FitPlan) -> tuple[str, bool]:
    prefix = plan.eval_name if eval_batches is not None else "train"
    if objective.predict is not None:
        return f"{prefix}_accuracy", True
    return f"{prefix}_loss", False


def _best_so_far(history, monitor: str, higher_is_better: bool) -> float | None:
    values = [row[monitor] for row in history if row.get(monitor) is not None]
    if not values:
        return None
    return max(values) if higher_is_better else min(values)


def _check_finite(value: float, epoch: int, plan: FitPlan) -> None:
    if not math.isfinite(value):
        kept = f"the last good checkpoint is {plan.save}" if plan.save else "nothing was saved (no --save)"
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


def _payload(model, optimizer, plan: FitPlan, epoch: int, history) -> dict[str, Any]:
    return {
        "command": plan.command,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": plan.scheduler.state_dict() if plan.scheduler is not None else None,
        "epoch": epoch,
        "metrics": history[-1] if history else {},
        "history": history,
        "config": plan.config,
        **plan.extra,
    }


def _save_epoch(model, optimizer, plan: FitPlan, epoch: int, history, *, best: bool) -> None:
    if plan.save is None:
        return
    if distributed.is_main():
        payload = _payload(model, optimizer, plan, epoch, history)
        save_checkpoint(plan.save, payload)
        if best:
            save_checkpoint(best_path(plan.save), payload)
        if plan.save_every and epoch % plan.save_every == 0:
            save_checkpoint(plan.save.with_name(f"{plan.save.stem}.epoch{epoch}{plan.save.suffix or '.pt'}"),
                            payload)
    # The others wait: no process runs ahead of the last checkpoint, and a failed save stops them all.
    distributed.barrier()


def _resume(model, optimizer, plan: FitPlan) -> tuple[int, list]:
    checkpoint = load_checkpoint(plan.resume, command=plan.command)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if plan.scheduler is not None and checkpoint.get("scheduler") is not None:
        plan.scheduler.load_state_dict(checkpoint["scheduler"])
    epoch = int(checkpoint["epoch"])
    if epoch >= plan.epochs:
        raise UserError(f"{plan.resume} already holds {epoch} epoch(s); pass --epochs above {epoch} to go on")
    say(f"resumed from {plan.resume} after epoch {epoch}", quiet=plan.quiet)
    return epoch, list(checkpoint.get("history", []))
