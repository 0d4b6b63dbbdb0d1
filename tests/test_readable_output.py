"""What a person reads: numbers that line up, switches without a value placeholder in --help, shell completion
that answers without torch, a model summary that counts names-rnn's GRU, pictures whose text is inside them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from torchtools.core.output import number


@pytest.mark.parametrize("value, shown", [
    (0.9682999849319458, "0.9683"), (564.0461, "564.0"), (0.408, "0.4080"), (1.0, "1.000"), (12345.6, "12346"),
    (999.96, "1000"), (999.94, "999.9"), (-999.99, "-1000"), (3.2e-05, "3.200e-05"), (60000, "60,000"),
])
def test_numbers_have_four_significant_digits_their_trailing_zeros_and_counts_thousands_separators(value, shown):
    assert number(value) == shown


def test_no_switch_shows_a_value_placeholder_in_help(cli):
    """Typer writes "<bool>" after a switch that names no metavar: --help, --version and the completion switches
    are switches too."""
    for args in (["--help"], ["mnist", "--help"]):
        run = cli(*args)
        assert run.exit_code == 0, run.stderr
        assert "<bool>" not in run.stdout, run.stdout
    assert "--install-completion" in cli("--help").stdout


def test_shell_completion_offers_a_commands_choices_without_importing_torch(tmp_path):
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('torch' in sys.modules))\n"
            "from torchtools.cli import app\n"
            "app(prog_name='torchtools')\n")
    env = {**os.environ, "_TORCHTOOLS_COMPLETE": "complete_bash", "COMP_WORDS": "torchtools mnist --model ",
           "COMP_CWORD": "3"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    *offered, imported_torch = result.stdout.split()
    assert {"mlp", "cnn", "inception", "resnet"} <= set(offered)
    assert imported_torch == "False"


def test_the_model_summary_counts_names_rnns_gru_and_leaves_its_outputs_alone():
    """On the CPU the GRU runs through the model's own fast code, which no hook sees; the summary's hooks make
    the model call it as the module (same numbers), so its output and multiply-adds are counted."""
    import torch

    from torchtools.core.summary import model_summary
    from torchtools.models.names import NameClassifier

    torch.manual_seed(0)
    model = NameClassifier(30, 5, hidden=8, layers=2)
    codes = torch.randint(1, 30, (3, 6))
    codes[0, 4:] = 0  # names of 4, 6 and 6 letters: 16 steps, 16 / 3 a name
    before = model(codes)
    summary = model_summary(model, codes)
    assert torch.equal(model(codes), before)
    layers = {row["name"]: row for row in summary["layers"]}
    assert [row["name"] for row in summary["layers"]] == ["embedding", "rnn", "fc"]  # the order they run in
    weights = sum(p.numel() for name, p in model.rnn.named_parameters() if name.startswith("weight"))
    assert layers["rnn"]["mult_adds"] == int(weights * 16 / 3)
    assert layers["rnn"]["output_shape"] == [16]  # both directions' hidden states
    assert summary["mult_adds"] == layers["rnn"]["mult_adds"] + 16 * 5


def test_a_flat_curve_has_no_offset_ticks_and_a_long_confusion_title_stays_in_the_picture(monkeypatch, tmp_path):
    from torchtools.core import plots

    figures = []
    monkeypatch.setattr(plots, "save", lambda figure, path: figures.append(figure) or path)
    history = [{"epoch": epoch, "train_loss": 2.3, "train_accuracy": 0.1, "test_accuracy": 0.1 + 1.5e-9 * epoch}
               for epoch in (1, 2, 3)]
    plots.curves(tmp_path / "curves.png", history, title="mnist")
    import numpy as np

    labels = [f"class number {index}" for index in range(10)]
    figures.append(plots.heatmap_figure(np.eye(10, dtype=int), labels, title="test confusion matrix (accuracy "
                                        "100.0%; colour: share of the true class) " * 2))
    for figure in figures:
        figure.canvas.draw()
    curves, heatmap = figures
    for axis in curves.axes:
        assert axis.yaxis.get_offset_text().get_text() == "", axis.get_title()
    width = heatmap.bbox.width
    title = heatmap.axes[0].title.get_window_extent()
    assert 0 <= title.x0 and title.x1 <= width


def test_a_predict_only_run_says_where_the_predictions_went_and_prints_no_training_lines(cli, tmp_path):
    import cv2
    import numpy as np

    from datafiles import write_mnist

    data = write_mnist(tmp_path / "data", train=40, test=10)
    trained = cli("mnist", "--data", data, "--model", "mlp", "--epochs", "1", "--save", tmp_path / "m.pt",
                  "--no-tensorboard")
    assert trained.exit_code == 0, trained.stderr
    assert f"wrote checkpoint (last epoch): {tmp_path / 'm.pt'}" in trained.stderr
    (tmp_path / "in").mkdir()
    for index in range(3):
        cv2.imwrite(str(tmp_path / "in" / f"{index}.png"), np.full((28, 28), 40 * index, np.uint8))
    run = cli("mnist", "--checkpoint", tmp_path / "m.pt", "--predict", tmp_path / "in", "--output",
              tmp_path / "p.csv")
    assert run.exit_code == 0, run.stderr
    assert run.stderr.strip().splitlines()[-1] == f"wrote predictions (3 rows): {tmp_path / 'p.csv'}"
    for training_line in ("epoch 1/", "recipe ", "model: ", "parameters", "per-class accuracy"):
        assert training_line not in run.stderr, run.stderr
