"""A checkpoint written by an earlier torchtools loads, resumes and exports unchanged.

tests/fixtures/mnist_mlp_f7eb3d6.pt was written by main at f7eb3d6 (before the engine/layout split), from the
data `write_mnist(root, train=64, test=20)` makes, with:
    torchtools mnist --model mlp --epochs 1 --momentum 0 --data DATA --no-download --no-tensorboard --device cpu
        --batch-size 32 --save mnist_mlp.pt
(--momentum 0 keeps the file to the weights' 2.3 MB: no momentum buffer.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from datafiles import pattern, write_mnist

FIXTURE = Path(__file__).parent / "fixtures" / "mnist_mlp_f7eb3d6.pt"
SAME = ("--no-download", "--no-tensorboard", "--device", "cpu", "--json")


@pytest.fixture
def old(tmp_path) -> tuple[Path, Path, dict]:
    """(the data it was trained on, a copy of the checkpoint, what the file holds)."""
    data = write_mnist(tmp_path / "data", train=64, test=20)
    copy = shutil.copyfile(FIXTURE, tmp_path / "old.pt")
    return data, copy, torch.load(FIXTURE, weights_only=True)


def test_an_old_checkpoint_loads_evaluates_and_predicts_as_it_did(cli, tmp_path, old):
    data, checkpoint, saved = old
    digit = tmp_path / "seven.png"
    cv2.imwrite(str(digit), pattern(7, np.random.default_rng(5)))
    evaluated = cli("mnist", "--data", data, "--checkpoint", checkpoint, *SAME)
    assert evaluated.exit_code == 0, evaluated.stderr
    assert evaluated.summary["model"] == "mlp"
    # Its weights scored on the same test set give the loss it saved: the model loaded unchanged.
    assert evaluated.summary["metrics"]["test_loss"] == pytest.approx(saved["metrics"]["test_loss"], rel=1e-5)
    run = cli("mnist", "--checkpoint", checkpoint, "--predict", digit, *SAME)
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["classes"] == [str(digit) for digit in range(10)] and "seven.png: " in run.stderr
    prediction = summary["predictions"][0]
    assert prediction["image"] == str(digit) and prediction["label"] in summary["classes"]


def test_an_old_checkpoint_resumes_where_it_stopped(cli, tmp_path, old):
    data, checkpoint, saved = old
    run = cli("mnist", "--data", data, "--model", "mlp", "--momentum", "0", "--batch-size", "32", "--epochs", "2",
              "--resume", checkpoint, "--save", tmp_path / "two.pt", *SAME)
    assert run.exit_code == 0, run.stderr
    assert f"resumed from {checkpoint} after epoch 1" in run.stderr
    history = run.summary["history"]
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[0]["test_loss"] == pytest.approx(saved["history"][0]["test_loss"])  # epoch 1 kept, not redone
    resumed = torch.load(tmp_path / "two.pt", weights_only=True)
    assert resumed["epoch"] == 2
    # Every saved value carries over; the config only gains the fixed values of hyperparameters added since.
    assert {key: resumed["config"][key] for key in saved["config"]} == saved["config"] | {"epochs": 2}
    assert {key: value for key, value in resumed["config"].items() if key not in saved["config"]} == {
        "lr_step": 1, "lr_gamma": 1.0}
    assert not torch.equal(resumed["model"]["l1.weight"], saved["model"]["l1.weight"])  # it trained on
    assert FIXTURE.read_bytes() == checkpoint.read_bytes()  # --resume never writes to the file it reads


@pytest.mark.parametrize("fmt, suffix", [("safetensors", ".safetensors"), ("torchscript", ".pt")])
def test_an_old_checkpoint_exports(cli, tmp_path, old, monkeypatch, fmt, suffix):
    data, checkpoint, saved = old
    monkeypatch.setenv("TORCHTOOLS_DATA", str(data))
    output = tmp_path / f"model{suffix}"
    run = cli("export", checkpoint, "--format", fmt, "--output", output, "--json")
    assert run.exit_code == 0, run.stderr
    check = run.summary["export"]
    assert run.summary["model_command"] == "mnist" and check["top1_agreement"] == 1.0
    assert check["max_abs_diff"] <= 1e-4 * max(1.0, check["max_abs_logit"]) and output.is_file()


@pytest.mark.parametrize("edit, fragment", [
    (lambda saved: saved["config"].update(model="nope"), "config's model is wrong"),
    (lambda saved: saved["config"].pop("lr"), "its config lacks lr"),
    (lambda saved: saved.update(classes=["0"] * 10), "its classes is not a list of distinct class names"),
])
def test_export_checks_a_checkpoint_as_its_command_does(cli, tmp_path, old, edit, fragment):
    """export builds the network with the command's own build_model from the config as the command reads it:
    an edited file is the same one error line from both, before anything is written."""
    data, _, saved = old
    edit(saved)
    edited = tmp_path / "edited.pt"
    torch.save(saved, edited)
    by_command = cli("mnist", "--data", data, "--checkpoint", edited)
    by_export = cli("export", edited, "--format", "safetensors", "--output", tmp_path / "m.safetensors")
    for run in (by_command, by_export):
        assert run.exit_code == 2 and fragment in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert by_export.stderr.strip() == by_command.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "m.safetensors").exists()
