"""names-rnn: the course's last lesson, a character-level RNN that tells a surname's country."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torchtools.core.command import command
from torchtools.core.config import DEPENDS, READS, WRITES, Setting
from torchtools.core.options import FIND_LR, OUTPUT, PLOT, PREDICT_OUTPUT, SIZE_MAX, TOP_K, VAL_SPLIT
from torchtools.recipes import RecipeSettings

if TYPE_CHECKING:
    from torchtools.core.run import Run

MODEL = "Model"
PREDICT_CHUNK = 4096  # names encoded and labelled at a time: memory stays bounded for any file


@dataclass(frozen=True, kw_only=True)
class NamesConfig(RecipeSettings):
    """The vocabulary and the labels come from the training names: they are saved beside the config."""

    TASK = "names"

    data: Path | None = Setting(
        "--data", saved=False, show_default=False, role=READS,
        help="Training names: a name,label CSV (gzip or plain), a folder of <Label>.txt files, or a data root holding "
             "names/names_train.csv.gz (with names_test.csv.gz beside it as --test). Default: under "
             "$TORCHTOOLS_DATA, else data/, else the course's CSVs built into torchtools.")()
    test: Path | None = Setting(
        "--test", saved=False, show_default=False, role=READS,
        help="Test names, in either layout. Without it, --val-split holds part of --data out.")()
    val_split: float = VAL_SPLIT(0.2)
    predict: list[str] | None = Setting(
        "--predict", saved=False, show_default=False, metavar="NAME",
        help="A surname to classify (repeatable): prints the top --top-k labels with probabilities.")()
    predict_file: Path | None = Setting(
        "--predict-file", saved=False, show_default=False, role=READS,
        help="A UTF-8 text file of names to classify, one a line (blank lines and lines holding no letters are "
             "skipped and named).")()
    output: Path | None = PREDICT_OUTPUT(None)
    top_k: int = TOP_K(3)
    find_lr: bool = FIND_LR(False)
    cell: str = Setting("--cell", panel=MODEL, choices=("gru", "lstm", "rnn"), help="Recurrent cell.")(DEPENDS)
    hidden: int = Setting("--hidden", panel=MODEL, min=1, max=SIZE_MAX // 4,
                          help="Embedding and hidden size.")(DEPENDS)
    layers: int = Setting("--layers", panel=MODEL, min=1, max=64, help="Recurrent layers.")(DEPENDS)
    bidirectional: bool = Setting("--bidirectional", negative="--no-bidirectional", panel=MODEL,
                                  help="Read names both ways.")(True)
    plot: Path | None = Setting(PLOT.flag, panel=OUTPUT, saved=False, show_default=False, role=WRITES,
                                suffixes=PLOT.suffixes,
                                help="Draw the confusion matrix as a PNG heatmap to this file.")()

    def data_reads(self) -> list:
        from torchtools.data import reads

        return reads.names_reads(self.data) + (reads.names_reads(self.test, "--test") if self.test else [])


@command("names-rnn", NamesConfig)
def names_rnn(run: Run[NamesConfig]) -> None:
    """Tell a surname's country: Embedding -> GRU -> Linear over characters, on the course CSV or the tutorial folder.

    Reports overall and per-label accuracy and the confusion matrix; --predict NAME gives the top 3 labels.
    --recipe course is the lecture's network and optimizer; --recipe fast the quickest measured to the course's
    best accuracy (each option's help names both recipes' values).
    """
    from torchtools import recipes
    from torchtools.core.engine import Objective, check_trainable, evaluate, fit, make_optimizer, make_scheduler
    from torchtools.core.lr_finder import run_finder
    from torchtools.core.summary import summarise
    from torchtools.core.errors import UserError
    from torchtools.core.output import say
    from torchtools.core.report import report as class_report
    from torchtools.data import roots
    from torchtools.data.names import Vocabulary, read_names

    config = run.config
    test, output = config.test, config.output
    if run.trains:
        say(recipes.describe(config))
    names_to_label = _fold_names(config.predict or []) + _read_names_file(run, config.predict_file)
    if output is not None and not names_to_label:
        raise UserError("--output writes the predictions: pass --predict NAME or --predict-file FILE too")
    if not run.trains and not names_to_label and test is None:
        raise UserError("--checkpoint needs --predict NAME or --test DATA to work on")
    skipped = {"blank": 0, "junk": 0, "unknown_label": 0}
    result, metrics, report, extra = None, {}, None, {}

    if run.trains:
        found = roots.names_files(config.data)
        say(found.note or f"data: {found.path}" + (f" (test: {found.test})" if found.test and not test else ""))
        data, test = found.path, test or found.test
        train_set = read_names(data)
        say(f"training data: {train_set.describe()}")
        _count_skipped(skipped, train_set)
        train_set, held_out, eval_name = _held_out(train_set, test, config.val_split, config.seed)
        if test is not None:
            _count_skipped(skipped, held_out)
        labels = sorted(set(train_set.labels))
        vocabulary = Vocabulary.from_names(train_set.names)
        check_trainable(data, labels, len(train_set.names), len(held_out.names) if held_out is not None else 0,
                        held_out_asked=test is not None or config.val_split > 0, unit="names", kinds="label(s)")
        run.check_resumed("labels", labels, "the label list")
        run.check_resumed("vocabulary", vocabulary.characters, "the characters of the training names")
        train_batches = _batches(train_set, labels, vocabulary, run.device, config.batch_size, data, skipped,
                                 shuffle=True, seed=config.seed)
        eval_batches = None
        if held_out is not None:
            eval_batches = _batches(held_out, labels, vocabulary, run.device, config.batch_size, test, skipped)
        model = _build_model(config, vocabulary, labels).to(run.device)
        objective = Objective.classification(config.label_smoothing)
        extra["model_summary"] = summarise(model, train_batches.inputs[:2], "NameClassifier")
        finding = run_finder(run, model, objective, lambda: train_batches, model.parameters())  # no augmentation
        if finding is not None:
            extra["suggested_lr"] = finding.suggested
        if run.finds_lr_only:
            return run.finish(None, labels=labels, skipped=skipped, **extra)
        config = run.config  # --lr auto: now the suggestion
        optimizer = make_optimizer(config, model.parameters())
        scheduler, per_step = make_scheduler(config, optimizer, len(train_batches))
        result = fit(model, objective, optimizer, train_batches, eval_batches,
                     run, scheduler=scheduler, step_scheduler=per_step, eval_name=eval_name,
                     state={"labels": labels, "vocabulary": vocabulary.characters})
        metrics, evaluation = dict(result.metrics), result.evaluation
    else:
        labels, vocabulary = list(run.loaded["labels"]), Vocabulary(run.loaded["vocabulary"])
        model = run.load_model(_build_model(config, vocabulary, labels), f"{len(labels)} labels").to(run.device)
        evaluation, eval_name, held_out = None, "test", None
        if test is not None:
            test_set = held_out = read_names(test)
            _count_skipped(skipped, test_set)
            eval_batches = _batches(test_set, labels, vocabulary, run.device, config.batch_size, test, skipped)
            evaluation = evaluate(model, Objective.classification(), eval_batches, run.device)
            metrics = {"test_loss": evaluation.loss, "test_accuracy": evaluation.accuracy}
    if evaluation is not None:
        report = class_report(evaluation, labels, split=eval_name, plot=config.plot, writer=run.writer,
                              folder=run.report)
        if run.report is not None:
            _worst_names(run.report, evaluation, held_out, labels, eval_name)

    predicted = _predict(model, vocabulary, labels, names_to_label, run.device, output=output, top_k=config.top_k)
    run.finish(result, metrics=metrics, labels=labels, skipped=skipped,
               per_class_accuracy=report[0] if report else None, confusion_matrix=report[1] if report else None,
               **predicted, **extra)


def _worst_names(folder, evaluation, names, labels: list[str], split: str, count: int = 30) -> None:
    """The report's tables: the most confused label pairs, and the held-out names the model is most confident
    and wrong about (in the order evaluated: the names whose label the model knows)."""
    import torch

    from torchtools.core.metrics import confusion_matrix
    from torchtools.core.report import largest_confusions

    matrix = confusion_matrix(evaluation.outputs.argmax(dim=1), evaluation.targets, len(labels))
    folder.table("confused_pairs", f"most confused labels ({split})", ["true", "predicted", "count", "share of true"],
                 largest_confusions(matrix, labels, count))
    known = [name for name, label in zip(names.names, names.labels) if label in set(labels)]
    probabilities = torch.softmax(evaluation.outputs.float(), dim=1)
    confidence, predicted = probabilities.max(dim=1)
    wrong = torch.nonzero(predicted != evaluation.targets).flatten()
    worst = wrong[torch.argsort(confidence[wrong], descending=True)][:count].tolist()
    folder.table("worst_names", f"most confident mistakes ({split})",
                 ["name", "true", "predicted", "probability", "p(true)"],
                 [(known[index], labels[int(evaluation.targets[index])], labels[int(predicted[index])],
                   round(float(confidence[index]), 4),
                   round(float(probabilities[index, evaluation.targets[index]]), 4)) for index in worst])


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
    from torchtools.data.compressed import open_text
    from torchtools.data.names import fold

    if path is None:
        return []
    run.inputs([path], "--predict-file")
    try:
        with open_text(path) as text:
            lines = [line.strip() for line in text.lines()]
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
    with PredictionWriter(output, top_k, classes=len(labels), item="name", column="name") as writer:
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
