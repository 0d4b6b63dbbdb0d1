"""The pictures and summaries say what they show: batch.png is training's first batch (shuffled, augmented),
diabetes draws its confusion matrix, fit-logistic's plot covers every --predict value, the model summaries
come from a real input, and a 10-class confusion matrix of real counts fits 80 columns."""

from __future__ import annotations

import re

import torch

from datafiles import NAMES_SMALL, names_rows, write_cifar10_batches, write_mnist, write_names_csv, write_table
from torchtools.core import output, plots
from torchtools.core.engine import EvalResult
from torchtools.core.report import report


def spy(monkeypatch, module, name: str) -> list[dict]:
    """Record the calls of a plotting function; the real one still draws."""
    calls, real = [], getattr(module, name)

    def recording(*args, **kwargs):
        calls.append({"args": args, **kwargs})
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, recording)
    return calls


def test_batch_png_is_trainings_first_batch_shuffled(cli, tmp_path, monkeypatch):
    grids = spy(monkeypatch, plots, "picture_grid")
    data = write_mnist(tmp_path / "data", train=100, test=20)  # stored in label order: 0, 1, 2, ..., 9, 0, ...
    run = cli("mnist", "--data", data, "--model", "mlp", "--epochs", "1", "--batch-size", "16", "--seed", "3",
              "--no-tensorboard", "--report", tmp_path / "report")
    assert run.exit_code == 0, run.stderr
    batch = next(call for call in grids if call["args"][0].name == "batch.png")
    captions = list(batch["args"][2])
    order = torch.randperm(100, generator=torch.Generator().manual_seed(3))[:16]  # epoch 1's draw, seed 3
    assert captions == [str(int(index) % 10) for index in order]
    assert captions != [str(index % 10) for index in range(16)]  # not the file's first pictures
    assert "as training sees it (shuffled" in batch["title"]
    assert (tmp_path / "report" / "batch.png").stat().st_size > 0


def test_diabetes_report_draws_its_confusion_matrix(cli, tmp_path):
    run = cli("diabetes", "--data", write_table(tmp_path / "table.csv"), "--epochs", "3", "--no-tensorboard",
              "--report", tmp_path / "report")
    assert run.exit_code == 0, run.stderr
    assert (tmp_path / "report" / "confusion.png").read_bytes().startswith(b"\x89PNG")


def test_fit_logistic_plot_covers_the_data_and_every_predicted_value(cli, tmp_path, monkeypatch):
    lines = spy(monkeypatch, plots, "line_plot")
    run = cli("fit-logistic", "--epochs", "50", "--no-tensorboard", "--predict", "4", "--predict", "-2",
              "--plot", tmp_path / "curve.png")
    assert run.exit_code == 0, run.stderr
    xs = list(lines[-1]["args"][1])
    assert min(xs) < -2 and max(xs) > 4  # the course data span 1..3
    predicted_x, predicted_p = lines[-1]["predicted"]
    assert sorted(predicted_x) == [-2.0, 4.0] and all(0 <= p <= 1 for p in predicted_p)


def test_summaries_name_the_model_and_a_real_input(cli, tmp_path):
    cifar = cli("cifar", "--data", write_cifar10_batches(tmp_path / "cifar", train=40, test=20), "--epochs", "1",
                "--no-tensorboard", "--model", "quick")
    assert cifar.exit_code == 0, cifar.stderr
    assert "model: quick (nn.Sequential), 3x32x32 input" in cifar.stderr
    rows = names_rows(0, per_label=20)
    names = cli("names-rnn", "--data", write_names_csv(tmp_path / "names.csv", rows, gzipped=False), "--epochs", "1",
                *NAMES_SMALL, "--json")
    assert names.exit_code == 0, names.stderr
    lengths = [len(name) for name, _ in rows]
    summary = names.summary["model_summary"]
    embedding = next(layer for layer in summary["layers"] if layer["type"] == "Embedding")
    median = int(re.search(r"on names of (\d+) letters \(the median\)", names.stderr).group(1))
    assert embedding["output_shape"] == [median, 16]  # letters x --hidden of a median name, not the batch's 2
    lengths.sort()
    assert lengths[len(lengths) // 4] <= median <= lengths[3 * len(lengths) // 4]


def test_a_ten_class_matrix_of_real_counts_fits_80_columns(monkeypatch, capsys):
    monkeypatch.setattr(output.console, "width", 80)
    targets = torch.arange(10).repeat_interleave(1_135)  # MNIST's test set: about 1,000 a class
    outputs = torch.nn.functional.one_hot(targets, 10).float()
    report(EvalResult(0.1, 1.0, outputs, targets), [str(digit) for digit in range(10)], split="test")
    err = capsys.readouterr().err
    assert "too wide" not in err and "rows: true, columns: predicted" in err
    assert "1,135" in err and max(len(line) for line in err.splitlines()) <= 80
