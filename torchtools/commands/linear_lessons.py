"""The linear-model lessons' shared core: toy or CSV data, a one-layer model, predictions.

fit-linear and fit-logistic differ only in their objective (MSE vs BCE on a sigmoid) and in
fit-linear's hand-written lesson methods; everything else about them lives here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from torchtools.core.checkpoints import load_checkpoint, save_checkpoint
from torchtools.data.loaders import TensorBatches
from torchtools.data.tables import read_numeric_csv
from torchtools.core.engine import FitPlan, Objective, fit, make_optimizer
from torchtools.core.errors import UserError


@dataclass
class Points:
    x: Tensor  # samples x features, float32
    y: Tensor  # samples

    @property
    def features(self) -> int:
        return self.x.shape[1]


def load_points(csv: Path | None, default_x: list[float], default_y: list[float]) -> Points:
    """The user's CSV (header optional, last column y, one or more feature columns) or the course's toy data."""
    if csv is None:
        return Points(torch.tensor(default_x).unsqueeze(1), torch.tensor(default_y))
    table = read_numeric_csv(csv, min_columns=2)
    return Points(torch.from_numpy(table.features).contiguous(), torch.from_numpy(table.last_column).contiguous())


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
        if len(row) != features:
            raise UserError(f"--predict {text!r}: the model takes {features} feature(s), got {len(row)}")
        rows.append(row)
    keys = [",".join(repr(value) for value in row) for row in rows]
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), features), keys


def weights(layer: nn.Linear) -> tuple[float | list[float], float]:
    """(w, b) as plain numbers: w a number for one feature, a list for several."""
    w = layer.weight.detach().cpu().reshape(-1).tolist()
    return (w[0] if len(w) == 1 else w), float(layer.bias.detach().cpu().item())


def train_layer(points: Points, objective: Objective, plan: FitPlan, *, lr: float, optimizer: str,
                batch_size: int | None = None, seed: int = 0) -> tuple[nn.Linear, list[float], float]:
    """nn.Linear trained through the engine (full batch unless `batch_size`); returns the layer,
    the per-epoch losses and the training time."""
    layer = nn.Linear(points.features, 1).to(plan.device)
    batches = TensorBatches(points.x.to(plan.device), points.y.to(plan.device),
                            batch_size=batch_size or len(points.y), shuffle=batch_size is not None, seed=seed)
    result = fit(layer, objective, make_optimizer(optimizer, layer.parameters(), lr), batches, None, plan)
    return layer, [row["train_loss"] for row in result.history], result.train_seconds


def save_layer(path: Path, command: str, layer: nn.Linear, config: dict, metrics: dict) -> Path:
    """For the hand-written lesson methods, which have no optimizer: the same checkpoint layout as fit()."""
    return save_checkpoint(path, {"command": command, "model": layer.state_dict(), "optimizer": None,
                                  "scheduler": None, "epoch": config.get("epochs", 0), "metrics": metrics,
                                  "history": [], "config": config})


def load_layer(path: Path, command: str) -> nn.Linear:
    checkpoint = load_checkpoint(path, command=command)
    state = checkpoint["model"]
    layer = nn.Linear(state["weight"].shape[1], 1)
    layer.load_state_dict(state)
    return layer
