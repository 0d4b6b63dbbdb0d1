"""Training recipes: `course` (each lesson's own) and `fast` (the quickest to a target accuracy, measured).

A recipe is plain values. The commands take a recipe's values as their defaults; explicit options
override them. Measured effects are noted beside every value (2 CPU cores, Xeon with AMX; real data;
seeds 0, 1, 2 unless said) — see benchmarks/time_to_accuracy.py for the harness.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torchtools.core.config import DEPENDS
from torchtools.core.options import (AUGMENT, BATCH_SIZE, DOWNLOAD, EPOCHS, LABEL_SMOOTHING, LR_OR_AUTO, MOMENTUM,
                                     OPTIMIZER, RECIPE, SCHEDULE, WARMUP, WEIGHT_DECAY, CompiledSettings,
                                     Hyperparameters, ImageClassifierSettings)


# A recipe is the values it gives a command's options; the command's config has a field of each name, and
# any option the user types wins over the recipe's value. A hyperparameter a recipe leaves out takes its
# neutral value (core.options.Hyperparameters): a constant rate, no decay, smoothing or augmentation.
COURSE = {
    # Lesson 10: CourseCNN, batch 64, SGD lr 0.01 momentum 0.5, 10 epochs, normalise (0.1307, 0.3081).
    "mnist": dict(model="cnn", batch_size=64, optimizer="sgd", lr=0.01, momentum=0.5, epochs=10),
    # The notes' CIFAR-10 model, batch 64, plain SGD lr 0.01, no augmentation, 10 epochs.
    "cifar": dict(model="quick", batch_size=64, optimizer="sgd", lr=0.01, epochs=10),
    # cifar --model resnet: ResNet-9 with one-cycle to lr 0.4, momentum 0.9, weight decay 5e-4, label smoothing
    # 0.2 and 4-pixel shifts + flips, batch 512 (a strong CIFAR-10 result rather than a lesson's recipe).
    "cifar-resnet": dict(model="resnet", batch_size=512, optimizer="sgd", lr=0.4, momentum=0.9, weight_decay=5e-4,
                         schedule="one-cycle", warmup=0.25, label_smoothing=0.2, augment="shift-flip", epochs=10),
    # Lecture 13: 2-layer bidirectional GRU, hidden 100, batch 256, Adam lr 1e-3 (torchtools: 12 epochs).
    "names": dict(cell="gru", batch_size=256, optimizer="adam", lr=1e-3, epochs=12, hidden=100, layers=2),
}

# Every `fast` value below names its measured effect. Accuracies are test accuracy at the end of the
# epoch named, seeds 0, 1, 2 (one seed where it says so); seconds per epoch on 2 cores, unloaded, as
# measured back to back (the machine was shared, so ratios are the figure to trust, not seconds).
FAST = {
    "mnist": dict(
        # FastCNN (the course CNN with BatchNorm, conv 16 / 32): 99.05-99.12% after 2 epochs with this recipe,
        # where the course CNN with the same recipe has 98.61-98.87% (and 98.97-99.16% after 3); 2.3 s an epoch
        # against the course CNN's 1.6 s, so it reaches 99.0% sooner. conv 32 / 64: 2x slower an epoch.
        model="fast",
        # 256 vs 512 (lr scaled 0.2 -> 0.4): same accuracy each epoch, 2.3 vs 3.0 s an epoch.
        batch_size=256,
        # SGD + momentum vs Adam lr 0.01 (same schedule): 99.06-99.12% vs 98.96-99.06% after 2 epochs.
        optimizer="sgd",
        # One-cycle peak 0.4 vs 0.2: 99.06-99.12% vs 99.05-99.09% after 2 epochs (BatchNorm takes the high rate).
        lr=0.4,
        momentum=0.9,  # the one-cycle/airbench standard; not varied here
        weight_decay=5e-4,  # the one-cycle/airbench standard; not varied here
        # one-cycle over the 2 epochs vs constant: the course CNN at constant Adam lr 0.002 has 98.67% after 2
        # epochs; one-cycle (SGD) gives it 98.61-98.87%, and FastCNN 99.05-99.12%.
        schedule="one-cycle",
        warmup=0.25,  # a quarter of the steps rising to the peak (airbench's share); not varied here
        # 0.1 vs 0 (lr 0.2): 99.04-99.25% vs 99.05-99.09% after 2 epochs: no clear gain; left out.
        label_smoothing=0.0,
        augment="none",  # 2 epochs are too short for augmentation to pay (MNIST is not mirrored either)
        # 2 epochs vs 3: 99.05-99.12% at the end of 2 (all three seeds >= 99.0%); a 3-epoch schedule is at
        # 98.97-99.08% after its 2nd epoch and needs the 3rd for 99.0% on every seed (99.16-99.26%).
        epochs=2,
        # --amp (on by default): bf16 autocast (lr 0.2) 2.9 vs 4.2 s an epoch (1.45x), 99.05-99.09% vs fp32's
        # 99.06-99.12% after 2 epochs (AMX Xeon). On an AMD EPYC with AVX512-BF16 and no AMX, 2 threads: 9.2 s for
        # the 2 epochs (99.22%), the step 1.28x with bf16; the same EPYC capped at AVX2 (autocast off there):
        # 12.0 s (99.10%). README, "Recipes".
        # --compile (off by default): inductor, compile time included, 11.0 s to 98.86% vs 5.5 s eager (seed 0);
        # even with a warm inductor cache the compiled epoch was 4.7 s vs 2.5 s eager. Costs more than it saves.
    ),
    "cifar": dict(
        # The notes' own model: 65.8-66.1% after 2 epochs with this recipe (the course loop needs ~10 epochs for
        # 64%). The airbench-style `fast` net at 16/32/64 channels: 62.4% after 2 epochs (seed 0), 1.2x slower an
        # epoch; at 32/64/128: 69.9% after 2 epochs but 2.3x slower an epoch. For 64% the notes' model is the
        # quickest; `--model fast` is there for higher accuracy (73.3% after 3 epochs at 32/64/128, seed 0).
        model="quick",
        # 256 vs 128 (SGD, lr scaled): 64.8% vs 65.3% after 2 epochs (seed 0), 256 runs 1.1x faster an epoch.
        batch_size=256,
        # Adam (lr 0.003) vs SGD momentum 0.9 (lr 0.05): 65.8-66.1% vs 64.8% after 2 epochs (seed 0 for SGD);
        # SGD at lr 0.1 diverges (the notes' model has no BatchNorm).
        optimizer="adam",
        # 0.003 vs 0.005: 66.1% vs 66.3% after 2 epochs (seed 0): flat; 0.003 measured on three seeds.
        lr=0.003,
        schedule="one-cycle",  # over the 2 epochs; the notes' constant SGD lr 0.01 is at ~31% after 1 epoch
        warmup=0.25,  # not varied here
        label_smoothing=0.0,  # 0.1 (SGD): 64.5% vs 64.8% after 2 epochs (seed 0): no gain
        augment="none",  # 2 epochs are too short for shifts and flips to pay
        epochs=2,  # 1 epoch of this schedule is 57-59% after the 1st epoch of 2: short of 64%
        # --amp (on by default): bf16 autocast 6.7k vs 3.2k images/s (2.1x, same process, batch 256); same
        # accuracy. --compile: not timed on CIFAR (no time left on a loaded machine); on MNIST and names it
        # cost more than it saved, so it stays off by default.
    ),
    "names": dict(
        cell="gru",
        batch_size=256,  # 512: no faster an epoch (the recurrence's cost is per name, not per batch), 78.4% vs 81.0%
        optimizer="adam",
        # one-cycle peak 1e-2 vs constant 3e-3 vs the course's constant 1e-3 (2 layers, seed 0): 81.0% vs 79.9% vs
        # 73.8% after 2 epochs; 80% after 2, 2 and 4 epochs.
        lr=1e-2,
        schedule="one-cycle",
        warmup=0.2,  # not varied here
        # 0.1 vs 0 (1 layer, seed 0): 84.3% vs 83.9% after 4 epochs, 84.6% vs 84.2% after 5.
        label_smoothing=0.1,
        # 6 epochs vs 4 (2 layers): the 4-epoch schedule ends at 84.2%, the 6-epoch one passes 84.4% in epoch 5.
        epochs=6,
        # names-rnn has no --amp: bf16 autocast does not reach the hand-written GRU's products. --compile: 3.9 s to
        # 80% vs 1.8 s eager (seed 0): the GRU is a custom autograd Function with a Python loop over steps, which
        # inductor does not speed up.
        hidden=100,  # 200 vs 100 (1 layer, seed 0): 84.6% vs 84.3% after 4 epochs, but about 2x slower an epoch
        # 1 GRU layer vs the course's 2: 2.4x faster an epoch, 81.3-81.6% vs 81.0% after 2 epochs (seed 0).
        layers=1,
    ),
}

RECIPES = {"course": COURSE, "fast": FAST}

NETWORK = ("model", "cell", "hidden", "layers")


def recipe_values(task: str, given: dict[str, Any]) -> dict[str, Any]:
    """The config's values: each one left out (DEPENDS) takes the recipe's, the options typed stay."""
    recipe = {**Hyperparameters.neutral(), **RECIPES[given["recipe"]][task]}
    return {name: recipe[name] if value is DEPENDS and name in recipe else value for name, value in given.items()}


def default_help(task: str, name: str) -> str:
    """--help's word on an option a recipe sets: "Default: the recipe's (course: 10, fast: 2)."."""
    shown = [f"{recipe}: {RECIPES[recipe][task].get(name, Hyperparameters.neutral().get(name))}"
             for recipe in RECIPES]
    return f"Default: the recipe's ({', '.join(shown)})."


def describe(config) -> str:
    """The line a run prints: the recipe and the value of each option it sets (those of this command only)."""
    keys = {field.name for field in dataclasses.fields(config) if field.default is DEPENDS}
    given = [(key, value) for key, value in config.saved().items() if key in keys]
    given.sort(key=lambda item: item[0] not in NETWORK)  # the network first, then how it is trained
    return f"recipe {config.recipe}: " + ", ".join(f"{key} {value}" for key, value in given)


@dataclass(frozen=True, kw_only=True)
class RecipeSettings(CompiledSettings):
    """The hyperparameters a --recipe gives values (torchtools.recipes), shared by mnist, cifar and names-rnn;
    the picture commands add --augment. An option given on the command line wins over the recipe's value."""

    recipe: str = RECIPE("course")
    epochs: int = EPOCHS(DEPENDS)
    batch_size: int = BATCH_SIZE(DEPENDS)
    lr: float = LR_OR_AUTO(DEPENDS)
    optimizer: str = OPTIMIZER(DEPENDS)
    momentum: float = MOMENTUM(DEPENDS)
    weight_decay: float = WEIGHT_DECAY(DEPENDS)
    schedule: str = SCHEDULE(DEPENDS)
    warmup: float = WARMUP(DEPENDS)
    label_smoothing: float = LABEL_SMOOTHING(DEPENDS)

    # The recipe table a command's values come from (torchtools.recipes); its model fields say which network.
    TASK = ""

    @classmethod
    def recipe_task(cls, values: dict) -> str:
        return cls.TASK

    @classmethod
    def fill(cls, values: dict) -> dict:
        return recipe_values(cls.recipe_task(values), values)

    @classmethod
    def depends_help(cls, name: str) -> str:
        return default_help(cls.TASK, name)


@dataclass(frozen=True, kw_only=True)
class DatasetRecipeSettings(RecipeSettings, ImageClassifierSettings):
    """mnist and cifar: a recipe's classifier of a torchvision dataset, downloaded into --data when its files are
    absent. Each command declares its own --dataset choices and --data layout."""

    download: bool = DOWNLOAD(True)
    augment: str = AUGMENT(DEPENDS)


def markdown_table() -> str:
    """The README's recipe table, generated from the values above (a test keeps the README's copy equal)."""
    tasks = {"mnist": "mnist", "cifar": "cifar", "cifar-resnet": "cifar --model resnet", "names": "names-rnn"}
    rows = ["| command | course | fast |", "|---|---|---|"]
    for task, command in tasks.items():
        cells = [", ".join(f"{key} {value}" for key, value in RECIPES[name][task].items()) if task in RECIPES[name]
                 else "as cifar" for name in RECIPES]
        rows.append(f"| `{command}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)
