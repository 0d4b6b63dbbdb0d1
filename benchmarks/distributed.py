"""One process against torchrun with N processes, same command and same global batch.

Each run is the real CLI in a subprocess (`python -m torchtools mnist ...` and
`python -m torch.distributed.run --standalone --nproc-per-node N -m torchtools mnist ...`), read back
through its --json summary: training seconds per epoch, samples per second, test accuracy. torchrun
gives each process OMP_NUM_THREADS=1 unless set, so the single process runs twice: with torch's
default threads (one per core) and with one thread. The runs alternate, so a busy machine slows all
alike.

    .venv/bin/python benchmarks/distributed.py --data ../shared/data --epochs 1 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def run(command: list[str], env: dict[str, str], cwd: Path) -> dict:
    completed = subprocess.run(command, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True)
    if completed.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="dataset root holding MNIST/raw")
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--global-batch", type=int, default=128)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    common = ["mnist", "--data", str(args.data.resolve()), "--model", args.model, "--epochs", str(args.epochs),
              "--device", args.device, "--no-download", "--no-tensorboard", "--json", "--quiet"]
    single = [sys.executable, "-m", "torchtools", *common, "--batch-size", str(args.global_batch)]
    contenders = {
        "1 process": (single, {}),
        "1 proc 1 thr": (single, {"OMP_NUM_THREADS": "1"}),
        f"torchrun x{args.processes}": ([
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.processes),
            "-m", "torchtools", *common, "--batch-size", str(args.global_batch // args.processes)], {}),
    }
    results: dict[str, list[dict]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, (command, env) in contenders.items():
            results[name].append(run(command, env, Path.cwd()))

    train_samples = 60_000  # MNIST's training set
    print(f"mnist {args.model}, {args.epochs} epoch(s), global batch {args.global_batch}, device {args.device}, "
          f"median of {args.repeats}")
    print(f"{'':14} {'s/epoch':>8} {'samples/s':>10} {'wall s':>7} {'test acc':>9}")
    for name, summaries in results.items():
        per_epoch = statistics.median(s["train_seconds"] / s["epochs"] for s in summaries)
        wall = statistics.median(s["seconds"] for s in summaries)
        accuracy = statistics.median(s["metrics"]["test_accuracy"] for s in summaries)
        print(f"{name:14} {per_epoch:8.2f} {train_samples / per_epoch:10,.0f} {wall:7.1f} {accuracy:9.4f}")


if __name__ == "__main__":
    main()
