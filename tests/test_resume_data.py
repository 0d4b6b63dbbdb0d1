"""--resume and --checkpoint remember where the data was (the checkpoint's state, not its config): without
--data they read it there and say so; export checks on real pictures from it."""

from __future__ import annotations

import torch

from conftest import assert_user_error
from datafiles import write_mnist, write_photo_folders

MLP = ("--model", "mlp", "--batch-size", "32", "--no-tensorboard")


def test_resume_and_checkpoint_read_the_data_the_checkpoint_trained_on(cli, tmp_path, monkeypatch):
    data = write_mnist(tmp_path / "elsewhere", train=60, test=20)
    assert cli("mnist", "--data", data, "--epochs", "1", "--save", tmp_path / "m.pt", *MLP).exit_code == 0
    assert torch.load(tmp_path / "m.pt", weights_only=True)["data"] == str(data)
    assert "data" not in torch.load(tmp_path / "m.pt", weights_only=True)["config"]  # where, not what the model is
    monkeypatch.chdir(tmp_path / "elsewhere")  # another folder: its data/ holds nothing
    resumed = cli("mnist", "--resume", tmp_path / "m.pt", "--epochs", "2", "--save", tmp_path / "m.pt", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert f"data: {data}, where {tmp_path / 'm.pt'} trained (--data reads other data)" in resumed.stderr
    assert resumed.summary["epochs"] == 2
    evaluated = cli("mnist", "--checkpoint", tmp_path / "m.pt", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert f"data: {data}, where" in evaluated.stderr and evaluated.summary["metrics"]["test_accuracy"] is not None


def test_data_given_wins_and_data_gone_is_said(cli, tmp_path):
    first = write_mnist(tmp_path / "first", train=60, test=20)
    second = write_mnist(tmp_path / "second", train=60, test=20)
    assert cli("mnist", "--data", first, "--epochs", "1", "--save", tmp_path / "m.pt", *MLP).exit_code == 0
    given = cli("mnist", "--checkpoint", tmp_path / "m.pt", "--data", second)
    assert given.exit_code == 0 and "where" not in given.stderr and str(second) in given.stderr
    for path in sorted((first / "MNIST" / "raw").iterdir()):
        path.unlink()
    (first / "MNIST" / "raw").rmdir(), (first / "MNIST").rmdir(), first.rmdir()
    gone = cli("mnist", "--checkpoint", tmp_path / "m.pt", "--no-download")
    assert f"m.pt trained on {first}, which is not there now: pass --data" in gone.stderr
    assert_user_error(gone, "MNIST")


def test_labelling_pictures_with_a_checkpoint_reads_no_data(cli, tmp_path):
    data = write_mnist(tmp_path / "data_a", train=60, test=20)
    assert cli("mnist", "--data", data, "--epochs", "1", "--save", tmp_path / "m.pt", *MLP).exit_code == 0
    picture = next((tmp_path / "data_a").rglob("*.gz"))  # not a picture: only to show nothing else is read
    run = cli("mnist", "--checkpoint", tmp_path / "m.pt", "--predict", picture)
    assert "where" not in run.stderr


def test_export_checks_on_real_pictures_from_the_checkpoints_data(cli, tmp_path, monkeypatch, resnet18_weights):
    photos = write_photo_folders(tmp_path / "photos", train=4, val=3)
    trained = cli("transfer", "--weights", resnet18_weights[0], "--data", photos, "--epochs", "1", "--image-size",
                  "32", "--batch-size", "4", "--no-tensorboard", "--save", tmp_path / "t.pt")
    assert trained.exit_code == 0, trained.stderr
    monkeypatch.chdir(tmp_path / "photos")
    exported = cli("export", tmp_path / "t.pt", "--format", "safetensors", "--output", tmp_path / "t.safetensors",
                   "--json")
    assert exported.exit_code == 0, exported.stderr
    assert exported.summary["export"]["inputs"] == f"pictures from {photos / 'val'}"
