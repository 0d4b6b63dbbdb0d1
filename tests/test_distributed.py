"""torchrun: two CPU processes with gloo on loopback, launched as a user launches them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pytest
import torch

from conftest import Run, assert_no_process_left, assert_truthful, assert_user_error
from datafiles import (NAMES_SMALL, names_rows, pattern, write_cifar10_batches, write_image, write_mnist,
                       write_names_csv)
from pausing import Paused

# The course's cnn and SGD (lr 0.01, momentum 0.5): after two epochs about 0.9 test accuracy, not a sure 1.0.
# Every torchrun test states its device: on a GPU machine `auto` would take CUDA (and NCCL).
TRAIN = ("--model", "cnn", "--batch-size", "16", "--no-download", "--json", "--device", "cpu")
TIMEOUT = 60  # seconds a collective waits for a silent process (TORCHTOOLS_DIST_TIMEOUT)


def torchrun(*args, cwd, processes: int = 2) -> Run:
    """`torchrun --standalone --nproc-per-node N ARGS...`: standalone picks a free port on loopback."""
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
         *[str(arg) for arg in args]],
        cwd=cwd, env={**os.environ, "TORCHTOOLS_DIST_TIMEOUT": str(TIMEOUT)}, capture_output=True, text=True,
        timeout=300)
    return Run(completed.returncode, completed.stdout, completed.stderr)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_environment(rank: int, world_size: int, port: int, timeout: float) -> dict[str, str]:
    """The environment torchrun gives process `rank` of a job (as on one node of several)."""
    return {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "TORCHTOOLS_DIST_TIMEOUT": str(timeout)}


def start_process(rank: int, world_size: int, port: int, args, cwd, timeout: float) -> subprocess.Popen:
    """One process of a job, with the environment torchrun gives it."""
    return subprocess.Popen([sys.executable, "-m", "torchtools", *[str(arg) for arg in args]], cwd=cwd,
                            env=launch_environment(rank, world_size, port, timeout), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen) -> Run:
    stdout, stderr = process.communicate(timeout=300)
    return Run(process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch on two processes with --save, then --resume to two epochs, again on two processes."""
    folder = tmp_path_factory.mktemp("torchrun")
    data = write_mnist(folder / "data", train=400, test=101)  # 101: the test shares differ by one image
    first = torchrun("-m", "torchtools", "mnist", "--data", data, "--epochs", "1", "--save", folder / "one.pt",
                     "--runs-dir", folder / "runs", *TRAIN, cwd=folder)
    resumed = torchrun("-m", "torchtools", "mnist", "--data", data, "--epochs", "2", "--resume", folder / "one.pt",
                       "--save", folder / "two.pt", "--no-tensorboard", *TRAIN, cwd=folder)
    return folder, data, first, resumed


def test_sharded_batches_hold_every_sample_once_per_epoch():
    from torchtools.data.loaders import TensorBatches

    def share(rank, world, count=12, **kwargs):
        return TensorBatches(torch.zeros(count, 1), torch.arange(count), batch_size=5, shuffle=True, seed=3,
                             **kwargs).shard(rank, world)

    whole, shares = share(0, 1), [share(rank, 3) for rank in range(3)]
    for _ in range(2):  # two epochs
        order = torch.cat([targets for _, targets in whole])
        taken = [torch.cat([targets for _, targets in part]) for part in shares]
        assert [len(part) for part in shares] == [1, 1, 1] and all(len(t) == 4 for t in taken)
        for rank, targets in enumerate(taken):
            assert torch.equal(targets, order[rank::3])  # strided slices of the same shuffled order
        assert sorted(torch.cat(taken).tolist()) == list(range(12))
    assert not torch.equal(order, torch.cat([t for _, t in whole]))  # reshuffled for the next epoch

    # 13 samples: training shares stay equal (one sample sits the epoch out); evaluation keeps them all.
    uneven = [share(rank, 3, count=13) for rank in range(3)]
    assert [sum(len(t) for _, t in part) for part in uneven] == [4, 4, 4]
    complete = [part.shard(rank, 3, every_sample=True) for rank, part in enumerate(uneven)]
    held = torch.cat([torch.cat([t for _, t in part]) for part in complete])
    assert sorted(held.tolist()) == list(range(13))


def test_two_processes_train_with_one_summary_one_log_and_a_plain_checkpoint(trained):
    folder, _, first, _ = trained
    assert first.exit_code == 0, first.stderr
    assert len(first.stdout.strip().splitlines()) == 1  # only process 0 prints the JSON summary
    summary = first.summary
    assert summary["world_size"] == 2 and summary["epochs"] == 1
    assert sum(map(sum, summary["confusion_matrix"])) == 101  # the whole test set, gathered from both
    assert summary["metrics"]["test_accuracy"] > 0.3  # chance is 0.1
    assert first.stderr.count("epoch 1/1") == 1 and first.stderr.count("per-class accuracy") == 1
    assert len(list((folder / "runs" / "mnist").iterdir())) == 1  # one TensorBoard run, from process 0
    from torchtools.core.checkpoints import load_checkpoint

    state = load_checkpoint(folder / "one.pt", command="mnist")["model"]
    assert state and not any(key.startswith("module.") for key in state)


def test_the_checkpoint_reloads_in_one_process_and_predicts(trained, cli, tmp_path):
    folder, data, _, resumed = trained
    digit = tmp_path / "three.png"
    cv2.imwrite(str(digit), pattern(3, np.random.default_rng(7)))
    run = cli("mnist", "--checkpoint", folder / "two.pt", "--data", data, "--predict", digit, "--json")
    assert run.exit_code == 0, run.stderr
    assert run.summary["world_size"] == 1 and run.summary["predictions"][0]["label"] == "3"
    evaluated = cli("mnist", "--checkpoint", folder / "two.pt", "--data", data, "--json")
    assert evaluated.summary["metrics"]["test_accuracy"] == pytest.approx(resumed.summary["metrics"]["test_accuracy"])


def test_resumed_two_process_run_matches_one_process_with_the_same_global_batch(trained, cli):
    _, data, _, resumed = trained
    assert resumed.exit_code == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and resumed.summary["epochs"] == 2
    single = cli("mnist", "--data", data, "--epochs", "2", *TRAIN, "--batch-size", "32", "--no-tensorboard")
    assert single.exit_code == 0, single.stderr
    # Each step averages the gradients of the same 32 samples either way (the two processes take
    # alternate samples of one shuffled order), and the resumed epoch reshuffles as an unbroken run
    # would: only rounding differs.
    two, one = resumed.summary["metrics"], single.summary["metrics"]
    assert two["test_accuracy"] == pytest.approx(one["test_accuracy"], abs=0.02)  # 0.0099 is one image
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-3)
    assert two["test_loss"] == pytest.approx(one["test_loss"], rel=1e-3)


CORE_SCRIPT = """
import sys
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torchtools.core import distributed
from torchtools.core.engine import Objective, fit
from torchtools.core.optim import make_optimizer
from torchtools.core.options import TrainingSettings
from torchtools.core.run import Run
from torchtools.data.loaders import TensorBatches


@dataclass(frozen=True, kw_only=True)
class CheckConfig(TrainingSettings):
    epochs: int = 3
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9


run = Run.start("check", CheckConfig, {"device": "cpu", "quiet": True, "no_tensorboard": True}, frozenset())
generator = torch.Generator().manual_seed(0)
inputs = torch.randn(201, 8, generator=generator)  # odd: one sample sits each epoch out
targets = (inputs[:, 0] + inputs[:, 1] > 0).long()
dataset = TensorDataset(inputs, targets)
sampler = distributed.train_sampler(dataset, seed=0)
ways = {  # in-memory batches, and a DataLoader over a Dataset
    "tensors": (TensorBatches(inputs, targets, batch_size=10, shuffle=True, seed=0),
                TensorBatches(inputs, targets, batch_size=64)),
    "loader": (DataLoader(dataset, batch_size=10, sampler=sampler), DataLoader(dataset, batch_size=64)),
}
for way, (train, held_out) in ways.items():
    torch.manual_seed(100 + distributed.rank())  # each process starts from other weights
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2))
    torch.save(model.state_dict(), f"{way}-start{distributed.rank()}.pt")
    fit(model, Objective.classification(), make_optimizer(run.config, model.parameters()), train, held_out, run)
    torch.save(model.state_dict(), f"{way}-end{distributed.rank()}.pt")
distributed.leave(0)  # a script's end, as the CLI's: without it 8 exits in 15 aborted under load
"""


def test_every_process_ends_with_the_same_weights_and_buffers(tmp_path):
    (tmp_path / "check.py").write_text(textwrap.dedent(CORE_SCRIPT))
    run = torchrun("check.py", cwd=tmp_path)
    assert run.exit_code == 0, run.stderr
    for way in ("tensors", "loader"):
        start = [torch.load(tmp_path / f"{way}-start{rank}.pt") for rank in range(2)]
        end = [torch.load(tmp_path / f"{way}-end{rank}.pt") for rank in range(2)]
        assert not torch.equal(start[0]["0.weight"], start[1]["0.weight"])
        for name, value in end[0].items():
            assert torch.equal(value, end[1][name]), (way, name)  # parameters and BatchNorm statistics alike
        assert not torch.equal(end[0]["0.weight"], start[0]["0.weight"])


DROPPED_SCRIPT = """
import json
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist

from torchtools.core import distributed
from torchtools.data.streaming import StreamedImages
from torchtools.data.transforms import centre_square

device = distributed.start(torch.device("cpu"))
rank = distributed.rank()
paths = sorted(Path("images").glob("*.png"))
streamed = StreamedImages(paths, list(range(len(paths))), partial(centre_square, size=8), grayscale=False,
                          batch_size=2, shuffle=True, seed=0, device=device, workers=0)
if rank == 1:  # every file of this process's first batch is unreadable here
    first = streamed._begin_epoch()[:2].tolist()
    streamed.set_epoch(0)
    streamed.files.paths = [Path("broken.png") if index in first else path for index, path in enumerate(paths)]
steps = 0
for images, labels in streamed:
    dist.all_reduce(torch.ones(1))  # as DDP's gradient all-reduce: a process taking a step the others skip hangs
    steps += 1
Path(f"steps{rank}.json").write_text(json.dumps({"steps": steps, "batches": len(streamed)}))
distributed.leave(0)
"""


def test_a_batch_of_unreadable_files_is_left_out_by_every_process(tmp_path):
    from image_files import labelled_folder

    labelled_folder(tmp_path / "images", 8)
    for path in sorted((tmp_path / "images").rglob("*.png")):
        path.rename(tmp_path / "images" / path.name)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a PNG after all")
    (tmp_path / "check.py").write_text(textwrap.dedent(DROPPED_SCRIPT))
    started = time.perf_counter()
    run = torchrun("check.py", cwd=tmp_path)
    assert run.exit_code == 0, run.stderr
    assert time.perf_counter() - started < TIMEOUT  # nobody waited for the collective timeout
    results = [json.loads((tmp_path / f"steps{rank}.json").read_text()) for rank in range(2)]
    assert results == [{"steps": 1, "batches": 2}] * 2  # both left the same step out


def test_a_failing_process_stops_the_others_with_a_clear_message(tmp_path):
    data = write_mnist(tmp_path / "data", train=40, test=10)
    port, started = free_port(), time.perf_counter()
    common = ("mnist", "--epochs", "1", "--no-tensorboard", "--no-download", "--device", "cpu")
    good = start_process(0, 2, port, [*common, "--data", data], tmp_path, timeout=TIMEOUT)
    bad = start_process(1, 2, port, [*common, "--data", tmp_path / "nowhere"], tmp_path, timeout=TIMEOUT)
    failed, stopped = finished(bad), finished(good)
    assert time.perf_counter() - started < TIMEOUT  # the peer noticed the failure, not the timeout
    assert_user_error(failed, "dataset files not found")
    assert_user_error(stopped, "process 0 of 2 stopped", "another process failed")


# --- a stop of one process: the job's stop (core/stopping.py, core/distributed.py) ----------------------------

STOPPED = ("mnist", "--model", "cnn", "--batch-size", "16", "--no-download", "--device", "cpu", "--no-tensorboard")


def stopped_job(stderr: str) -> None:
    """What a job one of whose processes was stopped shows: one stop line, no traceback of torchtools' (torchrun
    prints its own summary of the process that ended), no "another process failed"."""
    import torchtools

    assert stderr.count("stopped by") == 1, stderr
    assert os.path.dirname(torchtools.__file__) not in stderr and "another process failed" not in stderr, stderr


@pytest.mark.parametrize("point, left", [
    ("step:2:3", "saved {save} with epoch 1 complete and epoch 2 partial; --resume {save} redoes epoch 2"),
    ("step:2:1", "{save} holds epoch 1 complete, as saved (no step of epoch 2 ran)"),
    ("evaluate:2", "saved {save} with epoch 1 complete and epoch 2 partial"),
])
def test_a_stop_of_one_torchrun_process_is_the_jobs_stop(tmp_path, point, left):
    """Issue 25: process 1 of a torchrun job stopped by SIGTERM in epoch 2 left epoch 1 and dropped epoch 2's
    steps without a word. Every step of epoch 2 is in process 0's weights (DDP averaged each over both
    processes), so process 0 saves them as one process stopping would, and says so in the stop's one line."""
    data = write_mnist(tmp_path / "data", train=160, test=20)  # 5 steps an epoch in each process
    save = tmp_path / "model.pt"
    command = (*STOPPED, "--data", data)
    paused = Paused(tmp_path / "points", [f"1@{point}"], *command, "--epochs", "3", "--save", save, cwd=tmp_path,
                    processes=2, env={**os.environ, "TORCHTOOLS_DIST_TIMEOUT": str(TIMEOUT)})
    paused.reached(f"1@{point}")
    saved = save.read_bytes()
    paused.signal(signal.SIGTERM, rank=1)
    _, stderr = paused.communicate()
    stopped_job(stderr)
    assert left.format(save=save) in stderr, stderr
    assert_no_process_left(paused.pid)
    if point == "step:2:1":
        assert save.read_bytes() == saved
    assert_truthful(save, command, cwd=tmp_path, complete=1, partial=point != "step:2:1")


def _hand_launched_job_stopped(tmp_path, signum, *, rank: int):
    """A 2-process job of 3 epochs launched by hand (no torchrun agent: each exit code is the process's own),
    process `rank` sent `signum` at epoch 2's third step. Returns the stopped process's exit code and stderr,
    the other's result, the --save file and the command to check it with."""
    data = write_mnist(tmp_path / "data", train=160, test=20)
    save = tmp_path / "model.pt"
    args = (*STOPPED, "--data", data, "--epochs", "3", "--save", save)
    port = free_port()
    paused = Paused(tmp_path / "points", ["step:2:3"], *args, cwd=tmp_path,
                    env=launch_environment(rank, 2, port, TIMEOUT))
    other = start_process(1 - rank, 2, port, args, tmp_path, timeout=TIMEOUT)
    paused.reached("step:2:3")
    paused.signal(signum)
    _, stderr = paused.communicate()
    return paused.process.returncode, stderr, finished(other), save, (*STOPPED, "--data", data)


@pytest.mark.parametrize("signum, cause", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl-C (SIGINT)")])
def test_the_saving_process_names_the_process_that_was_stopped(tmp_path, signum, cause):
    """Launched without torchrun's agent (which would also signal process 0 once process 1 ends): each process's
    exit code is the stop's, and process 0's line says whose stop it was."""
    code, stopped_stderr, saved, save, command = _hand_launched_job_stopped(tmp_path, signum, rank=1)
    assert code == 128 + signum and "Traceback" not in stopped_stderr, stopped_stderr
    assert saved.exit_code == 128 + signum and "Traceback" not in saved.stderr, saved.stderr
    assert saved.stderr.strip().splitlines()[-1] == (
        f"stopped by {cause} in process 1 of 2: saved {save} with epoch 1 complete and epoch 2 partial; "
        f"--resume {save} redoes epoch 2")
    assert_truthful(save, command, cwd=tmp_path, complete=1, partial=True)


def test_a_process_killed_outright_leaves_the_epoch_under_way_saved_and_said(tmp_path):
    """A neighbour of the stop: process 1 killed (SIGKILL: no stop path, no word to the others). Process 0's error
    line said only that another process failed, and epoch 2's steps were dropped; it keeps them as a stop does
    and its one error line says what the checkpoint holds."""
    _, _, saved, save, command = _hand_launched_job_stopped(tmp_path, signal.SIGKILL, rank=1)
    assert_user_error(saved, "process 0 of 2 stopped: another process failed",
                      f"; saved {save} with epoch 1 complete and epoch 2 partial; --resume {save} redoes epoch 2")
    assert_truthful(save, command, cwd=tmp_path, complete=1, partial=True)


def test_process_0_stopped_without_torchruns_agent_leaves_the_others_one_line(tmp_path):
    """Launched by hand (or by a scheduler), process 0 hosts the job's store and takes it along when it stops:
    process 1, asking the store who stopped, got the store client's C++ warning with its 60-frame native stack on
    stderr before its own error line."""
    code, stderr, left, save, command = _hand_launched_job_stopped(tmp_path, signal.SIGTERM, rank=0)
    assert code == 143 and stderr.strip().splitlines()[-1] == (
        f"stopped by SIGTERM: saved {save} with epoch 1 complete and epoch 2 partial; --resume {save} redoes epoch 2")
    assert "frame #" not in left.stderr and "TCPStore" not in left.stderr, left.stderr
    assert_user_error(left, "process 1 of 2 stopped")
    assert_truthful(save, command, cwd=tmp_path, complete=1, partial=True)


@pytest.mark.slow
def test_a_process_that_never_joins_ends_the_job_after_the_timeout(tmp_path):
    started = time.perf_counter()
    alone = finished(start_process(0, 2, free_port(), ["mnist", "--data", tmp_path, "--device", "cpu"], tmp_path,
                                   timeout=3))
    assert_user_error(alone, "could not join the torchrun job of 2 processes within 3s")
    assert time.perf_counter() - started < 60


LAUNCH = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def test_the_timeout_must_be_seconds(cli, monkeypatch):
    for name, value in LAUNCH.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TORCHTOOLS_DIST_TIMEOUT", "soon")
    assert_user_error(cli("mnist", "--device", "cpu"), "TORCHTOOLS_DIST_TIMEOUT", "seconds")


@pytest.mark.parametrize("world_size", ["2", "abc"])
def test_a_stray_world_size_is_ignored_with_a_warning(cli, monkeypatch, world_size):
    for name in LAUNCH:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", world_size)
    run = cli("diabetes", "--epochs", "1", "--device", "cpu", "--json", "--no-tensorboard")
    assert run.exit_code == 0, run.stderr
    assert "Traceback" not in run.stderr and run.summary["world_size"] == 1
    assert f"ignoring WORLD_SIZE='{world_size}': RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set" in run.stderr


def test_a_broken_launch_is_one_error_line(cli, monkeypatch):
    for name, value in {**LAUNCH, "RANK": "first"}.items():
        monkeypatch.setenv(name, value)
    assert_user_error(cli("mnist", "--device", "cpu"), "RANK='first' is not a number", "torchrun")


@pytest.mark.slow
def test_names_rnn_cifar_and_transfer_under_torchrun(tmp_path):

    from torchtools.core.checkpoints import load_checkpoint

    names = write_names_csv(tmp_path / "names.csv", names_rows(0), gzipped=False)
    run = torchrun("-m", "torchtools", "names-rnn", "--device", "cpu", "--data", names, "--epochs", "3",
                   *NAMES_SMALL, "--save",
                   tmp_path / "names.pt", "--predict", "Ivanov", "--json", cwd=tmp_path)
    assert run.exit_code == 0, run.stderr
    assert run.summary["world_size"] == 2 and run.summary["metrics"]["val_accuracy"] > 0.9
    assert run.summary["predictions"][0]["top"][0][0] == "Russian"

    data = write_cifar10_batches(tmp_path / "cifar", train=100, test=41)
    run = torchrun("-m", "torchtools", "cifar", "--device", "cpu", "--data", data, "--model", "resnet",
                   "--epochs", "2",
                   "--batch-size", "16", "--no-tensorboard", "--no-download", "--save", tmp_path / "c.pt",
                   "--json", cwd=tmp_path)
    assert run.exit_code == 0, run.stderr
    assert sum(map(sum, run.summary["confusion_matrix"])) == 41
    assert not any(key.startswith("module.") for key in load_checkpoint(tmp_path / "c.pt")["model"])

    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 5)):
        for label, name in enumerate(("ants", "bees")):
            for index in range(count):
                write_image(tmp_path / "photos" / split / name / f"{index}.png", label, rng)
    run = torchrun("-m", "torchtools", "transfer", "--device", "cpu", "--weights", "none", "--arch", "resnet18",
                   "--data",
                   tmp_path / "photos", "--epochs", "2", "--image-size", "32", "--batch-size", "4",
                   "--no-tensorboard", "--save", tmp_path / "t.pt", "--json", cwd=tmp_path)
    assert run.exit_code == 0, run.stderr
    assert run.summary["world_size"] == 2 and sum(map(sum, run.summary["confusion_matrix"])) == 10
    assert not any(key.startswith("module.") for key in load_checkpoint(tmp_path / "t.pt")["model"])


LEAVE_SCRIPT = """
import atexit, sys
from torchtools.core import distributed

distributed._job = distributed._Job(rank=1, world_size=2)  # as a process of a torchrun job is after start()
atexit.register(lambda: print("exit handler ran", file=sys.stderr))
print('{"summary": "not yet flushed"}', end="")  # a pipe's buffer: lost if the process ended unflushed
distributed.leave(CODE)
print("never reached", file=sys.stderr)
"""


@pytest.mark.parametrize("code, status, said", [("None", 0, ""), ("143", 143, ""), ("'error: gone'", 1, "error: gone")])
def test_a_process_of_a_job_leaves_with_its_status_its_output_and_its_exit_handlers(code, status, said):
    """A process of a job ends without the interpreter's teardown (where a gloo thread could abort it after the run
    was over), and nothing a user sees of the ending is lost: the status, stdout's last bytes, the exit handlers."""
    ended = subprocess.run([sys.executable, "-c", LEAVE_SCRIPT.replace("CODE", code)], capture_output=True,
                           text=True, timeout=120)
    assert ended.returncode == status, ended.stderr
    assert ended.stdout == '{"summary": "not yet flushed"}'
    assert "exit handler ran" in ended.stderr and "never reached" not in ended.stderr
    assert said in ended.stderr
