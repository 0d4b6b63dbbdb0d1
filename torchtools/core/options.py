"""Options shared by several commands, defined once as Annotated aliases.

A command sets its own default in its signature (`epochs: options.Epochs = 10`), and Typer shows it
in `--help`. Nothing here imports torch: `torchtools --help` must stay fast.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

TRAINING = "Training"
OUTPUT = "Output and checkpoints"


class LoaderName(str, Enum):
    auto = "auto"
    memory = "memory"
    stream = "stream"


class RecipeName(str, Enum):
    course = "course"
    fast = "fast"


class OptimizerName(str, Enum):
    sgd = "sgd"
    adam = "adam"
    adamw = "adamw"


Device = Annotated[str, typer.Option(
    "--device", help="auto, cpu, cuda, cuda:N or mps. auto picks CUDA, then MPS, then CPU.",
    rich_help_panel=TRAINING)]
Epochs = Annotated[int, typer.Option("--epochs", "-e", min=1, help="Training epochs.", rich_help_panel=TRAINING)]
BatchSize = Annotated[int, typer.Option(
    "--batch-size", "-b", min=1, help="Samples per batch (per process under torchrun).", rich_help_panel=TRAINING)]
FullBatchSize = Annotated[Optional[int], typer.Option(
    "--batch-size", "-b", min=1, help="Samples per step. Default: the whole dataset (full batch).",
    show_default=False, rich_help_panel=TRAINING)]
LearningRate = Annotated[float, typer.Option("--lr", min=0.0, help="Learning rate.", rich_help_panel=TRAINING)]
Optimizer = Annotated[OptimizerName, typer.Option("--optimizer", help="Optimizer.", rich_help_panel=TRAINING)]
Momentum = Annotated[float, typer.Option("--momentum", min=0.0, help="SGD momentum.", rich_help_panel=TRAINING)]
# The options a --recipe gives a value: left out, they take the recipe's (its values are in the README).
RecipeEpochs = Annotated[Optional[int], typer.Option(
    "--epochs", "-e", min=1, help="Training epochs. Default: the recipe's.", show_default=False,
    rich_help_panel=TRAINING)]
RecipeBatchSize = Annotated[Optional[int], typer.Option(
    "--batch-size", "-b", min=1, help="Samples per batch (per process under torchrun). Default: the recipe's.",
    show_default=False, rich_help_panel=TRAINING)]
RecipeLearningRate = Annotated[Optional[float], typer.Option(
    "--lr", min=0.0, help="Learning rate (one-cycle: its peak). Default: the recipe's.", show_default=False,
    rich_help_panel=TRAINING)]
RecipeOptimizer = Annotated[Optional[OptimizerName], typer.Option(
    "--optimizer", help="Optimizer. Default: the recipe's.", show_default=False, rich_help_panel=TRAINING)]
RecipeMomentum = Annotated[Optional[float], typer.Option(
    "--momentum", min=0.0, help="SGD momentum. Default: the recipe's.", show_default=False,
    rich_help_panel=TRAINING)]
Seed = Annotated[int, typer.Option(
    "--seed", help="Random seed: the same seed gives the same numbers on CPU.", rich_help_panel=TRAINING)]
Amp = Annotated[bool, typer.Option(
    "--amp/--no-amp", help="Autocast to bf16/fp16 where the device runs it fast (CUDA; CPUs with AMX/AVX512-BF16).",
    rich_help_panel=TRAINING)]
Recipe = Annotated[RecipeName, typer.Option(
    "--recipe", help="course: the lesson's own recipe; fast: the quickest measured to the same accuracy (README, "
                     "\"Recipes\"). Options you give override the recipe's values.", rich_help_panel=TRAINING)]
Compile = Annotated[bool, typer.Option(
    "--compile/--no-compile", help="torch.compile the model. Off: measured on the CPU, the compile time costs more "
                                   "than it saves on these small models.", rich_help_panel=TRAINING)]
Data = Annotated[Optional[Path], typer.Option(
    "--data", help="The data root (see README, \"Where data goes\"), or the dataset's own file or folder. "
                   "Default: $TORCHTOOLS_DATA, else data/, else the copy built into torchtools.", show_default=False)]

Save = Annotated[Optional[Path], typer.Option(
    "--save", help="Write the last epoch's checkpoint here, and the best beside it as NAME.best.pt.",
    rich_help_panel=OUTPUT)]
Checkpoint = Annotated[Optional[Path], typer.Option(
    "--checkpoint", help="Load a trained checkpoint (to predict or evaluate) instead of training.",
    rich_help_panel=OUTPUT)]
Resume = Annotated[Optional[Path], typer.Option(
    "--resume", help="Continue training from a checkpoint: model, optimizer, schedule and epoch.",
    rich_help_panel=OUTPUT)]
RunsDir = Annotated[Path, typer.Option(
    "--runs-dir", help="TensorBoard runs go to RUNS_DIR/<command>/<timestamp>.", rich_help_panel=OUTPUT)]
Patience = Annotated[Optional[int], typer.Option(
    "--patience", min=1, help="Stop when the held-out metric (accuracy, else loss) has not improved for N epochs; "
                              "the best checkpoint is kept. Default: off.", show_default=False,
    rich_help_panel=TRAINING)]
TargetAccuracy = Annotated[Optional[float], typer.Option(
    "--target-accuracy", min=0.0, max=1.0, help="Stop at the end of the first epoch whose held-out accuracy "
                                                "reaches this (0..1). Default: off.", show_default=False,
    rich_help_panel=TRAINING)]
NoTensorboard = Annotated[bool, typer.Option(
    "--no-tensorboard", help="Write no TensorBoard logs.", rich_help_panel=OUTPUT)]
Quiet = Annotated[bool, typer.Option(
    "--quiet", "-q", help="Only warnings and errors on stderr.", rich_help_panel=OUTPUT)]
Json = Annotated[bool, typer.Option(
    "--json", help="Print one JSON summary on the last line of stdout (keys: see README).",
    rich_help_panel=OUTPUT)]
Plot = Annotated[Optional[Path], typer.Option("--plot", help="Draw a PNG plot to this file.", rich_help_panel=OUTPUT)]
TrustPickle = Annotated[bool, typer.Option(
    "--trust-pickle", help="Allow arbitrary unpickling when loading (only for files you trust).",
    rich_help_panel=OUTPUT)]
SaveEvery = Annotated[int, typer.Option(
    "--save-every", min=0, help="Also keep every N-th epoch's checkpoint as NAME.epochN.pt; 0 = off.",
    rich_help_panel=OUTPUT)]
Download = Annotated[bool, typer.Option(
    "--download/--no-download", help="Download the dataset (torchvision) when its files are absent under --data.")]
PredictImages = Annotated[Optional[list[str]], typer.Option(
    "--predict", help="Label these pictures (repeatable): a file, a folder (walked recursively) or a quoted glob, "
                      "with the --checkpoint model or the one just trained.", show_default=False)]
PredictOutput = Annotated[Optional[Path], typer.Option(
    "--output", "-o", help="Write one row per predicted picture to FILE.csv or FILE.jsonl (atomically).",
    show_default=False, rich_help_panel=OUTPUT)]
TopK = Annotated[int, typer.Option(
    "--top-k", min=1, help="Classes (with probabilities) given per prediction.", rich_help_panel=OUTPUT)]
Loader = Annotated[LoaderName, typer.Option(
    "--loader", help="Image folders: memory (decode once, keep in memory), stream (decode each epoch in worker "
                     "processes; memory stays flat) or auto (memory while the decoded set fits "
                     "$TORCHTOOLS_MEMORY_BUDGET, default a quarter of RAM up to 8 GiB).", rich_help_panel=TRAINING)]


# The options every command of a kind shares, with their defaults: `run.command` adds the ones a command
# asks for to its signature and collects them into its Run. The names are the Run's fields.
SHARED: dict[str, tuple[object, object]] = {
    "device": (Device, "auto"),
    "seed": (Seed, 0),
    "amp": (Amp, True),
    "compile": (Compile, False),
    "save": (Save, None),
    "save_every": (SaveEvery, 0),
    "checkpoint": (Checkpoint, None),
    "resume": (Resume, None),
    "patience": (Patience, None),
    "target_accuracy": (TargetAccuracy, None),
    "runs_dir": (RunsDir, Path("runs")),
    "no_tensorboard": (NoTensorboard, False),
    "quiet": (Quiet, False),
    "json": (Json, False),
}
# A training command's shared options; `amp` and `save_every` are added by the commands that use them.
TRAINING_RUN = ("device", "seed", "save", "checkpoint", "resume", "patience", "target_accuracy", "runs_dir",
                "no_tensorboard", "quiet", "json")
