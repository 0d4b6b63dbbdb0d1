"""The settings several commands share, each declared once, and the shared bases of the commands' configs.

A command's config subclasses the bases it needs and adds its own fields; a shared Setting taken with
a command's own default is one call (`epochs: int = EPOCHS(25)`), and with its own help too, one replace
(`plot: Path | None = dataclasses.replace(PLOT, help=...)()`). Nothing here imports torch:
`torchtools --help` must stay fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, ClassVar
from pathlib import Path

from torchtools.core.config import READS, WRITES, Config, Setting, file_name
from torchtools.core.paths import Output, best_path, epoch_path

DATA_PANEL = "Data"
TRAINING = "Training"
PREDICTING = "Predicting"
OUTPUT = "Output and checkpoints"
CONFIG_PANEL = "Settings file"

OPTIMIZERS = ("sgd", "adam", "adamw")
LOADERS = ("auto", "memory", "stream")
RECIPES = ("course", "fast")
SEED_MAX = 2**63 - 1  # torch.manual_seed's range; NumPy takes the seed modulo 2**32
SIZE_MAX = 2**31 - 1  # batch and layer sizes: beyond this no tensor index fits
DEFAULT_MAX_PIXELS = 100_000_000  # a 10,000 x 10,000 picture: 300 MB decoded

DEVICE = Setting("--device", panel=TRAINING, saved=False,
                 help="auto (CUDA, then MPS, then CPU; the CPU for the toy lessons), cpu, cuda, cuda:N or mps.")
SEED = Setting("--seed", help="Random seed: the same seed gives the same numbers on CPU.", panel=TRAINING,
               min=0, max=SEED_MAX, saved=False)
EPOCHS = Setting("--epochs", "-e", help="Training epochs.", panel=TRAINING, min=1, max=10**6, resumable=True)
FULL_BATCH_SIZE = Setting("--batch-size", "-b", help="Samples per step. Default: the whole dataset (full batch).",
                          panel=TRAINING, min=1, max=SIZE_MAX, show_default=False)
BATCH_SIZE = Setting("--batch-size", "-b", help="Samples per batch (per process under torchrun).", panel=TRAINING,
                     min=1, max=SIZE_MAX)
# A step a million times the gradient is past any use, and Adam's lr / (1 - beta1) still fits float32 below it.
LR_MAX = 1e6
LR = Setting("--lr", help="Learning rate (one-cycle: its peak).", panel=TRAINING, min=0.0, max=LR_MAX)
AUTO = "auto"  # --lr auto: the learning-rate range test's suggestion
LR_OR_AUTO = dataclasses.replace(
    LR, parse=float, words=(AUTO,), metavar="LR|auto",
    help="Learning rate (one-cycle: its peak); auto: run the range test (--find-lr), then train at its suggestion.")
FIND_LR = Setting("--find-lr", panel=TRAINING, saved=False,
                  help="Run the learning-rate range test (1e-7 to 10 over up to 100 steps; weights left as they were), "
                       "print its suggestion and draw --report's lr_find.png; trains nothing unless --lr auto.")
OPTIMIZER = Setting("--optimizer", help="Optimizer.", panel=TRAINING, choices=OPTIMIZERS)
MOMENTUM = Setting("--momentum", help="SGD momentum.", panel=TRAINING, min=0.0, max=1.0)
WEIGHT_DECAY = Setting("--weight-decay", help="L2 penalty on the weights (the optimizer's weight_decay).",
                       panel=TRAINING, min=0.0, max=1.0)
SCHEDULE = Setting("--schedule", panel=TRAINING, choices=("constant", "one-cycle"),
                   help="The learning rate over training: constant, or one-cycle (rising to --lr over the --warmup "
                        "share of the steps, then annealed to near zero; stepped every batch).")
WARMUP = Setting("--warmup", help="--schedule one-cycle: the share of the steps rising to --lr.", panel=TRAINING,
                 min=0.0, max=1.0)
LABEL_SMOOTHING = Setting("--label-smoothing", panel=TRAINING, min=0.0, below=1.0,  # 1: every target uniform
                          help="Cross-entropy label smoothing: the share of each target spread over all classes "
                               "(below 1: at 1 every target is uniform and nothing is learned).")
AUGMENT = Setting("--augment", panel=TRAINING, choices=("none", "shift-flip"),
                  help="Training pictures: as they are, or shifted up to 4 pixels and flipped left-right.")
AMP = Setting("--amp", negative="--no-amp", panel=TRAINING, saved=False,
              help="Autocast to bf16/fp16 where the device runs it fast (CUDA; CPUs with AMX/AVX512-BF16).")
COMPILE = Setting("--compile", negative="--no-compile", panel=TRAINING, saved=False,
                  help="torch.compile the model (off: on the CPU its compile time cost more than it saved here).")
COMPILE_MODE = Setting(
    "--compile-mode", panel=TRAINING, saved=False, choices=("default", "reduce-overhead", "max-autotune"),
    help="torch.compile's mode: reduce-overhead replays CUDA graphs (small, launch-bound GPU steps); max-autotune "
         "also searches kernels (minutes).")
RECIPE = Setting("--recipe", panel=TRAINING, choices=RECIPES,
                 help="course: the lesson's own recipe; fast: the quickest measured to the same accuracy (README, "
                      "\"Recipes\"). Options you give override the recipe's values.")
VAL_SPLIT = Setting("--val-split", panel=DATA_PANEL, min=0.0, max=0.9,
                    help="Share of each class held out (seeded, stratified) for validation; 0: none.")
DATA = Setting("--data", saved=False, show_default=False, role=READS,
               help="The data root (see README, \"Where data goes\"), or the dataset's own file or folder. "
                    "Default: $TORCHTOOLS_DATA, else data/, else the copy built into torchtools.")
DOWNLOAD = Setting("--download", panel=DATA_PANEL, negative="--no-download", saved=False,
                   help="Download the dataset (torchvision) when its files are absent under --data.")
PREDICT_IMAGES = Setting("--predict", panel=PREDICTING, saved=False, show_default=False, metavar="PATH", role=READS,
                         help="Label these pictures (repeatable): a file, a folder (walked recursively) or a quoted "
                              "glob, with the --checkpoint model or the one just trained.")
PREDICT_OUTPUT = Setting("--output", "-o", panel=PREDICTING, saved=False, show_default=False, role=WRITES,
                         parse=file_name, suffixes=(".csv", ".jsonl"),
                         help="Write one row per prediction to FILE.csv or FILE.jsonl (atomically).")
TOP_K = Setting("--top-k", panel=PREDICTING, saved=False, min=1, max=1000,
                help="Classes (with probabilities) given per prediction.")
LOADER = Setting("--loader", panel=TRAINING, saved=False, choices=LOADERS,
                 help="Image folders: memory (decoded once), stream (decoded each epoch by workers; flat memory) or "
                      "auto (memory within $TORCHTOOLS_MEMORY_BUDGET: a quarter of RAM, at most 8 GiB).")
MAX_PIXELS = Setting("--max-pixels", panel=DATA_PANEL, saved=False, min=1, max=2**40, envvar="TORCHTOOLS_MAX_PIXELS",
                     metavar="N",
                     help="Skip (and name) pictures of more than N pixels, read from the header before decoding.")
PLOT = Setting("--plot", panel=OUTPUT, saved=False, show_default=False, role=WRITES, suffixes=(".png",),
               parse=file_name,
               help="Draw a PNG plot to this file.")


def fit_csv(target: str, course: str) -> Setting:
    """The curve fits' --csv: what the last column holds and the course's own table are each command's."""
    return Setting("--csv", aliases=("--data",), saved=False, show_default=False, role=READS,
                   help=f"Fit your data: CSV, header optional, last column {target}, one or more feature columns. "
                        f"Default: the course's {course}.")


def fit_predict(answer: str) -> Setting:
    """The curve fits' --predict: what it gives for an input is each command's."""
    return Setting("--predict", saved=False, show_default=False, metavar="X",
                   help=f"{answer} for X (repeatable; 'a,b' for several features).")


TRUST_PICKLE = Setting("--trust-pickle", panel=OUTPUT, saved=False,
                       help="Allow arbitrary unpickling when loading (only for files you trust).")
SAVE_EVERY = Setting("--save-every", panel=OUTPUT, saved=False, min=0, max=10**6,
                     help="Also keep every N-th epoch's checkpoint (NAME.epochN.pt); 0: none.")
RUNS_DIR = Setting("--runs-dir", panel=OUTPUT, saved=False,
                   help="TensorBoard runs go to RUNS_DIR/<command>/<timestamp>.")
REPORT = Setting("--report", panel=OUTPUT, saved=False, show_default=False, metavar="DIR",
                 help="Write a report to DIR: history.csv, curves.png, confusion.png and the command's own "
                      "(README, \"The report\").")
QUIET = Setting("--quiet", "-q", panel=OUTPUT, saved=False, help="Only warnings and errors on stderr.")
JSON = Setting("--json", panel=OUTPUT, saved=False,
               help="Print one JSON summary on the last line of stdout (keys: see README).")
CONFIG = Setting("--config", panel=CONFIG_PANEL, saved=False, show_default=False, metavar="FILE", role=READS,
                 help="Settings from a YAML, TOML or JSON file, keyed as the options (batch-size: 64); typed options "
                      "win (README, \"Config files\").")
PRINT_CONFIG = Setting("--print-config", panel=CONFIG_PANEL, saved=False,
                       help="Print the resolved settings as --config YAML (a --checkpoint's own) and exit.")


def distinct_names(value: Any) -> bool:
    """A saved list of class or label names: distinct strings."""
    return isinstance(value, list) and all(isinstance(item, str) for item in value) and len(set(value)) == len(value)


def a_count(value: Any) -> bool:
    """A saved count (of feature columns, say): an int above zero."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True, kw_only=True)
class OutputSettings(Config):
    """Every command: how much it says, whether it ends with the JSON summary, and its settings as a file."""

    quiet: bool = QUIET(False)
    json: bool = JSON(False)
    config: Path | None = CONFIG()
    print_config: bool = PRINT_CONFIG(False)


@dataclass(frozen=True, kw_only=True)
class SeededSettings(OutputSettings):
    seed: int = SEED(0)


@dataclass(frozen=True, kw_only=True)
class TensorboardSettings(OutputSettings):
    runs_dir: Path = RUNS_DIR(Path("runs"))


@dataclass(frozen=True, kw_only=True)
class Hyperparameters(Config):
    """How a model is trained, in one typed place: every training config has these fields, and the optimizer
    and the schedule are built from them (core/optim.py). A command makes one its option by declaring it again
    with its Setting and default (`weight_decay: float = WEIGHT_DECAY(5e-4)`); one it leaves is a fixed value
    of the command, the neutral one below (no decay, smoothing or augmentation, a constant rate)."""

    epochs: int = EPOCHS(10)
    batch_size: int = BATCH_SIZE(64)
    lr: float = LR(0.01)
    optimizer: str = OPTIMIZER("sgd")
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | one-cycle (stepped every batch) | step (StepLR, every epoch)
    warmup: float = 0.0  # one-cycle: the share of the steps rising to lr
    label_smoothing: float = 0.0
    augment: str = "none"  # the picture commands' training transform (data.transforms.ImageFormat)
    lr_step: int = 1  # step: multiply the rate by lr_gamma every lr_step epochs
    lr_gamma: float = 1.0

    @classmethod
    def neutral(cls) -> dict[str, Any]:
        """The values above: what a command or a recipe that does not set a hyperparameter trains with."""
        return {field.name: field.default for field in dataclasses.fields(Hyperparameters)}


@dataclass(frozen=True, kw_only=True)
class TrainingSettings(Hyperparameters, SeededSettings, TensorboardSettings):
    """Every training command: where it runs, where checkpoints go, when it stops early, how it trains."""

    # --device auto takes the CPU: the toy lessons' few hundred rows train before CUDA has started.
    prefer_cpu: ClassVar[bool] = False
    # The command's own state saved beside the weights, by key: (is it valid?, what it must be), checked on every
    # checkpoint loaded (core.checkpoints.check_state).
    STATE: ClassVar[dict[str, tuple[Callable[[Any], bool], str]]] = {}
    # Every file its --report folder may get (core/report.py writes no other), so Run.start checks each before
    # work: these, and the command's own.
    REPORT_FILES: ClassVar[tuple[str, ...]] = (
        "config.yaml", "history.csv", "curves.png", "confusion.png", "lr_find.png")
    device: str = DEVICE("auto")
    save: Path | None = Setting(
        "--save", panel=OUTPUT, saved=False, parse=file_name,
        help="Write the last epoch's checkpoint here, and the best beside it as NAME.best.pt.")()
    checkpoint: Path | None = Setting(
        "--checkpoint", panel=OUTPUT, saved=False, role=READS,
        help="Load a trained checkpoint (to predict or evaluate) instead of training.")()
    resume: Path | None = Setting(
        "--resume", panel=OUTPUT, saved=False, role=READS,
        help="Continue training from a checkpoint: model, optimizer, schedule and epoch.")()
    patience: int | None = Setting(
        "--patience", panel=TRAINING, saved=False, min=1, max=10**6, show_default=False,
        help="Stop when the held-out metric (accuracy, else loss) has not improved for N epochs; the best "
             "checkpoint is kept. Default: off.")()
    target_accuracy: float | None = Setting(
        "--target-accuracy", panel=TRAINING, saved=False, min=0.0, max=1.0, show_default=False,
        help="Stop at the end of the first epoch whose held-out accuracy reaches this (0..1). Default: off.")()
    no_tensorboard: bool = Setting("--no-tensorboard", panel=OUTPUT, saved=False,
                                   help="Write no TensorBoard logs.")(False)
    report: Path | None = REPORT()

    def writes(self) -> list[Output]:
        """Beside the declared files: the --save checkpoints (last, best, every N-th epoch's; any of them may be
        the --resume file, as in the usual resume), the --report folder's files and the TensorBoard folder."""
        outputs = super().writes()
        if self.save is not None:
            every, kept = self.save_every if isinstance(self, AcceleratedSettings) else 0, ("--resume",)
            outputs += [Output(self.save, "--save", replaces=kept),
                        Output(best_path(self.save), "--save's best file", replaces=kept)]
            outputs += [Output(epoch_path(self.save, epoch), "--save-every's file", replaces=kept)
                        for epoch in (range(every, self.epochs + 1, every) if every else ())]
        if self.report is not None:
            outputs += [Output(self.report, "--report", folder=True, hint="choose another folder for --report")]
            outputs += [Output(self.report / name, f"--report's {name}") for name in self.REPORT_FILES]
        if self.checkpoint is None and not self.no_tensorboard:
            outputs.append(tensorboard_output(self.runs_dir))
        return outputs


def tensorboard_output(runs_dir: Path, *, hint: str = "pass --runs-dir DIR or --no-tensorboard") -> Output:
    """The folder TensorBoard runs go under (RUNS_DIR/<command>/<timestamp>)."""
    return Output(runs_dir, "--runs-dir", folder=True, hint=hint)


@dataclass(frozen=True, kw_only=True)
class CurveFitSettings(TrainingSettings):
    """fit-linear and fit-logistic: one nn.Linear fitted to the course's toy table or a CSV (lessons/linear.py),
    saved with its feature count."""

    prefer_cpu: ClassVar[bool] = True  # --device auto: a few hundred rows train before CUDA starts
    STATE = {"features": (a_count, "a count")}
    REPORT_FILES = (*TrainingSettings.REPORT_FILES, "fit.png")
    batch_size: int | None = FULL_BATCH_SIZE()


@dataclass(frozen=True, kw_only=True)
class CompiledSettings(TrainingSettings):
    """Training commands whose model may be torch.compiled."""

    compile: bool = COMPILE(False)
    compile_mode: str = COMPILE_MODE("default")


@dataclass(frozen=True, kw_only=True)
class FindLrSettings(Config):
    """Training commands with the learning-rate range test (core/lr_finder.py): --find-lr, and --lr auto."""

    find_lr: bool = FIND_LR(False)


@dataclass(frozen=True, kw_only=True)
class AcceleratedSettings(TrainingSettings):
    """Training commands whose models gain from autocast, and whose runs are long enough to keep epochs."""

    amp: bool = AMP(True)
    save_every: int = SAVE_EVERY(0)


@dataclass(frozen=True, kw_only=True)
class ImageClassifierSettings(FindLrSettings, AcceleratedSettings):
    """What mnist, cifar and transfer share beyond training: labelling the user's pictures."""

    STATE = {"classes": (distinct_names, "a list of distinct class names"),
             "image_format": (lambda value: isinstance(value, dict), "a picture format")}
    REPORT_FILES = (*AcceleratedSettings.REPORT_FILES, "batch.png", "mistakes.png")

    predict: list[str] | None = PREDICT_IMAGES(None)
    output: Path | None = PREDICT_OUTPUT(None)
    top_k: int = TOP_K(3)
    max_pixels: int = MAX_PIXELS(DEFAULT_MAX_PIXELS)
