"""fit-linear: the linear-model lessons, checked against closed-form least squares."""

import gzip

import numpy as np
import pytest

from conftest import assert_refused_before_training, assert_user_error


def _least_squares(x, y):
    design = np.column_stack([x, np.ones(len(y))])
    solution, *_ = np.linalg.lstsq(design, y, rcond=None)
    return solution[:-1], solution[-1]


def test_default_nn_learns_w_2_on_the_course_data(cli):
    run = cli("fit-linear", "--json", "--no-tensorboard", "--predict", "4")
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["command"] == "fit-linear" and summary["epochs"] == 1000
    assert summary["w"] == pytest.approx(2.0, abs=0.05)
    assert summary["predictions"]["4.0"] == pytest.approx(8.0, abs=0.1)
    for key in ("device", "seconds", "train_seconds", "metrics", "checkpoint", "b", "loss"):
        assert key in summary


def test_exhaustive_prints_the_mse_table_and_finds_w_2(cli, tmp_path):
    run = cli("fit-linear", "--method", "exhaustive", "--json", "--plot", tmp_path / "mse.png")
    assert run.exit_code == 0
    assert run.summary["w"] == 2.0 and run.summary["loss"] == 0.0
    assert "MSE for each w" in run.stderr and "3.9" in run.stderr
    assert (tmp_path / "mse.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("method", ["gd", "sgd", "autograd", "nn"])
def test_every_method_matches_closed_form_on_a_csv(cli, tmp_path, method):
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(40, 2))
    y = x @ np.array([1.5, -0.5]) + 0.3 + rng.normal(0, 0.01, size=40)
    path = tmp_path / "points.csv"
    path.write_text("a,b,y\n" + "\n".join(f"{a},{b},{t}" for (a, b), t in zip(x, y)))
    w_exact, b_exact = _least_squares(x, y)
    run = cli("fit-linear", "--method", method, "--csv", path, "--epochs", 600, "--lr", 0.05, "--json",
              "--no-tensorboard", "--predict", "1,1")
    assert run.exit_code == 0, run.stderr
    summary = run.summary
    assert summary["w"] == pytest.approx(list(w_exact), abs=0.02)
    assert summary["b"] == pytest.approx(b_exact, abs=0.02)
    assert summary["predictions"]["1.0,1.0"] == pytest.approx(w_exact.sum() + b_exact, abs=0.05)


def test_gzip_csv_with_crlf_and_no_header(cli, tmp_path):
    path = tmp_path / "points.csv.gz"
    with gzip.open(path, "wt", newline="") as handle:
        handle.write("1,3\r\n2,5\r\n3,7\r\n")
    run = cli("fit-linear", "--method", "gd", "--csv", path, "--epochs", 3000, "--lr", 0.05, "--json",
              "--no-tensorboard")
    assert run.summary["w"] == pytest.approx(2.0, abs=0.01) and run.summary["b"] == pytest.approx(1.0, abs=0.02)


def test_same_seed_same_numbers(cli):
    first = cli("fit-linear", "--epochs", 50, "--seed", 7, "--json", "--no-tensorboard").summary
    second = cli("fit-linear", "--epochs", 50, "--seed", 7, "--json", "--no-tensorboard").summary
    third = cli("fit-linear", "--epochs", 50, "--seed", 8, "--json", "--no-tensorboard").summary
    assert (first["w"], first["b"]) == (second["w"], second["b"])
    assert (first["w"], first["b"]) != (third["w"], third["b"])


def test_save_then_checkpoint_predicts_without_training(cli, tmp_path):
    checkpoint = tmp_path / "linear.pt"
    trained = cli("fit-linear", "--save", checkpoint, "--json", "--no-tensorboard").summary
    assert trained["checkpoint"] == str(checkpoint) and checkpoint.exists()
    loaded = cli("fit-linear", "--checkpoint", checkpoint, "--predict", "10", "--json").summary
    assert loaded["epochs"] == 0 and loaded["train_seconds"] == 0
    assert loaded["predictions"]["10.0"] == pytest.approx(trained["w"] * 10 + trained["b"], rel=1e-5)


def test_tensorboard_run_is_written_under_runs(cli, tmp_path):
    assert cli("fit-linear", "--epochs", 5, "--runs-dir", tmp_path / "tb").exit_code == 0
    event_files = list((tmp_path / "tb" / "fit-linear").glob("*/events.out.tfevents.*"))
    assert len(event_files) == 1


def test_loss_plot_is_a_png(cli, tmp_path):
    assert cli("fit-linear", "--method", "sgd", "--plot", tmp_path / "loss.png", "--no-tensorboard").exit_code == 0
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_divergence_stops_with_a_clear_message(cli):
    assert_user_error(cli("fit-linear", "--method", "gd", "--lr", 10, "--no-tensorboard"), "loss became", "--lr")


def test_nn_divergence_keeps_the_last_good_checkpoint(cli, tmp_path):
    checkpoint = tmp_path / "diverged.pt"
    run = cli("fit-linear", "--lr", 1.5, "--epochs", 200, "--save", checkpoint, "--no-tensorboard")
    assert_user_error(run, "loss became", str(checkpoint))
    import torch

    state = torch.load(checkpoint, weights_only=True)
    assert torch.isfinite(state["model"]["weight"]).all() and 0 < state["epoch"] < 200


def test_malformed_csv_names_the_line(cli, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("x,y\n1,2\n2,oops\n")
    assert_user_error(cli("fit-linear", "--csv", path), "line 3")


def test_missing_csv(cli, tmp_path):
    assert_user_error(cli("fit-linear", "--csv", tmp_path / "nope.csv"), "not found", "nope.csv")


def test_predict_with_wrong_feature_count(cli):
    assert_user_error(cli("fit-linear", "--predict", "1,2", "--no-tensorboard"), "1 feature")


def test_minibatches_adam_and_resume_for_nn(cli, tmp_path):
    checkpoint = tmp_path / "linear.pt"
    first = cli("fit-linear", "--data", tmp_path / "missing.csv")  # --data is an alias of --csv
    assert_user_error(first, "not found")
    run = cli("fit-linear", "--optimizer", "adam", "--lr", "0.1", "--batch-size", 2, "--epochs", 100,
              "--save", checkpoint, "--no-tensorboard", "--json")
    assert run.exit_code == 0, run.stderr
    resumed = cli("fit-linear", "--optimizer", "adam", "--lr", "0.1", "--batch-size", 2, "--epochs", 300,
                  "--resume", checkpoint, "--no-tensorboard", "--json")
    assert "resumed from" in resumed.stderr and "epoch 101/300" in resumed.stderr
    assert resumed.summary["w"] == pytest.approx(2.0, abs=0.05)


def test_nn_only_options_are_refused_for_the_lesson_loops(cli):
    assert_user_error(cli("fit-linear", "--method", "gd", "--batch-size", 2), "--method nn")


def test_save_onto_a_folder_is_refused_before_training(cli, tmp_path):
    (tmp_path / "models").mkdir()
    assert_refused_before_training(cli("fit-linear", "--save", tmp_path / "models"), tmp_path, "--save",
                                   "is a folder")


@pytest.mark.parametrize("place", ["/proc/torchtools-test/x.pt", "file/x.pt"])
def test_save_where_nothing_can_be_written_is_refused_before_training(cli, tmp_path, place):
    (tmp_path / "file").write_text("a regular file, not a folder")
    folder = place.rsplit("/", 1)[0]
    assert_refused_before_training(cli("fit-linear", "--save", place), tmp_path, f"--save {folder}",
                                   created=(tmp_path / "file" / "x.pt",))


def test_plot_must_be_a_png_in_a_writable_place(cli, tmp_path):
    assert_refused_before_training(cli("fit-linear", "--plot", "out.txt"), tmp_path, "--plot out.txt", ".png",
                                   created=(tmp_path / "out.txt",))
    assert_refused_before_training(cli("fit-linear", "--plot", "/proc/torchtools-test/out.png"), tmp_path,
                                   "--plot", "cannot write")


def test_runs_dir_that_is_a_file_is_refused_before_training(cli, tmp_path):
    (tmp_path / "tb").write_text("not a folder")
    run = cli("fit-linear", "--runs-dir", tmp_path / "tb", "--save", tmp_path / "x.pt")
    assert_refused_before_training(run, tmp_path, "--runs-dir", "is a file", created=(tmp_path / "x.pt",))


def test_checkpoint_and_resume_together_are_refused(cli, tmp_path):
    checkpoint = tmp_path / "linear.pt"
    assert cli("fit-linear", "--epochs", 5, "--save", checkpoint, "--no-tensorboard").exit_code == 0
    run = cli("fit-linear", "--checkpoint", checkpoint, "--resume", checkpoint, "--epochs", 10)
    assert_refused_before_training(run, tmp_path, "--checkpoint", "--resume")


def test_resume_refuses_a_changed_lr_or_optimizer_naming_both_values(cli, tmp_path):
    checkpoint = tmp_path / "linear.pt"
    assert cli("fit-linear", "--epochs", 5, "--save", checkpoint, "--no-tensorboard").exit_code == 0
    run = cli("fit-linear", "--resume", checkpoint, "--epochs", 10, "--lr", "1e6")
    assert_refused_before_training(run, tmp_path, "--lr 1000000.0", "--lr 0.05")
    run = cli("fit-linear", "--resume", checkpoint, "--epochs", 10, "--optimizer", "adam")
    assert_refused_before_training(run, tmp_path, "--optimizer adam", "--optimizer sgd")


def test_resume_of_another_commands_checkpoint_is_refused(cli, tmp_path):
    checkpoint = tmp_path / "logistic.pt"
    assert cli("fit-logistic", "--epochs", 5, "--save", checkpoint, "--no-tensorboard").exit_code == 0
    run = cli("fit-linear", "--resume", checkpoint, "--epochs", 10)
    assert_refused_before_training(run, tmp_path, "torchtools fit-logistic", "not `torchtools fit-linear`")


def test_exhaustive_save_writes_the_found_w_for_checkpoint(cli, tmp_path):
    checkpoint = tmp_path / "grid.pt"
    found = cli("fit-linear", "--method", "exhaustive", "--save", checkpoint, "--json", "--no-tensorboard").summary
    assert found["checkpoint"] == str(checkpoint) and found["w"] == 2.0
    loaded = cli("fit-linear", "--checkpoint", checkpoint, "--predict", "5", "--json").summary
    assert loaded["w"] == 2.0 and loaded["predictions"]["5.0"] == pytest.approx(10.0)
    assert_user_error(cli("fit-linear", "--resume", checkpoint, "--epochs", 5), "no optimizer state")


def test_a_diverged_lesson_claims_no_checkpoint(cli, tmp_path):
    checkpoint = tmp_path / "diverged.pt"
    run = cli("fit-linear", "--method", "gd", "--lr", "1e6", "--save", checkpoint, "--no-tensorboard")
    assert_user_error(run, "loss became", "no checkpoint was written")
    assert str(checkpoint) not in run.stderr and not checkpoint.exists()


def test_target_accuracy_is_refused_for_a_regression(cli, tmp_path):
    run = cli("fit-linear", "--target-accuracy", "0.9", "--save", tmp_path / "x.pt")
    assert_refused_before_training(run, tmp_path, "--target-accuracy", "regression", created=(tmp_path / "x.pt",))


def test_patience_stops_nn_once_the_loss_stops_falling(cli):
    summary = cli("fit-linear", "--epochs", 5000, "--lr", "0.1", "--patience", 3, "--json", "--no-tensorboard").summary
    assert summary["stopped_early"] == "patience" and summary["epochs"] < 5000
