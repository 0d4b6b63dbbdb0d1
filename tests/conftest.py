"""Shared test helpers: the CLI in-process (Typer's CliRunner) and as a real subprocess, and real data."""

from __future__ import annotations

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
