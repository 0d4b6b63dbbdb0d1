"""--lr auto leaves no trace of the range test in the training after it: the same run as --lr at its suggestion,
augmentation draws included; and a range test over no batches ends instead of looping."""

from __future__ import annotations

import pytest

from datafiles import write_cifar10_batches

RESNET_SMALL = ("--model", "resnet", "--epochs", "1", "--batch-size", "8", "--no-tensorboard", "--json")


def test_lr_auto_trains_exactly_as_the_suggested_lr_does_with_augmentation(cli, tmp_path):
    data = write_cifar10_batches(tmp_path / "data", train=40, test=10)
    auto = cli("cifar", "--data", data, *RESNET_SMALL, "--lr", "auto")
    assert auto.exit_code == 0, auto.stderr
    suggested = auto.summary["suggested_lr"]
    assert f"--lr auto: training at lr {suggested:.2e}" in auto.stderr
    given = cli("cifar", "--data", data, *RESNET_SMALL, "--lr", repr(suggested))
    assert given.exit_code == 0, given.stderr
    assert auto.summary["metrics"] == given.summary["metrics"]  # shift-flip drew the same crops and flips


def test_a_range_test_over_no_batches_ends_with_one_error():
    import torch
    from torch import nn

    from torchtools.core.engine import Objective
    from torchtools.core.errors import UserError
    from torchtools.core.lr_finder import find_lr

    class Run:
        device, amp_dtype = torch.device("cpu"), None

    model = nn.Linear(3, 2)
    with pytest.raises(UserError, match="usable step"):
        find_lr(model, Objective.classification(), torch.optim.SGD(model.parameters(), lr=0.1), [], Run())
