"""names-rnn: the course's last lesson, a character-level RNN that tells a surname's country."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from torchtools.core import options
from torchtools.core.command import command
from torchtools.core.config import RecipeConfig

MODEL = "Model"
PREDICT_CHUNK = 4096  # names encoded and labelled at a time: memory stays bounded for any file


class Cell(str, Enum):
    gru = "gru"
    lstm = "lstm"
    rnn = "rnn"


@dataclass(frozen=True)
class NamesConfig(RecipeConfig):
    # The vocabulary and the labels come from the training names: they are saved beside the config.
    cell: str
    hidden: int
    layers: int
    bidirectional: bool
    val_split: float


@command("names-rnn", options.TRAINING_RUN + ("compile",))
def names_rnn(
    data: Annotated[Optional[Path], typer.Option(
        "--data", help="Training names: a name,label CSV (gzip or plain), a folder of <Label>.txt files, or a data "
                       "root holding names/names_train.csv.gz (with names_test.csv.gz beside it as --test). "
                       "Default: under $TORCHTOOLS_DATA, else data/, else the course's CSVs built into torchtools.",
        show_default=False)] = None,
    test: Annotated[Optional[Path], typer.Option(
        help="Test names, in either layout. Without it, --val-split holds part of --data out.",
        show_default=False)] = None,
    val_split: Annotated[float, typer.Option(
        min=0.0, max=0.9, help="Share of each label held out (seeded, stratified) when there is no --test.")] = 0.2,
    predict: Annotated[Optional[list[str]], typer.Option(
        help="A surname to classify (repeatable): prints the top --top-k labels with probabilities.",
        show_default=False)] = None,
    predict_file: Annotated[Optional[Path], typer.Option(
        "--predict-file", help="A UTF-8 text file of names to classify, one a line (blank lines and lines holding "
                               "no letters are skipped and named).", show_default=False)] = None,
    output: options.PredictOutput = None,
    top_k: options.TopK = 3,
    recipe: options.Recipe = options.RecipeName.course,
    cell: Annotated[Optional[Cell], typer.Option(help="Recurrent cell. Default: gru.", show_default=False,
                                                 rich_help_panel=MODEL)] = None,
    hidden: Annotated[Optional[int], typer.Option(
        min=1, help="Embedding and hidden size. Default: 100.", show_default=False, rich_help_panel=MODEL)] = None,
    layers: Annotated[Optional[int], typer.Option(
        min=1, help="Recurrent layers. Default: 2 (course), 1 (fast).", show_default=False,
        rich_help_panel=MODEL)] = None,
    bidirectional: Annotated[bool, typer.Option(
        "--bidirectional/--no-bidirectional", help="Read names both ways.", rich_help_panel=MODEL)] = True,
    epochs: options.RecipeEpochs = None,
    batch_size: options.RecipeBatchSize = None,
    lr: options.RecipeLearningRate = None,
    optimizer: options.RecipeOptimizer = None,
    momentum: options.RecipeMomentum = None,
    plot: Annotated[Optional[Path], typer.Option(
        "--plot", help="Draw the confusion matrix as a PNG heatmap to this file.", show_default=False,
        rich_help_panel=options.OUTPUT)] = None,
    *,
    run,
) -> None:
    """Tell a surname's country: Embedding -> GRU -> Linear over characters, on the course CSV or the tutorial folder.

    Reports overall and per-label accuracy and the confusion matrix; --predict NAME gives the top 3 labels.
    --recipe course: 2 layers, Adam lr 1e-3, 12 epochs (about 84%); fast: 1 layer, one-cycle Adam to lr 1e-2,
    label smoothing 0.1, 6 epochs (84.4% in about 4 s of training on 2 CPU cores).
    """
    from torchtools.core.engine import Objective, evaluate, fit, make_optimizer
    from torchtools.core.errors import UserError
    from torchtools.core.report import report as class_report
    from torchtools import recipes
    from torchtools.core.output import say
    from torchtools.data import roots
    from torchtools.data.names import Vocabulary, read_names
    from torchtools.core.prediction_output import check_output_path

    config = run.config(NamesConfig(recipe=recipe.value, bidirectional=bidirectional, val_split=val_split,
                                    **recipes.values("names", recipe.value, cell=cell and cell.value, hidden=hidden,
                                                     layers=layers, epochs=epochs, batch_size=batch_size, lr=lr,
                                                     optimizer=optimizer and optimizer.value, momentum=momentum)))
    say(recipes.describe("names", config.recipe, config))
    names_to_label = _fold_names(predict or []) + _read_names_file(run, predict_file)
    if output is not None and not names_to_label:
        raise UserError("--output writes the predictions: pass --predict NAME or --predict-file FILE too")
    if output is not None:
        check_output_path(output)
    run.check_output(plot, "--plot", suffixes=(".png",))
    if not run.trains and not names_to_label and test is None:
        raise UserError("--checkpoint needs --predict NAME or --test DATA to work on")
    skipped = {"blank": 0, "junk": 0, "unknown_label": 0}
    result, metrics, report = None, {}, None

    if run.trains:
        found = roots.names_files(data)
        say(found.note or f"data: {found.path}" + (f" (test: {found.test})" if found.test and not test else ""))
        data, test = found.path, test or found.test
        train_set = read_names(data)
        say(f"training data: {train_set.describe()}")
        _count_skipped(skipped, train_set)
        train_set, held_out, eval_name = _held_out(train_set, test, config.val_split, run.seed)
        if test is not None:
            _count_skipped(skipped, held_out)
        labels = sorted(set(train_set.labels))
        vocabulary = Vocabulary.from_names(train_set.names)
        _check_trainable(data, labels, train_set, held_out, asked=test is not None or config.val_split > 0)
        run.check_resumed("labels", labels, "the label list")
        run.check_resumed("vocabulary", vocabulary.characters, "the characters of the training names")
        train_batches = _batches(train_set, labels, vocabulary, run.device, config.batch_size, data, skipped,
                                 shuffle=True, seed=run.seed)
        eval_batches = None
        if held_out is not None:
            eval_batches = _batches(held_out, labels, vocabulary, run.device, config.batch_size, test, skipped)
        model = _build_model(config, vocabulary, labels).to(run.device)
        trained = make_optimizer(config.optimizer, model.parameters(), config.lr, config.momentum,
                                 config.weight_decay)
        scheduler, per_step = recipes.scheduler(config, trained, len(train_batches))
        plan = run.plan(config, extra={"labels": labels, "vocabulary": vocabulary.characters}, scheduler=scheduler,
                        step_scheduler=per_step, eval_name=eval_name)
        result = fit(model, Objective.classification(config.label_smoothing), trained, train_batches, eval_batches,
                     plan)
        metrics, evaluation = dict(result.metrics), result.evaluation
    else:
        labels, vocabulary = list(run.loaded["labels"]), Vocabulary(run.loaded["vocabulary"])
        model = _build_model(config, vocabulary, labels).to(run.device)
        model.load_state_dict(run.loaded["model"])
        say(f"loaded {run.checkpoint} (trained {run.loaded['epoch']} epochs, {len(labels)} labels)")
        evaluation, eval_name = None, "test"
        if test is not None:
            test_set = read_names(test)
            _count_skipped(skipped, test_set)
            eval_batches = _batches(test_set, labels, vocabulary, run.device, config.batch_size, test, skipped)
            evaluation = evaluate(model, Objective.classification(), eval_batches, run.device)
            metrics = {"test_loss": evaluation.loss, "test_accuracy": evaluation.accuracy}
    if evaluation is not None:
        report = class_report(evaluation, labels, split=eval_name, plot=plot, writer=run.writer)

    predicted = _predict(model, vocabulary, labels, names_to_label, run.device, output=output, top_k=top_k)
    run.finish(result, metrics=metrics, labels=labels, skipped=skipped,
               per_class_accuracy=report[0] if report else None, confusion_matrix=report[1] if report else None,
               **predicted)


def _fold_names(names: list[str]) -> list[tuple[str, str]]:
    """(name as typed, folded to ASCII) for each --predict name; one that holds no letters is refused now."""
    from torchtools.core.errors import UserError
    from torchtools.data.names import fold, is_junk

    folded = [(name, fold(name)) for name in names]
    for name, clean in folded:
        if is_junk(clean):
            raise UserError(f"--predict {name!r}: it holds no letters a name is made of; nothing to classify")
    return folded


def _read_names_file(run, path: Path | None) -> list[tuple[str, str]]:
    """(line, folded) for every non-blank line of a --predict-file; junk lines are kept, to be skipped by name."""
    from torchtools.core.errors import UserError
    from torchtools.data.names import fold

    if path is None:
        return []
    run.inputs([path], "--predict-file")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    except UnicodeDecodeError as error:
        raise UserError(f"--predict-file {path} is not UTF-8 text ({error})") from None
    return [(line, fold(line)) for line in lines if line]


def _build_model(config: NamesConfig, vocabulary, labels: list[str]):
    from torchtools.models.names import NameClassifier

    return NameClassifier(len(vocabulary), len(labels), hidden=config.hidden, layers=config.layers,
                          bidirectional=config.bidirectional, cell=config.cell)


def _held_out(train_set, test: Path | None, val_split: float, seed: int):
    """(training names, held-out names or None, metric prefix): --test if given, else a stratified split."""
    from torchtools.core.output import say
    from torchtools.data.loaders import stratified_split
    from torchtools.data.names import read_names

    if test is not None:
        test_set = read_names(test)
        say(f"test data: {test_set.describe()}")
        return train_set, test_set, "test"
    if val_split <= 0:
        return train_set, None, "val"
    label_ids = {label: index for index, label in enumerate(sorted(set(train_set.labels)))}
    train_index, val_index = stratified_split([label_ids[label] for label in train_set.labels], val_split, seed)
    return train_set.subset(train_index), train_set.subset(val_index), "val"


def _check_trainable(data: Path, labels: list[str], train_set, held_out, *, asked: bool) -> None:
    """Refuse, before any epoch, a run that cannot learn or cannot be scored."""
    from torchtools.core.errors import UserError

    if len(labels) < 2:
        raise UserError(f"{data} holds names of {len(labels)} label(s) ({', '.join(labels) or 'none'}): "
                        "a classifier needs two or more")
    if not train_set.names:
        raise UserError(f"{data}: no names are left to train on")
    if asked and (held_out is None or not held_out.names):
        raise UserError(f"{data}: the held-out split came out empty ({len(train_set.names)} names); add names, "
                        "or pass --val-split 0 to hold none out")


def _count_skipped(skipped: dict[str, int], names) -> None:
    skipped["blank"] += names.blank
    skipped["junk"] += names.junk


def _batches(names, labels: list[str], vocabulary, device, batch_size: int, source: Path | None,
             skipped: dict[str, int], *, shuffle: bool = False, seed: int = 0):
    """Names as device tensors in batches; names whose label the model does not know are reported, counted
    in `skipped` and left out (a label seen only in the test set cannot be predicted)."""
    from collections import Counter

    import torch

    from torchtools.core.errors import UserError
    from torchtools.core.output import warn
    from torchtools.data.loaders import TensorBatches

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


def _predict(model, vocabulary, labels: list[str], names: list[tuple[str, str]], device, *, output: Path | None,
             top_k: int) -> dict:
    """The top labels of each (name, folded name), with softmax probabilities, PREDICT_CHUNK names at a time;
    names that fold to no letters are skipped and named. Returns the summary keys."""
    import torch

    from torchtools.data.names import is_junk
    from torchtools.core.prediction_output import PredictionWriter

    model.eval()
    with PredictionWriter(output, top_k, item="name", column="name") as writer:
        usable = [(name, clean) for name, clean in names if not is_junk(clean)]
        writer.skip([name for name, clean in names if is_junk(clean)])
        for start in range(0, len(usable), PREDICT_CHUNK):
            chunk = usable[start:start + PREDICT_CHUNK]
            with torch.no_grad():
                codes = vocabulary.encode([clean for _, clean in chunk]).to(device)
                probabilities = torch.softmax(model(codes).float(), dim=1).cpu().tolist()
            for (name, _), row in zip(chunk, probabilities):
                writer.add(name, labels, row)
    return writer.report(len(names), "line(s) holding no letters a name is made of")
