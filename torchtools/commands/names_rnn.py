"""names-rnn: the course's last lesson, a character-level RNN that tells a surname's country."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from torchtools.core import options

MODEL = "Model"
TOP_LABELS = 3


class Cell(str, Enum):
    gru = "gru"
    lstm = "lstm"
    rnn = "rnn"


def names_rnn(
    data: Annotated[Optional[Path], typer.Option(
        "--data", help="Training names: a name,label CSV (gzip or plain) or a folder of <Label>.txt files. "
                       "Default: the course's names/names_train.csv.gz under $TORCHTOOLS_DATA, else data/ "
                       "(with names_test.csv.gz beside it as --test).",
        show_default=False)] = None,
    test: Annotated[Optional[Path], typer.Option(
        help="Test names, in either layout. Without it, --val-split holds part of --data out.",
        show_default=False)] = None,
    val_split: Annotated[float, typer.Option(
        min=0.0, max=0.9, help="Share of each label held out (seeded, stratified) when there is no --test.")] = 0.2,
    predict: Annotated[Optional[list[str]], typer.Option(
        help="A surname to classify (repeatable): prints the top 3 labels with probabilities.",
        show_default=False)] = None,
    cell: Annotated[Cell, typer.Option(help="Recurrent cell.", rich_help_panel=MODEL)] = Cell.gru,
    hidden: Annotated[int, typer.Option(min=1, help="Embedding and hidden size.", rich_help_panel=MODEL)] = 100,
    layers: Annotated[int, typer.Option(min=1, help="Recurrent layers.", rich_help_panel=MODEL)] = 2,
    bidirectional: Annotated[bool, typer.Option(
        "--bidirectional/--no-bidirectional", help="Read names both ways.", rich_help_panel=MODEL)] = True,
    epochs: options.Epochs = 12,  # test accuracy plateaus at ~84% from epoch 10; later epochs overfit
    batch_size: options.BatchSize = 256,
    lr: options.LearningRate = 1e-3,
    optimizer: options.Optimizer = options.OptimizerName.adam,
    momentum: options.Momentum = 0.0,
    seed: options.Seed = 0,
    device: options.Device = "auto",
    plot: Annotated[Optional[Path], typer.Option(
        "--plot", help="Draw the confusion matrix as a PNG heatmap to this file.", show_default=False,
        rich_help_panel=options.OUTPUT)] = None,
    save: options.Save = None,
    checkpoint: options.Checkpoint = None,
    resume: options.Resume = None,
    runs_dir: options.RunsDir = Path("runs"),
    no_tensorboard: options.NoTensorboard = False,
    quiet: options.Quiet = False,
    json: options.Json = False,
) -> None:
    """Tell a surname's country: Embedding -> GRU -> Linear over characters, on the course CSV or the tutorial folder.

    Reports overall and per-label accuracy and the confusion matrix; --predict NAME gives the top 3 labels.
    """
    from torchtools.core.checkpoints import load_checkpoint, open_tensorboard
    from torchtools.core.image_classifier import report as class_report
    from torchtools.data.names import Vocabulary, read_names
    from torchtools.core.engine import FitPlan, Objective, evaluate, fit, make_optimizer
    from torchtools.core.errors import UserError
    from torchtools.core.output import say
    from torchtools.core.run import Session

    session = Session.start("names-rnn", device=device, seed=seed, json=json, quiet=quiet)
    writer = None
    skipped = {"blank": 0, "junk": 0, "unknown_label": 0}
    epochs_run, train_seconds, metrics, report = 0, 0.0, {}, None

    if checkpoint is not None:
        if not predict and test is None:
            raise UserError("--checkpoint needs --predict NAME or --test DATA to work on")
        state = load_checkpoint(checkpoint, command="names-rnn")
        config = state["config"]
        labels, vocabulary = list(state["labels"]), Vocabulary(state["vocabulary"])
        model = _build_model(config).to(session.device)
        model.load_state_dict(state["model"])
        say(f"loaded {checkpoint} (trained {state['epoch']} epochs, {len(labels)} labels)", quiet=quiet)
        if test is not None:
            eval_name = "test"
            test_set = read_names(test)
            _count_skipped(skipped, test_set)
            eval_batches = _batches(test_set, labels, vocabulary, session.device, batch_size, test, skipped)
            plan = FitPlan("names-rnn", 0, session.device, eval_name=eval_name, quiet=quiet)
            evaluation = evaluate(model, Objective.classification(), eval_batches, plan)
            metrics = {"test_loss": evaluation.loss, "test_accuracy": evaluation.accuracy}
            report = class_report(evaluation, labels, split=eval_name, plot=plot, quiet=quiet)
    else:
        if data is None:
            data = options.default_data_root() / "names" / "names_train.csv.gz"
            course_test = data.with_name("names_test.csv.gz")
            test = test or (course_test if course_test.is_file() else None)
        train_set = read_names(data)
        say(f"training data: {train_set.describe()}", quiet=quiet)
        _count_skipped(skipped, train_set)
        train_set, held_out, eval_name = _held_out(train_set, test, val_split, seed, quiet)
        if test is not None:
            _count_skipped(skipped, held_out)
        labels = sorted(set(train_set.labels))
        vocabulary = Vocabulary.from_names(train_set.names)
        train_batches = _batches(train_set, labels, vocabulary, session.device, batch_size, data, skipped,
                                 shuffle=True, seed=seed)
        eval_batches = None
        if held_out is not None:
            eval_batches = _batches(held_out, labels, vocabulary, session.device, batch_size, test, skipped)
        config = {"vocabulary_size": len(vocabulary), "classes": len(labels), "hidden": hidden, "layers": layers,
                  "bidirectional": bidirectional, "cell": cell.value, "epochs": epochs, "batch_size": batch_size,
                  "lr": lr, "optimizer": optimizer.value, "seed": seed}
        model = _build_model(config).to(session.device)
        writer = open_tensorboard(runs_dir, "names-rnn", enabled=not no_tensorboard)
        plan = FitPlan("names-rnn", epochs, session.device, config=config,
                       extra={"labels": labels, "vocabulary": vocabulary.characters}, save=save, resume=resume,
                       writer=writer, eval_name=eval_name, quiet=quiet)
        result = fit(model, Objective.classification(),
                     make_optimizer(optimizer.value, model.parameters(), lr, momentum), train_batches, eval_batches,
                     plan)
        epochs_run, train_seconds, metrics = result.epochs, result.train_seconds, dict(result.metrics)
        if result.evaluation is not None:
            report = class_report(result.evaluation, labels, split=eval_name, plot=plot, writer=writer, quiet=quiet)

    predictions = _predict(model, vocabulary, labels, predict or [], session.device, quiet) if predict else None
    session.finish(epochs=epochs_run, train_seconds=train_seconds, metrics=metrics,
                   checkpoint=save if checkpoint is None else None, labels=labels, skipped=skipped,
                   per_class_accuracy=report[0] if report else None, confusion_matrix=report[1] if report else None,
                   predictions=predictions)


def _build_model(config: dict):
    from torchtools.models.names import NameClassifier

    return NameClassifier(config["vocabulary_size"], config["classes"], hidden=config["hidden"],
                          layers=config["layers"], bidirectional=config["bidirectional"], cell=config["cell"])


def _held_out(train_set, test: Path | None, val_split: float, seed: int, quiet: bool):
    """(training names, held-out names or None, metric prefix): --test if given, else a stratified split."""
    from torchtools.data.loaders import stratified_split
    from torchtools.data.names import read_names
    from torchtools.core.output import say

    if test is not None:
        test_set = read_names(test)
        say(f"test data: {test_set.describe()}", quiet=quiet)
        return train_set, test_set, "test"
    if val_split <= 0:
        return train_set, None, "val"
    label_ids = {label: index for index, label in enumerate(sorted(set(train_set.labels)))}
    train_index, val_index = stratified_split([label_ids[label] for label in train_set.labels], val_split, seed)
    return train_set.subset(train_index), train_set.subset(val_index), "val"


def _count_skipped(skipped: dict[str, int], names) -> None:
    skipped["blank"] += names.blank
    skipped["junk"] += names.junk


def _batches(names, labels: list[str], vocabulary, device, batch_size: int, source: Path | None,
             skipped: dict[str, int], *, shuffle: bool = False, seed: int = 0):
    """Names as device tensors in batches; names whose label the model does not know are reported, counted
    in `skipped` and left out (a label seen only in the test set cannot be predicted)."""
    from collections import Counter

    import torch

    from torchtools.data.loaders import TensorBatches
    from torchtools.core.errors import UserError
    from torchtools.core.output import warn

    label_ids = {label: index for index, label in enumerate(labels)}
    unknown = Counter(label for label in names.labels if label not in label_ids)
    if unknown:
        listed = ", ".join(f"{label} ({count})" for label, count in sorted(unknown.items()))
        warn(f"{sum(unknown.values())} name(s) in {source} have labels not seen in training, left out: {listed}")
        skipped["unknown_label"] += sum(unknown.values())
    keep = [index for index, label in enumerate(names.labels) if label in label_ids]
    if not keep:
        raise UserError(f"no name in {source} has a label the model knows ({', '.join(labels)})")

    codes = vocabulary.encode([names.names[index] for index in keep])
    targets = torch.tensor([label_ids[names.labels[index]] for index in keep])
    return TensorBatches(codes.to(device), targets.to(device), batch_size=batch_size, shuffle=shuffle, seed=seed)


def _predict(model, vocabulary, labels: list[str], names: list[str], device, quiet: bool) -> list[dict]:
    """The top labels of each name, with softmax probabilities."""
    import torch

    from torchtools.data.names import fold, is_junk
    from torchtools.core.errors import UserError
    from torchtools.core.output import say

    folded = [fold(name) for name in names]
    for name, clean in zip(names, folded):
        if is_junk(clean):
            raise UserError(f"cannot classify {name!r}: it holds no letters a name is made of")
    model.eval()
    with torch.no_grad():
        probabilities = torch.softmax(model(vocabulary.encode(folded).to(device)).float(), dim=1).cpu()
    top = probabilities.topk(min(TOP_LABELS, len(labels)), dim=1)
    predictions = []
    for name, values, indices in zip(names, top.values.tolist(), top.indices.tolist()):
        ranked = [[labels[index], value] for index, value in zip(indices, values)]
        predictions.append({"name": name, "top": ranked})
        say(f"{name}: " + ", ".join(f"{label} {value:.1%}" for label, value in ranked), quiet=quiet)
    return predictions
