"""fit-linear: the course's linear-model lessons, from a grid search to nn.Linear."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from torchtools.core import options
from torchtools.core.command import command
from torchtools.core.config import Config


class Method(str, Enum):
    exhaustive = "exhaustive"
    gd = "gd"
    sgd = "sgd"
    autograd = "autograd"
    nn = "nn"


# (epochs, lr) by method. The course's: 100 epochs at lr 0.01 for the hand-written loops, 1000 for
# nn.Linear; the course sums the nn loss over its 3 samples, so the mean-loss lr here is 0.05 to match.
# The grid search has neither.
DEFAULTS = {Method.exhaustive: (0, 0.0), Method.gd: (100, 0.01), Method.sgd: (100, 0.01),
            Method.autograd: (100, 0.01), Method.nn: (1000, 0.05)}
COURSE_X, COURSE_Y = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]


@dataclass(frozen=True)
class LinearConfig(Config):
    method: str
    epochs: int
    lr: float
    optimizer: str
    batch_size: int | None  # None: full batch


@command("fit-linear", options.TRAINING_RUN)
def fit_linear(
    method: Annotated[Method, typer.Option(
        help="exhaustive: scan w over 0.0..4.0; gd/sgd: hand-written gradients; autograd: requires_grad "
             "tensors; nn: nn.Linear + MSELoss + optim.SGD.")] = Method.nn,
    csv: Annotated[Optional[Path], typer.Option(
        "--csv", "--data",
        help="Fit your data: CSV, header optional, last column y, one or more feature columns. "
             "Default: the course's x=[1,2,3], y=[2,4,6].", show_default=False)] = None,
    predict: Annotated[Optional[list[str]], typer.Option(
        help="Predict y for X (repeatable; 'a,b' for several features).", show_default=False)] = None,
    plot: options.Plot = None,
    epochs: Annotated[Optional[int], typer.Option(
        "--epochs", "-e", min=1, help="Training epochs. Default: 100, or 1000 for nn.", show_default=False,
        rich_help_panel=options.TRAINING)] = None,
    lr: Annotated[Optional[float], typer.Option(
        min=0.0, help="Learning rate. Default: 0.01, or 0.05 for nn.", show_default=False,
        rich_help_panel=options.TRAINING)] = None,
    optimizer: Annotated[options.OptimizerName, typer.Option(
        help="Optimizer of --method nn.", rich_help_panel=options.TRAINING)] = options.OptimizerName.sgd,
    batch_size: options.FullBatchSize = None,
    *,
    run,
) -> None:
    """Fit y = w*x + b: the linear-model lessons, on the course's toy data or your CSV."""
    from torchtools.lessons import linear
    from torchtools.core import plots
    from torchtools.core.engine import Objective
    from torchtools.core.errors import UserError
    from torchtools.core.output import say

    default_epochs, default_lr = DEFAULTS[method]
    config = run.config(LinearConfig(method.value, epochs or default_epochs, lr if lr is not None else default_lr,
                                     optimizer.value, batch_size))
    method = Method(config.method)
    if run.target_accuracy is not None:
        raise UserError("--target-accuracy needs a classifier; fit-linear fits a regression (no accuracy): "
                        "use --patience")
    if method is not Method.nn and (config.batch_size or run.resume or run.patience
                                    or config.optimizer != options.OptimizerName.sgd.value):
        raise UserError("--batch-size, --resume, --patience and --optimizer apply to --method nn; "
                        "the lessons' loops fix their own")
    if plot is not None and not run.trains:
        raise UserError("--plot draws the training (or the grid search); a --checkpoint run trains nothing")
    run.check_output(plot, "--plot", suffixes=(".png",))
    points = linear.load_points(csv, COURSE_X, COURSE_Y)
    inputs, keys = linear.parse_inputs(predict or [], points.features)

    lessons = {
        Method.exhaustive: lambda points, plan: _exhaustive(points, plan, plot),
        Method.gd: lambda points, plan: _gradient_descent(points, plan, config.lr, per_sample=False),
        Method.sgd: lambda points, plan: _gradient_descent(points, plan, config.lr, per_sample=True),
        Method.autograd: lambda points, plan: _autograd(points, plan, config.lr),
    }
    layer, result = linear.fit_or_load(run, config, points, Objective.regression(), lesson=lessons.get(method))
    if plot is not None and method is not Method.exhaustive:
        plots.line_plot(plot, range(1, len(result.history) + 1), [row["train_loss"] for row in result.history],
                        xlabel="epoch", ylabel="MSE", title=f"fit-linear ({method.value})")

    w, b = linear.weights(layer)
    loss = result.metrics["train_loss"] if result is not None else _mse(layer, points)
    say(f"w = {w}  b = {b:.6f}  loss = {loss:.6g}")
    predictions = _predictions(layer, inputs, keys)
    run.finish(result, metrics={"loss": loss}, method=method.value, w=w, b=b, loss=loss, predictions=predictions)


def _exhaustive(points, plan, plot: Path | None):
    """The first lesson: try every w on a grid and keep the one with the smallest MSE (y = w*x)."""
    import torch

    from torchtools.core import plots
    from torchtools.core.errors import UserError
    from torchtools.core.output import print_table

    if points.features != 1:
        raise UserError("--method exhaustive scans a single w; your data has several feature columns")
    x, y = points.x[:, 0], points.y
    grid = torch.arange(0, 41, dtype=torch.float32) / 10  # 0.0 .. 4.0 step 0.1, exact decimals
    mse = ((grid[:, None] * x[None, :] - y[None, :]) ** 2).mean(dim=1)
    print_table("MSE for each w", ["w", "MSE"], list(zip(grid.tolist(), mse.tolist())))
    if plot is not None:
        plots.line_plot(plot, grid.tolist(), mse.tolist(), xlabel="w", ylabel="MSE", title="MSE against w")
    w = grid[mse.argmin()]
    return _as_layer(w.reshape(1), torch.zeros(())), _lesson_result([], mse.min().item(), 0.0)


def _gradient_descent(points, plan, lr, *, per_sample: bool):
    """Hand-written gradients of the MSE: d/dw = 2x(xw + b - y), d/db = 2(xw + b - y).

    gd averages them over all samples for one update an epoch; sgd updates after every sample.
    """
    import torch

    x, y = points.x.double(), points.y.double()
    w, b = torch.ones(points.features, dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    groups = [(x[i:i + 1], y[i:i + 1]) for i in range(len(y))] if per_sample else [(x, y)]

    def epoch_step():
        nonlocal w, b
        losses = []
        for xs, ys in groups:
            error = xs @ w + b - ys
            losses.append((error ** 2).mean().item())
            w = w - lr * 2 * (xs.T @ error) / len(ys)
            b = b - lr * 2 * error.mean()
        return sum(losses) / len(losses)

    result = _run_lesson(epoch_step, plan, len(y))
    return _as_layer(w, b), result


def _autograd(points, plan, lr):
    """The autograd lesson: w and b are tensors with requires_grad; backward() computes the gradients."""
    import torch

    w = torch.ones(points.features, requires_grad=True)
    b = torch.zeros((), requires_grad=True)

    def epoch_step():
        losses = []
        for xs, ys in zip(points.x, points.y):
            loss = (xs @ w + b - ys) ** 2
            loss.backward()
            with torch.no_grad():
                w.sub_(lr * w.grad)
                b.sub_(lr * b.grad)
            w.grad.zero_()
            b.grad.zero_()
            losses.append(loss.item())
        return sum(losses) / len(losses)

    result = _run_lesson(epoch_step, plan, len(points.y))
    return _as_layer(w.detach(), b.detach()), result


def _run_lesson(epoch_step, plan, samples: int):
    """Drive a hand-written lesson loop with the shared progress display, TensorBoard and NaN check.
    Its checkpoint is written after the last epoch (see lessons.linear.fit_or_load), so a diverged loop
    leaves none behind."""
    import math
    import time

    from torchtools.core.errors import TrainingDiverged
    from torchtools.core.output import EpochProgress

    progress = EpochProgress(plan.epochs)
    history, seconds = [], 0.0
    try:
        for epoch in range(1, plan.epochs + 1):
            progress.start_epoch(epoch, 1)
            started = time.perf_counter()
            loss = epoch_step()
            seconds += time.perf_counter() - started
            if not math.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss} in epoch {epoch}; training stopped (no checkpoint was "
                                       "written). Try a lower --lr")
            progress.update(1, samples, {"loss": loss})
            progress.end_epoch({"train_loss": loss})
            if plan.writer is not None:
                plan.writer.add_scalar("train/loss", loss, epoch)
            history.append({"train_loss": loss})
    finally:
        progress.close()
        if plan.writer is not None:
            plan.writer.flush()
    return _lesson_result(history, history[-1]["train_loss"], seconds)


def _lesson_result(history: list[dict], loss: float, seconds: float):
    """A lesson's outcome in the engine's form, so the run's summary reads it the same way."""
    from torchtools.core.engine import FitResult

    return FitResult(history, {"train_loss": loss}, None, seconds, len(history), None)


def _as_layer(w, b):
    import torch

    layer = torch.nn.Linear(len(w), 1)
    with torch.no_grad():
        layer.weight.copy_(w.float().reshape(1, -1))
        layer.bias.copy_(b.float().reshape(1))
    return layer


def _mse(layer, points) -> float:
    import torch

    with torch.no_grad():
        return torch.mean((layer.cpu()(points.x).squeeze(-1) - points.y) ** 2).item()


def _predictions(layer, inputs, keys: list[str]) -> dict[str, float]:
    import torch

    from torchtools.core.output import say

    with torch.no_grad():
        outputs = layer.cpu()(inputs).squeeze(-1).tolist() if len(inputs) else []
    predictions = dict(zip(keys, outputs))
    for key, value in predictions.items():
        say(f"x = {key}  ->  y = {value:.6g}")
    return predictions
