"""names-rnn: the course's last lesson, a character-level RNN that tells a surname's country."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from torchtools import recipes
from torchtools.core.command import command
from torchtools.core.config import DEPENDS, READS, Setting
from torchtools.core.options import (DATA, PLOT, PREDICT_OUTPUT, SIZE_MAX, TOP_K, VAL_SPLIT, FindLrSettings,
                                     distinct_names)
from torchtools.recipes import RecipeSettings

if TYPE_CHECKING:
    from torchtools.core.run import Run

MODEL = "Model"


@dataclass(frozen=True, kw_only=True)
class NamesConfig(FindLrSettings, RecipeSettings):
    """The vocabulary and the labels come from the training names: they are saved beside the config."""

    TASK = "names"
    REPORT_FILES = (*RecipeSettings.REPORT_FILES, "confused_pairs.csv", "confused_pairs.md", "worst_names.csv",
                    "worst_names.md")
    STATE = {"labels": (distinct_names, "a list of distinct labels"),
             "vocabulary": (lambda value: isinstance(value, str), "the characters of the names")}

    data: Path | None = dataclasses.replace(
        DATA, help="Training names: a name,label CSV (gzip or plain), a folder of <Label>.txt files, or a data root "
                   "holding names/names_train.csv.gz (with names_test.csv.gz beside it as --test). Default: under "
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
    cell: str = Setting("--cell", panel=MODEL, choices=("gru", "lstm", "rnn"), help="Recurrent cell.")(DEPENDS)
    hidden: int = Setting("--hidden", panel=MODEL, min=1, max=SIZE_MAX // 4,
                          help="Embedding and hidden size.")(DEPENDS)
    layers: int = Setting("--layers", panel=MODEL, min=1, max=64, help="Recurrent layers.")(DEPENDS)
    bidirectional: bool = Setting("--bidirectional", negative="--no-bidirectional", panel=MODEL,
                                  help="Read names both ways.")(True)
    plot: Path | None = dataclasses.replace(PLOT, help="Draw the confusion matrix as a PNG heatmap to this file.")()

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
    from torchtools.core.output import say
    from torchtools.flows import names

    if run.trains:
        say(recipes.describe(run.config))
    names.train_evaluate_predict(run, build_model)


def build_model(config: NamesConfig, state: dict):
    """The network a names-rnn config describes, for `state`'s vocabulary and labels (saved beside its weights)."""
    from torchtools.data.names import Vocabulary
    from torchtools.models.names import NameClassifier

    return NameClassifier(len(Vocabulary(state["vocabulary"])), len(state["labels"]), hidden=config.hidden,
                          layers=config.layers, bidirectional=config.bidirectional, cell=config.cell)
