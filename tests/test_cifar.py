"""cifar: torchvision's pickle batches, the train/ + test/ image-folder layout, TensorBoard, predict."""

import tarfile

import cv2
import numpy as np
import pytest

from conftest import assert_user_error
from datafiles import CIFAR10_NAMES, coloured_picture, write_cifar10_batches, write_image_folders

FAST = ("--epochs", "4", "--batch-size", "16", "--lr", "0.02", "--momentum", "0.9", "--json")


def test_pickle_batches_train_save_every_and_reload(cli, tmp_path):
    data = write_cifar10_batches(tmp_path / "data")
    save = tmp_path / "quick.pt"
    run = cli("cifar", "--data", data, "--save", save, "--save-every", "2", "--runs-dir", tmp_path / "runs", *FAST)
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["command"] == "cifar" and summary["model"] == "quick" and summary["dataset"] == "cifar10"
    assert summary["classes"] == CIFAR10_NAMES
    assert summary["metrics"]["test_accuracy"] > 0.6  # three classes present: chance is 1/3
    assert sum(map(sum, summary["confusion_matrix"])) == 60
    assert save.is_file() and (tmp_path / "quick.best.pt").is_file()
    assert sorted(path.name for path in tmp_path.glob("quick.epoch*.pt")) == ["quick.epoch2.pt", "quick.epoch4.pt"]
    assert list((tmp_path / "runs" / "cifar").glob("*/events.out.tfevents.*")), "no TensorBoard run written"

    evaluated = cli("cifar", "--data", data, "--checkpoint", save, "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert evaluated.summary["metrics"]["test_accuracy"] == pytest.approx(summary["metrics"]["test_accuracy"])


def test_tensorboard_gets_scalars_images_and_the_graph(cli, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = write_cifar10_batches(tmp_path / "data", train=100, test=20)
    run = cli("cifar", "--data", data, "--epochs", "1", "--runs-dir", tmp_path / "runs", "--quiet")
    assert run.exit_code == 0, run.stderr
    (run_dir,) = (tmp_path / "runs" / "cifar").iterdir()
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "test/loss", "test/accuracy"} <= set(tags["scalars"])
    assert tags["images"], "no grid of input images"
    assert tags["graph"], "no model graph"


def test_image_folders_train_and_predict_class_names(cli, tmp_path):
    data = write_image_folders(tmp_path / "images")
    red = tmp_path / "red.jpg"  # larger than 32x32: resized on reading
    cv2.imwrite(str(red), cv2.resize(coloured_picture(0, np.random.default_rng(9))[:, :, ::-1], (64, 48)))
    run = cli("cifar", "--data", data, "--save", tmp_path / "f.pt", "--no-tensorboard", "--predict", red, *FAST)
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["dataset"] == "images" and summary["classes"] == ["blue", "green", "red"]
    assert summary["metrics"]["test_accuracy"] > 0.6
    assert summary["predictions"][0]["label"] == "red"
    assert list((tmp_path / "cache").glob("images-*.cache")), "decoded images are not cached"
    assert not [path for path in data.rglob("*") if path.suffix in (".pt", ".cache")], \
        "the dataset folder was written to"

    reloaded = cli("cifar", "--checkpoint", tmp_path / "f.pt", "--predict", red, "--json")
    assert reloaded.exit_code == 0, reloaded.stderr
    assert reloaded.summary["predictions"][0]["label"] == "red"
    assert "red.jpg: red" in reloaded.stderr


def test_resnet_recipe_runs_with_augmentation(cli, tmp_path):
    data = write_image_folders(tmp_path / "images", train=24, test=6)
    run = cli("cifar", "--data", data, "--model", "resnet", "--epochs", "1", "--batch-size", "8",
              "--no-tensorboard", "--json")
    assert run.exit_code == 0, run.stderr
    assert run.summary["model"] == "resnet" and run.summary["epochs"] == 1
    assert run.summary["metrics"]["lr"] < 0.4  # the one-cycle schedule has annealed below its peak


def test_missing_cifar_files_name_the_folder(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    run = cli("cifar", "--data", tmp_path / "empty", "--no-download")
    assert_user_error(run, str(tmp_path / "empty" / "cifar-10-batches-py"), "data_batch_1")
    # A --data folder that does not exist is named as such: no download is tried, no folder is left behind.
    assert_user_error(cli("cifar", "--data", tmp_path / "nowhere"), "--data", "nowhere", "no such")
    assert not (tmp_path / "nowhere").exists()


def test_mismatched_train_and_test_classes_are_a_user_error(cli, tmp_path):
    data = write_image_folders(tmp_path / "images", train=6, test=3)
    (data / "test" / "red").rename(data / "test" / "crimson")
    assert_user_error(cli("cifar", "--data", data, "--epochs", "1", "--no-tensorboard"), "different class folders")


@pytest.mark.slow
def test_real_cifar10_images_quick_model_one_epoch(cli, shared_data, tmp_path):
    """The course's CIFAR-10 JPEGs unpacked, one epoch of the notes' model: well above chance (10%)."""
    with tarfile.open(shared_data / "cifar10-jpg.tar.gz") as archive:
        archive.extractall(tmp_path / "cifar10", filter="data")
    run = cli("cifar", "--data", tmp_path / "cifar10", "--epochs", "1", "--no-tensorboard", "--json")
    assert run.exit_code == 0, run.stderr
    assert len(run.summary["classes"]) == 10
    assert run.summary["metrics"]["test_accuracy"] > 0.25
