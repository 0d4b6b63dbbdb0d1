"""A machine shared with another job: names-rnn, diabetes, mnist and cifar alone and beside another training,
with 1 and 2 threads and each OpenMP wait policy, to choose (and check) torchtools' thread defaults.

Each case runs the command as a user does (`python -m torchtools ... --json`, its own process) and reads
its training seconds from the summary. "beside" starts a neighbour first (another torchtools training
with the same thread settings: two CI jobs on one runner), waits until it trains, runs the case, then
stops the neighbour. Variants:

- torch-default: torch as it is without torchtools' setting (OMP_NUM_THREADS and OMP_WAIT_POLICY unset;
  the command is started through the Typer app directly, so `threads.configure` does not run);
- torchtools: what `torchtools` sets by itself (core/threads.py);
- threads=1|2 + active|passive (OMP_NUM_THREADS, OMP_WAIT_POLICY), set explicitly (a set variable is kept by
  torchtools); threads=2+spin=20000: GNU OpenMP spinning briefly before it sleeps.

    PYTHONPATH=. .venv/bin/python benchmarks/shared_machine.py --data ../shared/data
    PYTHONPATH=. .venv/bin/python benchmarks/shared_machine.py --commands names-rnn,diabetes --variants torchtools

The table gives, per command and variant, the seconds alone, beside the neighbour, and the ratio
(about 2x means the two jobs share the cores fairly; 30x means spinning threads starve each other).
Results (2-core AMD EPYC): README, "Devices and threads", and core/threads.py, which takes the choice.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME", "MKL_NUM_THREADS", "GOMP_SPINCOUNT")
VARIANTS = {
    "torch-default": None,
    "torchtools": {},
    **{f"threads={threads}+{policy.lower()}": {"OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": policy}
       for threads in (1, 2) for policy in ("ACTIVE", "PASSIVE")},
    # GNU OpenMP's default spins 300,000 times before sleeping; a short spin keeps back-to-back small ops fast
    "threads=2+spin=20000": {"OMP_NUM_THREADS": "2", "GOMP_SPINCOUNT": "20000"},
}
# The measured commands, at sizes that take seconds alone: (arguments, which data root they read).
COMMANDS = {
    "names-rnn": (["names-rnn", "--epochs", "1"], "data"),
    "diabetes": (["diabetes"], None),  # the table built into the package
    "mnist": (["mnist", "--epochs", "1"], "data"),
    "cifar": (["cifar", "--epochs", "1"], "cifar"),
}
NEIGHBOUR = ["mnist", "--epochs", "1000"]  # killed when the case is done
COMMON = ["--device", "cpu", "--json", "--no-tensorboard", "--quiet"]
# Started through the app, not main(): torch's own defaults, as before torchtools set any.
BARE = "import sys; from torchtools.cli import app; sys.argv[0] = 'torchtools'; app()"


def command_line(arguments: list[str], variant: str) -> list[str]:
    if VARIANTS[variant] is None:
        return [sys.executable, "-c", BARE, *arguments]
    return [sys.executable, "-m", "torchtools", *arguments]


def environment(variant: str, data: Path | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    env.update(VARIANTS[variant] or {})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if data is not None:
        env["TORCHTOOLS_DATA"] = str(data)
    return env


def train_seconds(arguments: list[str], variant: str, data: Path | None, cwd: Path, repeats: int = 1) -> float:
    """The median of `repeats` runs' training seconds (a few-second run alone varies by a second)."""
    if repeats > 1:
        return statistics.median(train_seconds(arguments, variant, data, cwd) for _ in range(repeats))
    completed = subprocess.run(command_line([*arguments, *COMMON], variant), env=environment(variant, data),
                               cwd=cwd, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} ({variant}) failed: {completed.stderr.strip()[-400:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])["train_seconds"]


def beside_neighbour(arguments: list[str], variant: str, data: Path | None, cwd: Path, warmup: float,
                     mnist_root: Path) -> float:
    """The case's training seconds while a neighbour (mnist) trains with the same thread settings."""
    neighbour = subprocess.Popen(command_line([*NEIGHBOUR, *COMMON], variant), env=environment(variant, mnist_root),
                                 cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(warmup)  # let it load its data and start training
        if neighbour.poll() is not None:
            raise RuntimeError(f"the neighbour ({' '.join(NEIGHBOUR)}) stopped: is MNIST under --data?")
        return train_seconds(arguments, variant, data, cwd)
    finally:
        neighbour.terminate()
        try:
            neighbour.wait(timeout=30)
        except subprocess.TimeoutExpired:
            neighbour.kill()
            neighbour.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="data root holding MNIST/raw (the neighbour trains on it) and CIFAR-10")
    parser.add_argument("--cifar", type=Path, default=Path("/tmp/cifar-batches"),
                        help="root holding cifar-10-batches-py (../shared/tools/cifar10_jpg_to_batches.py builds it)")
    parser.add_argument("--commands", default=",".join(COMMANDS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds the neighbour runs before each case")
    parser.add_argument("--repeats", type=int, default=3, help="runs alone per case (their median)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        for name in args.commands.split(","):
            arguments, root = COMMANDS[name]
            data = {"data": args.data, "cifar": args.cifar, None: None}[root]
            for variant in args.variants.split(","):
                alone = train_seconds(arguments, variant, data, cwd, args.repeats)
                beside = beside_neighbour(arguments, variant, data, cwd, args.warmup, args.data)
                rows.append({"command": name, "variant": variant, "alone_s": alone, "beside_s": beside,
                             "ratio": beside / alone if alone else None})
                print(f"{name:10} {variant:22} alone {alone:7.2f} s   beside {beside:7.2f} s   "
                      f"{beside / alone if alone else float('nan'):5.1f}x", flush=True)
    from torchtools.core.devices import cpu_name

    print(f"\n{cpu_name()}, {os.cpu_count()} CPUs; training seconds (--json train_seconds)")
    print(f"{'command':10} {'variant':22} {'alone s':>8} {'beside s':>9} {'ratio':>6}")
    for row in rows:
        print(f"{row['command']:10} {row['variant']:22} {row['alone_s']:>8.2f} {row['beside_s']:>9.2f} "
              f"{row['ratio']:>5.1f}x")
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
