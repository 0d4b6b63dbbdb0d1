"""A checkpoint's config and state go through the same checks as the command line: a hand-edited or foreign
file is one `error:` line naming what is wrong, for --checkpoint and --resume alike, never a traceback."""

import pytest
import torch

from conftest import assert_user_error
from datafiles import NAMES_SMALL, names_rows, write_mnist, write_names_csv

TRAIN = ("--epochs", "2", "--no-tensorboard", "--quiet")


@pytest.fixture(scope="module")
def diabetes_checkpoint(tmp_path_factory):
    from typer.testing import CliRunner

    from torchtools.cli import app

    path = tmp_path_factory.mktemp("checkpoint") / "d.pt"
    result = CliRunner().invoke(app, ["diabetes", *TRAIN, "--save", str(path)])
    assert result.exit_code == 0, result.output
    return path


def _edited(source, target, edit):
    checkpoint = torch.load(source, weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, target)
    return target


def _set_config(key, value):
    return lambda checkpoint: checkpoint["config"].__setitem__(key, value)


@pytest.mark.parametrize("edit, fragments", [
    (_set_config("batch_size", "abc"), ("config's batch_size", "expected an integer")),
    (_set_config("batch_size", 0), ("config's batch_size", "at least 1")),
    (_set_config("lr", float("nan")), ("config's lr", "finite")),
    (_set_config("activation", "swish"), ("config's activation", "sigmoid, relu")),
    (_set_config("hidden", "6,4"), ("config's hidden",)),
    (lambda checkpoint: checkpoint["config"].pop("optimizer"), ("lacks optimizer",)),
    (lambda checkpoint: checkpoint.__setitem__("config", "x"), ("holds no config",)),
    (lambda checkpoint: checkpoint.__setitem__("epoch", "x"), ("epoch is 'x'",)),
    (lambda checkpoint: checkpoint.__setitem__("features", "8"), ("features is not a count",)),
    (lambda checkpoint: checkpoint["model"].__setitem__("0.weight", checkpoint["model"]["0.weight"] * float("nan")),
     ("non-finite weights", "0.weight")),
    (lambda checkpoint: checkpoint.__setitem__("features", 3), ("does not fit the model",)),
    (lambda checkpoint: checkpoint.pop("model"), ("holds no model weights",)),
    (lambda checkpoint: checkpoint.__setitem__("history", "x"), ("history is not a list",)),
    (lambda checkpoint: checkpoint.__setitem__("metrics", [1]), ("metrics is not metrics by name",)),
    (lambda checkpoint: checkpoint.__setitem__("optimizer", {"state": "x"}), ("optimizer is not an optimizer",)),
    (lambda checkpoint: checkpoint.__setitem__("mean", checkpoint["mean"].double()), ("its mean is not",)),
    (lambda checkpoint: checkpoint.__setitem__("std", torch.zeros(8)), ("its std is not", "above zero")),
    (lambda checkpoint: checkpoint.__setitem__("std", torch.full((8,), float("inf"))), ("its std is not", "finite")),
    (lambda checkpoint: checkpoint.__setitem__("partial_epoch", 7), ("partial_epoch 7 is not the epoch after",)),
])
@pytest.mark.parametrize("option", ["--checkpoint", "--resume"])
def test_an_edited_checkpoint_is_one_error_naming_the_key(cli, tmp_path, diabetes_checkpoint, edit, fragments, option):
    edited = _edited(diabetes_checkpoint, tmp_path / "edited.pt", edit)
    extra = ("--epochs", "3") if option == "--resume" else ()
    run = cli("diabetes", option, edited, "--no-tensorboard", *extra)
    if option == "--resume" and "does not fit the model" in fragments:  # resuming checks the data first
        fragments = ("feature columns differs", "trained on 3")
    assert_user_error(run, *fragments)


def test_a_names_checkpoint_with_an_unknown_cell_or_another_vocabulary(cli, tmp_path):

    names = write_names_csv(tmp_path / "names.csv", names_rows(0), gzipped=False)
    saved = tmp_path / "names.pt"
    assert cli("names-rnn", "--data", names, "--epochs", "1", *NAMES_SMALL, "--save", saved).exit_code == 0
    cell = _edited(saved, tmp_path / "cell.pt", _set_config("cell", "transformer"))
    assert_user_error(cli("names-rnn", "--checkpoint", cell, "--predict", "Smith"), "config's cell", "gru")
    vocabulary = _edited(saved, tmp_path / "vocabulary.pt",
                         lambda checkpoint: checkpoint.__setitem__("vocabulary", checkpoint["vocabulary"][:-3]))
    assert_user_error(cli("names-rnn", "--checkpoint", vocabulary, "--predict", "Smith"), "does not fit the model")
    labels = _edited(saved, tmp_path / "labels.pt",
                     lambda checkpoint: checkpoint.__setitem__("labels", [checkpoint["labels"][0]] * 2))
    assert_user_error(cli("names-rnn", "--checkpoint", labels, "--predict", "Smith"),
                      "labels is not a list of distinct")


def test_a_mnist_checkpoint_naming_an_unknown_model(cli, tmp_path):

    data = write_mnist(tmp_path / "data", train=40, test=10)
    saved = tmp_path / "m.pt"
    assert cli("mnist", "--data", data, "--epochs", "1", "--model", "mlp", "--no-tensorboard",
               "--save", saved).exit_code == 0
    edited = _edited(saved, tmp_path / "edited.pt", _set_config("model", "vit"))
    assert_user_error(cli("mnist", "--checkpoint", edited, "--data", data), "config's model", "mlp, cnn")
    for broken in ({"size": "x"}, {"size": 28, "mean": [0.1], "std": [0.0], "grayscale": True}, {"colour": 1}):
        edited = _edited(saved, tmp_path / "format.pt",
                         lambda checkpoint: checkpoint.__setitem__("image_format", broken))
        assert_user_error(cli("mnist", "--checkpoint", edited, "--data", data), "image_format is not a picture format")
