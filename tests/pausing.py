"""torchtools as a real subprocess that pauses at exact points, so a test's signal lands where it means to.

Run as a script: `python pausing.py FOLDER POINT[,POINT...] ARGS...` runs `torchtools ARGS...`; on reaching
a POINT it creates FOLDER/POINT (the test's marker) and waits there:

- `fit`: before training starts (data loaded, model built), until a stop interrupts the wait;
- `step:E:B`: before batch B of epoch E is trained (`step:2:1`: epoch 1 saved, no step of epoch 2 taken),
  until a stop interrupts the wait;
- `evaluate:E`: before epoch E's evaluation (all its steps taken), until a stop interrupts the wait;
- `finish`: once training is over, before the summary, until a stop interrupts the wait;
- `save:N`: inside the N-th checkpoint write, until a stop has been requested (a save holds it back), then
  the write goes on;
- `stop-save`: inside the stop's own save (the checkpoint marked partial), until a second stop request.

Under torchrun, `R@POINT` holds process R alone (`1@step:2:3`); its marker is FOLDER/R@POINT.

`Paused` (for the tests) starts one, in a session of its own so every process it starts can be found after;
with `processes`, a torchrun job of that many processes on this machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from torchtools.core.stopping import descendants

WAIT = 120  # seconds a pause waits at most: the test's signal ends it at once; a failed test still ends


def _wait(condition=lambda: False) -> None:
    deadline = time.monotonic() + WAIT
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)  # a stop's handler runs here (or, held back, lets the condition become true)


def _install(folder: Path, points: list[str]) -> None:
    import torch

    from torchtools.core import engine, stopping
    from torchtools.core.run import Run

    rank = os.environ.get("RANK", "0")
    markers = {point.partition("@")[2] or point: point for point in points
               if "@" not in point or point.partition("@")[0] == rank}

    def reach(point: str) -> bool:
        if point not in markers:
            return False
        (folder / markers[point]).touch()
        return True

    original_fit, original_epoch, original_save = engine.fit, engine.train_one_epoch, torch.save
    original_evaluate, original_finish = engine.evaluate, Run.finish
    epochs_evaluated = 0

    def fit(*args, **kwargs):
        if reach("fit"):
            _wait()
        return original_fit(*args, **kwargs)

    class PausedBatches:
        def __init__(self, batches, epoch: int):
            self.batches, self.epoch = batches, epoch

        def __len__(self) -> int:
            return len(self.batches)

        def __iter__(self):
            for number, batch in enumerate(self.batches, start=1):
                if reach(f"step:{self.epoch}:{number}"):
                    _wait()
                yield batch

    def train_one_epoch(model, objective, optimizer, batches, *, epoch: int, **options):
        return original_epoch(model, objective, optimizer, PausedBatches(batches, epoch), epoch=epoch, **options)

    def evaluate(*args, **kwargs):
        nonlocal epochs_evaluated
        epochs_evaluated += 1
        if reach(f"evaluate:{epochs_evaluated}"):
            _wait()
        return original_evaluate(*args, **kwargs)

    def finish(self, *args, **kwargs):
        if reach("finish"):
            _wait()
        return original_finish(self, *args, **kwargs)

    saves = 0

    def save(payload, file, *args, **kwargs):
        nonlocal saves
        saves += 1
        if reach(f"save:{saves}"):
            _wait(lambda: len(stopping.received()) >= 1)
        if isinstance(payload, dict) and "partial_epoch" in payload and reach("stop-save"):
            _wait(lambda: len(stopping.received()) >= 2)
        return original_save(payload, file, *args, **kwargs)

    engine.fit, engine.train_one_epoch, engine.evaluate, torch.save = fit, train_one_epoch, evaluate, save
    Run.finish = finish


class Paused:
    """`torchtools ARGS...` paused at `points` (see above), in its own session (its id: `.pid`)."""

    def __init__(self, folder: Path, points: list[str], *args, cwd: Path, processes: int | None = None, **popen):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
        launcher = [] if processes is None else ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                                                 str(processes)]
        self.process = subprocess.Popen(
            [sys.executable, *launcher, __file__, str(self.folder), ",".join(points), *map(str, args)], cwd=cwd,
            start_new_session=True, text=True, **popen)
        self.pid = self.process.pid

    def reached(self, point: str, timeout: float = 240) -> None:
        """Wait until the run is at `point`; fail with its output if it ended or never got there."""
        deadline = time.monotonic() + timeout
        while not (self.folder / point).exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                stdout, stderr = self.communicate()
                raise AssertionError(f"never reached {point}: exit {self.process.returncode}\n{stderr}")
            time.sleep(0.01)

    def signal(self, signum: int, rank: int | None = None) -> None:
        """Send `signum` to the run; under torchrun, to its process `rank` alone."""
        os.kill(self.pid if rank is None else self.rank_pid(rank), signum)

    def rank_pid(self, rank: int) -> int:
        """The process id of torchrun's process `rank` (its RANK variable says which)."""
        for pid in descendants(self.pid):
            try:
                variables = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in variables:
                return pid
        raise AssertionError(f"no process of rank {rank} under {self.pid}")

    def communicate(self, timeout: float = 240) -> tuple[str, str]:
        try:
            return self.process.communicate(timeout=timeout)
        finally:
            if self.process.poll() is None:
                os.killpg(self.pid, 9)  # never leave a paused run behind when a test fails


if __name__ == "__main__":
    folder, points, *arguments = sys.argv[1:]
    from torchtools.core import threads

    threads.configure()  # as torchtools' main does, before torch is imported
    _install(Path(folder), points.split(","))
    from torchtools.cli import main

    sys.argv = ["torchtools", *arguments]
    main()
