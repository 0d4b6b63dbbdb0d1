"""diabetes: the course's multi-feature classifier, trained through a real Dataset and DataLoader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TYPE_CHECKING

from torchtools.core import numbers
from torchtools.core.command import command
from torchtools.core.config import READS, Setting, comma_separated_ints, shown
from torchtools.core.errors import UserError
from torchtools.core.options import (BATCH_SIZE, DATA, EPOCHS, LR, MOMENTUM, OPTIMIZER, SIZE_MAX, VAL_SPLIT,
                                     TrainingSettings, a_count)

if TYPE_CHECKING:
    from torchtools.core.run import Run


@dataclass(frozen=True, kw_only=True)
class DiabetesConfig(TrainingSettings):
    """The feature count comes from the table: it is saved beside the config, with the standardisation."""

    prefer_cpu: ClassVar[bool] = True  # --device auto: a few hundred rows train before CUDA starts
    REPORT_FILES = (*TrainingSettings.REPORT_FILES, "roc.png")
    STATE = {"features": (a_count, "a count"),
             "mean": (lambda value: _statistics(value, positive=False), "a row of finite fp32 means"),
             "std": (lambda value: _statistics(value, positive=True), "a row of finite fp32 deviations above zero")}

    data: Path | None = DATA()
    hidden: list[int] = Setting("--hidden", min=1, max=SIZE_MAX // 4, metavar="WIDTHS", parse=comma_separated_ints,
                                help="Hidden layer widths, comma-separated (the course: 6,4).")([6, 4])
    activation: str = Setting("--activation", choices=("sigmoid", "relu"),
                              help="Activation between layers.")("sigmoid")
    val_split: float = VAL_SPLIT(0.2)
    predict: Path | None = Setting(
        "--predict", saved=False, show_default=False, role=READS,
        help="CSV of rows to score (a label column, if present, is ignored); prints P(y=1) per row.")()
    epochs: int = EPOCHS(100)
    batch_size: int = BATCH_SIZE(32)
    lr: float = LR(0.01)
    optimizer: str = OPTIMIZER("adam")
    momentum: float = MOMENTUM(0.0)

    def data_reads(self) -> list:
        from torchtools.data import reads

        return reads.table_reads(self.data)


# Bytes one parameter takes while training: its fp32 weight, gradient and Adam's two moments.
TRAINING_BYTES_PER_PARAMETER = 16


def build_model(config: DiabetesConfig, state: dict):
    """The network a diabetes config describes, for `state`'s number of feature columns. Widths each within
    bounds may still multiply into more weights than memory holds (--hidden 100000,100000: 10^10): that is
    one error naming them, before anything is allocated (training, --checkpoint and export alike)."""
    from torchtools.data.budget import memory_budget
    from torchtools.models.tabular import mlp

    widths = [state["features"], *config.hidden, 1]
    parameters = sum((width_in + 1) * width_out for width_in, width_out in zip(widths, widths[1:]))
    budget, source = memory_budget()
    if parameters * TRAINING_BYTES_PER_PARAMETER > budget:
        raise UserError(f"{config.option('hidden')} {shown(config.hidden)}: {parameters:,} weights need "
                        f"{numbers.size(parameters * TRAINING_BYTES_PER_PARAMETER)} to train, over the memory "
                        f"budget of {numbers.size(budget)} ({source}): choose narrower layers")
    return mlp(state["features"], config.hidden, config.activation)


def _statistics(value, *, positive: bool) -> bool:
    """A standardisation's mean or std, as it was saved: finite fp32 numbers (std above zero)."""
    import torch

    return isinstance(value, torch.Tensor) and value.dtype == torch.float32 and value.ndim == 1 and \
        bool(torch.isfinite(value).all()) and (not positive or bool((value > 0).all()))


@command("diabetes", DiabetesConfig)
def diabetes(run: Run[DiabetesConfig]) -> None:
    """Predict diabetes from 8 measurements: the course's 8-6-4-1 network, with a proper hold-out report.

    Defaults (Adam, lr 0.01, standardised features) learn in seconds; the course's own recipe is
    `--optimizer sgd --lr 0.1`.
    """
    import torch

    from torchtools.core.engine import Objective, fit
    from torchtools.core.optim import make_optimizer
    from torchtools.core.metrics import binary_report
    from torchtools.core.output import say
    from torchtools.core.summary import summarise
    from torchtools.data import roots

    config = run.config
    rows = run.inputs([config.predict] if config.predict is not None else None, "--predict")
    result, metrics, report, extra = None, {}, None, {}
    if run.trains:
        table = roots.diabetes_table(config.data)
        run.builtin_data = table.builtin
        say(table.note or f"data: {table.path}")
        train_loader, val_loader, mean, std = _loaders(table.path, config, config.seed)
        run.check_resumed("features", len(mean), "the number of feature columns")
    else:
        mean, std = run.loaded["mean"], run.loaded["std"]
    to_label = _predict_rows(rows[0], len(mean)) if rows else None  # a bad --predict file is found before training
    if run.trains:
        model = build_model(config, {"features": len(mean)}).to(run.device)
        extra["model_summary"] = summarise(model, train_loader.dataset.tensors[0][:2].to(run.device), "MLP")
        result = fit(model, Objective.binary(), make_optimizer(config, model.parameters()), train_loader, val_loader,
                     run, eval_name="val", state={"features": len(mean), "mean": mean, "std": std})
        metrics = dict(result.metrics)
        if result.evaluation is not None:
            report = binary_report(torch.sigmoid(result.evaluation.outputs.squeeze(-1)), result.evaluation.targets)
            metrics.update({f"val_{name}": value for name, value in report.items() if name != "confusion_matrix"})
            _print_report(report)
            if run.report is not None:
                _draw_roc(run.report.path("roc.png"), result.evaluation, report["roc_auc"])
                _draw_confusion(run.report.path("confusion.png"), report)
        else:
            say("--val-split 0: nothing held out, no hold-out report")
    else:
        model = run.load_model(build_model(config, run.loaded))

    predictions = _predict(model.cpu(), to_label, mean, std) if rows else None
    run.finish(result, metrics=metrics, confusion_matrix=report["confusion_matrix"] if report else None,
               predictions=predictions, data=str(table.path) if run.trains else None,
               builtin_data=table.builtin if run.trains else False, **extra)


def _loaders(path: Path, config: DiabetesConfig, seed: int):
    """(train loader, hold-out loader or None, feature mean, feature std) of the table at `path`, features
    standardised with the training rows' statistics only, so the hold-out stays unseen."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from torchtools.data.loaders import stratified_split
    from torchtools.data.tables import (check_binary_labels, check_held_out_classes, check_split_sizes,
                                        read_numeric_csv)

    table = read_numeric_csv(path, min_columns=2)
    check_binary_labels(table.last_column, path)
    labels = torch.from_numpy(table.last_column)
    features = torch.from_numpy(table.features)
    if config.val_split > 0:
        train_index, val_index = (torch.from_numpy(index)
                                  for index in stratified_split(labels.long(), config.val_split, seed))
    else:
        train_index, val_index = torch.arange(len(labels)), None
    check_split_sizes(path, len(train_index), len(val_index) if val_index is not None else 0, config.val_split)
    if val_index is not None:
        check_held_out_classes(path, table.last_column, val_index.numpy())
    mean = features[train_index].mean(dim=0)
    # One training row has no spread: its std is NaN, and scaling by 1 leaves it as it is.
    std = features[train_index].std(dim=0).nan_to_num(1.0).clamp_min(1e-6)
    scaled = (features - mean) / std
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(TensorDataset(scaled[train_index], labels[train_index]), batch_size=config.batch_size,
                              shuffle=True, generator=generator)
    val_loader = None
    if val_index is not None:
        val_loader = DataLoader(TensorDataset(scaled[val_index], labels[val_index]), batch_size=256)
    return train_loader, val_loader, mean, std


def _draw_roc(path: Path, evaluation, auc: float | None) -> None:
    import torch

    from torchtools.core import plots
    from torchtools.core.metrics import roc_curve

    false_positive, true_positive = roc_curve(torch.sigmoid(evaluation.outputs.squeeze(-1)), evaluation.targets)
    plots.roc(path, false_positive, true_positive, auc=auc,
              title=f"ROC on the hold-out ({len(evaluation.targets)} rows)")


def _draw_confusion(path: Path, report: dict) -> None:
    """confusion.png, as the image classifiers draw theirs (the README and --report's help promise it)."""
    import numpy as np

    from torchtools.core import plots

    title = (f"hold-out confusion matrix, accuracy {numbers.share(report['accuracy'])}\n"
             "(colour: share of the true class)")
    plots.heatmap(path, np.array(report["confusion_matrix"]), ["0", "1"], title=title)


def _print_report(report: dict) -> None:
    from torchtools.core.output import print_table

    rows = [(name, value) for name, value in report.items() if name != "confusion_matrix" and value is not None]
    print_table("hold-out report", ["metric", "value"], rows)
    (tn, fp), (fn, tp) = report["confusion_matrix"]
    print_table("confusion matrix", ["true \\ predicted", "0", "1"], [("0", tn, fp), ("1", fn, tp)])


def _predict_rows(path: Path, features: int):
    """The --predict CSV's feature rows as a tensor; a trailing label column is ignored."""
    import torch

    from torchtools.data.tables import read_numeric_csv

    table = read_numeric_csv(path)
    if table.values.shape[1] not in (features, features + 1):
        raise UserError(f"{path} has {table.values.shape[1]} columns; the model takes {features} features "
                        f"(plus an optional label column)")
    return torch.from_numpy(table.values[:, :features])


def _predict(model, rows, mean, std) -> list[float]:
    """P(y=1) for each row."""
    import torch

    from torchtools.core.output import say

    model.eval()
    with torch.no_grad():
        probabilities = torch.sigmoid(model((rows - mean) / std).squeeze(-1)).tolist()
    for number, probability in enumerate(probabilities, start=1):
        say(f"row {number}: P(y=1) = {numbers.accuracy(probability)}")
    return probabilities
