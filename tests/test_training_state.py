"""What a run keeps from epoch to epoch and across --resume: the loss scale, the augmentation draws, one
evaluation precision; and what it costs: one payload write per epoch, no device sync per evaluated batch."""

from __future__ import annotations

import os
from collections import Counter

import pytest
import torch
from torch import nn

from datafiles import write_cifar10_batches, write_mnist
from torchtools.core import checkpoints, devices
from torchtools.core.checkpoints import make_scaler, scaler_state
from torchtools.core.engine import Objective, evaluate, train_one_epoch
from torchtools.data.loaders import TensorBatches

MNIST = ("--model", "cnn", "--batch-size", "32", "--no-tensorboard", "--no-download", "--json", "--device", "cpu")
STEPS = -(-300 // 32)  # training steps an epoch of 300 pictures at batch 32 takes (the last one short)


@pytest.fixture
def autocast_as(monkeypatch):
    """Make --amp autocast to `dtype` on the CPU, as on a GPU where that is what pays."""
    def use(dtype):
        monkeypatch.setattr(devices, "fast_path", lambda device: devices.FastPath(True, dtype))
    return use


def saved(path):
    return checkpoints.load_checkpoint(path)


def test_the_loss_scale_carries_over_epochs_and_resumes(cli, tmp_path, autocast_as):
    autocast_as(torch.float16)
    data = write_mnist(tmp_path / "data")
    whole = cli("mnist", "--data", data, "--epochs", "2", "--amp", "--save", tmp_path / "whole.pt", *MNIST)
    assert whole.exit_code == 0, whole.stderr
    # One scaler for the whole fit: its step count runs on through both epochs.
    assert saved(tmp_path / "whole.pt")["scaler"]["_growth_tracker"] == 2 * STEPS

    first = cli("mnist", "--data", data, "--epochs", "1", "--amp", "--save", tmp_path / "one.pt", *MNIST)
    assert first.exit_code == 0, first.stderr
    checkpoint = saved(tmp_path / "one.pt")
    assert checkpoint["scaler"]["scale"] == 2.0 ** 16 and checkpoint["scaler"]["_growth_tracker"] == STEPS
    checkpoint["scaler"].update(scale=1024.0, _growth_tracker=5)  # as after a few overflowing steps
    torch.save(checkpoint, tmp_path / "one.pt")
    resumed = cli("mnist", "--data", data, "--epochs", "2", "--amp", "--resume", tmp_path / "one.pt",
                  "--save", tmp_path / "two.pt", *MNIST)
    assert resumed.exit_code == 0, resumed.stderr
    scaler = saved(tmp_path / "two.pt")["scaler"]
    assert scaler["scale"] == 1024.0 and scaler["_growth_tracker"] == 5 + STEPS


def test_bf16_and_fp32_runs_save_no_scaler(cli, tmp_path, autocast_as):
    autocast_as(torch.bfloat16)
    data = write_mnist(tmp_path / "data", train=64, test=20)
    run = cli("mnist", "--data", data, "--epochs", "1", "--amp", "--save", tmp_path / "b.pt", *MNIST)
    assert run.exit_code == 0, run.stderr
    assert saved(tmp_path / "b.pt")["scaler"] is None


def test_fp16_without_the_fits_scaler_is_refused():
    model = nn.Linear(4, 2)
    batches = TensorBatches(torch.randn(8, 4), torch.zeros(8, dtype=torch.long), batch_size=4)
    with pytest.raises(ValueError, match="GradScaler"):
        train_one_epoch(model, Objective.classification(), torch.optim.SGD(model.parameters(), lr=0.1), batches,
                        device=torch.device("cpu"), epoch=1, amp_dtype=torch.float16)
    scaler = make_scaler(torch.device("cpu"), torch.float16, {"scale": 8.0, "growth_factor": 2.0,
                                                              "backoff_factor": 0.5, "growth_interval": 2000,
                                                              "_growth_tracker": 3})
    assert scaler_state(scaler)["scale"] == 8.0
    assert scaler_state(make_scaler(torch.device("cpu"), torch.bfloat16, {"scale": 8.0})) is None


def test_training_and_checkpoint_report_one_accuracy(cli, tmp_path, autocast_as):
    autocast_as(torch.bfloat16)  # training under bf16 autocast; evaluation is fp32 in both
    data = write_mnist(tmp_path / "data", train=200, test=101)
    trained = cli("mnist", "--data", data, "--epochs", "1", "--amp", "--save", tmp_path / "m.pt", *MNIST)
    assert trained.exit_code == 0, trained.stderr
    for amp in ("--amp", "--no-amp"):
        loaded = cli("mnist", "--data", data, "--checkpoint", tmp_path / "m.pt", amp, "--json", "--device", "cpu",
                     "--no-download")
        assert loaded.exit_code == 0, loaded.stderr
        for metric in ("test_loss", "test_accuracy"):
            assert loaded.summary["metrics"][metric] == trained.summary["metrics"][metric], (amp, metric)


def test_evaluation_reads_the_device_a_few_times_not_per_batch(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    inputs, targets = torch.randn(200, 4), torch.randint(0, 3, (200,))
    batches = TensorBatches(inputs, targets, batch_size=10)  # 20 batches
    whole = evaluate(model, Objective.classification(), batches, torch.device("cpu"))
    calls = Counter()
    for name in ("item", "cpu", "tolist"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    result = evaluate(model, Objective.classification(), batches, torch.device("cpu"))
    assert sum(calls.values()) <= 4, calls  # the loss, the accuracy, one copy of outputs and of targets
    monkeypatch.setattr("torchtools.core.engine.OUTPUTS_PER_COPY", 60)  # a copy every other batch: same results
    chunked = evaluate(model, Objective.classification(), batches, torch.device("cpu"))
    assert torch.equal(chunked.outputs, whole.outputs) and torch.equal(chunked.targets, targets)
    assert (chunked.loss, chunked.accuracy) == (whole.loss, whole.accuracy) == (result.loss, result.accuracy)
    expected = nn.functional.cross_entropy(model(inputs), targets).item()
    assert whole.loss == pytest.approx(expected, rel=1e-6)


def test_one_full_payload_write_an_epoch_for_last_and_every(cli, tmp_path, monkeypatch):
    data = write_mnist(tmp_path / "data", train=64, test=20)
    writes = Counter()
    original = torch.save

    def counting(obj, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("format") == checkpoints.FORMAT:
            writes[obj["epoch"], "full" if obj["optimizer"] is not None else "weights"] += 1
        return original(obj, *args, **kwargs)

    monkeypatch.setattr(torch, "save", counting)
    run = cli("mnist", "--data", data, "--epochs", "2", "--save", tmp_path / "m.pt", "--save-every", "1", *MNIST)
    assert run.exit_code == 0, run.stderr
    # The last and every-N-th files share one serialisation; the best file is the smaller weights-only one.
    full = {key: count for key, count in writes.items() if key[1] == "full"}
    assert full == {(1, "full"): 1, (2, "full"): 1}
    files = ["m.pt", "m.best.pt", "m.epoch1.pt", "m.epoch2.pt"]
    assert all((tmp_path / name).is_file() for name in files)
    assert saved(tmp_path / "m.epoch1.pt")["epoch"] == 1 and saved(tmp_path / "m.pt")["epoch"] == 2
    assert saved(tmp_path / "m.epoch1.pt")["optimizer"] is not None
    assert not list(tmp_path.glob(".*.tmp"))


def test_saving_to_several_files_copies_where_links_fail(tmp_path, monkeypatch):
    def no_links(*args):
        raise OSError("hard links are not supported here")

    destinations = [tmp_path / "a.pt", tmp_path / "sub" / "b.pt"]
    checkpoints.save_epoch_files({"epoch": 1, "weights": torch.arange(3)}, destinations)
    monkeypatch.setattr(os, "link", no_links)
    checkpoints.save_epoch_files({"epoch": 2, "weights": torch.arange(4)}, destinations[::-1])
    for path in destinations:
        assert saved(path)["epoch"] == 2 and torch.equal(saved(path)["weights"], torch.arange(4))
    monkeypatch.undo()
    checkpoints.save_epoch_files({"epoch": 3}, destinations)
    checkpoints.save_epoch_files({"epoch": 4}, destinations[:1])  # a.pt alone: b.pt, linked before, keeps epoch 3
    assert saved(destinations[0])["epoch"] == 4 and saved(destinations[1])["epoch"] == 3


def test_a_resumed_run_draws_the_augmentation_an_unbroken_one_does(cli, tmp_path):
    data = write_cifar10_batches(tmp_path / "cifar", train=64, test=16)
    common = ("--data", data, "--model", "resnet", "--batch-size", "16", "--no-tensorboard", "--no-download",
              "--json", "--device", "cpu")  # the ResNet-9 course recipe: random shifts and flips
    whole = cli("cifar", *common, "--epochs", "2", "--save", tmp_path / "whole.pt", "--save-every", "1")
    # On from the unbroken run's own epoch-1 checkpoint: epoch 2 again, as a resumed run.
    resumed = cli("cifar", *common, "--resume", tmp_path / "whole.epoch1.pt", "--save", tmp_path / "two.pt")
    assert whole.exit_code == resumed.exit_code == 0, resumed.stderr
    assert resumed.summary["epochs"] == 2
    assert resumed.summary["metrics"]["train_loss"] == pytest.approx(whole.summary["metrics"]["train_loss"], rel=1e-5)
    ours, theirs = saved(tmp_path / "two.pt")["model"], saved(tmp_path / "whole.pt")["model"]
    assert all(torch.allclose(ours[key].float(), theirs[key].float(), atol=1e-5) for key in ours)
