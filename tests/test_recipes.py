"""The fast recipes' networks build, take a batch of the right shape and train a step; recipes resolve."""

from __future__ import annotations

import re

import pytest
import torch

from conftest import assert_user_error
from datafiles import NAMES_SMALL, names_rows, write_image_folders, write_mnist, write_names_csv

from torchtools import recipes
from torchtools.core.config import DEPENDS
from torchtools.core.engine import Objective, train_one_epoch
from torchtools.core.optim import make_optimizer, make_scheduler
from torchtools.core.options import Hyperparameters
from torchtools.data.loaders import TensorBatches
from torchtools.models import cifar as cifar_models
from torchtools.models import mnist as mnist_models


def _train_step(model, inputs, targets, given, amp_dtype=None):
    recipe = Hyperparameters(**{**{name: value for name, value in given.items() if name in Hyperparameters.neutral()},
                                "epochs": 1})
    optimizer = make_optimizer(recipe, model.parameters())
    batches = TensorBatches(inputs, targets, batch_size=len(targets))
    schedule, per_step = make_scheduler(recipe, optimizer, len(batches))
    before = [parameter.detach().clone() for parameter in model.parameters()]
    metrics = train_one_epoch(model, Objective.classification(recipe.label_smoothing), optimizer, batches,
                              device=torch.device("cpu"), epoch=1, amp_dtype=amp_dtype,
                              batch_scheduler=schedule if per_step else None)
    assert torch.isfinite(torch.tensor(metrics["train_loss"]))
    assert any(not torch.equal(old, new) for old, new in zip(before, model.parameters()))


@pytest.mark.parametrize("amp_dtype", [None, torch.bfloat16])
def test_mnist_fast_network(amp_dtype):
    torch.manual_seed(0)
    model = mnist_models.build("fast").to(memory_format=torch.channels_last)
    inputs = torch.randn(8, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    assert model(inputs).shape == (8, 10)
    _train_step(model, inputs, torch.randint(0, 10, (8,)), recipes.FAST["mnist"], amp_dtype)


@pytest.mark.parametrize("classes", [10, 100])
def test_cifar_fast_network(classes):
    torch.manual_seed(0)
    model = cifar_models.build("fast", classes)
    inputs = torch.randn(8, 3, 32, 32)
    assert model(inputs).shape == (8, classes)
    _train_step(model, inputs, torch.randint(0, classes, (8,)), recipes.FAST["cifar"])


def test_course_networks_unchanged():
    assert set(mnist_models.MODELS) >= {"mlp", "cnn", "inception", "resnet", "fast"}
    assert set(cifar_models.MODELS) >= {"quick", "resnet", "fast"}
    assert sum(parameter.numel() for parameter in mnist_models.build("cnn").parameters()) == 8490
    assert sum(parameter.numel() for parameter in cifar_models.build("quick").parameters()) == 145578


INCEPTION_BRANCHES = ("branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3_1", "branch3x3_2", "branch3x3_3",
                      "branch_pool")
# What the course's own InceptionNet and ResidualNet classes gave (before TwoBlockNet served both): the seed-0
# network's logits for the probe below.
LESSON_11 = {
    "inception": ("InceptionNet", "incep", INCEPTION_BRANCHES, 97298,
                  [0.00638, 0.026717, 0.041871, -0.002712, -0.038913, -0.003308, -0.020861, 0.076532, -0.011267,
                   -0.032201]),
    "resnet": ("ResidualNet", "rblock", ("conv1", "conv2"), 41514,
               [-0.137943, -0.050163, 0.044737, -0.048148, -0.073258, 0.028628, 0.177965, -0.02298, 0.023548,
                -0.12529]),
}


@pytest.mark.parametrize("name", LESSON_11)
def test_lesson_11_networks_keep_the_course_layout(name):
    """Their checkpoints load (the same state_dict keys, in the same order, for the optimizer's state too) and
    a seed gives the same network as the course's classes did."""
    class_name, block, layers, count, logits = LESSON_11[name]
    torch.manual_seed(0)
    model = mnist_models.build(name)
    assert type(model).__name__ == class_name  # the name the run's model line and summary show
    blocks = [f"{block}{index}.{layer}.{kind}" for index in (1, 2) for layer in layers for kind in ("weight", "bias")]
    assert list(model.state_dict()) == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", *blocks,
                                        "fc.weight", "fc.bias"]
    assert sum(parameter.numel() for parameter in model.parameters()) == count
    with torch.no_grad():
        probe = torch.linspace(0, 1, 784).reshape(1, 1, 28, 28)
        assert model(probe)[0].tolist() == pytest.approx(logits, abs=1e-5)


def test_recipes_resolve_with_overrides():
    from torchtools.commands.mnist import MnistConfig

    unset = {name: DEPENDS for name in ("model", "batch_size", "optimizer", "lr", "epochs", "momentum", "weight_decay",
                                        "schedule", "warmup", "label_smoothing", "augment")}
    assert recipes.recipe_values("mnist", {**unset, "recipe": "course"}) == {
        "recipe": "course", "model": "cnn", "batch_size": 64, "optimizer": "sgd", "lr": 0.01, "momentum": 0.5,
        "epochs": 10, "weight_decay": 0.0, "schedule": "constant", "warmup": 0.0, "label_smoothing": 0.0,
        "augment": "none"}  # what the course recipe leaves out is the neutral value
    overridden = MnistConfig.build({"recipe": "fast", "batch_size": 32, "lr": DEPENDS})
    assert overridden.batch_size == 32 and overridden.lr == recipes.FAST["mnist"]["lr"]
    assert overridden.model == "fast" and overridden.schedule == "one-cycle"


def test_readme_recipe_table_is_the_recipes_own():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert recipes.markdown_table() in readme


def test_help_names_each_recipes_value(cli):
    run = cli("mnist", "--help")
    assert "course: cnn, fast: fast" in " ".join(run.stdout.replace("│", " ").split())


def test_help_shows_each_recipe_field_as_an_option_with_the_recipes_values(cli):
    mnist = " ".join(cli("mnist", "--help").stdout.replace("│", " ").split())
    for flag, shown in (("--weight-decay", "course: 0.0, fast: 0.0005"), ("--schedule", "course: constant, fast: "
                        "one-cycle"), ("--warmup", "course: 0.0, fast: 0.25"), ("--label-smoothing", "course: 0.0, "
                        "fast: 0.0"), ("--augment", "course: none, fast: none")):
        assert flag in mnist and shown in mnist, flag
    names = " ".join(cli("names-rnn", "--help").stdout.replace("│", " ").split())
    assert "--label-smoothing" in names and "course: 0.0, fast: 0.1" in names
    assert "--augment" not in names and "--lr-step" not in mnist  # only what the command has


def test_recipe_fields_given_change_the_run(cli, tmp_path):
    data = write_mnist(tmp_path / "data", train=120, test=30)
    common = ("mnist", "--data", data, "--recipe", "fast", "--model", "mlp", "--epochs", "1", "--no-tensorboard",
              "--json")
    fast = cli(*common, "--save", tmp_path / "fast.pt")
    no_decay = cli(*common, "--weight-decay", "0", "--save", tmp_path / "no_decay.pt")
    smoothed = cli(*common, "--label-smoothing", "0.1")
    for run in (fast, no_decay, smoothed):
        assert run.exit_code == 0, run.stderr
    assert "weight_decay 0.0005" in fast.stderr and "weight_decay 0.0," in no_decay.stderr
    assert torch.load(tmp_path / "fast.pt", weights_only=True)["config"]["weight_decay"] == 5e-4
    assert torch.load(tmp_path / "no_decay.pt", weights_only=True)["config"]["weight_decay"] == 0.0
    assert no_decay.summary["metrics"] != fast.summary["metrics"]
    assert "label_smoothing 0.1" in smoothed.stderr
    assert smoothed.summary["metrics"]["train_loss"] != fast.summary["metrics"]["train_loss"]
    # The recipe line names only options mnist has: each can be given back to it.
    line = next(line for line in fast.stderr.splitlines() if line.startswith("recipe fast: "))
    flags = ["--" + pair.split()[0].replace("_", "-") for pair in line.removeprefix("recipe fast: ").split(", ")]
    assert len(flags) == 11 and set(flags) <= set(re.findall(r"--[a-z-]+", cli("mnist", "--help").stdout))


def test_a_hyperparameter_out_of_bounds_is_one_error_from_the_command_line_and_from_a_checkpoint(cli, tmp_path):
    data = write_mnist(tmp_path / "data", train=60, test=20)
    common = ("mnist", "--data", data, "--model", "mlp", "--no-tensorboard")
    assert_user_error(cli(*common, "--epochs", "1", "--warmup", "2"), "--warmup 2.0: must be at most 1 (range 0..1)")
    assert_user_error(cli(*common, "--label-smoothing", "-0.1"), "--label-smoothing -0.1: must be at least 0")
    assert_user_error(cli(*common, "--weight-decay", "nan"), "--weight-decay nan: must be a finite number")
    assert_user_error(cli("names-rnn", "--augment", "shift-flip"), "--augment")  # names have no pictures
    assert_user_error(cli(*common, "--schedule", "step"), "'--schedule': 'step' is not one of 'constant', 'one-cycle'")
    assert cli(*common, "--epochs", "1", "--save", tmp_path / "m.pt").exit_code == 0
    checkpoint = torch.load(tmp_path / "m.pt", weights_only=True)
    checkpoint["config"]["warmup"] = 2.0
    torch.save(checkpoint, tmp_path / "edited.pt")
    for option in ("--checkpoint", "--resume"):
        assert_user_error(cli(*common, option, tmp_path / "edited.pt", "--epochs", "2"),
                          "its config's warmup is wrong (--warmup 2.0: must be at most 1 (range 0..1))")


def test_a_checkpoint_saved_before_a_fixed_hyperparameter_existed_still_loads(cli, tmp_path):
    """diabetes has no --weight-decay: its fixed value, missing from an older file, is the neutral one it had."""
    assert cli("diabetes", "--epochs", "2", "--save", tmp_path / "d.pt", "--no-tensorboard").exit_code == 0
    checkpoint = torch.load(tmp_path / "d.pt", weights_only=True)
    fixed = ("weight_decay", "schedule", "warmup", "label_smoothing", "augment", "lr_step", "lr_gamma")
    checkpoint["config"] = {key: value for key, value in checkpoint["config"].items() if key not in fixed}
    torch.save(checkpoint, tmp_path / "old.pt")
    loaded = cli("diabetes", "--checkpoint", tmp_path / "old.pt", "--json")
    assert loaded.exit_code == 0, loaded.stderr
    resumed = cli("diabetes", "--resume", tmp_path / "old.pt", "--epochs", "3", "--no-tensorboard", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.summary["epochs"] == 3
    del checkpoint["config"]["momentum"]  # an option, though, is the user's choice: its absence is refused
    torch.save(checkpoint, tmp_path / "foreign.pt")
    assert_user_error(cli("diabetes", "--checkpoint", tmp_path / "foreign.pt"), "its config lacks momentum")


def test_recipe_fast_trains_prints_its_values_and_records_them(cli, tmp_path):

    data = write_mnist(tmp_path / "data", train=200, test=50)
    run = cli("mnist", "--data", data, "--recipe", "fast", "--save", tmp_path / "fast.pt", "--no-tensorboard",
              "--json")
    assert run.exit_code == 0, run.stderr
    assert "recipe fast: model fast, epochs 2, batch_size 256, lr 0.4, optimizer sgd" in run.stderr
    assert run.summary["model"] == "fast" and run.summary["epochs"] == 2
    assert run.summary["metrics"]["test_accuracy"] > 0.5
    config = torch.load(tmp_path / "fast.pt", weights_only=True)["config"]
    assert config["recipe"] == "fast" and config["schedule"] == "one-cycle" and config["batch_size"] == 256


def test_explicit_options_override_the_recipe(cli, tmp_path):

    data = write_mnist(tmp_path / "data", train=100, test=20)
    run = cli("mnist", "--data", data, "--recipe", "fast", "--model", "mlp", "--batch-size", "32", "--epochs", "1",
              "--optimizer", "adam", "--lr", "0.003", "--save", tmp_path / "m.pt", "--no-tensorboard", "--json")
    assert run.exit_code == 0, run.stderr
    assert "recipe fast: model mlp, epochs 1, batch_size 32, lr 0.003, optimizer adam" in run.stderr
    config = torch.load(tmp_path / "m.pt", weights_only=True)["config"]
    assert (config["model"], config["batch_size"], config["optimizer"], config["schedule"]) == (
        "mlp", 32, "adam", "one-cycle")  # what was not given stays the recipe's
    course = cli("mnist", "--data", data, "--epochs", "1", "--no-tensorboard", "--json")
    assert "recipe course: model cnn, epochs 1, batch_size 64, lr 0.01, optimizer sgd, momentum 0.5" in course.stderr


def test_names_and_cifar_take_a_recipe(cli, tmp_path):

    names = write_names_csv(tmp_path / "names.csv", names_rows(0), gzipped=False)
    run = cli("names-rnn", "--data", names, "--recipe", "fast", "--epochs", "2", *NAMES_SMALL[:4], "--no-tensorboard",
              "--json")
    assert run.exit_code == 0, run.stderr
    assert "recipe fast: cell gru, hidden 16, layers 1, epochs 2" in run.stderr and "label_smoothing 0.1" in run.stderr
    folders = write_image_folders(tmp_path / "images")
    run = cli("cifar", "--data", folders, "--recipe", "fast", "--model", "fast", "--epochs", "1", "--no-tensorboard",
              "--json")
    assert run.exit_code == 0, run.stderr
    assert run.summary["model"] == "fast" and "recipe fast: model fast" in run.stderr


def test_compile_mode_reaches_torch_compile_and_needs_compile(cli, tmp_path, monkeypatch):
    data = write_mnist(tmp_path / "data", train=60, test=20)
    common = ("mnist", "--data", data, "--epochs", "1", "--device", "cpu", "--no-tensorboard", "--json")
    refused = cli(*common, "--compile-mode", "reduce-overhead")
    assert_user_error(refused, "--compile-mode reduce-overhead", "pass --compile")
    modes = []  # torch.compile stood in for: compiling on the CPU takes longer than the whole test tier allows
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: modes.append(mode) or model)
    run = cli(*common, "--compile", "--compile-mode", "max-autotune")
    assert run.exit_code == 0, run.stderr
    assert modes == ["max-autotune"]
    assert_user_error(cli(*common, "--compile", "--compile-mode", "fastest"), "--compile-mode")


@pytest.mark.slow
def test_fast_recipes_reach_their_targets_on_the_real_data(cli, shared_data):
    mnist = cli("mnist", "--data", shared_data, "--recipe", "fast", "--no-tensorboard", "--json")
    assert mnist.exit_code == 0, mnist.stderr
    assert mnist.summary["metrics"]["test_accuracy"] >= 0.99
    names = cli("names-rnn", "--data", shared_data / "names", "--recipe", "fast", "--target-accuracy", "0.844",
                "--no-tensorboard", "--json")
    assert names.exit_code == 0, names.stderr
    assert names.summary["metrics"]["test_accuracy"] >= 0.844 and names.summary["stopped_early"] == "target"
