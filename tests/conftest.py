"""Shared test helpers: the CLI in-process (Typer's CliRunner) and as a real subprocess, and real data."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from torchtools.cli import app

REPO = Path(__file__).resolve().parents[1]
# The real datasets live beside the checkout (../shared/data); the slow tier skips where they are absent.
SHARED_DATA = Path(os.environ.get("TORCHTOOLS_SHARED_DATA", REPO.parent / "shared" / "data"))


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def summary(self) -> dict:
        """The --json summary: the last line of stdout, which must be one JSON object."""
        lines = self.stdout.strip().splitlines()
        assert lines, f"no stdout; stderr was:\n{self.stderr}"
        return json.loads(lines[-1])


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Decoded-image caches go to the test's own folder, never the user's ~/.cache."""
    monkeypatch.setenv("TORCHTOOLS_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """Run `torchtools ARGS...` in-process, from a temp folder (so runs/ and data/ land there)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TORCHTOOLS_DATA", raising=False)

    def invoke(*args) -> Run:
        result = CliRunner().invoke(app, [str(arg) for arg in args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Run(result.exit_code, result.stdout, result.stderr)

    return invoke


def run_torchtools(*args, cwd: Path, env: dict | None = None, timeout: float = 300) -> Run:
    """Run `python -m torchtools ARGS...` as a real subprocess, as a shell script would."""
    completed = subprocess.run(
        [sys.executable, "-m", "torchtools", *[str(arg) for arg in args]],
        cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout,
    )
    return Run(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (set TORCHTOOLS_SHARED_DATA to point at them)")
    return SHARED_DATA


def assert_user_error(run: Run, *fragments: str) -> None:
    """A user-caused error: exit 2, stderr ends with one `error:` line saying what is wrong, no traceback."""
    assert run.exit_code == 2, (run.exit_code, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    lines = [line for line in run.stderr.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), run.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1, run.stderr
    for fragment in fragments:
        assert fragment.lower() in lines[-1].lower(), (fragment, lines[-1])


@pytest.fixture(scope="session")
def resnet18_weights(tmp_path_factory) -> tuple[Path, dict]:
    """A randomly initialised torchvision resnet18 saved as a "pretrained" state_dict (no downloads here)."""
    import torch
    from torchvision import models

    torch.manual_seed(0)
    state = models.resnet18().state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(state, path)
    return path, state


def assert_refused_before_training(run: Run, folder: Path, *fragments: str, created: tuple[Path, ...] = ()) -> None:
    """A user error caught before any work: no epoch ran, no TensorBoard run folder under `folder` (the cli
    fixture's working folder), and none of the `created` paths (checkpoints, plots) was written."""
    assert_user_error(run, *fragments)
    assert "epoch 1" not in run.stderr, run.stderr
    assert not (folder / "runs").exists()
    for path in created:
        assert not Path(path).exists(), path


def assert_truthful(checkpoint: Path, resume: tuple, *, cwd: Path, complete: int | None = None,
                    partial: bool | None = None) -> dict:
    """What every stop must leave in a --save file: `complete` whole epochs (label and history agree), the
    next one marked partial iff `partial` (None: either, read from the file), metrics iff no epoch is partial,
    the best file beside it once an epoch completed, no temporary files; and `torchtools *resume --resume
    CHECKPOINT` trains one more epoch and reports complete + 1 epochs. Returns the checkpoint."""
    import torch

    state = torch.load(checkpoint, weights_only=True)
    complete = state["epoch"] if complete is None else complete
    partial = "partial_epoch" in state if partial is None else partial
    assert state["epoch"] == len(state["history"]) == complete, (state["epoch"], len(state["history"]))
    if partial:
        assert state["partial_epoch"] == complete + 1 and state["metrics"] == {}, state["metrics"]
    else:
        assert "partial_epoch" not in state
        last = {key: value for key, value in state["history"][-1].items() if key != "seconds"}
        assert state["metrics"] and state["metrics"] == last, (state["metrics"], last)
    best = checkpoint.with_name(f"{checkpoint.stem}.best{checkpoint.suffix}")
    assert best.exists() == (complete > 0), best
    if complete:
        best_state = torch.load(best, weights_only=True)
        assert "partial_epoch" not in best_state and 1 <= best_state["epoch"] <= complete and best_state["metrics"]
    assert not [path.name for path in checkpoint.parent.iterdir() if path.name.endswith(".tmp")]
    resumed = run_torchtools(*resume, "--resume", checkpoint, "--epochs", complete + 1, "--no-tensorboard", "--json",
                             cwd=cwd)
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.summary["epochs"] == len(resumed.summary["history"]) == complete + 1, resumed.summary
    return state


def session_processes(session: int) -> list[int]:
    """The living processes of a session (a subprocess started with start_new_session=True, and its
    descendants, whoever their parent is now), read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            state, _parent, _group, owner = text[text.rindex(")") + 2:].split()[:4]
            if int(owner) == session and state != "Z":
                found.append(int(entry.name))
    return found


def assert_no_process_left(session: int, timeout: float = 30) -> None:
    """Once a command has exited, every process it started ends (the resource tracker as its pipe closes)."""
    import time

    deadline = time.monotonic() + timeout
    while session_processes(session) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = {}
    for pid in session_processes(session):  # the test fails, and leaves nothing running behind it
        with contextlib.suppress(OSError):
            left[pid] = (Path("/proc") / str(pid) / "cmdline").read_bytes()[:200]
            os.kill(pid, 9)
    assert not left, left
