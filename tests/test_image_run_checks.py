"""A user's mistake in mnist, cifar and transfer ends in one `error:` line before any training, or works.

Each case shows the error came first: no epoch line, no checkpoint, no TensorBoard run written.
"""

import pytest
import torch

from conftest import assert_user_error
from datafiles import write_image, write_image_folders, write_mnist

FAST = ("--epochs", "1", "--batch-size", "32", "--no-tensorboard")


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """MNIST-format data and a one-epoch cnn checkpoint trained with SGD lr 0.05."""
    from typer.testing import CliRunner

    from torchtools.cli import app

    root = tmp_path_factory.mktemp("mnist")
    data = write_mnist(root / "data", train=60, test=20)
    result = CliRunner().invoke(app, ["mnist", "--data", str(data), "--lr", "0.05", "--save", str(root / "cnn.pt"),
                                      *FAST, "-q"])
    assert result.exit_code == 0, result.stderr
    return data, root / "cnn.pt"


def assert_nothing_trained(run, *paths):
    assert "epoch 1" not in run.stderr, run.stderr
    for path in paths:
        assert not path.exists(), path


def test_predict_of_a_missing_picture_stops_before_training(cli, tmp_path, mnist_run):
    data, _ = mnist_run
    run = cli("mnist", "--data", data, "--predict", tmp_path / "missing.png", "--save", tmp_path / "m.pt", *FAST)
    assert_user_error(run, "--predict", "missing.png", "no images found")
    assert_nothing_trained(run, tmp_path / "m.pt")


@pytest.mark.parametrize("command", [("mnist",), ("cifar",), ("transfer", "--weights", "none")])
def test_save_onto_a_folder_or_where_nothing_can_be_written(cli, tmp_path, command):
    (tmp_path / "folder.pt").mkdir()
    run = cli(*command, "--save", tmp_path / "folder.pt", *FAST)
    assert_user_error(run, "--save", "is a folder")
    assert_nothing_trained(run)
    (tmp_path / "file").write_text("a file, not a folder")
    assert_user_error(cli(*command, "--save", tmp_path / "file" / "m.pt", *FAST), "--save", "is a file")
    # /proc takes no new files, even from root: the real probe refuses it where permission bits would not.
    assert_user_error(cli(*command, "--save", "/proc/torchtools-test/m.pt", *FAST), "--save", "cannot write")


def test_runs_dir_that_is_a_file(cli, tmp_path, mnist_run):
    data, _ = mnist_run
    (tmp_path / "runs.txt").write_text("not a folder")
    run = cli("mnist", "--data", data, "--epochs", "1", "--runs-dir", tmp_path / "runs.txt")
    assert_user_error(run, "--runs-dir", "is a file", "--no-tensorboard")
    assert_nothing_trained(run)


def test_checkpoint_and_resume_together(cli, tmp_path, mnist_run):
    data, checkpoint = mnist_run
    assert_user_error(cli("mnist", "--data", data, "--checkpoint", checkpoint, "--resume", checkpoint),
                      "--checkpoint", "--resume")


@pytest.mark.parametrize("change, fragments", [
    (("--model", "mlp"), ("--model mlp", "--model cnn")),
    (("--optimizer", "adam"), ("--optimizer adam", "--optimizer sgd")),
    (("--lr", "1000000.0"), ("--lr 1000000.0", "--lr 0.05")),
])
def test_resume_with_a_changed_option_names_both_values(cli, tmp_path, mnist_run, change, fragments):
    data, checkpoint = mnist_run
    run = cli("mnist", "--data", data, "--resume", checkpoint, "--epochs", "2", "--no-tensorboard", *change)
    assert_user_error(run, *fragments)
    assert_nothing_trained(run)


def test_resume_keeps_the_checkpoint_settings_and_applies_more_epochs(cli, tmp_path, mnist_run):
    data, checkpoint = mnist_run
    resumed = tmp_path / "resumed.pt"
    run = cli("mnist", "--data", data, "--resume", checkpoint, "--epochs", "2", "--save", resumed,
              "--no-tensorboard", "--json")
    assert run.exit_code == 0, run.stderr
    assert run.summary["epochs"] == 2 and "resumed from" in run.stderr
    saved = torch.load(resumed, weights_only=True)
    assert saved["config"]["lr"] == 0.05 and saved["config"]["epochs"] == 2  # not the default lr 0.01


def test_resume_from_another_command_or_model_family(cli, tmp_path, mnist_run):
    data, checkpoint = mnist_run
    folders = write_image_folders(tmp_path / "images")
    assert_user_error(cli("cifar", "--data", folders, "--resume", checkpoint, *FAST), "torchtools mnist")
    quick = tmp_path / "quick.pt"
    assert cli("cifar", "--data", folders, "--save", quick, *FAST, "-q").exit_code == 0
    run = cli("cifar", "--data", folders, "--model", "resnet", "--resume", quick, "--epochs", "2", "--no-tensorboard")
    assert_user_error(run, "--model resnet", "--model quick")


def test_transfer_resume_with_another_arch(cli, tmp_path):
    folders = tmp_path / "photos"
    for index in range(8):
        write_image(folders / ("ants" if index % 2 else "bees") / f"{index}.png", index % 2,
                    __import__("numpy").random.default_rng(index))
    small = ("--image-size", "32", "--batch-size", "4", "--no-tensorboard", "-q")
    checkpoint = tmp_path / "r18.pt"
    trained = cli("transfer", "--weights", "none", "--arch", "resnet18", "--data", folders, "--epochs", "1",
                  "--save", checkpoint, *small)
    assert trained.exit_code == 0, trained.stderr
    run = cli("transfer", "--arch", "resnet34", "--resume", checkpoint, "--data", folders, "--epochs", "2", *small)
    assert_user_error(run, "--arch resnet34", "--arch resnet18")
    resumed = cli("transfer", "--resume", checkpoint, "--data", folders, "--epochs", "2", "--json", *small)
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.summary["arch"] == "resnet18" and resumed.summary["epochs"] == 2


def test_one_class_or_empty_splits_are_refused(cli, tmp_path):
    one = tmp_path / "one"
    write_image_folders(tmp_path / "three")
    for path in (tmp_path / "three").rglob("*"):
        if path.is_file() and "/red/" in str(path):
            target = one / path.relative_to(tmp_path / "three")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    assert_user_error(cli("cifar", "--data", one, *FAST), "1 class(es) (red)")
    assert_user_error(cli("transfer", "--weights", "none", "--data", one, *FAST), "1 class(es)")
    assert_user_error(cli("transfer", "--weights", "none", "--data", tmp_path / "three", "--classes", "1", *FAST),
                      "--classes is 1")


def test_val_split_zero_holds_nothing_out(cli, tmp_path):
    folders = tmp_path / "photos"
    rng = __import__("numpy").random.default_rng(0)
    for index in range(8):
        write_image(folders / ("ants" if index % 2 else "bees") / f"{index}.png", index % 2, rng)
    run = cli("transfer", "--weights", "none", "--arch", "resnet18", "--data", folders, "--val-split", "0",
              "--image-size", "32", "--batch-size", "4", "--epochs", "1", "--no-tensorboard", "--json")
    assert run.exit_code == 0, run.stderr
    assert (run.summary["train_images"], run.summary["val_images"]) == (8, 0)
    assert "val_accuracy" not in run.summary["metrics"] and "nothing held out" in run.stderr


def test_divergence_names_no_checkpoint_that_was_never_written(cli, tmp_path, mnist_run):
    data, _ = mnist_run
    run = cli("mnist", "--data", data, "--lr", "1e6", "--momentum", "0.9", "--save", tmp_path / "x.pt", *FAST)
    assert_user_error(run, "loss became", "no checkpoint was written")
    assert not (tmp_path / "x.pt").exists()


def test_checkpoint_evaluated_on_other_classes_is_refused(cli, tmp_path):
    folders = write_image_folders(tmp_path / "images")
    checkpoint = tmp_path / "c.pt"
    assert cli("cifar", "--data", folders, "--save", checkpoint, *FAST, "-q").exit_code == 0
    (folders / "train" / "red").rename(folders / "train" / "purple")
    (folders / "test" / "red").rename(folders / "test" / "purple")
    assert_user_error(cli("cifar", "--data", folders, "--checkpoint", checkpoint), "purple", "trained on", "red")


def test_options_that_a_checkpoint_run_would_ignore_are_refused(cli, tmp_path, mnist_run):
    data, checkpoint = mnist_run
    for option in (("--save", tmp_path / "again.pt"), ("--patience", "2"), ("--target-accuracy", "0.9")):
        assert_user_error(cli("mnist", "--data", data, "--checkpoint", checkpoint, *option), option[0],
                          "trains nothing")
    assert not (tmp_path / "again.pt").exists()
    assert_user_error(cli("mnist", "--data", data, "--save-every", "2", *FAST), "--save-every", "--save")
