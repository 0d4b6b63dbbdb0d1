"""The one stop path (core/stopping.py): SIGINT, SIGTERM and a closed pipe, each landing at an exact point of a
real run (tests/pausing.py), leave a truthful checkpoint, one line, the signal's exit code and no process."""

import os
import signal
import subprocess
import sys

import pytest

from conftest import assert_no_process_left, assert_truthful, run_torchtools, session_processes
from datafiles import write_image_folders, write_table
from pausing import Paused

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
CAUSE = {signal.SIGINT: "stopped by Ctrl-C (SIGINT): ", signal.SIGTERM: "stopped by SIGTERM: "}


@pytest.fixture
def table(tmp_path):
    return write_table(tmp_path / "table.csv")  # 192 training rows: 6 batches of 32 an epoch


def diabetes(table):
    return ("diabetes", "--data", table)


def stopped(paused: Paused, point: str, signum: int) -> str:
    """Send `signum` once the run is at `point`; the run's stderr, after checking it ended as a stop does:
    its exit code, one line saying what was saved (last, even under --quiet), no traceback, no --json summary,
    no process left."""
    paused.reached(point)
    paused.signal(signum)
    stdout, stderr = paused.communicate()
    assert paused.process.returncode == EXIT[signum], stderr
    assert stdout == "", stdout
    assert "Traceback" not in stderr and stderr.count("stopped by") == 1, stderr
    assert stderr.strip().splitlines()[-1].startswith(CAUSE[signum]), stderr
    assert_no_process_left(paused.pid)
    return stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_mid_epoch_saves_it_as_partial(tmp_path, table, signum):
    save = tmp_path / "model.pt"
    paused = Paused(tmp_path / "points", ["step:2:3"], *diabetes(table), "--epochs", "3", "--save", save,
                    "--no-tensorboard", "--quiet", cwd=tmp_path)
    stderr = stopped(paused, "step:2:3", signum)
    assert f"saved {save} with epoch 1 complete and epoch 2 partial; --resume {save} redoes epoch 2" in stderr
    assert_truthful(save, diabetes(table), cwd=tmp_path, complete=1, partial=True)


def test_a_stop_between_epochs_keeps_the_complete_checkpoint_and_its_best_file(tmp_path, table):
    save = tmp_path / "model.pt"
    paused = Paused(tmp_path / "points", ["step:2:1"], *diabetes(table), "--epochs", "3", "--save", save,
                    "--no-tensorboard", cwd=tmp_path)
    paused.reached("step:2:1")
    saved = save.read_bytes(), save.with_name("model.best.pt").read_bytes()
    stderr = stopped(paused, "step:2:1", signal.SIGINT)
    assert f"{save} holds epoch 1 complete, as saved (no step of epoch 2 ran)" in stderr
    assert (save.read_bytes(), save.with_name("model.best.pt").read_bytes()) == saved
    assert_truthful(save, diabetes(table), cwd=tmp_path, complete=1, partial=False)


def test_a_stop_during_evaluation_saves_the_trained_epoch_as_partial(tmp_path, table):
    save = tmp_path / "model.pt"
    paused = Paused(tmp_path / "points", ["evaluate:2"], *diabetes(table), "--epochs", "3", "--save", save,
                    "--no-tensorboard", cwd=tmp_path)
    stderr = stopped(paused, "evaluate:2", signal.SIGTERM)
    assert "epoch 1 complete and epoch 2 partial" in stderr  # its steps are in the weights, its metrics unknown
    assert_truthful(save, diabetes(table), cwd=tmp_path, complete=1, partial=True)


def test_a_stop_after_training_says_the_last_epoch_is_kept(tmp_path, table):
    save = tmp_path / "model.pt"
    paused = Paused(tmp_path / "points", ["finish"], *diabetes(table), "--epochs", "2", "--save", save,
                    "--no-tensorboard", "--json", cwd=tmp_path)
    stderr = stopped(paused, "finish", signal.SIGINT)
    assert f"stopped by Ctrl-C (SIGINT): {save} holds epoch 2 complete" in stderr
    assert_truthful(save, diabetes(table), cwd=tmp_path, complete=2, partial=False)


def test_a_stop_during_a_save_waits_for_it_and_the_resumed_run_counts_right(tmp_path, table):
    save = tmp_path / "model.pt"
    paused = Paused(tmp_path / "points", ["save:1"], *diabetes(table), "--epochs", "3", "--save", save,
                    "--no-tensorboard", cwd=tmp_path)
    stderr = stopped(paused, "save:1", signal.SIGTERM)
    # Epoch 1 finished: it is saved whole, with its metrics and best file, never marked partial.
    assert f"{save} holds epoch 1 complete" in stderr and "partial" not in stderr
    assert_truthful(save, diabetes(table), cwd=tmp_path, complete=1, partial=False)
    resumed = run_torchtools(*diabetes(table), "--resume", save, "--epochs", "3", "--no-tensorboard", "--json",
                             cwd=tmp_path)
    assert resumed.exit_code == 0 and resumed.summary["epochs"] == 3, resumed.stderr


def test_a_second_signal_during_the_stops_own_save_is_ignored(tmp_path, table):
    save = tmp_path / "model.pt"
    paused = Paused(tmp_path / "points", ["step:2:3", "stop-save"], *diabetes(table), "--epochs", "3", "--save",
                    save, "--no-tensorboard", cwd=tmp_path)
    paused.reached("step:2:3")
    paused.signal(signal.SIGINT)
    paused.reached("stop-save")
    paused.signal(signal.SIGTERM)
    _, stderr = paused.communicate()
    assert paused.process.returncode == 130, stderr  # the first signal's
    assert "Traceback" not in stderr and "(SIGTERM while stopping: ignored)" in stderr, stderr
    assert_no_process_left(paused.pid)
    assert_truthful(save, diabetes(table), cwd=tmp_path, complete=1, partial=True)


def test_a_stop_before_training_saves_nothing(tmp_path, table):
    save = tmp_path / "model.pt"
    paused = Paused(tmp_path / "points", ["fit"], *diabetes(table), "--save", save, "--no-tensorboard",
                    cwd=tmp_path)
    stderr = stopped(paused, "fit", signal.SIGTERM)
    assert "stopped by SIGTERM: nothing saved (stopped before training)" in stderr
    assert list(tmp_path.glob("model*")) == []


@pytest.mark.parametrize("steps", [0, 2])
def test_a_stop_right_after_resume(cli, tmp_path, table, steps):
    save = tmp_path / "model.pt"
    assert cli(*diabetes(table), "--epochs", "2", "--save", save, "--no-tensorboard", "-q").exit_code == 0
    before = save.read_bytes()
    point = f"step:3:{steps + 1}"
    paused = Paused(tmp_path / "points", [point], *diabetes(table), "--resume", save, "--epochs", "4", "--save",
                    save, "--no-tensorboard", cwd=tmp_path)
    stderr = stopped(paused, point, signal.SIGINT)
    if steps:
        assert "epoch 2 complete and epoch 3 partial" in stderr
    else:
        assert f"nothing saved; --resume {save} holds epoch 2 (no step of epoch 3 ran)" in stderr
        assert save.read_bytes() == before
    assert_truthful(save, diabetes(table), cwd=tmp_path, complete=2, partial=bool(steps))


def test_without_save_the_line_says_nothing_was_saved(tmp_path, table):
    paused = Paused(tmp_path / "points", ["step:2:3"], *diabetes(table), "--epochs", "3", "--no-tensorboard",
                    cwd=tmp_path)
    assert "stopped by SIGTERM: nothing saved (no --save)" in stopped(paused, "step:2:3", signal.SIGTERM)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_of_a_streamed_image_run_ends_every_worker_and_the_fork_server(tmp_path, signum):
    data = write_image_folders(tmp_path / "images", train=24, test=6)
    save = tmp_path / "model.pt"
    command = ("cifar", "--data", data, "--model", "quick", "--batch-size", "4")
    paused = Paused(tmp_path / "points", ["step:1:3"], *command, "--loader", "stream", "--save",
                    save, "--epochs", "2", "--no-tensorboard", cwd=tmp_path)
    paused.reached("step:1:3")
    assert len(session_processes(paused.pid)) >= 3, "the run, its fork server and workers"
    paused.signal(signum)
    _, stderr = paused.communicate()
    assert paused.process.returncode == EXIT[signum], stderr
    assert "Traceback" not in stderr and "epoch 0 complete and epoch 1 partial" in stderr, stderr
    assert_no_process_left(paused.pid)
    assert_truthful(save, command, cwd=tmp_path, complete=0, partial=True)


def test_stderr_closed_from_the_start_stops_once_the_first_epoch_is_saved(tmp_path, table):
    read, write = os.pipe()
    os.close(read)  # every write to stderr fails: a reader gone before the run printed anything
    save = tmp_path / "model.pt"
    paused = Paused(tmp_path / "points", [], *diabetes(table), "--save", save, "--no-tensorboard", cwd=tmp_path,
                    stderr=write)
    os.close(write)
    stdout, _ = paused.communicate()
    assert paused.process.returncode == 141 and stdout == ""
    assert_no_process_left(paused.pid)
    assert_truthful(save, diabetes(table), cwd=tmp_path, complete=1, partial=False)


def test_stderr_piped_into_head_still_leaves_a_checkpoint(tmp_path, table):
    save = tmp_path / "model.pt"
    script = (f'"{sys.executable}" -m torchtools diabetes --data "{table}" --epochs 1000 --save "{save}" '
              '--no-tensorboard 2>&1 | head -1; exit "${PIPESTATUS[0]}"')
    completed = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 141, completed.stdout
    assert completed.stdout.startswith("data: ") and len(completed.stdout.splitlines()) == 1
    assert_truthful(save, diabetes(table), cwd=tmp_path, partial=False)


def test_a_signal_after_a_closed_pipe_still_stops_at_once(tmp_path, table):
    read, write = os.pipe()
    os.close(read)
    save = tmp_path / "model.pt"
    paused = Paused(tmp_path / "points", ["step:1:3"], *diabetes(table), "--epochs", "3", "--save", save,
                    "--no-tensorboard", cwd=tmp_path, stderr=write)
    os.close(write)
    paused.reached("step:1:3")  # the closed pipe waits for epoch 1's end; SIGTERM does not
    paused.signal(signal.SIGTERM)
    paused.communicate()
    assert paused.process.returncode == 143
    assert_no_process_left(paused.pid)
    assert_truthful(save, diabetes(table), cwd=tmp_path, complete=0, partial=True)
