"""--resume compares what the user typed with the checkpoint's value as the user would have typed it (issue 25,
item 5): the continuations a user actually types work, the README's rule (--epochs applied, the rest refused
when it differs) holds."""

from __future__ import annotations

import os

import pytest
import torch

from conftest import assert_user_error
from datafiles import write_mnist, write_photo_folders

QUIET = ("--no-tensorboard", "--device", "cpu", "--json")


@pytest.fixture
def mnist_data(tmp_path):
    return write_mnist(tmp_path / "data", train=40, test=20)


def test_resume_onto_its_own_save_with_save_every(cli, tmp_path, mnist_data):
    """The epoch files are hard links of the last one: still three names, each replaced by rename on its own."""
    first = cli("mnist", "--data", mnist_data, "--epochs", "3", "--save", "m.pt", "--save-every", "1", *QUIET)
    assert first.exit_code == 0, first.stderr
    assert os.stat("m.pt").st_ino == os.stat("m.epoch3.pt").st_ino
    epoch3 = open("m.epoch3.pt", "rb").read()
    run = cli("mnist", "--data", mnist_data, "--resume", "m.pt", "--save", "m.pt", "--save-every", "1", "--epochs", "5",
              *QUIET)
    assert run.exit_code == 0, run.stderr
    assert run.summary["epochs"] == 5
    assert torch.load("m.epoch5.pt", weights_only=True)["epoch"] == 5
    assert open("m.epoch3.pt", "rb").read() == epoch3  # the earlier epoch's file is kept as it was


def test_fast_recipe_resumes_with_more_epochs(cli, tmp_path):
    """--recipe fast's one-cycle schedule (3 steps an epoch here) is laid over the new --epochs, as the README
    says --epochs applies."""
    mnist_data = write_mnist(tmp_path / "data", train=600, test=20)
    first = cli("mnist", "--data", mnist_data, "--recipe", "fast", "--epochs", "1", "--save", "fast.pt", *QUIET)
    assert first.exit_code == 0, first.stderr
    run = cli("mnist", "--data", mnist_data, "--recipe", "fast", "--resume", "fast.pt", "--epochs", "2", *QUIET)
    assert run.exit_code == 0, run.stderr
    assert run.summary["epochs"] == 2 and len(run.summary["history"]) == 2
    again = cli("mnist", "--data", mnist_data, "--resume", "fast.pt", "--epochs", "3", *QUIET)  # recipe not retyped
    assert again.exit_code == 0, again.stderr


def test_a_one_cycle_resume_with_the_same_epochs_follows_the_saved_cycle(cli, tmp_path, mnist_data):
    first = cli("mnist", "--data", mnist_data, "--recipe", "fast", "--epochs", "1", "--save", "fast.pt", *QUIET)
    assert first.exit_code == 0, first.stderr
    assert_user_error(cli("mnist", "--data", mnist_data, "--recipe", "fast", "--resume", "fast.pt", "--epochs", "1",
                          *QUIET), "already holds 1 epoch")


def test_a_typed_value_that_differs_is_still_refused(cli, tmp_path, mnist_data):
    assert cli("mnist", "--data", mnist_data, "--epochs", "1", "--save", "m.pt", *QUIET).exit_code == 0
    assert_user_error(cli("mnist", "--data", mnist_data, "--resume", "m.pt", "--epochs", "2", "--model", "mlp"),
                      "--model mlp differs", "--model cnn")


@pytest.mark.parametrize("spelling", ["none", "None", "NONE"])
def test_transfer_resume_with_weights_none_as_it_was_made(cli, tmp_path, spelling):
    photos = write_photo_folders(tmp_path / "photos", train=3, val=2)
    small = ("--data", photos, "--arch", "resnet18", "--image-size", "32", "--batch-size", "4", *QUIET)
    assert cli("transfer", *small, "--weights", "none", "--epochs", "1", "--save", "r.pt").exit_code == 0
    run = cli("transfer", *small, "--resume", "r.pt", "--weights", spelling, "--epochs", "2")
    assert run.exit_code == 0, run.stderr
    assert run.summary["epochs"] == 2


def test_transfer_resume_with_the_weights_file_through_another_path(cli, tmp_path, resnet18_weights):
    weights, _ = resnet18_weights
    photos = write_photo_folders(tmp_path / "photos", train=3, val=2)
    small = ("--data", photos, "--arch", "resnet18", "--image-size", "32", "--batch-size", "4", *QUIET)
    assert cli("transfer", *small, "--weights", weights, "--epochs", "1", "--save", "r.pt").exit_code == 0
    link = tmp_path / "same.pth"
    link.symlink_to(weights)
    run = cli("transfer", *small, "--resume", "r.pt", "--weights", link, "--epochs", "2")
    assert run.exit_code == 0, run.stderr
    other = tmp_path / "other.pth"
    other.write_bytes(weights.read_bytes())
    assert_user_error(cli("transfer", *small, "--resume", "r.pt", "--weights", other, "--epochs", "3"),
                      "--weights", "differs")
