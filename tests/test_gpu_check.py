"""benchmarks/gpu_check.py --dry-run: every step of the GPU check at tiny sizes on the CPU, so the script
is known to work before it first meets a GPU."""

import json
import subprocess
import sys

from conftest import REPO

STEPS = ["tests (fast tier)", "mnist course", "mnist fast", "mnist fast --compile reduce-overhead", "cifar quick",
         "cifar resnet", "transfer resnet18",
         "transfer resnet18 --compile", "transfer resnet34", "transfer resnet34 --compile", "names-rnn",
         "to-gpu-bench", "torchrun 1 process(es), gloo", "course loop: mnist", "course loop: cifar",
         "course loop: tutorial resnet18", "course loop: tutorial resnet34", "course loop: names"]


def test_the_dry_run_does_every_step_and_writes_the_table(tmp_path):
    completed = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run", "--out",
                                str(tmp_path / "out"), "--work", str(tmp_path / "work")],
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    rows = {row["step"]: row for row in report["rows"]}
    assert list(rows) == STEPS and report["dry_run"] is True
    assert all(row["status"] == "ok" for row in rows.values()), [row for row in rows.values() if row["status"] != "ok"]
    for name in ("mnist course", "cifar quick", "transfer resnet34 --compile", "names-rnn"):
        assert rows[name]["images_per_s"] > 0 and rows[name]["ratio"] > 0 and rows[name]["epochs"] == 1
        assert 0 <= rows[name]["accuracy"] <= 1
    assert "step" in completed.stdout and "course loop: tutorial resnet34" in completed.stdout
