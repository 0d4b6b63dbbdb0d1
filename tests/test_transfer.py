"""transfer: weights files (state_dicts, checkpoint dicts, DDP prefixes), both loading ways, freeze vs finetune,
image folders read with OpenCV (corrupt files skipped), class counts, the pickle refusal, predict."""

from pathlib import Path

import cv2
import pytest
import torch

from conftest import assert_user_error
from datafiles import write_photo_folders

SMALL = ("--image-size", "32", "--batch-size", "4", "--no-tensorboard", "--json")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    return write_photo_folders(tmp_path_factory.mktemp("photos"), train=6, val=3)


def changed(state: dict, reference: dict) -> set[str]:
    """Floating-point tensors present in both with the same shape whose values differ."""
    return {key for key, value in state.items() if key in reference and value.is_floating_point()
            and value.shape == reference[key].shape and not torch.equal(value, reference[key])}


def test_replace_head_finetunes_everything_saves_and_predicts(cli, tmp_path, folders, resnet18_weights):
    weights, pretrained = resnet18_weights
    picture = folders / "val" / "bees" / "1.png"
    run = cli("transfer", "--weights", weights, "--data", folders, "--epochs", "2", "--save", tmp_path / "model.pt",
              "--predict", picture, *SMALL)
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["arch"] == "resnet18" and summary["load"] == "replace-head" and summary["mode"] == "finetune"
    assert "resnet18 (inferred)" in run.stderr and "head fc: 1000 -> 2 classes" in run.stderr
    assert summary["missing_keys"] == [] and summary["unexpected_keys"] == []
    assert "missing keys: 0" in run.stderr and "unexpected keys: 0" in run.stderr
    assert summary["classes"] == ["ants", "bees"]
    assert (summary["train_images"], summary["val_images"], summary["skipped_images"]) == (12, 6, 1)
    assert "broken.jpg" in run.stderr
    assert set(summary["metrics"]) >= {"train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    assert summary["epochs"] == 2 and "epoch 2/2" in run.stderr
    assert set(summary["per_class_accuracy"]) == {"ants", "bees"} and sum(map(sum, summary["confusion_matrix"])) == 6
    assert "per-class accuracy (val)" in run.stderr

    best = torch.load(tmp_path / "model.best.pt", weights_only=True)
    assert best["classes"] == ["ants", "bees"] and best["config"]["arch"] == "resnet18"
    last = torch.load(tmp_path / "model.pt", weights_only=True)
    assert last["model"]["fc.weight"].shape == (2, 512)
    assert {"conv1.weight", "layer4.1.conv2.weight"} <= changed(last["model"], pretrained)  # finetune: all layers

    predicted = summary["predictions"][0]
    reloaded = cli("transfer", "--checkpoint", tmp_path / "model.pt", "--predict", picture, "--json")
    assert reloaded.exit_code == 0, reloaded.stderr
    again = reloaded.summary["predictions"][0]
    assert [label for label, _ in again["top"]] == [label for label, _ in predicted["top"]]
    assert [p for _, p in again["top"]] == pytest.approx([p for _, p in predicted["top"]], abs=1e-5)
    assert f"{picture}: {predicted['label']}" in reloaded.stderr

    evaluated = cli("transfer", "--checkpoint", tmp_path / "model.pt", "--data", folders, "--plot",
                    tmp_path / "confusion.png", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert evaluated.summary["metrics"]["val_accuracy"] == pytest.approx(summary["metrics"]["val_accuracy"])
    assert evaluated.summary["confusion_matrix"] == summary["confusion_matrix"]
    assert cv2.imread(str(tmp_path / "confusion.png")) is not None


def test_drop_head_freeze_trains_only_the_head_from_a_ddp_checkpoint(cli, tmp_path, folders, resnet18_weights):
    _, pretrained = resnet18_weights
    # A checkpoint dict as DataParallel/DDP training writes it; BatchNorm counters absent as in old torchvision files.
    wrapped = {f"module.{key}": value for key, value in pretrained.items() if not key.endswith("num_batches_tracked")}
    weights = tmp_path / "ddp.pt"
    torch.save({"epoch": 90, "state_dict": wrapped}, weights)
    run = cli("transfer", "--weights", weights, "--data", folders, "--load", "drop-head", "--mode", "freeze",
              "--epochs", "2", "--lr", "0.1", "--save", tmp_path / "frozen.pt", *SMALL)
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["arch"] == "resnet18" and summary["load"] == "drop-head" and summary["mode"] == "freeze"
    assert summary["missing_keys"] == ["fc.weight", "fc.bias"] and summary["unexpected_keys"] == []
    assert "missing keys: 2 (fc.weight, fc.bias)" in run.stderr
    assert summary["trainable_params"] == 512 * 2 + 2
    trained = torch.load(tmp_path / "frozen.pt", weights_only=True)["model"]
    # Every backbone tensor, BatchNorm running statistics included, is exactly the pretrained one.
    assert set(trained) == set(pretrained) and changed(trained, pretrained) == set()
    assert trained["fc.weight"].shape == (2, 512)


def test_class_count_must_match_the_folders(cli, folders, resnet18_weights):
    run = cli("transfer", "--weights", resnet18_weights[0], "--data", folders, "--classes", "5", *SMALL)
    assert_user_error(run, "--classes is 5", "2 class folders")


def test_shape_mismatch_outside_the_head_names_the_tensor(cli, tmp_path, folders, resnet18_weights):
    state = dict(resnet18_weights[1])
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)
    torch.save(state, tmp_path / "odd.pth")
    run = cli("transfer", "--weights", tmp_path / "odd.pth", "--arch", "resnet18", "--data", folders, *SMALL)
    assert_user_error(run, "layer2.0.conv1.weight", "[128, 64, 1, 1]", "[128, 64, 3, 3]")


def test_from_scratch_warns_and_splits_a_single_folder(cli, folders):
    run = cli("transfer", "--weights", "none", "--arch", "resnet18", "--data", folders / "train", "--val-split", "0.5",
              "--epochs", "1", *SMALL)
    assert run.exit_code == 0, run.stderr
    assert "from scratch" in run.stderr
    summary = run.summary
    assert summary["weights"] is None and summary["arch"] == "resnet18" and summary["missing_keys"] is None
    assert (summary["train_images"], summary["val_images"], summary["skipped_images"]) == (6, 6, 1)
    assert "val_accuracy" in summary["metrics"]
    assert_user_error(cli("transfer", "--weights", "none", "--mode", "freeze", "--data", folders, *SMALL),
                      "--mode freeze", "--weights")


def test_pickled_code_is_refused_and_never_run(cli, tmp_path, folders):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model": Payload()}, tmp_path / "evil.pth")
    for command in (("transfer", "--weights", tmp_path / "evil.pth", "--data", folders, *SMALL),
                    ("inspect-weights", tmp_path / "evil.pth")):
        run = cli(*command)
        assert_user_error(run, "arbitrary unpickling", "--trust-pickle")
        assert not marker.exists()


def test_a_whole_pickled_model_loads_only_when_trusted(cli, tmp_path):
    from torchvision import models

    torch.save(models.resnet18(), tmp_path / "whole.pth")
    assert_user_error(cli("inspect-weights", tmp_path / "whole.pth"), "--trust-pickle")
    trusted = cli("inspect-weights", tmp_path / "whole.pth", "--trust-pickle", "--json", "--quiet")
    assert trusted.exit_code == 0, trusted.stderr
    assert trusted.summary["file_kind"].startswith("pickled ResNet model")
    assert trusted.summary["arch"] == "resnet18"


@pytest.mark.slow
def test_hymenoptera_from_scratch(cli, shared_data):
    data = shared_data / "hymenoptera_data"
    if not data.is_dir():
        pytest.skip(f"{data} not found")
    run = cli("transfer", "--weights", "none", "--arch", "resnet18", "--data", data, "--epochs", "4", "--lr-step", "3",
              "--image-size", "112", "--no-tensorboard", "--json")
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert (summary["train_images"], summary["val_images"], summary["skipped_images"]) == (245, 153, 0)
    assert summary["classes"] == ["ants", "bees"]
    assert summary["metrics"]["val_accuracy"] > 0.5
