"""A random, frozen backbone: transfer says up front what its losses will look like (issue 29: train_loss
922 -> 2,578 with no hint why)."""

from __future__ import annotations

import torch
from torchvision import models

from datafiles import write_photo_folders

ARGS = ("--epochs", "1", "--image-size", "32", "--batch-size", "4", "--no-tensorboard")


def test_freezing_untrained_weights_says_what_the_losses_will_do(cli, tmp_path, resnet18_weights):
    photos = write_photo_folders(tmp_path / "photos", train=4, val=2)
    run = cli("transfer", "--weights", resnet18_weights[0], "--data", photos, "--mode", "freeze", *ARGS)
    assert run.exit_code == 0, run.stderr
    assert "its BatchNorm statistics are the initial ones" in run.stderr
    assert "expect large losses" in run.stderr


def test_freezing_trained_weights_or_finetuning_says_nothing_of_the_kind(cli, tmp_path, resnet18_weights):
    photos = write_photo_folders(tmp_path / "photos", train=4, val=2)
    finetuned = cli("transfer", "--weights", resnet18_weights[0], "--data", photos, *ARGS)
    assert finetuned.exit_code == 0 and "BatchNorm statistics" not in finetuned.stderr
    trained = models.resnet18()
    for module in trained.modules():  # statistics as training leaves them
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.fill_(0.1), module.running_var.fill_(0.5)
    torch.save(trained.state_dict(), tmp_path / "trained.pth")
    frozen = cli("transfer", "--weights", tmp_path / "trained.pth", "--data", photos, "--mode", "freeze", *ARGS)
    assert frozen.exit_code == 0 and "BatchNorm statistics" not in frozen.stderr
