"""Issue 25's smaller items, each through the mechanism it belongs to."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_user_error, run_torchtools
from datafiles import write_image, write_mnist


def test_find_lr_with_lr_auto_trains_at_the_suggestion_and_saves(cli, tmp_path):
    data = write_mnist(tmp_path / "data", train=40, test=20)
    run = cli("mnist", "--data", data, "--find-lr", "--lr", "auto", "--save", tmp_path / "f.pt", "--epochs", "1",
              "--no-tensorboard", "--json")
    assert run.exit_code == 0, run.stderr
    assert run.summary["epochs"] == 1 and (tmp_path / "f.pt").is_file()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e39", "1,nan"])
def test_fit_linear_predict_takes_finite_float32_numbers(cli, value):
    assert_user_error(cli("fit-linear", "--predict", value, "--no-tensorboard"), "--predict", "finite")


def test_a_pixel_limit_that_refuses_every_picture_says_why(tmp_path):
    rng = np.random.default_rng(0)
    for label, name in enumerate(("ants", "bees")):
        for index in range(3):
            write_image(tmp_path / "tree" / name / f"{index}.png", label, rng)
    run = run_torchtools("transfer", "--data", tmp_path / "tree", "--weights", "none", "--epochs", "1",
                         "--loader", "memory", "--no-tensorboard", cwd=tmp_path, env={"TORCHTOOLS_MAX_PIXELS": "100"})
    assert_user_error(run, "none of the 6 images", "over the limit of 100")


def test_opencv_s_own_warnings_stay_out_even_under_quiet(tmp_path):
    rng = np.random.default_rng(0)
    for label, name in enumerate(("ants", "bees")):
        for index in range(4):
            write_image(tmp_path / "tree" / name / f"{index}.jpg", label, rng)
    whole = (tmp_path / "tree" / "ants" / "0.jpg").read_bytes()
    (tmp_path / "tree" / "ants" / "cut.jpg").write_bytes(whole[:len(whole) * 2 // 3])
    run = run_torchtools("transfer", "--data", tmp_path / "tree", "--weights", "none", "--image-size", "32",
                         "--epochs", "1", "--no-tensorboard", "--quiet", "--device", "cpu", cwd=tmp_path)
    assert run.exit_code == 0, run.stderr
    assert "[ WARN" not in run.stderr


def test_a_checkpoint_run_does_not_warn_of_training_from_scratch(cli, tmp_path):
    from datafiles import write_photo_folders

    photos = write_photo_folders(tmp_path / "photos", train=3, val=2)
    small = ("--arch", "resnet18", "--image-size", "32", "--batch-size", "4", "--no-tensorboard", "--device", "cpu")
    first = cli("transfer", "--data", photos, "--weights", "none", "--epochs", "1", "--save", tmp_path / "m.pt", *small)
    assert first.exit_code == 0 and "from scratch" in first.stderr
    run = cli("transfer", "--checkpoint", tmp_path / "m.pt", "--predict", photos / "val", *small)
    assert run.exit_code == 0, run.stderr
    assert "from scratch" not in run.stderr


def test_a_class_of_heic_files_says_what_is_read(cli, tmp_path):
    rng = np.random.default_rng(0)
    for index in range(3):
        write_image(tmp_path / "tree" / "ants" / f"{index}.png", 0, rng)
        (tmp_path / "tree" / "bees" / f"{index}.heic").parent.mkdir(exist_ok=True)
        (tmp_path / "tree" / "bees" / f"{index}.heic").write_bytes(b"\0\0\0\x18ftypheic")
    run = cli("transfer", "--data", tmp_path / "tree", "--weights", "none", "--epochs", "1", "--no-tensorboard")
    assert_user_error(run, "class bees", ".png", "not HEIC")


def test_inspect_weights_says_what_an_exported_program_is(cli, tmp_path):
    import warnings

    import torch

    layer = torch.nn.Linear(2, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(layer).save(tmp_path / "script.pt")
        torch.export.save(torch.export.export(layer, (torch.zeros(1, 2),)), tmp_path / "program.pt2")
        torch.onnx.export(layer, (torch.zeros(1, 2),), tmp_path / "model.onnx", dynamo=False)
    for name, kind in (("script.pt", "TorchScript"), ("program.pt2", "ExportedProgram"), ("model.onnx", "ONNX")):
        run = cli("inspect-weights", tmp_path / name)
        assert_user_error(run, name, kind, "not weights")
        assert "weights_only" not in run.stderr and "pickle" not in run.stderr


@pytest.mark.parametrize("command, shown", [
    (("transfer", "--mean", "0.5,,0.5"), "--mean 0.5,,0.5: a number is missing between its commas"),
    (("transfer", "--std", "0.5,,"), "--std 0.5,,: a number is missing between its commas"),
    (("transfer", "--mean", ","), "--mean ,: a number is missing between its commas"),
    (("transfer", "--mean", ""), "--mean '': give 3 numbers (r,g,b)"),
    (("transfer", "--mean", "0.5, 0.5"), "--mean '0.5, 0.5': give 3 numbers (r,g,b)"),
    (("transfer", "--std", "0.5,0,0.5"), "--std 0.5,0,0.5: 0.0 must be at least 0.0001"),
    (("transfer", "--mean", "1e39,0,0"), "--mean 1e39,0,0: 1e+39 must be within float32's range"),
    (("transfer", "--std", "0.5,x,0.5"), "--std 0.5,x,0.5: expected a list of numbers"),
    (("diabetes", "--hidden", "6,,4"), "--hidden 6,,4: a number is missing between its commas"),
])
def test_a_list_option_error_quotes_what_was_typed(cli, tmp_path, command, shown):
    """`--mean 0.5,,0.5` was read as 0.5,0.5 and refused as "--mean 0.5,0.5": not what the user typed."""
    assert_user_error(cli(*command, "--data", tmp_path), shown)


def test_a_config_file_list_of_the_wrong_length_is_named_by_file_key_and_line(cli, tmp_path):
    (tmp_path / "run.yaml").write_text("mean: [0.5, 0.5]\n")
    assert_user_error(cli("transfer", "--config", tmp_path / "run.yaml", "--data", tmp_path),
                      "run.yaml (mean, line 1): --mean 0.5,0.5: give 3 numbers")
