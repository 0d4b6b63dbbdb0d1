"""names-rnn's names in the one classifier flow (flows/classifier.py): the names to label, the training and
held-out names (a --test file, or a stratified split), their batches of encoded names, the report's tables and the
labelled names."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from torchtools.core.engine import EvalResult, Objective, evaluate
from torchtools.core.errors import UserError
from torchtools.core.metrics import confusion_matrix
from torchtools.core.output import say, warn
from torchtools.core.prediction_output import PredictionWriter
from torchtools.core.report import largest_confusions
from torchtools.core.run import Run
from torchtools.data import roots
from torchtools.data.loaders import TensorBatches, stratified_split
from torchtools.data.compressed import open_text
from torchtools.data.names import Vocabulary, fold, is_junk, read_names
from torchtools.flows import classifier

PREDICT_CHUNK = 4096  # names encoded and labelled at a time: memory stays bounded for any file


def train_evaluate_predict(run: Run, build_model: Callable[[Any, dict[str, Any]], torch.nn.Module]) -> None:
    """The names to label and the names to learn from (or the --checkpoint's vocabulary and labels), checked
    before any work; then the classifier flow on a model from `build_model(config, state)`."""
    config = run.config
    test = config.test
    names_to_label = _fold_names(config.predict or []) + _read_names_file(run, config.predict_file)
    if config.output is not None and not names_to_label:
        raise UserError("--output writes the predictions: pass --predict NAME or --predict-file FILE too")
    if not run.trains and not names_to_label and test is None:
        raise UserError("--checkpoint needs --predict NAME or --test DATA to work on")
    skipped = {"blank": 0, "junk": 0, "unknown_label": 0}
    data, train_set, held_out, eval_name = None, None, None, "test"
    if run.trains:
        found = roots.names_files(config.data)
        run.builtin_data = found.builtin
        say(found.note or f"data: {found.path}" + (f" (test: {found.test})" if found.test and not test else ""))
        data, test = found.path, test or found.test
        train_set = read_names(data)
        say(f"training data: {train_set.describe()}")
        _count_skipped(skipped, train_set)
        train_set, held_out, eval_name = _held_out(train_set, test, config.val_split, config.seed)
        if test is not None:
            _count_skipped(skipped, held_out)
        labels, vocabulary = sorted(set(train_set.labels)), Vocabulary.from_names(train_set.names)
    else:
        labels, vocabulary = list(run.loaded["labels"]), Vocabulary(run.loaded["vocabulary"])
        if test is not None:
            held_out = read_names(test)
            _count_skipped(skipped, held_out)
    state = {"labels": labels, "vocabulary": vocabulary.characters}
    task = NamesTask(run, build_model(config, state), state, vocabulary, data=data, test=test, train_set=train_set,
                     held_out=held_out, eval_name=eval_name, names_to_label=names_to_label, skipped=skipped)
    classifier.train_evaluate_predict(run, task)


class NamesTask(classifier.Task):
    unit, kinds, plural = "names", "label(s)", "labels"
    resumed = {"labels": "the label list", "vocabulary": "the characters of the training names"}

    def __init__(self, run: Run, model: torch.nn.Module, state: dict[str, Any], vocabulary: Vocabulary, *,
                 data: Path | None, test: Path | None, train_set, held_out, eval_name: str,
                 names_to_label: list[tuple[str, str]], skipped: dict[str, int]):
        super().__init__(run, model.to(run.device), state["labels"], state, source=data, eval_name=eval_name,
                         plot=run.config.plot)
        self.vocabulary, self.test, self.train_set, self.held_out = vocabulary, test, train_set, held_out
        self.names_to_label, self.skipped, self._train = names_to_label, skipped, None
        if train_set is not None:
            self.train_count = len(train_set.names)
            self.held_out_count = len(held_out.names) if held_out is not None else 0
        self.held_out_asked = test is not None or run.config.val_split > 0

    def _batches(self, names, source: Path | None, **batching) -> TensorBatches:
        return _batches(names, self.classes, self.vocabulary, self.run.device, self.run.config.batch_size, source,
                        self.skipped, **batching)

    def batches(self):
        self._train = self._batches(self.train_set, self.source, shuffle=True, seed=self.run.config.seed)
        return self._train, self._batches(self.held_out, self.test) if self.held_out is not None else None

    def finder_batches(self):  # names have no augmentation: the range test may use training's own batches
        return self._train

    def summary_input(self, train_batches):
        """Two training names of the median length: the layers' shapes of a real name, not of whichever two come
        first (two 2-letter names showed the embedding as 2x100)."""
        codes = train_batches.inputs
        lengths = (codes != Vocabulary.PAD).sum(dim=1)
        median = int(lengths.median())
        chosen = torch.nonzero(lengths == median).flatten()[:2]
        return codes[chosen], f"NameClassifier, on names of {median} letters (the median)"

    def evaluate_loaded(self) -> EvalResult | None:
        if self.test is None:
            return None
        return evaluate(self.model, Objective.classification(), self._batches(self.held_out, self.test),
                        self.run.device)

    def report_more(self, evaluation: EvalResult) -> None:
        _worst_names(self.run.report, evaluation, self.held_out, self.classes, self.eval_name)

    def predict(self) -> dict[str, Any]:
        config = self.run.config
        return _predict(self.model, self.vocabulary, self.classes, self.names_to_label, self.run.device,
                        output=config.output, top_k=config.top_k)

    def summary(self) -> dict[str, Any]:
        return {"labels": self.classes, "skipped": self.skipped}


def _fold_names(names: list[str]) -> list[tuple[str, str]]:
    """(name as typed, folded to ASCII) for each --predict name; one that holds no letters is refused now."""
    folded = [(name, fold(name)) for name in names]
    for name, clean in folded:
        if is_junk(clean):
            raise UserError(f"--predict {name!r}: it holds no letters a name is made of; nothing to classify")
    return folded


def _read_names_file(run, path: Path | None) -> list[tuple[str, str]]:
    """(line, folded) for every non-blank line of a --predict-file; junk lines are kept, to be skipped by name."""
    if path is None:
        return []
    run.inputs([path], "--predict-file")
    try:
        with open_text(path) as text:
            lines = [line.strip() for line in text.lines()]
    except UnicodeDecodeError as error:
        raise UserError(f"--predict-file {path} is not UTF-8 text ({error})") from None
    return [(line, fold(line)) for line in lines if line]


def _held_out(train_set, test: Path | None, val_split: float, seed: int):
    """(training names, held-out names or None, metric prefix): --test if given, else a stratified split."""
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


def _worst_names(folder, evaluation, names, labels: list[str], split: str, count: int = 30) -> None:
    """The report's tables: the most confused label pairs, and the held-out names the model is most confident
    and wrong about (in the order evaluated: the names whose label the model knows)."""
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
