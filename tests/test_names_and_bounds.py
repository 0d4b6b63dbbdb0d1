"""Names are data in every renderer, values stay within what the arithmetic holds (issue 25, items 2 and 3):
one text rule for the terminal (control characters escaped, non-UTF-8 bytes as \\xNN), class names drawn as
plain text, a failed drawing costs that picture alone; float settings bounded, a non-finite loss the NaN stop,
the heatmap bounded past a class count."""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import assert_user_error, run_torchtools
from datafiles import NAMES_SMALL, names_rows, write_image, write_names_folder, write_table
from torchtools.core import plots
from torchtools.core.output import terminal

QUICK = ("--weights", "none", "--arch", "resnet18", "--image-size", "32", "--batch-size", "4", "--epochs", "1",
         "--device", "cpu", "--no-tensorboard")


def class_tree(root, names, per_class=3):
    rng = np.random.default_rng(0)
    for label, name in enumerate(names):
        for index in range(per_class):
            write_image(root / os.fsencode(name).decode("utf-8", "surrogateescape") / f"{index}.png"
                        if isinstance(name, bytes) else root / name / f"{index}.png", label % 2, rng)
    return root


# --- the terminal ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,shown", [("a\nb", "a\\nb"), ("\x1b[31mred", "\\x1b[31mred"),
                                        ("tab\there", "tab\\there"), ("caf\udce9", "caf\\xe9"),
                                        ("\u202eevil", "\\u202eevil"), ("café $α$", "café $α$")])
def test_the_one_terminal_rule(text, shown):
    assert terminal(text) == shown


def test_a_newline_in_a_data_name_does_not_split_the_error_line(tmp_path):
    data = tmp_path / "bad\nname"
    run = run_torchtools("transfer", "--data", data, *QUICK, cwd=tmp_path)
    assert_user_error(run, "bad\\nname")


def test_an_escape_sequence_in_a_predict_name_reaches_stderr_escaped(tmp_path):
    run = run_torchtools("transfer", "--data", tmp_path, "--predict", tmp_path / "x\x1b[2Jy.png", *QUICK, cwd=tmp_path)
    assert "\x1b" not in run.stderr
    assert "\\x1b[2Jy" in run.stderr


def test_a_class_name_that_is_not_utf8_is_shown_one_way(tmp_path):
    root = tmp_path / "tree"
    rng = np.random.default_rng(0)
    for label, name in enumerate((b"caf\xe9", b"plain")):
        folder = os.path.join(os.fsencode(root), name)
        os.makedirs(folder)
        for index in range(3):
            write_image(tmp_path / "p.png", label, rng)
            os.replace(tmp_path / "p.png", os.path.join(folder, f"{index}.png".encode()))
    run = run_torchtools("transfer", "--data", root, *QUICK, "--val-split", "0.34", cwd=tmp_path)
    assert run.exit_code == 0, run.stderr
    assert "caf\\xe9" in run.stderr and "\\udce9" not in run.stderr


# --- matplotlib ------------------------------------------------------------------------------------------------

def test_class_names_with_mathtext_train_and_report(cli, tmp_path):
    """`$\\frac{x$` made mathtext raise after training: the whole report was lost. Now drawn as typed."""
    root = class_tree(tmp_path / "tree", ["$\\frac{x$", "$\\alpha$ café", "plain"])
    report = tmp_path / "report"
    run = cli("transfer", "--data", root, *QUICK, "--val-split", "0.34", "--report", report, "--json",
              "--save", tmp_path / "m.pt")
    assert run.exit_code == 0, run.stderr
    written = sorted(os.path.basename(name) for name in run.summary["report"])
    assert {"history.csv", "curves.png", "confusion.png"} <= set(written)
    assert (tmp_path / "m.pt").is_file()


def test_a_picture_that_cannot_be_drawn_costs_only_itself(cli, tmp_path, monkeypatch):
    table = write_table(tmp_path / "table.csv", rows=60)
    report = tmp_path / "report"
    report.mkdir()
    (report / "curves.png").write_bytes(b"an earlier run's picture")

    def broken(*args, **kwargs):
        raise RuntimeError("the renderer gave up")

    monkeypatch.setattr(plots, "_spans_decades", broken)  # inside curves(), after the figure is made
    run = cli("diabetes", "--data", table, "--epochs", "2", "--no-tensorboard", "--report", report, "--json",
              "--save", tmp_path / "m.pt")
    assert run.exit_code == 0, run.stderr
    assert "could not draw" in run.stderr and "renderer gave up" in run.stderr
    names = [os.path.basename(name) for name in run.summary["report"]]
    assert "history.csv" in names and "curves.png" not in names  # the JSON claims only what is there
    assert not (report / "curves.png").exists()  # no stale picture passing for this run's
    assert (tmp_path / "m.pt").is_file()


def test_a_tensorboard_heatmap_that_cannot_be_drawn_costs_only_itself(cli, tmp_path, monkeypatch):
    """The TensorBoard confusion heatmap was drawn outside the one-picture guard: its failure was a traceback
    after training, with no summary. It goes through the guard the report's pictures do."""
    from torch.utils.tensorboard import SummaryWriter

    def broken(*args, **kwargs):
        raise RuntimeError("the renderer gave up")

    monkeypatch.setattr(SummaryWriter, "add_figure", broken)  # where the figure is drawn into the logs
    root = class_tree(tmp_path / "tree", ["ants", "bees"])
    report = tmp_path / "report"
    run = cli("transfer", "--data", root, *QUICK[:-1], "--runs-dir", tmp_path / "runs", "--val-split", "0.34",
              "--report", report, "--json", "--save", tmp_path / "m.pt")
    assert run.exit_code == 0, run.stderr
    assert run.stderr.count("could not draw") == 1, run.stderr
    assert "could not draw TensorBoard's val/confusion_matrix (the renderer gave up)" in run.stderr
    assert "confusion.png" in [os.path.basename(name) for name in run.summary["report"]]
    assert (tmp_path / "m.pt").is_file() and list((tmp_path / "runs" / "transfer").iterdir())


def test_the_heatmap_is_bounded_past_a_class_count(tmp_path):
    classes = 400
    matrix = np.eye(classes, dtype=np.int64) * 5
    matrix[3, 7] = matrix[250, 12] = 4
    path = plots.heatmap(tmp_path / "h.png", matrix, [f"class {index}" for index in range(classes)], title="t")
    import cv2

    height, width = cv2.imread(str(path)).shape[:2]
    side = 100 * (0.45 * plots.HEATMAP_MAX_CLASSES + 2)
    assert height <= side + 1 and width <= side + 1


# --- bounds ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["diabetes", "fit-linear", "fit-logistic", "mnist", "names-rnn", "conv-demo"])
@pytest.mark.parametrize("lr", ["1e308", "3.5e38", "1e7"])
def test_a_learning_rate_past_the_arithmetic_is_refused(cli, command, lr):
    assert_user_error(cli(command, "--lr", lr), "--lr")


@pytest.mark.parametrize("command", ["diabetes", "fit-linear", "fit-logistic"])
def test_the_largest_learning_rate_is_the_nan_stop_not_a_traceback(cli, tmp_path, command):
    table = write_table(tmp_path / "table.csv", rows=60)
    run = cli(command, "--data", table, "--lr", "1e6", "--epochs", "20", "--no-tensorboard")
    assert run.exit_code in (0, 2), run.stderr
    assert "Traceback" not in run.stderr
    if run.exit_code == 2:
        assert_user_error(run, "loss became")


def test_names_rnn_at_the_largest_learning_rate(cli, tmp_path):
    names = write_names_folder(tmp_path / "names", names_rows(0, per_label=10))
    run = cli("names-rnn", "--data", names, *NAMES_SMALL[:-2], "--lr", "1e6", "--epochs", "3", "--no-tensorboard")
    assert run.exit_code in (0, 2) and "Traceback" not in run.stderr


def test_conv_demo_learn_kernel_stops_on_a_non_finite_loss(cli):
    run = cli("conv-demo", "--demo", "learn-kernel", "--lr", "1e6")
    assert_user_error(run, "learn-kernel", "loss became", "lower --lr")
    assert "nan, nan" not in run.stderr


def test_a_checkpoint_float_past_float32_is_refused(cli, tmp_path):
    import torch

    table = write_table(tmp_path / "table.csv", rows=60)
    assert cli("diabetes", "--data", table, "--epochs", "1", "--no-tensorboard", "--save", tmp_path / "m.pt"
               ).exit_code == 0
    saved = torch.load(tmp_path / "m.pt", weights_only=True)
    saved["config"]["lr"] = 1e300
    torch.save(saved, tmp_path / "edited.pt")
    assert_user_error(cli("diabetes", "--data", table, "--checkpoint", tmp_path / "edited.pt"), "config's lr")
