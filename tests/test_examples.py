"""examples/ci_train_and_predict.sh as the README documents it: the accuracy gate and the hand-over between its
two runs (with a stand-in torchtools, fast), the README's crontab line under cron's bare environment, and the
README's own command line on the real MNIST (slow tier)."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO

SCRIPT = REPO / "examples" / "ci_train_and_predict.sh"

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
    assert calls[0][:5] == ["mnist", "--data", "/data", "--recipe", "fast"] and "--json" in calls[0]
    assert "--epochs" not in calls[0]  # the recipe's epochs unless EPOCHS is set
    assert calls[0][calls[0].index("--report") + 1] == f"{out}/report"
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


def readme_block_line(prefix: str) -> str:
    """The README line that starts with `prefix` (inside its code blocks), as the reader copies it."""
    lines = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, (prefix, lines)
    return lines[0]


def test_the_readmes_crontab_line_runs_under_crons_bare_environment(tmp_path):
    """cron gives PATH=/usr/bin:/bin and nothing else: the README's line must not need torchtools on PATH (the
    line it replaced ended in exit 127 and an empty train.json). The checkout is a copy under tmp_path/srv, its
    venv's torchtools the stand-in."""
    line = readme_block_line("30 2 * * * ")
    script_line = next(text for text in SCRIPT.read_text().splitlines() if "30 2 * * *" in text)
    assert script_line.lstrip("# ") == line  # the script's header shows the same entry
    srv = tmp_path / "srv"
    checkout = srv / "torchtools"
    (checkout / "examples").mkdir(parents=True)
    shutil.copy(SCRIPT, checkout / "examples" / SCRIPT.name)
    venv_tool = checkout / ".venv" / "bin" / "torchtools"
    venv_tool.parent.mkdir(parents=True)
    venv_tool.write_text(f"#!{sys.executable}\n{STAND_IN}")
    venv_tool.chmod(0o755)
    (tmp_path / "log").mkdir()
    command = re.sub(r"^(\S+\s+){5}", "", line).replace("/srv/", f"{srv}/").replace("/var/log/", f"{tmp_path}/log/")
    cron_env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHELL": "/bin/sh",
                "CALLS": str(tmp_path / "calls.jsonl"), "FAKE_ACCURACY": "0.99"}
    result = subprocess.run(["/bin/sh", "-c", command], env=cron_env, capture_output=True, text=True, timeout=60)
    log = (tmp_path / "log" / "torchtools-nightly.log").read_text()
    assert result.returncode == 0, log
    assert "ok: test accuracy 0.99 (threshold 0.97)" in log
    assert json.loads((srv / "models" / "nightly" / "train.json").read_text())["metrics"]["test_accuracy"] == 0.99


@pytest.mark.slow
def test_the_readmes_command_line_passes_its_threshold_on_the_real_mnist(tmp_path, shared_data):
    """The README's line as written (THRESHOLD=0.97, the script's default recipe and epochs), its /srv folders
    replaced by the real data and temp folders."""
    line = readme_block_line("DATA=/srv/datasets FOLDER=/srv/incoming")
    images = digit_folder(tmp_path / "incoming")
    out = tmp_path / "nightly"
    command = (line.replace("/srv/datasets", str(shared_data)).replace("/srv/incoming", str(tmp_path / "incoming"))
               .replace("/srv/models/nightly", str(out)))
    env = {**os.environ, "TORCHTOOLS": f"{sys.executable} -m torchtools"}
    result = subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "ok: test accuracy" in result.stdout and "(threshold 0.97)" in result.stdout
    with (out / "predictions.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert sorted(row["path"] for row in rows) == sorted(map(str, images))
    assert all(row["label"] in "0123456789" and 0 <= float(row["probability"]) <= 1 for row in rows)
    summary = json.loads((out / "predict.json").read_text().splitlines()[-1])
    assert "broken.png" in " ".join(summary["unreadable_images"])
    assert (out / "mnist.pt").is_file() and f"predictions: {out}/predictions.csv" in result.stdout
    assert (out / "report" / "history.csv").is_file() and (out / "report" / "mistakes.png").is_file()
