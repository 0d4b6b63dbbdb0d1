"""examples/ci_train_and_predict.sh: the accuracy gate and the hand-over between its two runs (with a stand-in
torchtools, fast), and the whole script on the real MNIST (slow tier)."""

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO
from datafiles import write_mnist

SCRIPT = REPO / "examples" / "ci_train_and_predict.sh"
README = (REPO / "README.md").read_text()
README_THRESHOLD = re.search(r"THRESHOLD=([0-9.]+) examples/ci_train_and_predict.sh", README).group(1)
CRON_LINE = next(line for line in README.splitlines() if line.startswith("30 2 * * * "))

# Records its arguments, writes what torchtools would and prints a --json summary with FAKE_ACCURACY.
STAND_IN = '''
import json, os, sys
args = sys.argv[1:]
with open(os.environ["CALLS"], "a") as log:
    log.write(json.dumps(args) + "\\n")
def value(option):
    return args[args.index(option) + 1]
if "--save" in args:
    open(value("--save"), "w").write("model")
    print(json.dumps({"command": "mnist", "metrics": {"test_accuracy": float(os.environ["FAKE_ACCURACY"])}}))
else:
    open(value("--output"), "w").write("path,label,probability\\n")
    print(json.dumps({"command": "mnist", "predicted_images": 7, "unreadable_images": ["x.png"]}))
'''


def run_script(tmp_path: Path, accuracy: float) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    stand_in = tmp_path / "torchtools_stand_in.py"
    stand_in.write_text(STAND_IN)
    calls = tmp_path / "calls.jsonl"
    env = {**os.environ, "TORCHTOOLS": f"{sys.executable} {stand_in}", "CALLS": str(calls),
           "FAKE_ACCURACY": str(accuracy), "DATA": "/data", "FOLDER": "in box", "OUT": str(tmp_path / "out dir"),
           "THRESHOLD": "0.9"}
    result = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    return result, [json.loads(line) for line in calls.read_text().splitlines()]


def test_an_accurate_model_labels_the_folder_and_says_where_everything_is(tmp_path):
    result, calls = run_script(tmp_path, 0.97)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out dir"
    assert calls[0][:3] == ["mnist", "--data", "/data"] and "--json" in calls[0]
    assert calls[1] == ["mnist", "--checkpoint", f"{out}/mnist.pt", "--predict", "in box", "--output",
                        f"{out}/predictions.csv", "--json", "--quiet"]
    assert "ok: test accuracy 0.97" in result.stdout
    assert f"predictions: {out}/predictions.csv (7 labelled, 1 unreadable)" in result.stdout
    assert (out / "mnist.pt").is_file() and (out / "predictions.csv").is_file()


def test_a_model_below_the_threshold_fails_the_job_and_predicts_nothing(tmp_path):
    result, calls = run_script(tmp_path, 0.5)
    assert result.returncode == 1
    assert "test accuracy 0.5 is below the threshold 0.9" in result.stderr
    assert len(calls) == 1 and (tmp_path / "out dir" / "mnist.pt").is_file()  # kept for a look


def digit_folder(root: Path) -> list[Path]:
    """Hand-drawn-looking digits (white on black, like MNIST), nested, plus one unreadable file."""
    paths = []
    for digit in range(4):
        image = np.zeros((28, 28), np.uint8)
        cv2.putText(image, str(digit), (6, 23), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255, 2)
        path = root / ("more" if digit % 2 else "") / f"digit {digit}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image)
        paths.append(path)
    (root / "broken.png").write_bytes(b"")
    return paths


@pytest.mark.slow
def test_the_ci_script_on_the_real_mnist(tmp_path, shared_data):
    images = digit_folder(tmp_path / "incoming")
    out = tmp_path / "out"
    # As the README runs it: its THRESHOLD=0.97, the script's own recipe and epochs.
    env = {**os.environ, "TORCHTOOLS": f"{sys.executable} -m torchtools", "DATA": str(shared_data),
           "FOLDER": str(tmp_path / "incoming"), "OUT": str(out), "THRESHOLD": README_THRESHOLD}
    result = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    with (out / "predictions.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert sorted(row["path"] for row in rows) == sorted(map(str, images))
    assert all(row["label"] in "0123456789" and 0 <= float(row["probability"]) <= 1 for row in rows)
    summary = json.loads((out / "predict.json").read_text().splitlines()[-1])
    assert "broken.png" in " ".join(summary["unreadable_images"])
    assert (out / "mnist.pt").is_file() and f"predictions: {out}/predictions.csv" in result.stdout


def test_the_readme_cron_line_runs_under_crons_bare_environment(tmp_path):
    """The README's crontab line, as cron runs it: sh -c with PATH=/usr/bin:/bin and no login environment;
    the installed torchtools is a stand-in at the path the line names."""
    assert f"# {CRON_LINE}" in SCRIPT.read_text()  # the script's header says the same
    stand_in = tmp_path / "venv" / "bin" / "torchtools"
    stand_in.parent.mkdir(parents=True)
    calls = tmp_path / "calls.jsonl"
    settings = f"import os\nos.environ.update(CALLS={str(calls)!r}, FAKE_ACCURACY='0.99')\n"
    stand_in.write_text(f"#!{sys.executable}\n{settings}{STAND_IN}")
    stand_in.chmod(0o755)
    (tmp_path / "incoming").mkdir()
    command = CRON_LINE.split(" ", 5)[5]
    places = {"/srv/torchtools/.venv/bin/torchtools": stand_in, "/srv/torchtools": REPO,
              "/srv/datasets": tmp_path / "data", "/srv/incoming": tmp_path / "incoming",
              "/srv/models/nightly": tmp_path / "nightly", "/var/log/torchtools-nightly.log": tmp_path / "nightly.log"}
    for old, new in places.items():
        command = command.replace(old, shlex.quote(str(new)))
    result = subprocess.run(["/bin/sh", "-c", command], env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                            capture_output=True, text=True, timeout=60)
    log = (tmp_path / "nightly.log").read_text()
    assert result.returncode == 0, log
    assert "ok: test accuracy 0.99 (threshold 0.97)" in log
    assert json.loads((tmp_path / "nightly" / "train.json").read_text())["metrics"]["test_accuracy"] == 0.99
    assert calls.read_text().count("\n") == 2


def test_the_script_trains_the_fast_recipe_for_its_epochs_and_keeps_a_report(tmp_path):
    result, calls = run_script(tmp_path, 0.99)
    assert result.returncode == 0, result.stderr
    first = calls[0]
    assert first[first.index("--recipe") + 1] == "fast" and "--epochs" not in first  # the recipe's 2 epochs
    assert first[first.index("--report") + 1] == f"{tmp_path / 'out dir'}/report"


# The README's set-up builds the venv as .venv in the checkout; the tests run in such a venv (sys.prefix).
VENV = Path(sys.prefix)
SETUP_BLOCK = re.search(r"## Set up on a fresh machine.*?```bash\n(.*?)```", README, re.S).group(1).strip()
CI_LINE = next(line for line in README.splitlines()
               if line.startswith("DATA=") and line.endswith("examples/ci_train_and_predict.sh"))


def clean_env(tmp_path: Path) -> dict:
    """What cron or a fresh login gives: no venv on PATH, nothing activated. PYTHONPATH is kept where the
    tests set it, so the installed console script runs the code under test."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TORCHTOOLS_CACHE": str(tmp_path / "cache"),
           "OMP_NUM_THREADS": "1"}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A checkout after the README's set-up: the example script, and .venv (the installed venv, linked)."""
    if not (VENV / "bin" / "torchtools").is_file():
        pytest.skip(f"the tests do not run in a venv with torchtools installed ({VENV}/bin/torchtools is absent)")
    root = tmp_path / "torchtools"
    (root / "examples").mkdir(parents=True)
    shutil.copy2(SCRIPT, root / "examples")
    (root / ".venv").symlink_to(VENV)
    return root


def test_the_readme_setup_runs_the_main_job_with_the_venvs_own_torchtools(tmp_path, checkout):
    """The set-up's last step as written, in a shell whose PATH lacks the venv (the install itself needs a
    network: the venv the tests run in stands for it)."""
    steps = SETUP_BLOCK.split(" && ")
    assert steps[:2] == ["python3 -m venv .venv", ".venv/bin/pip install -e '.[dev]'"]
    assert "```bash\n.venv/bin/python -m pytest\n```" in README  # the second of the two set-up commands
    result = subprocess.run(["/bin/sh", "-c", steps[2]], cwd=checkout, env=clean_env(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "val_accuracy" in result.stderr


def test_the_readme_ci_example_runs_as_written_without_the_venv_on_path(tmp_path, checkout):
    """The README's CI line, word for word but for its /srv folders, in a bare environment: the script finds
    the checkout's venv itself (it once exited 127, "torchtools: command not found")."""
    data = write_mnist(tmp_path / "datasets", train=600, test=200)
    digit_folder(tmp_path / "incoming")
    places = {"/srv/datasets": data, "/srv/incoming": tmp_path / "incoming", "/srv/models/nightly": tmp_path / "out"}
    command = CI_LINE
    for old, new in places.items():
        command = command.replace(old, shlex.quote(str(new)))
    result = subprocess.run(["/bin/sh", "-c", command], cwd=checkout, env=clean_env(tmp_path),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: test accuracy" in result.stdout
    assert "predictions: " in result.stdout and (tmp_path / "out" / "predictions.csv").is_file()


def test_every_readme_example_names_the_venvs_programs():
    """A bare `torchtools mnist` or `torchrun` fails in a shell without the venv activated (and under cron)."""
    commands = "|".join(["fit-linear", "fit-logistic", "diabetes", "mnist", "cifar", "transfer", "names-rnn",
                         "conv-demo", "inspect-weights", "export", "to-gpu-bench", "COMMAND"])
    bare = re.findall(rf"(?:^|[`(=$ ])(?<!-m )(?:torchtools (?:{commands})\b|python -m pytest)|^torchrun ",
                      README, re.M)
    assert not bare, bare
