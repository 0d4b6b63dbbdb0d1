"""fit-linear: the course's linear-model lessons, from a grid search to nn.Linear."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torchtools.core import numbers
from torchtools.core.command import command
from torchtools.core.config import DEPENDS, Setting
from torchtools.core.errors import TrainingDiverged, UserError
from torchtools.core.options import EPOCHS, LR, OPTIMIZER, PLOT, CurveFitSettings, fit_csv, fit_predict

if TYPE_CHECKING:
    from torchtools.core.run import Run

# (epochs, lr) by method. The course's: 100 epochs at lr 0.01 for the hand-written loops, 1000 for
# nn.Linear; the course sums the nn loss over its 3 samples, so the mean-loss lr here is 0.05 to match.
# The grid search has neither (its one "epoch" is the scan).
DEFAULTS = {"exhaustive": (1, 0.0), "gd": (100, 0.01), "sgd": (100, 0.01), "autograd": (100, 0.01),
            "nn": (1000, 0.05)}
COURSE_X, COURSE_Y = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]


@dataclass(frozen=True, kw_only=True)
class LinearConfig(CurveFitSettings):
    REPORT_FILES = (*CurveFitSettings.REPORT_FILES, "sweep.png")
    method: str = Setting(
        "--method", choices=tuple(DEFAULTS),
        help="exhaustive: scan w over 0.0..4.0; gd/sgd: hand-written gradients; autograd: requires_grad tensors; "
             "nn: nn.Linear + MSELoss + optim.SGD.")("nn")
    csv: Path | None = fit_csv("y", "x=[1,2,3], y=[2,4,6]")()
    predict: list[str] | None = fit_predict("Predict y")()
    plot: Path | None = PLOT()
    epochs: int = dataclasses.replace(EPOCHS, help="Training epochs. Default: 100, or 1000 for nn.")(DEPENDS)
    lr: float = dataclasses.replace(LR, help="Learning rate. Default: 0.01, or 0.05 for nn.")(DEPENDS)
    optimizer: str = dataclasses.replace(OPTIMIZER, help="Optimizer of --method nn.")("sgd")

    @classmethod
    def fill(cls, values: dict) -> dict:
        epochs, lr = DEFAULTS.get(values["method"], (0, 0.0))
        return {**values, "epochs": epochs if values["epochs"] is DEPENDS else values["epochs"],
                "lr": lr if values["lr"] is DEPENDS else values["lr"]}


@command("fit-linear", LinearConfig)
def fit_linear(run: Run[LinearConfig]) -> None:
    """Fit y = w*x + b: the linear-model lessons, on the course's toy data or your CSV."""
    from torchtools.lessons import linear
    from torchtools.core import plots
    from torchtools.core.engine import Objective
    from torchtools.core.output import say, wrote

    config = run.config
    method, plot = config.method, config.plot
    if config.target_accuracy is not None:
        raise UserError("--target-accuracy needs a classifier; fit-linear fits a regression (no accuracy): "
                        "use --patience")
    if method != "nn" and (config.batch_size or config.resume or config.patience or config.optimizer != "sgd"):
        raise UserError("--batch-size, --resume, --patience and --optimizer apply to --method nn; "
                        "the lessons' loops fix their own")
    if plot is not None and not run.trains:
        raise UserError("--plot draws the training (or the grid search); a --checkpoint run trains nothing")
    points = linear.load_points(config.csv, COURSE_X, COURSE_Y)
    inputs, keys = linear.parse_inputs(config.predict or [], points.features)

    sweeps = [path for path in (plot, run.report.path("sweep.png") if run.report and method == "exhaustive" else None)
              if path is not None]
    lessons = {
        "exhaustive": lambda points, run: _exhaustive(points, sweeps),
        "gd": lambda points, run: _gradient_descent(points, run, config.lr, per_sample=False),
        "sgd": lambda points, run: _gradient_descent(points, run, config.lr, per_sample=True),
        "autograd": lambda points, run: _autograd(points, run, config.lr),
    }
    layer, result = linear.fit_or_load(run, points, Objective.regression(), lesson=lessons.get(method))
    if plot is not None and method != "exhaustive":
        plots.line_plot(plot, range(1, len(result.history) + 1), [row["train_loss"] for row in result.history],
                        xlabel="epoch", ylabel="MSE", title=f"fit-linear ({method})", loss=True)
    if plot is not None and plot.is_file():  # not drawn: plots warned
        wrote("plot", plot)
    if run.report is not None and points.features == 1:
        linear.draw_fit(run.report.path("fit.png"), layer, points, title=f"fit-linear ({method}) on {points.source}",
                        predicted=inputs)

    w, b = linear.weights(layer)
    loss = result.metrics["train_loss"] if result is not None else _mse(layer, points)
    say(f"{linear.describe(w, b)}  loss = {numbers.loss(loss)}")
    predictions = _predictions(layer, inputs, keys)
    run.finish(result, metrics={"loss": loss}, method=method, w=w, b=b, loss=loss, predictions=predictions)


def _exhaustive(points, drawn: list[Path]):
    """The first lesson: try every w on a grid and keep the one with the smallest MSE (y = w*x)."""
    import torch

    from torchtools.core import plots
    from torchtools.core.output import print_table

    if points.features != 1:
        raise UserError("--method exhaustive scans a single w; your data has several feature columns")
    x, y = points.x[:, 0], points.y
    grid = torch.arange(0, 41, dtype=torch.float32) / 10  # 0.0 .. 4.0 step 0.1, exact decimals
    mse = ((grid[:, None] * x[None, :] - y[None, :]) ** 2).mean(dim=1)
    print_table("MSE for each w", ["w", "MSE"], list(zip(grid.tolist(), mse.tolist())))
    w = grid[mse.argmin()]
    for path in drawn:  # --plot, and sweep.png in --report
        plots.line_plot(path, grid.tolist(), mse.tolist(), xlabel="w", ylabel="MSE", title="MSE against w",
                        mark=(float(w), float(mse.min())))
    return _as_layer(w.reshape(1), torch.zeros(())), _lesson_result([], mse.min().item(), 0.0)


def _gradient_descent(points, run, lr, *, per_sample: bool):
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

    result = _run_lesson(epoch_step, run, len(y))
    return _as_layer(w, b), result


def _autograd(points, run, lr):
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

    result = _run_lesson(epoch_step, run, len(points.y))
    return _as_layer(w.detach(), b.detach()), result


def _run_lesson(epoch_step, run, samples: int):
    """Drive a hand-written lesson loop with the shared progress display, TensorBoard and NaN check.
    Its checkpoint is written after the last epoch (see lessons.linear.fit_or_load), so a diverged loop
    leaves none behind."""
    from torchtools.core.output import EpochProgress

    progress = EpochProgress(run.config.epochs)
    history, seconds, writer = [], 0.0, run.writer
    try:
        for epoch in range(1, run.config.epochs + 1):
            progress.start_epoch(epoch, 1)
            started = time.perf_counter()
            loss = epoch_step()
            seconds += time.perf_counter() - started
            if not math.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss} in epoch {epoch}; training stopped (no checkpoint was "
                                       "written). Try a lower --lr")
            progress.update(1, samples, {"loss": loss})
            progress.end_epoch({"train_loss": loss})
            if writer is not None:
                writer.add_scalar("train/loss", loss, epoch)
            history.append({"train_loss": loss, "lr": run.config.lr, "seconds": time.perf_counter() - started})
    finally:
        progress.close()
        if writer is not None:
            writer.flush()
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
        say(f"x = {key}  ->  y = {numbers.value(value)}")
    return predictions
