"""fit-logistic: sigmoid(linear) with BCE on the course's hours/pass data or a CSV."""

import pytest

from conftest import assert_user_error


def test_course_data_separates_pass_and_fail(cli, tmp_path):
    run = cli("fit-logistic", "--json", "--no-tensorboard", "--predict", "1", "--predict", "4",
              "--plot", tmp_path / "curve.png")
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["predictions"]["1.0"] < 0.2 < 0.8 < summary["predictions"]["4.0"]
    assert summary["w"] > 0 and summary["metrics"]["train_accuracy"] == 1.0
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "P(y=1)" in run.stderr


def test_csv_with_two_features_and_checkpoint_reload(cli, tmp_path):
    rows = [(a / 10, b / 10, int(a + b > 10)) for a in range(10) for b in range(10)]
    path = tmp_path / "grid.csv"
    path.write_text("\n".join(f"{a},{b},{label}" for a, b, label in rows))
    checkpoint = tmp_path / "logistic.pt"
    trained = cli("fit-logistic", "--csv", path, "--epochs", 300, "--lr", 1.0, "--save", checkpoint, "--json",
                  "--no-tensorboard", "--predict", "0.9,0.9").summary
    assert trained["metrics"]["train_accuracy"] > 0.9 and isinstance(trained["w"], list)
    reloaded = cli("fit-logistic", "--csv", path, "--checkpoint", checkpoint, "--predict", "0.9,0.9", "--json").summary
    assert reloaded["predictions"]["0.9,0.9"] == pytest.approx(trained["predictions"]["0.9,0.9"], rel=1e-6)


def test_labels_must_be_zero_or_one(cli, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("1,0\n2,2\n")
    assert_user_error(cli("fit-logistic", "--csv", path), "0/1")
