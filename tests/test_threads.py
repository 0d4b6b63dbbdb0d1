"""CPU threads from what the machine is doing: the policy on given readings, the pool resized between batches,
the user's value kept, and a real run beside a busy process."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from conftest import run_torchtools
from torchtools.core import threads
from torchtools.core.threads import Reading

SPIN = [sys.executable, "-c", "while True: pass"]  # a process that keeps one core busy


@pytest.mark.parametrize("current, limit, others, expected", [
    (None, 2, 0.0, 2),  # alone: every core
    (None, 2, 0.05, 2),  # a system daemon's crumbs
    (None, 2, 1.0, 1),  # another job using a core
    (None, 2, 3.0, 1),  # a machine taken over: still one thread
    (None, 8, 2.0, 6),
    (2, 2, 0.3, 2),  # a short job beside it: not yet worth a core
    (2, 2, 0.67, 1),  # a one-thread neighbour starved by this pool's two: yield at once
    (1, 2, 0.5, 1),  # a neighbour pausing (a checkpoint, evaluation) does not make it flap
    (1, 2, 0.3, 1),
    (1, 2, 0.2, 2),  # the neighbour ended
    (6, 8, 2.35, 6),
    (6, 8, 2.5, 5),
    (5, 8, 2.4, 5),  # widens only when the core is clearly free
    (5, 8, 2.2, 6),
])
def test_the_count_is_what_other_processes_leave(current, limit, others, expected):
    assert threads.choose(current, limit, others) == expected


def test_a_cgroup_quota_bounds_the_count(monkeypatch, tmp_path):
    # 4 cores of 2 hyper-threads; a container limited to 2.5 CPUs gets 3 threads (the quota rounds up)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(threads, "_siblings", lambda cpu: f"{cpu - cpu % 2}-{cpu - cpu % 2 + 1}")
    assert threads.physical_cores() == 4
    quota = tmp_path / "cpu.max"
    quota.write_text("250000 100000\n")
    assert threads.cpu_quota(quota) == 3
    quota.write_text("max 100000\n")
    assert threads.cpu_quota(quota) is None
    monkeypatch.setattr(threads, "cpu_quota", lambda path=None: 3)
    assert threads.usable_cores() == 3
    # Another process of the same container using 2 of its 3 CPUs leaves 1, however idle the host is.
    assert threads.choose(None, 3, 0.0, group_others=2.0, quota=3) == 1
    assert threads.choose(None, 3, 0.0, group_others=0.0, quota=3) == 3


def test_readings_count_this_process_cpus_and_its_cgroup(monkeypatch, tmp_path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal: cpu1 is outside the affinity mask and not counted
    stat.write_text("cpu  900 0 90 0 0 0 0 0\ncpu0 300 10 50 999 7 20 20 5\ncpu1 600 0 40 0 0 0 0 0\n"
                    "procs_running 3\n")
    (tmp_path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    reading = threads.read(stat, tmp_path)
    assert reading.busy == pytest.approx(400 / os.sysconf("SC_CLK_TCK"))  # idle, iowait and steal are not busy
    assert reading.group == pytest.approx(2.5)
    assert threads._procs_running(stat) == 3
    assert threads.read(tmp_path / "absent", tmp_path / "absent").busy is None


@pytest.fixture
def chosen(monkeypatch):
    """This process's threads as torchtools' to choose (2 usable cores, no quota), torch's count restored after."""
    before = torch.get_num_threads()
    auto = threads._Auto(limit=2, quota=None, threads=2, last=Reading(0.0, 0.0, 0.0))
    monkeypatch.setattr(threads, "_auto", auto)
    torch.set_num_threads(2)
    readings = []
    monkeypatch.setattr(threads, "read", lambda *paths: readings.pop(0))
    yield auto, readings
    torch.set_num_threads(before)


def test_the_pool_follows_a_neighbour_that_comes_and_goes(chosen, capsys):
    auto, readings = chosen
    readings.append(Reading(1.0, busy=2.0, own=1.0))  # a second second of work on the machine: a neighbour
    threads.adjust(force=True)
    assert torch.get_num_threads() == 1
    assert "threads: 2 -> 1 (other processes use 1.0 core)" in capsys.readouterr().err
    readings.append(Reading(2.0, busy=3.7, own=2.0))  # the neighbour checkpoints: 0.7 of a core, no change
    threads.adjust(force=True)
    assert torch.get_num_threads() == 1 and capsys.readouterr().err == ""
    readings.append(Reading(3.0, busy=4.8, own=3.0))  # it ended: 0.1 core of others
    assert threads.summary() == "2 threads"
    assert torch.get_num_threads() == 2
    readings.append(Reading(3.1, busy=5.0, own=3.1))  # a tenth of a second is too short to read: nothing moves
    threads.adjust(force=True)
    assert torch.get_num_threads() == 2 and auto.last.at == 3.0


def test_no_reading_is_taken_before_its_interval(chosen):
    auto, readings = chosen
    auto.last = Reading(time.monotonic(), 0.0, 0.0)
    threads.adjust()  # read() has nothing queued: a reading taken here would fail
    assert auto.threads == 2


def test_the_users_value_is_kept_and_never_adjusted(monkeypatch):
    monkeypatch.setattr(threads, "_auto", None)
    environ = {"OMP_NUM_THREADS": "3"}
    assert threads.configure(environ) == {} and environ == {"OMP_NUM_THREADS": "3"}
    assert threads._auto is None
    before = torch.get_num_threads()
    threads.adjust(force=True)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("value", ["abc", "0", "-1", "2.5", "4,0", "4,", "\u0663", "9223372036854775808",
                                   "4,99999999999999999999"])
def test_a_value_openmp_cannot_read_is_ignored_with_one_warning(monkeypatch, capsys, value):
    """OpenMP ignores OMP_NUM_THREADS=abc (with a raw `libgomp:` line) and torch takes its default, which the
    device line showed as the user's count. It is ignored here too, said once, and the count chosen."""
    monkeypatch.setattr(threads, "_auto", None)
    environ = {"OMP_NUM_THREADS": value}
    assert threads.configure(environ) == {"OMP_NUM_THREADS": str(threads._auto.threads)} == environ
    assert threads.configure(environ) == {}  # a second call warns no more
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: ignoring OMP_NUM_THREADS={value!r}: not a number of threads (a whole number "
                        "above 0, or one per nesting level as in 4,2); choosing the count as if it were not set"]


@pytest.mark.parametrize("value", [" 2", "4,2", "02", "9223372036854775807"])
def test_a_value_openmp_reads_is_the_users(monkeypatch, capsys, value):
    monkeypatch.setattr(threads, "_auto", None)
    assert threads.configure({"OMP_NUM_THREADS": value}) == {} and threads._auto is None
    assert "warning" not in capsys.readouterr().err


def test_a_run_with_an_unreadable_thread_count_says_what_it_uses(tmp_path):
    run = run_torchtools("diabetes", "--epochs", "1", "--device", "cpu", "--no-tensorboard", cwd=tmp_path,
                         env={"OMP_NUM_THREADS": "abc"})
    assert run.exit_code == 0, run.stderr
    assert run.stderr.count("ignoring OMP_NUM_THREADS='abc'") == 1 and "libgomp" not in run.stderr
    assert "(OMP_NUM_THREADS)" not in _device_line(run.stderr)


def test_configure_starts_from_the_load_of_the_moment(monkeypatch):
    monkeypatch.setattr(threads, "_auto", None)
    monkeypatch.setattr(threads, "physical_cores", lambda: 4)
    monkeypatch.setattr(threads, "cpu_quota", lambda path=None: None)  # usable_cores: 4
    monkeypatch.setattr(threads, "_procs_running", lambda stat=None: 1)  # this process only
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert threads.configure(environ) == {"OMP_NUM_THREADS": "4"}
    assert environ == {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "4"}
    assert threads.configure(environ) == {}  # a second call (tests/pausing.py, then main) changes nothing
    assert threads._auto.threads == 4
    monkeypatch.setattr(threads, "_auto", None)
    monkeypatch.setattr(threads, "_procs_running", lambda stat=None: 4)  # 3 runnable besides this one
    monkeypatch.setattr(threads, "cpu_quota", lambda path=None: 2)
    assert threads.configure({}) == {"OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("readings, expected", [
    ([1], "2"),  # alone: one reading, nothing waited for
    ([2, 1, 2, 2, 2], "2"),  # a process passing through at the first reading: not a neighbour
    ([2, 2, 2, 2, 2], "1"),  # a neighbour's training, runnable at every reading
])
def test_the_first_count_takes_no_passing_process_for_a_neighbour(monkeypatch, readings, expected):
    """A pool started narrow stays slower once widened, so a job alone must start with every core."""
    taken = iter(readings)
    monkeypatch.setattr(threads, "_auto", None)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "_procs_running", lambda stat=None: next(taken))
    assert threads.configure({}) == {"OMP_NUM_THREADS": expected}  # a reading past the list would raise


def test_the_command_line_sets_threads_before_torch_loads():
    code = ("import os, sys; from torchtools.cli import main; sys.argv = ['torchtools', '--version']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(os.environ['OMP_NUM_THREADS'], 'torch' in sys.modules)")
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    completed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    count, loaded = completed.stdout.split()[-2:]
    assert 1 <= int(count) <= threads.usable_cores() and loaded == "False"


def _device_line(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("device: "))


@pytest.fixture
def spinner():
    process = subprocess.Popen(SPIN)
    yield process
    process.kill()
    process.wait()


@pytest.mark.skipif(threads.usable_cores() < 2, reason="a thread count below the cores needs 2 cores or more")
def test_a_run_beside_a_busy_process_takes_fewer_threads(tmp_path, spinner, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    run = run_torchtools("diabetes", "--epochs", "3", "--device", "cpu", "--no-tensorboard", cwd=tmp_path)
    assert run.exit_code == 0, run.stderr
    line = _device_line(run.stderr)
    assert line.startswith("device: cpu, fp32, ") and "other processes use" in line
    count = int(line.split(", ")[2].split()[0])
    assert 1 <= count < threads.usable_cores()
    # The user's value holds beside the same neighbour, and says whose it is.
    run = run_torchtools("diabetes", "--epochs", "3", "--device", "cpu", "--no-tensorboard", cwd=tmp_path,
                         env={"OMP_NUM_THREADS": "2"})
    assert _device_line(run.stderr) == "device: cpu, fp32, 2 threads (OMP_NUM_THREADS)"


@pytest.mark.skipif(threads.usable_cores() < 2, reason="a thread count below the cores needs 2 cores or more")
def test_a_neighbour_that_starts_later_is_seen_mid_run(tmp_path):
    """The case a start-time check misses: a run that started with every core gives one up when a busy
    process appears beside it."""
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    run = subprocess.Popen([sys.executable, "-m", "torchtools", "diabetes", "--epochs", "100000", "--device", "cpu",
                            "--no-tensorboard"], cwd=tmp_path, env=env, stderr=subprocess.PIPE,
                           stdout=subprocess.DEVNULL, text=True)
    neighbour, deadline = None, threading.Timer(120, run.kill)  # a change never seen ends the run: the test fails
    deadline.start()
    try:
        line = next(line for line in run.stderr if line.startswith("device: "))
        if not line.startswith(f"device: cpu, fp32, {threads.usable_cores()} threads"):
            pytest.skip(f"the machine is busy already ({line.strip()}): nothing to give up")
        neighbour = subprocess.Popen(SPIN)
        change = next(line for line in run.stderr if line.startswith("threads: "))
        assert change.startswith(f"threads: {threads.usable_cores()} -> ")
        assert "other processes use" in change
    finally:
        deadline.cancel()
        for process in filter(None, (run, neighbour)):
            process.kill()
            process.wait()


def test_the_training_loop_resizes_the_pool_and_says_so(cli, chosen, monkeypatch):
    """A neighbour appearing mid-run, as the readings show it: the run's device line says 2 threads, and
    once the neighbour is seen between batches, one line says the change."""
    auto, _ = chosen
    start = time.monotonic() - 1000  # every reading due: one a batch
    auto.last = Reading(start, 0.0, 0.0)
    ticks = itertools.count(1)

    def reading(*paths) -> Reading:  # 1 s apart, the run itself busy on 1 core; from the third, a neighbour on 1
        seconds = next(ticks)
        return Reading(start + seconds, busy=seconds + max(0, seconds - 2), own=seconds)

    monkeypatch.setattr(threads, "read", reading)
    run = cli("diabetes", "--epochs", "3", "--no-tensorboard")
    assert run.exit_code == 0, run.stderr
    lines = run.stderr.splitlines()
    assert "device: cpu, fp32, 2 threads" in lines
    assert [line for line in lines if line.startswith("threads: ")] == \
        ["threads: 2 -> 1 (other processes use 1.0 core)"]
    assert lines.index("device: cpu, fp32, 2 threads") < lines.index("threads: 2 -> 1 (other processes use 1.0 core)")
    assert torch.get_num_threads() == 1
