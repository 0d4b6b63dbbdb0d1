"""diabetes: the course's multi-feature classifier, trained through a real Dataset and DataLoader."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from torchtools.core import options


class Activation(str, Enum):
    sigmoid = "sigmoid"
    relu = "relu"


def diabetes(
    data: options.Data = None,
    hidden: Annotated[str, typer.Option(help="Hidden layer widths, comma-separated (the course: 6,4).")] = "6,4",
    activation: Annotated[Activation, typer.Option(help="Activation between layers.")] = Activation.sigmoid,
    val_split: Annotated[float, typer.Option(
        min=0.0, max=0.9, help="Share of each class held out (seeded, stratified) for the report; 0 = none.")] = 0.2,
    predict: Annotated[Optional[Path], typer.Option(
        help="CSV of rows to score (a label column, if present, is ignored); prints P(y=1) per row.",
        show_default=False)] = None,
    epochs: options.Epochs = 100,
    batch_size: options.BatchSize = 32,
    lr: options.LearningRate = 0.01,
    optimizer: options.Optimizer = options.OptimizerName.adam,
    momentum: options.Momentum = 0.0,
    seed: options.Seed = 0,
    device: options.Device = "auto",
    save: options.Save = None,
    checkpoint: options.Checkpoint = None,
    resume: options.Resume = None,
    runs_dir: options.RunsDir = Path("runs"),
    no_tensorboard: options.NoTensorboard = False,
    quiet: options.Quiet = False,
    json: options.Json = False,
) -> None:
    """Predict diabetes from 8 measurements: the course's 8-6-4-1 network, with a proper hold-out report.

    Defaults (Adam, lr 0.01, standardised features) learn in seconds; the course's own recipe is
    `--optimizer sgd --lr 0.1`.
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from torchtools.core.checkpoints import load_checkpoint, open_tensorboard
    from torchtools.data.loaders import stratified_split
    from torchtools.data.tables import read_numeric_csv
    from torchtools.core.engine import FitPlan, Objective, fit, make_optimizer
    from torchtools.core.errors import UserError
    from torchtools.core.metrics import binary_report
    from torchtools.models.tabular import mlp
    from torchtools.core.output import print_table, say
    from torchtools.core.run import Session

    session = Session.start("diabetes", device=device, seed=seed, json=json, quiet=quiet)
    widths = _parse_widths(hidden)
    epochs_run, train_seconds, metrics, report = 0, 0.0, {}, None

    if checkpoint is not None:
        state = load_checkpoint(checkpoint, command="diabetes")
        config = state["config"]
        model = mlp(config["features"], config["hidden"], config["activation"])
        model.load_state_dict(state["model"])
        mean, std = state["mean"], state["std"]
        say(f"loaded {checkpoint} (trained {state['epoch']} epochs)", quiet=quiet)
    else:
        table = read_numeric_csv(_data_path(data), min_columns=2)
        labels = torch.from_numpy(table.last_column)
        if not torch.all((labels == 0) | (labels == 1)):
            raise UserError("the last column must be the 0/1 label")
        features = torch.from_numpy(table.features)
        if val_split > 0:
            train_index, val_index = (torch.from_numpy(i) for i in stratified_split(labels.long(), val_split, seed))
        else:
            train_index, val_index = torch.arange(len(labels)), None
        # Standardise with training statistics only, so the hold-out stays unseen.
        mean = features[train_index].mean(dim=0)
        std = features[train_index].std(dim=0).clamp_min(1e-6)
        scaled = (features - mean) / std
        generator = torch.Generator().manual_seed(seed)
        train_loader = DataLoader(TensorDataset(scaled[train_index], labels[train_index]), batch_size=batch_size,
                                  shuffle=True, generator=generator)
        val_loader = None
        if val_index is not None:
            val_loader = DataLoader(TensorDataset(scaled[val_index], labels[val_index]), batch_size=256)
        config = {"features": features.shape[1], "hidden": widths, "activation": activation.value,
                  "epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer.value,
                  "val_split": val_split, "seed": seed}
        model = mlp(features.shape[1], widths, activation.value).to(session.device)
        plan = FitPlan("diabetes", epochs, session.device, config=config, extra={"mean": mean, "std": std},
                       save=save, resume=resume, eval_name="val", quiet=quiet,
                       writer=open_tensorboard(runs_dir, "diabetes", enabled=not no_tensorboard))
        result = fit(model, Objective.binary(), make_optimizer(optimizer.value, model.parameters(), lr, momentum),
                     train_loader, val_loader, plan)
        epochs_run, train_seconds, metrics = result.epochs, result.train_seconds, dict(result.metrics)
        if result.evaluation is not None:
            report = binary_report(torch.sigmoid(result.evaluation.outputs.squeeze(-1)), result.evaluation.targets)
            metrics.update({f"val_{name}": value for name, value in report.items() if name != "confusion_matrix"})
            _print_report(report, quiet, print_table)

    predictions = None
    if predict is not None:
        predictions = _predict(model.cpu(), predict, mean, std, read_numeric_csv, quiet, say)
    session.finish(epochs=epochs_run, train_seconds=train_seconds, metrics=metrics,
                   checkpoint=save if checkpoint is None else None,
                   confusion_matrix=report["confusion_matrix"] if report else None, predictions=predictions)


def _data_path(data: Path | None) -> Path:
    from torchtools.core.errors import UserError

    path = data or options.default_data_root() / "diabetes.csv.gz"
    if not path.exists():
        raise UserError(f"no data at {path}: put the course's diabetes.csv.gz there, or pass --data FILE")
    return path


def _parse_widths(text: str) -> list[int]:
    from torchtools.core.errors import UserError

    try:
        widths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--hidden {text!r}: expected comma-separated layer widths such as 6,4") from None
    if any(width < 1 for width in widths):
        raise UserError(f"--hidden {text!r}: layer widths must be positive")
    return widths


def _print_report(report: dict, quiet: bool, print_table) -> None:
    rows = [(name, value) for name, value in report.items() if name != "confusion_matrix" and value is not None]
    print_table("hold-out report", ["metric", "value"], rows, quiet=quiet)
    (tn, fp), (fn, tp) = report["confusion_matrix"]
    print_table("confusion matrix", ["true \\ predicted", "0", "1"], [("0", tn, fp), ("1", fn, tp)], quiet=quiet)


def _predict(model, path: Path, mean, std, read_numeric_csv, quiet: bool, say) -> list[float]:
    """P(y=1) for each row of a CSV; a trailing label column is ignored."""
    import torch

    from torchtools.core.errors import UserError

    table = read_numeric_csv(path)
    features = len(mean)
    if table.values.shape[1] not in (features, features + 1):
        raise UserError(f"{path} has {table.values.shape[1]} columns; the model takes {features} features "
                        f"(plus an optional label column)")
    rows = torch.from_numpy(table.values[:, :features])
    model.eval()
    with torch.no_grad():
        probabilities = torch.sigmoid(model((rows - mean) / std).squeeze(-1)).tolist()
    for number, probability in enumerate(probabilities, start=1):
        say(f"row {number}: P(y=1) = {probability:.4f}", quiet=quiet)
    return probabilities
