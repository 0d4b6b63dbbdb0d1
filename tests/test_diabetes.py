"""diabetes: the course's table through Dataset/DataLoader, with a stratified hold-out report."""

import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import assert_refused_before_training, assert_truthful, assert_user_error
from datafiles import write_table

FAST = ("--epochs", "15", "--no-tensorboard", "--json")


def test_trains_and_reports_the_hold_out(cli, tmp_path):
    data = write_table(tmp_path / "diabetes.csv.gz", header=True, crlf=True)
    run = cli("diabetes", "--data", data, *FAST)
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    metrics = summary["metrics"]
    assert metrics["val_accuracy"] > 0.8
    for name in ("val_precision", "val_recall", "val_f1", "val_roc_auc", "train_loss", "val_loss"):
        assert 0 <= metrics[name] <= 10
    matrix = summary["confusion_matrix"]
    assert sum(map(sum, matrix)) == 48  # 20% of 240, stratified
    assert "hold-out report" in run.stderr and "confusion matrix" in run.stderr


def test_default_path_under_the_data_root_else_the_built_in_table(cli, tmp_path):
    builtin = cli("diabetes", "--epochs", "2", "--no-tensorboard", "--json")  # no data anywhere: offline, built in
    assert builtin.exit_code == 0, builtin.stderr
    assert "using the built-in course table" in builtin.stderr and builtin.summary["builtin_data"] is True
    assert builtin.summary["metrics"]["val_accuracy"] > 0.5 and sum(map(sum, builtin.summary["confusion_matrix"])) > 100
    (tmp_path / "data" / "diabetes").mkdir(parents=True)
    write_table(tmp_path / "data" / "diabetes" / "diabetes.csv.gz")
    run = cli("diabetes", *FAST)
    assert run.exit_code == 0 and run.summary["builtin_data"] is False
    assert (tmp_path / run.summary["data"]).resolve() == tmp_path / "data" / "diabetes" / "diabetes.csv.gz"
    assert_user_error(cli("diabetes", "--data", tmp_path / "nowhere"), "--data", "nowhere")


def test_torchtools_data_environment_variable(cli, tmp_path, monkeypatch):
    root = tmp_path / "elsewhere"
    root.mkdir()
    write_table(root / "diabetes.csv.gz")
    monkeypatch.setenv("TORCHTOOLS_DATA", str(root))
    assert cli("diabetes", *FAST).exit_code == 0


def test_seeded_runs_repeat_exactly(cli, tmp_path):
    data = write_table(tmp_path / "table.csv")
    first = cli("diabetes", "--data", data, "--seed", 3, *FAST).summary["metrics"]
    second = cli("diabetes", "--data", data, "--seed", 3, *FAST).summary["metrics"]
    assert first == {**second, **{k: first[k] for k in first if "seconds" in k}}


def test_checkpoint_keeps_standardisation_and_predicts(cli, tmp_path):
    data = write_table(tmp_path / "table.csv")
    checkpoint = tmp_path / "model.pt"
    trained = cli("diabetes", "--data", data, "--save", checkpoint, *FAST).summary
    assert trained["checkpoint"] == str(checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    assert state["mean"].shape == (8,) and state["config"]["hidden"] == [6, 4]
    assert (tmp_path / "model.best.pt").exists()
    rows = tmp_path / "rows.csv"
    rows.write_text("0.9,0.9,-0.9,0,0,0,0,0,0\n-0.9,-0.9,0.9,0,0,0,0,0,1\n")  # label column ignored
    predicted = cli("diabetes", "--checkpoint", checkpoint, "--predict", rows, "--json")
    probabilities = predicted.summary["predictions"]
    assert probabilities[0] > 0.5 > probabilities[1]
    assert "row 1: P(y=1)" in predicted.stderr


def test_resume_continues_from_the_saved_epoch(cli, tmp_path):
    data = write_table(tmp_path / "table.csv")
    checkpoint = tmp_path / "model.pt"
    cli("diabetes", "--data", data, "--epochs", 3, "--save", checkpoint, "--no-tensorboard")
    run = cli("diabetes", "--data", data, "--epochs", 5, "--resume", checkpoint, "--save", checkpoint,
              "--no-tensorboard", "--json")
    assert run.exit_code == 0, run.stderr
    assert "resumed from" in run.stderr and "epoch 4/5" in run.stderr and "epoch 1/5" not in run.stderr
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 5


def test_relu_and_other_widths(cli, tmp_path):
    data = write_table(tmp_path / "table.csv")
    run = cli("diabetes", "--data", data, "--hidden", "16,8,4", "--activation", "relu", "--optimizer", "sgd",
              "--lr", "0.1", "--momentum", "0.9", *FAST)
    assert run.summary["metrics"]["val_accuracy"] > 0.8


def test_malformed_row_names_the_line(cli, tmp_path):
    data = tmp_path / "bad.csv"
    data.write_text("1,2,3,4,5,6,7,8,1\n1,2,3,4,5,6,7,8,0\n1,2,3,4,5,6,7,1\n")
    assert_user_error(cli("diabetes", "--data", data), "line 3", "columns")


def test_non_binary_label_is_refused(cli, tmp_path):
    data = tmp_path / "bad.csv"
    data.write_text("1,2,3,4,5,6,7,8,1\n1,2,3,4,5,6,7,8,3\n")
    assert_user_error(cli("diabetes", "--data", data), "0/1")


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    data = write_table(tmp_path / "table.csv", rows=2000)
    checkpoint = tmp_path / "model.pt"
    process = subprocess.Popen(
        [sys.executable, "-m", "torchtools", "diabetes", "--data", str(data), "--epochs", "100000", "--save",
         str(checkpoint), "--no-tensorboard", "--quiet"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not checkpoint.exists() and time.time() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()  # never leave a 100,000-epoch run behind if the test fails
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.count("stopped by Ctrl-C (SIGINT): ") == 1, stderr  # even --quiet
    state = assert_truthful(checkpoint, ("diabetes", "--data", data), cwd=tmp_path)
    # Wherever the signal landed, the line says what the file holds: weights from inside an epoch (no metrics
    # claimed, --resume redoes it), or, between epochs, the last whole epoch left as it was saved.
    if "partial_epoch" in state:
        assert f"epoch {state['epoch']} complete and epoch {state['partial_epoch']} partial" in stderr
        assert f"redoes epoch {state['partial_epoch']}" in stderr
    else:
        assert f"{checkpoint} holds epoch {state['epoch']} complete" in stderr


@pytest.mark.slow
def test_real_course_table_reaches_75_percent(cli, shared_data):
    run = cli("diabetes", "--data", shared_data / "diabetes" / "diabetes.csv.gz", "--json", "--no-tensorboard")
    assert run.summary["metrics"]["val_accuracy"] >= 0.75


def test_resume_refuses_changed_widths_and_optimizer_naming_both_values(cli, tmp_path):
    data = write_table(tmp_path / "table.csv")
    checkpoint = tmp_path / "model.pt"
    assert cli("diabetes", "--data", data, "--epochs", 2, "--optimizer", "sgd", "--save", checkpoint,
               "--no-tensorboard").exit_code == 0
    resumed = ("diabetes", "--data", data, "--epochs", 4, "--resume", checkpoint)
    assert_refused_before_training(cli(*resumed, "--hidden", "8"), tmp_path, "--hidden 8", "--hidden 6,4")
    assert_refused_before_training(cli(*resumed, "--optimizer", "adam"), tmp_path, "--optimizer adam",
                                   "--optimizer sgd")
    assert_refused_before_training(cli(*resumed, "--lr", "1e6"), tmp_path, "--lr 1000000.0", "--lr 0.01")


def test_resume_on_a_table_with_other_columns_is_one_error(cli, tmp_path):
    data = write_table(tmp_path / "table.csv")
    checkpoint = tmp_path / "model.pt"
    assert cli("diabetes", "--data", data, "--epochs", 2, "--save", checkpoint, "--no-tensorboard").exit_code == 0
    narrow = tmp_path / "narrow.csv"
    narrow.write_text("".join(",".join(line.split(",")[1:]) for line in data.read_text().splitlines(True)))
    run = cli("diabetes", "--data", narrow, "--epochs", 4, "--resume", checkpoint)
    assert_refused_before_training(run, tmp_path, "number of feature columns", "gives 7", "trained on 8")


def test_predict_file_is_checked_before_training(cli, tmp_path):
    data = write_table(tmp_path / "table.csv")
    run = cli("diabetes", "--data", data, "--predict", tmp_path / "missing.csv", "--save", tmp_path / "m.pt")
    assert_refused_before_training(run, tmp_path, "--predict", "missing.csv", "not found",
                                   created=(tmp_path / "m.pt",))


def test_val_split_0_holds_nothing_out(cli, tmp_path):
    data = write_table(tmp_path / "table.csv")
    run = cli("diabetes", "--data", data, "--val-split", "0", *FAST)
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["confusion_matrix"] is None
    assert set(summary["metrics"]) == {"train_loss", "train_accuracy", "lr"}
    assert "nothing held out" in run.stderr and "confusion matrix" not in run.stderr


@pytest.mark.parametrize("labels, fragment", [([1] * 30, "all 30 rows have label 1"), ([0] * 29 + [1], "too few")])
def test_tables_a_classifier_cannot_learn_from_are_refused(cli, tmp_path, labels, fragment):
    data = tmp_path / "table.csv"
    data.write_text("".join(f"{index},{index % 7},0,0,0,0,0,0,{label}\n" for index, label in enumerate(labels)))
    run = cli("diabetes", "--data", data, "--save", tmp_path / "m.pt")
    assert_refused_before_training(run, tmp_path, fragment, created=(tmp_path / "m.pt",))


def test_divergence_in_epoch_1_claims_no_checkpoint(cli, tmp_path):
    data = write_table(tmp_path / "table.csv")
    checkpoint = tmp_path / "m.pt"
    run = cli("diabetes", "--data", data, "--lr", "1e6", "--optimizer", "sgd", "--activation", "relu",
              "--batch-size", "1", "--save", checkpoint, "--no-tensorboard")
    assert_user_error(run, "in epoch 1", "no checkpoint was written")
    assert str(checkpoint) not in run.stderr and not checkpoint.exists()


def test_patience_and_target_accuracy_stop_early(cli, tmp_path):
    data = write_table(tmp_path / "table.csv")
    patient = cli("diabetes", "--data", data, "--epochs", 200, "--patience", 3, "--no-tensorboard", "--json").summary
    assert patient["stopped_early"] == "patience" and patient["epochs"] < 200
    target = cli("diabetes", "--data", data, "--epochs", 200, "--target-accuracy", "0.8", "--no-tensorboard",
                 "--json").summary
    assert target["stopped_early"] == "target" and target["epochs"] < 200
    assert target["metrics"]["val_accuracy"] >= 0.8
    full = cli("diabetes", "--data", data, "--epochs", 2, "--no-tensorboard", "--json").summary
    assert full["stopped_early"] is None and full["epochs"] == 2


def test_runs_dir_that_is_a_file_is_refused_before_reading_data(cli, tmp_path):
    (tmp_path / "tb").write_text("not a folder")
    run = cli("diabetes", "--data", write_table(tmp_path / "table.csv"), "--runs-dir", tmp_path / "tb")
    assert_refused_before_training(run, tmp_path, "--runs-dir", "is a file")


def test_hidden_widths_that_multiply_past_memory_are_one_error_before_any_allocation(cli, tmp_path):
    """Each width within its bound, their product is not: 10^10 weights are refused by name, not a
    DefaultCPUAllocator traceback (nor gigabytes allocated for the first layer before the second fails)."""
    data = write_table(tmp_path / "diabetes.csv")
    run = cli("diabetes", "--data", data, "--hidden", "100000,100000", "--save", tmp_path / "m.pt", *FAST)
    assert_refused_before_training(run, tmp_path, "--hidden 100000,100000", "10,001,100,001 weights",
                                   "memory budget", created=(tmp_path / "m.pt",))
