"""The learning-rate range test: a finite suggestion, the weights and optimizer left as they were, --find-lr
trains nothing, --lr auto trains at the suggestion; and the model summary's counts."""

from __future__ import annotations

import math
import os

import cv2
import pytest
import torch
from torch import nn

from conftest import assert_refused_before_training
from datafiles import NAMES_SMALL, names_rows, write_mnist, write_names_csv
from torchtools.core.engine import Objective
from torchtools.core.lr_finder import find_lr, suggest
from torchtools.core.summary import model_summary
from torchtools.data.loaders import TensorBatches


class _Run:
    device = torch.device("cpu")
    amp_dtype = None


def test_the_finder_suggests_a_finite_rate_and_leaves_the_model_and_optimizer_as_they_were():
    torch.manual_seed(0)
    inputs = torch.randn(512, 10)
    targets = (inputs[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    generator_before = torch.get_rng_state()
    batches = TensorBatches(inputs, targets, batch_size=32, shuffle=True)
    finding = find_lr(model, Objective.classification(), optimizer, batches, _Run())
    assert math.isfinite(finding.suggested) and 1e-7 <= finding.suggested <= 10
    assert finding.suggested <= finding.minimum
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert optimizer.param_groups[0]["lr"] == 0.1 and not optimizer.state  # no momentum left behind
    assert torch.equal(torch.get_rng_state(), generator_before)
    assert len(finding.lrs) == len(finding.losses) <= 100


def test_the_suggestion_is_the_steepest_descent_before_the_minimum():
    lrs = [10 ** (-7 + index * 0.1) for index in range(60)]
    losses = [2.0 - 1.5 / (1 + math.exp(-(index - 30) / 2)) if index < 50 else 0.5 + (index - 50) for index in
              range(60)]
    finding = suggest(lrs, losses)
    assert 28 <= lrs.index(finding.suggested) <= 32  # the logistic drop's middle
    assert "falls fastest" in finding.reason and "minimum / 10" in finding.reason


def test_find_lr_on_mnist_prints_a_suggestion_draws_it_and_trains_nothing(cli, tmp_path):
    write_mnist(tmp_path / "data")
    run = cli("mnist", "--data", tmp_path / "data", "--find-lr", "--report", tmp_path / "r", "--no-tensorboard",
              "--json")
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert math.isfinite(summary["suggested_lr"]) and summary["epochs"] == 0 and summary["history"] == []
    assert "suggested lr" in run.stderr and "nothing trained" in run.stderr
    image = cv2.imread(str(tmp_path / "r" / "lr_find.png"))
    assert image.shape[:2] == (400, 600) and image.std() > 0
    assert summary["model_summary"]["total_params"] == sum(row["params"] for row in
                                                           summary["model_summary"]["layers"])


def test_find_lr_alone_refuses_to_save(cli, tmp_path):
    write_mnist(tmp_path / "data")
    run = cli("mnist", "--data", tmp_path / "data", "--find-lr", "--save", tmp_path / "m.pt")
    assert_refused_before_training(run, tmp_path, "--save", "--find-lr", created=(tmp_path / "m.pt",))


def test_lr_auto_trains_at_the_suggestion_and_saves_it(cli, tmp_path):
    train = write_names_csv(tmp_path / "train.csv", names_rows(0), gzipped=False)
    run = cli("names-rnn", "--data", train, "--epochs", "1", *NAMES_SMALL, "--lr", "auto", "--save",
              tmp_path / "n.pt", "--json")
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["history"][0]["lr"] == pytest.approx(summary["suggested_lr"])
    saved = torch.load(tmp_path / "n.pt", weights_only=True)
    assert saved["config"]["lr"] == pytest.approx(summary["suggested_lr"])  # a number, never "auto"
    assert os.path.exists(tmp_path / "n.pt")


def test_lr_takes_numbers_or_auto_only(cli, tmp_path):
    write_mnist(tmp_path / "data")
    run = cli("mnist", "--data", tmp_path / "data", "--lr", "fast")
    assert_refused_before_training(run, tmp_path, "--lr", "expected a number")


def test_the_summary_counts_parameters_and_multiply_adds():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    summary = model_summary(model, torch.zeros(2, 1, 28, 28))
    conv, _, _, linear = summary["layers"]
    assert conv["output_shape"] == [4, 26, 26] and conv["params"] == 40
    assert conv["mult_adds"] == 36 * 26 * 26 and linear["mult_adds"] == 4 * 26 * 26 * 10
    assert summary["total_params"] == 40 + 4 * 26 * 26 * 10 + 10
