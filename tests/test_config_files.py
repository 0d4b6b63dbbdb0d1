"""--config FILE (YAML, TOML, JSON), --print-config, and the config.yaml every run leaves: a run replayed from
its file gives the same numbers, and a mistake in the file is one error line naming the file, key and line."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from conftest import assert_refused_before_training, assert_user_error, run_torchtools
from datafiles import NAMES_SMALL, names_rows, write_mnist, write_names_csv, write_photo_folders
from torchtools.cli import COMMANDS

MNIST = ("--model", "mlp", "--epochs", "1", "--seed", "3", "--no-tensorboard", "--json")


@pytest.fixture
def mnist_data(tmp_path):
    return write_mnist(tmp_path / "data", train=100, test=20)


def write(path, text: str):
    path.write_text(text)
    return path


def replayed(cli, tmp_path, *args) -> tuple[dict, dict, dict]:
    """(the run's summary, the printed config, the summary of the run from that config alone)."""
    original = cli(*args)
    assert original.exit_code == 0, original.stderr
    printed = cli(*args, "--print-config")
    assert printed.exit_code == 0, printed.stderr
    assert "epoch" not in printed.stderr  # printed, not trained
    config = write(tmp_path / "c.yaml", printed.stdout)
    replay = cli(args[0], "--config", config)
    assert replay.exit_code == 0, replay.stderr
    return original.summary, yaml.safe_load(printed.stdout), replay.summary


def test_mnist_print_config_replays_the_same_run(cli, tmp_path, mnist_data):
    original, printed, replay = replayed(cli, tmp_path, "mnist", "--data", mnist_data, *MNIST)
    assert replay["metrics"] == original["metrics"]
    assert replay["model"] == "mlp" and replay["epochs"] == 1
    # The recipe filled in (course: batch 64, SGD lr 0.01 momentum 0.5), defaults applied, paths as text.
    assert printed["recipe"] == "course" and printed["batch-size"] == 64 and printed["optimizer"] == "sgd"
    assert printed["lr"] == 0.01 and printed["momentum"] == 0.5 and printed["seed"] == 3
    assert printed["data"] == str(mnist_data) and printed["no-tensorboard"] is True


def test_transfer_print_config_replays_the_same_run(cli, tmp_path, resnet18_weights):
    folders = write_photo_folders(tmp_path / "photos", train=6, val=3)
    original, printed, replay = replayed(cli, tmp_path, "transfer", "--weights", resnet18_weights[0], "--data",
                                         folders, "--epochs", "1", "--image-size", "32", "--batch-size", "4",
                                         "--no-tensorboard", "--json")
    assert replay["metrics"] == original["metrics"] and replay["arch"] == original["arch"] == "resnet18"
    assert printed["weights"] == str(resnet18_weights[0]) and printed["lr-step"] == 7
    # Settled from the weights before printing: the inferred architecture and the preprocessing used.
    assert printed["arch"] == "resnet18" and printed["mean"] == [0.485, 0.456, 0.406] and printed["image-size"] == 32


def test_names_rnn_print_config_replays_the_same_run(cli, tmp_path):
    write_names_csv(tmp_path / "train.csv", names_rows(0), gzipped=False)
    original, printed, replay = replayed(cli, tmp_path, "names-rnn", "--data", tmp_path / "train.csv", "--epochs",
                                         "1", *NAMES_SMALL, "--json")
    assert replay["metrics"] == original["metrics"]
    assert printed["hidden"] == 16 and printed["cell"] == "gru"


def test_report_holds_config_yaml_that_replays_the_run(cli, tmp_path, mnist_data):
    run = cli("mnist", "--data", mnist_data, *MNIST, "--report", tmp_path / "report")
    assert run.exit_code == 0, run.stderr
    config = tmp_path / "report" / "config.yaml"
    assert str(config) in run.summary["report"]
    assert yaml.safe_load(config.read_text())["report"] == str(tmp_path / "report")
    # Replayed as it is, the run would write its report over the file it reads: refused, naming both.
    assert_user_error(cli("mnist", "--config", config), "--report's config.yaml", "--config")
    replay = cli("mnist", "--config", config, "--report", tmp_path / "again")
    assert replay.exit_code == 0, replay.stderr
    assert replay.summary["metrics"] == run.summary["metrics"]
    assert (tmp_path / "again" / "config.yaml").read_text() == config.read_text().replace(
        str(tmp_path / "report"), str(tmp_path / "again"))


def test_tensorboard_run_folder_holds_the_config(cli, tmp_path, mnist_data):
    args = ("mnist", "--data", mnist_data, "--model", "mlp", "--epochs", "1")
    assert cli(*args).exit_code == 0
    (folder,) = (tmp_path / "runs" / "mnist").iterdir()
    assert (folder / "config.yaml").read_text() == cli(*args, "--print-config").stdout


def test_a_misspelt_key_is_one_error_naming_file_key_and_line_before_any_data(cli, tmp_path):
    # The data named first is absent: a file checked after reading the data would fail on that instead.
    config = write(tmp_path / "c.yaml", "data: nowhere\ndownload: false\nlerning-rate: 0.1\n")
    assert_refused_before_training(cli("mnist", "--config", config), tmp_path, str(config), "line 3",
                                   "lerning-rate")
    close = write(tmp_path / "close.yaml", "data: nowhere\nepoch: 2\n")
    assert_user_error(cli("mnist", "--config", close), "line 2", "'epoch'", "did you mean epochs?")


@pytest.mark.parametrize("name, text, line, fragments", [
    ("c.yaml", "data: nowhere\nbatch-size: 0\n", 2, ("--batch-size 0", "at least 1", "range 1..2147483647")),
    ("c.yaml", "momentum: 1.5\n", 1, ("--momentum 1.5", "at most 1", "range 0..1")),
    ("c.yaml", "epochs: two\n", 1, ("--epochs two", "expected an integer")),
    ("c.yaml", "epochs: 2.5\n", 1, ("expected an integer",)),
    ("c.yaml", "amp: 'yes'\n", 1, ("--amp", "expected true or false")),
    ("c.yaml", "model: vgg\n", 1, ("--model vgg", "choose one of mlp")),
    ("c.yaml", "lr: .nan\n", 1, ("--lr nan", "finite")),
    ("c.toml", 'data = "nowhere"\n\nepochs = 0\n', 3, ("--epochs 0", "at least 1")),
    ("c.json", '{"data": "nowhere",\n "epochs": 0}', 2, ("--epochs 0", "at least 1")),
    ("c.json", '{\n  "data": {"epochs": 1},\n  "epochs": "x"\n}', 2, ("--data", "expected a path")),
])
def test_a_bad_value_names_file_line_key_and_bounds(cli, tmp_path, name, text, line, fragments):
    config = write(tmp_path / name, text)
    assert_refused_before_training(cli("mnist", "--config", config), tmp_path, str(config), f"line {line}",
                                   *fragments)


@pytest.mark.parametrize("name, text, fragments", [
    ("c.yaml", "epochs: 1\nepochs: 2\n", ("line 2: epochs is given twice (also as epochs, line 1)",)),
    ("c.yaml", "batch-size: 8\nbatch_size: 8\n", ("batch_size is given twice (also as batch-size, line 1)",)),
    ("c.yaml", "epochs: [1\n", ("not valid YAML", "line 2")),
    ("c.yaml", "- 1\n- 2\n", ("holds a sequence",)),
    ("c.yaml", "print-config: true\n", ("unknown key 'print-config'",)),
    ("c.yaml", "config: other.yaml\n", ("unknown key 'config'",)),
    ("c.yaml", "epochs: !!python/object:os.system {}\n", ("not valid YAML",)),
    ("c.toml", "epochs = \n", ("not valid TOML", "line 1")),
    ("c.toml", "[training]\nepochs = 1\n", ("line 1", "unknown key 'training'")),
    ("c.json", '{"epochs": 1,}', ("not valid JSON", "line 1, column")),
    ("c.json", '[1, 2]', ("holds list",)),
    ("c.ini", "epochs = 1\n", ("must end in .yaml, .yml, .toml or .json",)),
    ("c.json", '{"epochs": ' + "[" * 50000 + "]" * 50000 + "}", ("nested too deeply",)),
    ("c.yaml", "epochs: " + "[" * 50000 + "]" * 50000, ("nested too deeply",)),
])
def test_a_malformed_file_is_one_error_line(cli, tmp_path, name, text, fragments):
    config = write(tmp_path / name, text)
    assert_refused_before_training(cli("mnist", "--config", config), tmp_path, str(config), *fragments)


def test_the_file_is_an_input_like_any_other(cli, tmp_path):
    assert_user_error(cli("mnist", "--config", tmp_path / "absent.yaml"), "absent.yaml: file not found")
    (tmp_path / "folder.yaml").mkdir()
    assert_user_error(cli("mnist", "--config", tmp_path / "folder.yaml"), "is a folder")
    os.mkfifo(tmp_path / "pipe.yaml")  # nobody writes it: a run that waited for its data would hang here
    assert_user_error(cli("mnist", "--config", tmp_path / "pipe.yaml"), "is a FIFO")
    huge = write(tmp_path / "huge.yaml", "# " + "x" * 2**20 + "\n")
    assert_user_error(cli("mnist", "--config", huge), "over 1 MiB")
    # A link is followed to its file; no output may replace the file read.
    target = write(tmp_path / "real.yaml", "epochs: 3\nrecipe: fast\n")
    (tmp_path / "link.yaml").symlink_to(target)
    assert yaml.safe_load(cli("mnist", "--config", tmp_path / "link.yaml", "--print-config").stdout)["epochs"] == 3
    assert_user_error(cli("mnist", "--config", target, "--save", target), "would overwrite the --config")


def test_typed_options_win_over_the_file_which_wins_over_the_recipe(cli, tmp_path):
    config = write(tmp_path / "c.toml", 'recipe = "fast"\nepochs = 5\nbatch_size = 32\nlr = 1e-3\n')
    printed = yaml.safe_load(cli("mnist", "--config", config, "--epochs", "1", "--print-config").stdout)
    assert printed["epochs"] == 1  # typed
    assert printed["batch-size"] == 32 and printed["lr"] == 0.001  # the file's
    assert printed["model"] == "fast" and printed["optimizer"] == "sgd"  # the fast recipe's, left out of both
    # YAML 1.1 reads 1e-3 as text; a settings file means the number.
    assert yaml.safe_load(cli("mnist", "--config", write(tmp_path / "e.yaml", "momentum: 1e-3\n"),
                              "--print-config").stdout)["momentum"] == 0.001


def test_file_values_count_as_typed_for_resume(cli, tmp_path, mnist_data):
    trained = cli("mnist", "--data", mnist_data, *MNIST, "--save", tmp_path / "m.pt")
    assert trained.exit_code == 0, trained.stderr
    config = write(tmp_path / "c.yaml", f"data: {mnist_data}\nlr: 0.5\n")
    assert_user_error(cli("mnist", "--config", config, "--resume", tmp_path / "m.pt"),
                      "--lr 0.5 differs from the checkpoint", "--lr 0.01")


def test_print_config_of_a_checkpoint_replays_the_run_that_trained_it(cli, tmp_path, mnist_data):
    trained = cli("mnist", "--data", mnist_data, *MNIST, "--save", tmp_path / "m.pt")
    assert trained.exit_code == 0, trained.stderr
    # The checkpoint keeps the seed and where its data was: neither needs giving again.
    printed = cli("mnist", "--checkpoint", tmp_path / "m.pt", "--json", "--no-tensorboard", "--print-config")
    assert printed.exit_code == 0, printed.stderr
    assert "seed: 3, as" in printed.stderr and "where" in printed.stderr
    values = yaml.safe_load(printed.stdout)
    assert values["model"] == "mlp" and values["epochs"] == 1 and values["checkpoint"] is None
    assert values["seed"] == 3 and values["data"] == str(mnist_data.absolute())
    replay = cli("mnist", "--config", write(tmp_path / "c.yaml", printed.stdout))
    assert replay.exit_code == 0, replay.stderr
    assert replay.summary["metrics"] == trained.summary["metrics"]


def test_inspect_weights_shows_the_checkpoint_config(cli, tmp_path, mnist_data):
    assert cli("mnist", "--data", mnist_data, *MNIST, "--save", tmp_path / "m.pt").exit_code == 0
    run = cli("inspect-weights", tmp_path / "m.pt")
    assert run.exit_code == 0, run.stderr
    assert "model mlp" in run.stderr and "--print-config --checkpoint" in run.stderr


def test_every_command_takes_a_config_file(cli):
    for name, _ in COMMANDS:
        help_text = cli(name, "--help").stdout
        assert "--config" in help_text and "--print-config" in help_text, name


def test_a_scheduled_run_from_a_file_in_a_real_process(tmp_path):
    """As cron runs it: a process, a relative file name, the JSON summary on stdout; a mistake exits 2."""
    write_mnist(tmp_path / "data", train=100, test=20)
    write(tmp_path / "nightly.yaml", "data: data\nmodel: mlp\nepochs: 1\nno-tensorboard: true\njson: true\n")
    run = run_torchtools("mnist", "--config", "nightly.yaml", cwd=tmp_path)
    assert run.exit_code == 0, run.stderr
    assert run.summary["epochs"] == 1 and run.summary["model"] == "mlp"
    write(tmp_path / "typo.json", json.dumps({"data": "data", "lerning-rate": 0.1}, indent=1))
    assert_user_error(run_torchtools("mnist", "--config", "typo.json", cwd=tmp_path), "typo.json, line 3",
                      "lerning-rate")


def test_the_readme_example_file_is_read_as_it_says(cli, tmp_path):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = re.search(r"```yaml\n(# nightly.yaml.*?)```", readme, re.S).group(1).replace("/srv", str(tmp_path))
    printed = cli("mnist", "--config", write(tmp_path / "nightly.yaml", example), "--print-config")
    assert printed.exit_code == 0, printed.stderr
    values = yaml.safe_load(printed.stdout)
    assert values["epochs"] == 3 and values["batch-size"] == 256 and values["model"] == "fast"  # the fast recipe's
    cron = next(line for line in readme.splitlines() if "--config" in line and line.startswith("15 3 * * * "))
    assert ".venv/bin/torchtools mnist --config" in cron


def test_export_replays_from_its_printed_config_checkpoint_included(cli, tmp_path, mnist_data):
    """The positional CHECKPOINT may come from the file: click does not demand it before the file is read."""
    assert cli("mnist", "--data", mnist_data, *MNIST, "--save", tmp_path / "m.pt").exit_code == 0
    printed = cli("export", tmp_path / "m.pt", "--format", "safetensors", "--output", tmp_path / "m.safetensors",
                  "--print-config")
    assert printed.exit_code == 0, printed.stderr
    assert yaml.safe_load(printed.stdout)["checkpoint"] == str(tmp_path / "m.pt")
    replay = cli("export", "--config", write(tmp_path / "e.yaml", printed.stdout), "--json")
    assert replay.exit_code == 0, replay.stderr
    assert replay.summary["export"]["passed"] and (tmp_path / "m.safetensors").is_file()
    assert_user_error(cli("export", "--format", "safetensors"), "pass CHECKPOINT (or checkpoint: in a --config")
