"""The one output writer and its checks before work (core/files.py, core/paths.py): every file a run writes is
checked in Run.start (not a special file, not an input, a name that fits, one name per file, one run per
--save), written atomically with the umask's mode, and a failed write is one error line with the earlier
file intact."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import time

import pytest
import torch

from conftest import assert_refused_before_training, assert_user_error, run_torchtools
from datafiles import write_table
from torchtools.core import files
from torchtools.core.files import TEMP_EXTRA

FAST = ("--epochs", "1", "--device", "cpu", "--no-tensorboard")
NAME_MAX = os.pathconf("/tmp", "PC_NAME_MAX")


@pytest.fixture
def table(tmp_path):
    return write_table(tmp_path / "table.csv", rows=80)


def diabetes(cli, table, *args):
    return cli("diabetes", "--data", table, *FAST, *args)


def temp_files(folder) -> list[str]:
    return [name for name in os.listdir(folder) if name.endswith((".tmp", ".lock"))]


# --- special files, inputs, two names of one file ---------------------------------------------------------------

def test_save_onto_dev_null_is_refused_and_dev_null_stays_a_device(cli, tmp_path, table):
    run = diabetes(cli, table, "--save", "/dev/null")
    assert_refused_before_training(run, tmp_path, "--save /dev/null", "a device", "regular file")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("kind", ["link to /dev/null", "fifo", "socket"])
def test_special_files_are_refused_also_through_a_link(cli, tmp_path, table, kind):
    target = tmp_path / "target"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "socket":
        import socket

        server = socket.socket(socket.AF_UNIX)
        server.bind(str(target))
    else:
        target = "/dev/null"
    link = tmp_path / "model.pt"
    link.symlink_to(target)
    run = diabetes(cli, table, "--save", link)
    assert_refused_before_training(run, tmp_path, "--save", "regular file")
    assert link.is_symlink()
    if kind == "link to /dev/null":
        assert "through the link to /dev/null" in run.stderr


def test_save_onto_the_data_is_refused_and_the_data_kept(cli, tmp_path, table):
    before = table.read_bytes()
    run = diabetes(cli, table, "--save", table)
    assert_refused_before_training(run, tmp_path, "--save", "would overwrite the --data")
    assert table.read_bytes() == before


def test_a_link_to_the_data_is_the_data(cli, tmp_path, table):
    link = tmp_path / "model.pt"
    link.symlink_to(table)
    assert_user_error(diabetes(cli, table, "--save", link), "would overwrite the --data")


def test_resume_onto_its_own_file_is_the_usual_resume(cli, tmp_path, table):
    model = tmp_path / "model.pt"
    assert diabetes(cli, table, "--save", model).exit_code == 0
    run = cli("diabetes", "--data", table, "--epochs", "2", "--device", "cpu", "--no-tensorboard", "--resume", model,
              "--save", model, "--json")
    assert run.exit_code == 0, run.stderr
    assert run.summary["epochs"] == 2
    assert temp_files(tmp_path) == []  # no temp file, and the lock is gone with the run


def test_a_plot_onto_the_resumed_checkpoint_is_refused(cli, tmp_path):
    model = tmp_path / "model.png"  # a checkpoint may be named anything; a plot must end in .png
    assert cli("fit-logistic", "--save", model, "--epochs", "5", "--no-tensorboard").exit_code == 0
    before = model.read_bytes()
    run = cli("fit-logistic", "--resume", model, "--plot", model, "--epochs", "10", "--no-tensorboard")
    assert_user_error(run, "--plot", "would overwrite the --resume")
    assert model.read_bytes() == before


def test_two_options_naming_one_file_are_refused_before_work(cli, tmp_path):
    alias = tmp_path / "alias"
    alias.symlink_to(tmp_path)  # one folder by two names
    plot = tmp_path / "fit.png"
    run = cli("fit-logistic", "--plot", plot, "--save", alias / "fit.png", "--no-tensorboard")
    assert_refused_before_training(run, tmp_path, "--plot", "--save", "name the same file", created=(plot,))


def test_the_best_file_derived_from_save_counts_too(cli, tmp_path):
    run = cli("fit-logistic", "--plot", tmp_path / "m.best.png", "--save", tmp_path / "m.png", "--no-tensorboard")
    assert_user_error(run, "--save's best file", "name the same file")


def test_output_onto_a_predict_file_is_refused(cli, tmp_path):
    predicted = tmp_path / "pictures.csv"
    predicted.write_text("not a picture\n")
    run = cli("mnist", "--data", tmp_path, "--predict", predicted, "--output", predicted, *FAST)
    assert_refused_before_training(run, tmp_path, "--output", "would overwrite the --predict")
    assert predicted.read_text() == "not a picture\n"


def test_a_report_folder_that_is_the_data_folder_is_refused(cli, tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    run = cli("transfer", "--data", data, "--weights", "none", "--report", data, *FAST)
    assert_refused_before_training(run, tmp_path, "--report", "would overwrite the --data")


def test_an_output_that_is_a_report_file_is_refused(cli, tmp_path):
    run = cli("mnist", "--data", tmp_path, "--predict", tmp_path, "--report", tmp_path / "r", "--output",
              tmp_path / "r" / "history.csv", *FAST)
    assert_user_error(run, "--report's history.csv", "--output", "name the same file")


def test_save_onto_the_labels_csv_is_refused(cli, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("image,label\n")
    run = cli("transfer", "--labels", labels, "--weights", "none", "--save", labels, *FAST)
    assert_refused_before_training(run, tmp_path, "--save", "would overwrite the --labels")


# --- names that fit ----------------------------------------------------------------------------------------------

def test_a_name_too_long_for_its_temporary_name_is_refused_before_work(cli, tmp_path, table):
    name = "m" * (NAME_MAX - 10) + ".pt"  # fits alone, not with the temporary name's .NAME.XXXXXXXX.tmp
    run = diabetes(cli, table, "--save", tmp_path / name)
    assert_refused_before_training(run, tmp_path, "--save", f"limit of {NAME_MAX} bytes", "shorter name")


def test_non_ascii_names_count_bytes(cli, tmp_path, table):
    run = diabetes(cli, table, "--save", tmp_path / ("é" * 120 + ".pt"))  # 120 characters, 243 bytes
    assert_refused_before_training(run, tmp_path, "--save", "243 bytes")


def test_a_name_exactly_at_the_limit_works(cli, tmp_path):
    plot = tmp_path / ("p" * (NAME_MAX - TEMP_EXTRA - len(".png")) + ".png")
    run = cli("fit-logistic", "--plot", plot, "--epochs", "5", "--no-tensorboard")
    assert run.exit_code == 0, run.stderr
    assert plot.is_file() and temp_files(tmp_path) == []
    longer = tmp_path / ("p" + plot.name)
    assert_user_error(cli("fit-logistic", "--plot", longer, "--epochs", "5", "--no-tensorboard"), "shorter name")


def test_a_folder_name_too_long_is_refused(cli, tmp_path, table):
    run = diabetes(cli, table, "--report", tmp_path / ("r" * (NAME_MAX + 1)))
    assert_refused_before_training(run, tmp_path, "--report", "shorter name")


# --- one run per --save ------------------------------------------------------------------------------------------

def test_a_second_run_with_the_same_save_fails_at_once(tmp_path, table):
    model = tmp_path / "model.pt"
    first = subprocess.Popen([sys.executable, "-m", "torchtools", "diabetes", "--data", str(table), "--epochs",
                              "100000", "--save", str(model), "--device", "cpu", "--no-tensorboard", "--quiet"],
                             cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not model.exists() and time.time() < deadline:
            time.sleep(0.2)
        second = run_torchtools("diabetes", "--data", table, *FAST, "--save", model, cwd=tmp_path)
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.communicate()
    assert_user_error(second, "--save", "another torchtools run", "wait for it")
    assert "epoch 1" not in second.stderr


# --- writing: mode, atomic plots, failed writes ------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_checkpoints_get_the_umasks_mode(cli, tmp_path, table, umask):
    old = os.umask(umask)
    try:
        assert diabetes(cli, table, "--save", tmp_path / "m.pt").exit_code == 0
    finally:
        os.umask(old)
    for name in ("m.pt", "m.best.pt"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~umask, name


def failing_writes(monkeypatch, code=errno.ENOSPC):
    """Every write into a file the writer opens fails as a full disk would."""
    def write(self, data):
        self.error = OSError(code, os.strerror(code))
        raise self.error

    monkeypatch.setattr(files._Recording, "write", write)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_a_failed_checkpoint_write_is_one_line_and_the_earlier_file_is_intact(cli, tmp_path, table, monkeypatch,
                                                                              code):
    model = tmp_path / "m.pt"
    model.write_bytes(b"yesterday's checkpoint")
    failing_writes(monkeypatch, code)
    run = diabetes(cli, table, "--save", model)
    assert_user_error(run, f"cannot write {model}", os.strerror(code), f"the earlier {model} is intact")
    assert model.read_bytes() == b"yesterday's checkpoint"
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("option, name", [("--plot", "fit.png"), ("--report", "report")])
def test_failed_plots_and_reports_are_one_line(cli, tmp_path, monkeypatch, option, name):
    failing_writes(monkeypatch)
    run = cli("fit-logistic", option, tmp_path / name, "--epochs", "5", "--no-tensorboard")
    assert_user_error(run, "cannot write", "no space left on device", "free some space")


def test_a_failed_predictions_file_is_one_line(tmp_path, monkeypatch):
    from torchtools.core.errors import UserError
    from torchtools.core.prediction_output import PredictionWriter

    output = tmp_path / "p.jsonl"
    output.write_text("yesterday\n")
    failing_writes(monkeypatch)
    with pytest.raises(UserError, match="the earlier .* is intact"):
        with PredictionWriter(output, 3, classes=2) as writer:
            writer.add("a.png", ["x", "y"], [0.4, 0.6])
    assert output.read_text() == "yesterday\n" and temp_files(tmp_path) == []


def test_a_failed_write_is_still_an_oserror_for_the_decode_cache(tmp_path, monkeypatch):
    failing_writes(monkeypatch)
    with pytest.raises(OSError):
        files.write_bytes(tmp_path / "cache.pt", b"x")


def test_a_plot_over_an_existing_file_is_replaced_whole(cli, tmp_path):
    plot = tmp_path / "fit.png"
    plot.write_bytes(b"old")
    inode = plot.stat().st_ino
    assert cli("fit-logistic", "--plot", plot, "--epochs", "5", "--no-tensorboard").exit_code == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_ino != inode  # renamed in, not rewritten


@pytest.mark.parametrize("stdout", ["full", "closed"])
def test_a_json_summary_that_cannot_be_written_is_one_line(tmp_path, table, stdout):
    command = [sys.executable, "-m", "torchtools", "diabetes", "--data", str(table), *FAST, "--json"]
    if stdout == "full":
        with open("/dev/full", "w") as full:
            completed = subprocess.run(command, cwd=tmp_path, stdout=full, stderr=subprocess.PIPE, text=True)
    else:
        completed = subprocess.run(["bash", "-c", '"$@" >&-', "-", *command], cwd=tmp_path, stderr=subprocess.PIPE,
                                   text=True)
    lines = completed.stderr.strip().splitlines()
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr and "Exception ignored" not in completed.stderr
    assert lines[-1].startswith("error: cannot write the --json summary"), completed.stderr


def test_a_json_reader_that_went_away_is_a_stop_and_the_checkpoint_stays(tmp_path, table):
    """`torchtools ... --json | head -0`: as SIGPIPE would end it (141), through the stop path, after the save."""
    command = [sys.executable, "-m", "torchtools", "diabetes", "--data", str(table), *FAST, "--json",
               "--save", str(tmp_path / "m.pt")]
    completed = subprocess.run(["bash", "-c", '"$@" | true; exit ${PIPESTATUS[0]}', "-", *command], cwd=tmp_path,
                               stderr=subprocess.PIPE, text=True)
    assert completed.returncode == 141, completed.stderr
    assert "Traceback" not in completed.stderr and "error:" not in completed.stderr
    assert "m.pt holds epoch" in completed.stderr.strip().splitlines()[-1]
    assert torch.load(tmp_path / "m.pt", weights_only=True)["metrics"]


def test_tensorboard_that_cannot_write_is_a_warning_and_the_run_goes_on(cli, tmp_path, table, monkeypatch):
    from torch.utils.tensorboard import SummaryWriter

    def broken(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(SummaryWriter, "add_scalar", broken)
    run = cli("diabetes", "--data", table, "--epochs", "2", "--device", "cpu", "--runs-dir", tmp_path / "runs",
              "--json")
    assert run.exit_code == 0, run.stderr
    assert run.stderr.count("TensorBoard logs stopped") == 1 and "No space left on device" in run.stderr
    assert "wrote TensorBoard run" not in run.stderr and run.summary["epochs"] == 2


# --- a real full disk --------------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs, filled but for a few bytes (root can mount one; elsewhere the test says why it skips)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or 'mount failed'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder) -> None:
    with open(folder / "filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError:
            pass


@pytest.mark.parametrize("option, name", [("--save", "m.pt"), ("--plot", "fit.png"), ("--report", "report")])
def test_a_full_disk_is_one_line_with_the_earlier_file_intact(tmp_path, small_disk, option, name):
    target = small_disk / name
    if option != "--report":
        target.write_bytes(b"earlier")
    fill(small_disk)
    run = run_torchtools("fit-logistic", option, target, "--epochs", "5", "--no-tensorboard", cwd=tmp_path)
    assert_user_error(run, "cannot write", "no space left on device")
    if option != "--report":
        assert target.read_bytes() == b"earlier"
    assert temp_files(small_disk) == []


def test_a_full_disk_under_tensorboard_is_a_warning(tmp_path, small_disk, table):
    fill(small_disk)
    run = run_torchtools("diabetes", "--data", table, "--epochs", "2", "--device", "cpu", "--runs-dir",
                         small_disk / "runs", "--json", cwd=tmp_path)
    assert run.exit_code == 0, run.stderr
    assert "Traceback" not in run.stderr and "TensorBoard logs stopped" in run.stderr
    assert run.summary["epochs"] == 2


# --- cells and values --------------------------------------------------------------------------------------------

def test_csv_cells_a_spreadsheet_would_run_are_made_text(tmp_path):
    import csv

    from torchtools.core.prediction_output import PredictionWriter

    output = tmp_path / "p.csv"
    labels = ["=HYPERLINK(1)", "+1", "@SUM(A1)"]
    with PredictionWriter(output, 3, classes=3) as writer:
        writer.add("-rm.png", labels, [0.5, 0.3, 0.2])
        writer.add("\tx.png", labels, [0.5, 0.3, 0.2])
    with output.open(newline="") as file:
        rows = list(csv.reader(file))
    assert rows[1] == ["'-rm.png", "'=HYPERLINK(1)", "0.500000", "'+1", "0.300000", "'@SUM(A1)", "0.200000"]
    assert rows[2][0] == "'\tx.png"


def test_jsonl_rows_are_strict_json(tmp_path):
    from torchtools.core.prediction_output import PredictionWriter

    output = tmp_path / "p.jsonl"
    with PredictionWriter(output, 2, classes=2) as writer:
        writer.add("a.png", ["x", "y"], [float("nan"), 0.5])
    (row,) = [json.loads(line, parse_constant=pytest.fail) for line in output.read_text().splitlines()]
    assert row["top"] == [["y", 0.5], ["x", None]]


def test_top_k_above_the_class_count_is_capped(tmp_path):
    from torchtools.core.prediction_output import PredictionWriter

    output = tmp_path / "p.csv"
    with PredictionWriter(output, 100_000, classes=2) as writer:
        writer.add("a.png", ["x", "y"], [0.25, 0.75])
    assert output.read_text().splitlines()[0] == "path,label,probability,label_2,probability_2"


# --- neighbours found by the adversarial pass --------------------------------------------------------------------

def neighbour(tmp_path, case: str) -> tuple[tuple, tuple]:
    """(the command's arguments, the fragments its one error line must hold) for each case."""
    table = write_table(tmp_path / "t.csv", rows=40)
    if case == "empty save name":  # "" is no path, not the current folder
        return ("diabetes", "--data", table, "--save", ""), ("--save ''", "expected a path")
    if case == "save onto the runs dir":
        return ("diabetes", "--data", table, "--save", "runs"), ("--save runs", "--runs-dir runs", "same file")
    if case == "best file is a folder":
        (tmp_path / "m.best.pt").mkdir()
        return ("diabetes", "--data", table, "--save", tmp_path / "m.pt"), ("--save's best file", "is a folder")
    if case == "hard link of the data":
        os.link(table, tmp_path / "hard.pt")
        return ("diabetes", "--data", table, "--save", tmp_path / "hard.pt"), ("would overwrite the --data",)
    if case == "epoch file links to /dev/null":
        (tmp_path / "m.epoch2.pt").symlink_to("/dev/null")
        return (("mnist", "--data", tmp_path, "--epochs", "3", "--save", tmp_path / "m.pt", "--save-every", "2"),
                ("--save-every's file", "a device"))
    if case == "report file links to /dev/null":
        (tmp_path / "r").mkdir()
        (tmp_path / "r" / "curves.png").symlink_to("/dev/null")
        return ("diabetes", "--data", table, "--report", tmp_path / "r"), ("--report's curves.png", "a device")
    if case == "save onto the weights":
        return (("transfer", "--data", tmp_path, "--weights", table, "--save", table),
                ("would overwrite the --weights",))
    if case == "export json onto its inputs":
        (tmp_path / "m.json").write_text("{}")
        return (("export", table, "--output", tmp_path / "m.safetensors", "--inputs", tmp_path / "m.json"),
                ("--output's json file", "would overwrite the --inputs"))
    assert case == "export onto its checkpoint through a link"
    (tmp_path / "link.pt").symlink_to(table)
    return (("export", table, "--output", tmp_path / "link.pt", "--format", "torchscript"),
            ("would overwrite the checkpoint",))


@pytest.mark.parametrize("case", ["empty save name", "save onto the runs dir", "best file is a folder",
                                  "hard link of the data", "epoch file links to /dev/null",
                                  "report file links to /dev/null", "save onto the weights",
                                  "export json onto its inputs", "export onto its checkpoint through a link"])
def test_neighbours_are_refused_before_work(cli, tmp_path, case):
    args, fragments = neighbour(tmp_path, case)
    before = (tmp_path / "t.csv").read_bytes()
    assert_refused_before_training(cli(*args), tmp_path, *fragments)
    assert (tmp_path / "t.csv").read_bytes() == before


def test_report_and_runs_dir_may_share_a_folder(cli, tmp_path, table):
    run = cli("diabetes", "--data", table, "--epochs", "1", "--device", "cpu", "--report", "out", "--runs-dir", "out")
    assert run.exit_code == 0, run.stderr
    assert (tmp_path / "out" / "history.csv").is_file() and (tmp_path / "out" / "diabetes").is_dir()
