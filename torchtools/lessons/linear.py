"""The linear-model lessons' shared core: toy or CSV data, a one-layer model trained or loaded, predictions.

fit-linear and fit-logistic differ only in their objective (MSE vs BCE on a sigmoid) and in
fit-linear's hand-written lesson methods; everything else about them lives here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from torchtools.core import numbers, plots
from torchtools.core.checkpoints import checkpoint_payload, save_checkpoint
from torchtools.core.config import FLOAT32_MAX
from torchtools.core.engine import FitResult, Objective, fit
from torchtools.core.optim import make_optimizer
from torchtools.core.errors import UserError
from torchtools.core.run import Run
from torchtools.data.loaders import TensorBatches
from torchtools.data.tables import read_numeric_csv

# A hand-written lesson loop: trains a layer on the points for the run, returns it and its result.
Lesson = Callable[["Points", Run], tuple[nn.Linear, FitResult]]


@dataclass
class Points:
    x: Tensor  # samples x features, float32
    y: Tensor  # samples
    source: str  # the CSV, or "the course's data"
    columns: tuple[str, ...] = ("x", "y")  # the CSV's header, else x (x1, x2, ...) and y

    @property
    def features(self) -> int:
        return self.x.shape[1]


def load_points(csv: Path | None, default_x: list[float], default_y: list[float]) -> Points:
    """The user's CSV (header optional, last column y, one or more feature columns) or the course's toy data."""
    if csv is None:
        return Points(torch.tensor(default_x).unsqueeze(1), torch.tensor(default_y), "the course's data")
    table = read_numeric_csv(csv, min_columns=2)
    features = table.features.shape[1]
    columns = tuple(table.header) if table.header else (
        *(["x"] if features == 1 else [f"x{index}" for index in range(1, features + 1)]), "y")
    return Points(torch.from_numpy(table.features).contiguous(), torch.from_numpy(table.last_column).contiguous(),
                  str(csv), columns)


def draw_fit(path: Path, layer, points: Points, *, title: str, probability: bool = False,
             predicted: Tensor | None = None) -> Path:
    """The data and the fitted line (or, with `probability`, the sigmoid curve and its 0.5 line) over the range
    of the data and of every `predicted` input (--predict, marked on the line), on the data's own column names.
    One feature only: several have no single line to draw."""
    x = points.x[:, 0]
    shown = torch.cat([x, predicted[:, 0]]) if predicted is not None and len(predicted) else x
    low, high = float(shown.min()), float(shown.max())
    margin = (high - low) * 0.05 or 1.0
    grid = torch.linspace(low - margin, high + margin, 200)
    with torch.no_grad():
        fitted = layer.cpu()(grid.unsqueeze(1)).squeeze(-1)
        fitted = torch.sigmoid(fitted) if probability else fitted
        marks = None
        if predicted is not None and len(predicted):
            ys = layer(predicted).squeeze(-1)
            marks = (predicted[:, 0].tolist(), (torch.sigmoid(ys) if probability else ys).tolist())
    ylabel = f"P({points.columns[-1]} = 1)" if probability else points.columns[-1]
    return plots.line_plot(path, grid.tolist(), fitted.tolist(), xlabel=points.columns[0], ylabel=ylabel,
                           title=title, hline=0.5 if probability else None,
                           points=(x.tolist(), points.y.tolist()), predicted=marks)


def check_features(run: Run, points: Points) -> None:
    """A --checkpoint or --resume model takes the feature count it was trained on."""
    if run.loaded is not None and run.loaded.get("features") != points.features:
        raise UserError(f"{points.source} has {points.features} feature column(s); {run.source} "
                        f"was trained on {run.loaded.get('features')}: pass --csv with that many")


def parse_inputs(texts: list[str], features: int) -> tuple[Tensor, list[str]]:
    """`--predict 4` or, for several features, `--predict 1.5,2` -> (inputs, their JSON keys).

    Keys are the numbers as Python writes them ("4.0", "1.5,2.0"), from the text rather than the float32
    tensor, so a script finds 0.9 under "0.9" and not under "0.8999999761581421".
    """
    rows = []
    for text in texts:
        try:
            row = [float(cell) for cell in text.split(",")]
        except ValueError:
            raise UserError(f"--predict {text!r}: expected {features} comma-separated number(s)") from None
        if not all(math.isfinite(value) and abs(value) <= FLOAT32_MAX for value in row):  # the model is float32
            raise UserError(f"--predict {text!r}: expected finite numbers within float32's range")
        if len(row) != features:
            raise UserError(f"--predict {text!r}: the model takes {features} feature(s), got {len(row)}")
        rows.append(row)
    keys = [",".join(repr(value) for value in row) for row in rows]
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), features), keys


def describe(w: float | list[float], b: float) -> str:
    """"w = 2.000  b = 7.000e-06" (4 significant digits, core/numbers.py); several features' w as a list."""
    shown = numbers.value(w) if isinstance(w, float) else "[" + ", ".join(map(numbers.value, w)) + "]"
    return f"w = {shown}  b = {numbers.value(b)}"


def weights(layer: nn.Linear) -> tuple[float | list[float], float]:
    """(w, b) as plain numbers: w a number for one feature, a list for several."""
    w = layer.weight.detach().cpu().reshape(-1).tolist()
    return (w[0] if len(w) == 1 else w), float(layer.bias.detach().cpu().item())


def fit_or_load(run: Run, points: Points, objective: Objective, *,
                lesson: Lesson | None = None) -> tuple[nn.Linear, FitResult | None]:
    """The --checkpoint layer (result None), or one trained on the points: nn.Linear through the engine, or by a
    hand-written `lesson` loop, saved to --save in the engine's checkpoint layout."""
    check_features(run, points)
    if not run.trains:
        return run.load_model(nn.Linear(points.features, 1)), None
    state = {"features": points.features}
    if lesson is None:
        return _train_layer(points, objective, run, state)
    layer, result = lesson(points, run)
    if run.config.save is not None:
        # The hand-written lessons have no optimizer: their checkpoint loads with --checkpoint, not --resume.
        result.checkpoint = save_checkpoint(run.config.save, checkpoint_payload(
            run, layer, None, None, result.epochs, result.history, state))
    return layer, result


def _train_layer(points: Points, objective: Objective, run: Run, state: dict) -> tuple[nn.Linear, FitResult]:
    """nn.Linear trained through the engine: full batch unless --batch-size."""
    config = run.config
    layer = nn.Linear(points.features, 1).to(run.device)
    batches = TensorBatches(points.x.to(run.device), points.y.to(run.device),
                            batch_size=config.batch_size or len(points.y), shuffle=config.batch_size is not None,
                            seed=config.seed)
    return layer, fit(layer, objective, make_optimizer(config, layer.parameters()), batches, None, run, state=state)
