"""fit-logistic: the course's logistic-regression lesson (sigmoid of a linear layer, BCE loss)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torchtools.core import numbers
from torchtools.core.command import command
from torchtools.core.options import EPOCHS, LR, OPTIMIZER, PLOT, CurveFitSettings, fit_csv, fit_predict

if TYPE_CHECKING:
    from torchtools.core.run import Run

COURSE_X, COURSE_Y = [1.0, 2.0, 3.0], [0.0, 0.0, 1.0]  # hours studied, passed


@dataclass(frozen=True, kw_only=True)
class LogisticConfig(CurveFitSettings):
    csv: Path | None = fit_csv("the 0/1 label", "hours x=[1,2,3], passed y=[0,0,1]")()
    predict: list[str] | None = fit_predict("Probability of class 1")()
    plot: Path | None = dataclasses.replace(
        PLOT, help="PNG of the data and the probability curve over the data's range, with the 0.5 line (one "
                   "feature), else the loss curve.")()
    epochs: int = EPOCHS(1000)
    lr: float = LR(0.1)
    optimizer: str = OPTIMIZER("sgd")


@command("fit-logistic", LogisticConfig)
def fit_logistic(run: Run[LogisticConfig]) -> None:
    """Fit P(y=1) = sigmoid(w*x + b) with BCE: the course's pass/fail-by-hours lesson, or your CSV."""
    import torch

    from torchtools.lessons import linear
    from torchtools.core import plots
    from torchtools.core.engine import Objective
    from torchtools.data.tables import check_binary_labels
    from torchtools.core.output import say, wrote

    config = run.config
    plot = config.plot
    points = linear.load_points(config.csv, COURSE_X, COURSE_Y)
    check_binary_labels(points.y.numpy(), config.csv or "the course's data")
    inputs, keys = linear.parse_inputs(config.predict or [], points.features)

    layer, result = linear.fit_or_load(run, points, Objective.binary())
    layer = layer.cpu()
    with torch.no_grad():
        probabilities = torch.sigmoid(layer(points.x)).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy(probabilities, points.y).item()
    accuracy = ((probabilities > 0.5).float() == points.y).float().mean().item()
    w, b = linear.weights(layer)
    say(f"{linear.describe(w, b)}  loss = {numbers.loss(loss)}  train accuracy = {numbers.accuracy(accuracy)}")

    with torch.no_grad():
        outputs = torch.sigmoid(layer(inputs)).squeeze(-1).tolist() if len(inputs) else []
    predictions = dict(zip(keys, outputs))
    for key, p in predictions.items():
        say(f"x = {key}  ->  P(y=1) = {numbers.accuracy(p)}")

    if plot is not None and points.features == 1:
        linear.draw_fit(plot, layer, points, title="fit-logistic", probability=True, predicted=inputs)
    elif plot is not None and result is not None:
        plots.line_plot(plot, range(1, len(result.history) + 1), [row["train_loss"] for row in result.history],
                        xlabel="epoch", ylabel="BCE", title="fit-logistic", loss=True)
    if plot is not None and plot.is_file():  # not drawn: plots warned
        wrote("plot", plot)
    if run.report is not None and points.features == 1:
        linear.draw_fit(run.report.path("fit.png"), layer, points, title=f"fit-logistic on {points.source}",
                        probability=True, predicted=inputs)
    run.finish(result, metrics={"loss": loss, "train_accuracy": accuracy}, w=w, b=b, loss=loss,
               predictions=predictions)
