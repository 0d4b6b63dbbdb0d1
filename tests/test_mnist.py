"""mnist: IDX files under DATA/<Name>/raw, in-memory training, checkpoints, predict, missing data."""


import cv2
import numpy as np
import pytest
import torch

from conftest import assert_user_error
from datafiles import FILES, pattern, write_mnist

FAST = ("--epochs", "3", "--batch-size", "32", "--lr", "0.05", "--momentum", "0.9", "--no-tensorboard", "--json")


def test_trains_reports_saves_and_predicts(cli, tmp_path):
    data = write_mnist(tmp_path / "data")
    digit = tmp_path / "seven.png"  # dark on light and twice the size: inverted and resized on reading
    cv2.imwrite(str(digit), 255 - pattern(7, np.random.default_rng(5), scale=2))
    run = cli("mnist", "--data", data, "--save", tmp_path / "cnn.pt", "--predict", digit, *FAST)
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["command"] == "mnist" and summary["model"] == "cnn" and summary["epochs"] == 3
    assert summary["metrics"]["test_accuracy"] > 0.5  # chance is 0.1
    assert summary["classes"] == [str(digit) for digit in range(10)]
    assert sum(map(sum, summary["confusion_matrix"])) == 100
    assert set(summary["per_class_accuracy"]) == set(summary["classes"])
    assert "per-class accuracy" in run.stderr and "confusion matrix" in run.stderr
    assert summary["predictions"][0]["label"] == "7"
    assert (tmp_path / "cnn.pt").is_file() and (tmp_path / "cnn.best.pt").is_file()

    reloaded = cli("mnist", "--data", data, "--checkpoint", tmp_path / "cnn.pt", "--predict", digit, "--json")
    assert reloaded.exit_code == 0, reloaded.stderr
    prediction = reloaded.summary["predictions"][0]
    assert prediction["label"] == "7" and prediction["image"] == str(digit)
    assert prediction["top"][0][0] == "7" and prediction["top"][0][1] > prediction["top"][1][1]
    assert "seven.png: 7" in reloaded.stderr

    evaluated = cli("mnist", "--data", data, "--checkpoint", tmp_path / "cnn.pt", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert evaluated.summary["metrics"]["test_accuracy"] == pytest.approx(summary["metrics"]["test_accuracy"])


def test_course_models_and_other_datasets(cli, tmp_path):
    data = write_mnist(tmp_path / "data", folder="FashionMNIST", train=60, test=20)
    for model in ("mlp", "inception", "resnet"):
        run = cli("mnist", "--data", data, "--dataset", "fashion-mnist", "--model", model, "--epochs", "1",
                  "--no-tensorboard", "--json")
        assert run.exit_code == 0, run.stderr
        assert run.summary["model"] == model and run.summary["dataset"] == "fashion-mnist"
        assert run.summary["classes"][0] == "T-shirt/top"


def test_the_same_seed_repeats_the_run(cli, tmp_path):
    data = write_mnist(tmp_path / "data", train=100, test=20)
    args = ("mnist", "--data", data, "--model", "mlp", "--epochs", "1", "--no-tensorboard", "--json")
    assert cli(*args).summary["metrics"] == cli(*args).summary["metrics"]


def test_missing_files_name_the_folder_and_the_four_files(cli, tmp_path):
    run = cli("mnist", "--data", tmp_path / "nowhere", "--no-download")
    assert_user_error(run, str(tmp_path / "nowhere" / "MNIST" / "raw"), *(f"{name}.gz" for name in FILES))


def test_offline_download_failure_is_one_clear_error(cli, tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    run = cli("mnist", "--data", tmp_path / "empty")
    assert_user_error(run, "download failed", "train-images-idx3-ubyte.gz", str(tmp_path / "empty" / "MNIST" / "raw"))


def test_predict_needs_a_readable_image(cli, tmp_path):
    data = write_mnist(tmp_path / "data", train=40, test=10)
    cli("mnist", "--data", data, "--model", "mlp", "--epochs", "1", "--save", tmp_path / "m.pt", "-q")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert_user_error(cli("mnist", "--checkpoint", tmp_path / "m.pt", "--predict", tmp_path / "bad.png"), "bad.png")


def test_the_fast_loader_yields_every_sample_once_per_epoch():
    from torchtools.data.loaders import TensorBatches
    from torchtools.data.transforms import BatchTransform

    images = torch.arange(103, dtype=torch.uint8).view(103, 1, 1, 1)
    batches = TensorBatches(images, torch.arange(103), batch_size=10, shuffle=True, seed=3,
                            transform=BatchTransform((0.0,), (1 / 255,), torch.device("cpu")))
    orders = []
    for _ in range(2):
        seen = [(inputs.flatten().long(), targets) for inputs, targets in batches]
        assert len(seen) == len(batches) == 11
        inputs, targets = torch.cat([i for i, _ in seen]), torch.cat([t for _, t in seen])
        assert torch.equal(inputs, targets)  # each image still travels with its own label
        assert sorted(targets.tolist()) == list(range(103))
        orders.append(targets.tolist())
    assert orders[0] != orders[1]  # a new shuffle every epoch


def test_normalising_on_the_device_matches_totensor_normalize():
    from PIL import Image
    from torchvision import transforms

    from torchtools.data.transforms import BatchTransform
    from torchtools.data.vision import MNIST_MEAN, MNIST_STD

    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    course = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MNIST_MEAN, MNIST_STD)])
    expected = torch.stack([course(Image.fromarray(image[0].numpy(), mode="L")) for image in images])
    actual = BatchTransform(MNIST_MEAN, MNIST_STD, torch.device("cpu"))(images)
    assert torch.allclose(actual, expected, atol=1e-5)
