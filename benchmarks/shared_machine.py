"""A machine alone and shared: mnist, cifar, names-rnn and diabetes timed alone with torchtools' thread rule
against fixed counts, and beside a second training started before or after them (core/threads.py).

Each job runs the command as a user does (`python -m torchtools ... --json`, its own process) and its
training seconds are read from the summary; the threads it used from its `device:` and `threads:` lines.

- alone, per variant: torchtools (OMP_NUM_THREADS unset: the count follows the machine's load),
  threads=<cores> (OMP_NUM_THREADS=<cores>, PyTorch's own count) and threads=1 (OMP_NUM_THREADS=1, the
  old rule of half the cores, on 2 cores). The median of --repeats runs, the variants taking turns.
- before: a neighbour (an endless `mnist` training, same variant) is started first; once it trains and
  --delay seconds more, the job runs; the neighbour is stopped when it ends.
- after: the job starts first; --delay seconds after it starts training, the neighbour starts (the case a
  check made only at start misses). The job's seconds include the neighbour's start-up beside it.
Ratios are a job's seconds over its seconds alone with the same variant: 2x is a fair share of 2 cores.

Sizes (--quick aside): diabetes 400 epochs, names-rnn 3 epochs, mnist 2 epochs, cifar 1 epoch, for about
8-15 s each alone on 2 cores; the whole script about 15-20 minutes on a quiet 2-core machine. Then the
course-loop ratio (benchmarks/vision.py: the course's DataLoader loop against torchtools' engine, 1 epoch,
cifar quick and the mnist course CNN) with PyTorch's own thread count, which is what torchtools takes alone.
Time nothing while anything else runs: the figures are only worth a quiet machine.

    PYTHONPATH=. .venv/bin/python benchmarks/shared_machine.py --data ../shared/data
    PYTHONPATH=. .venv/bin/python benchmarks/shared_machine.py --quick   # end to end in < 1 min (figures: none)
    PYTHONPATH=. .venv/bin/python benchmarks/shared_machine.py --pool-check   # the pool resized mid-run, 30 s
    PYTHONPATH=. .venv/bin/python benchmarks/shared_machine.py --commands names-rnn \
        --beside-variants torchtools,threads=1

CIFAR-10 is read from --cifar (cifar-10-batches-py); where it is absent it is built there first from the
JPEG archive under --data with ../shared/tools/cifar10_jpg_to_batches.py (never into the repository).
It prints a markdown table for the closing note, naming the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO.parent / "shared" / "tools"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME", "MKL_NUM_THREADS", "GOMP_SPINCOUNT")
CORES = os.cpu_count() or 1
VARIANTS = {"torchtools": {}, f"threads={CORES}": {"OMP_NUM_THREADS": str(CORES)},
            "threads=1": {"OMP_NUM_THREADS": "1"}}
# The measured commands (arguments, which data root they read) at sizes of seconds alone; --quick's below.
COMMANDS = {
    "diabetes": (["diabetes", "--epochs", "400"], None),  # the table built into the package
    "names-rnn": (["names-rnn", "--epochs", "3"], "data"),
    "mnist": (["mnist", "--epochs", "2"], "data"),
    "cifar": (["cifar", "--epochs", "1"], "cifar"),
}
QUICK = {"diabetes": (["diabetes", "--epochs", "60"], None)}
NEIGHBOUR = ["mnist", "--epochs", "1000"]  # stopped when the job is done
COMMON = ["--device", "cpu", "--json", "--no-tensorboard"]  # not --quiet: the device and threads lines are read


def environment(variant: str, data: Path | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    env.update(VARIANTS[variant])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if data is not None:
        env["TORCHTOOLS_DATA"] = str(data)
    return env


@dataclass
class Job:
    """One torchtools process, its stderr read as it comes: `training` is set at its device line."""
    arguments: list[str]
    variant: str
    data: Path | None
    cwd: Path
    training: threading.Event = field(default_factory=threading.Event)
    threads: list[str] = field(default_factory=list)  # the counts it said: the device line's, then each change
    stderr: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.process = subprocess.Popen([sys.executable, "-m", "torchtools", *self.arguments, *COMMON],
                                        env=environment(self.variant, self.data), cwd=self.cwd, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line)
            if line.startswith("device: "):
                self.threads.append(re.search(r"(\d+) (?:CPU )?threads?", line).group(1))
                self.training.set()
            elif line.startswith("threads: "):
                self.threads.append(line.split()[3])

    def wait_training(self, timeout: float = 300) -> None:
        if not self.training.wait(timeout) or self.process.poll() not in (None, 0):
            raise RuntimeError(f"{' '.join(self.arguments)} ({self.variant}) did not start training: "
                               f"{''.join(self.stderr)[-400:]}")

    def seconds(self) -> float:
        stdout = self.process.stdout.read()  # stderr is the reader thread's
        self.process.wait()
        self.reader.join()
        if self.process.returncode != 0:
            raise RuntimeError(f"{' '.join(self.arguments)} ({self.variant}) failed: {''.join(self.stderr)[-400:]}")
        return json.loads(stdout.strip().splitlines()[-1])["train_seconds"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join()
        self.process.stdout.close()


def alone(arguments, variants, data, cwd, repeats: int) -> dict[str, tuple[float, str]]:
    """Per variant, the median training seconds of `repeats` runs and the thread counts the runs said. The
    variants take turns within each round, so that all of them see the same drift of a noisy machine (one
    run's seconds on the 2-core VM varied up to 2x from minute to minute)."""
    seconds, counts = {variant: [] for variant in variants}, {variant: set() for variant in variants}
    for _ in range(repeats):
        for variant in variants:
            job = Job(arguments, variant, data, cwd)
            seconds[variant].append(job.seconds())
            counts[variant].add("->".join(job.threads))
    return {variant: (statistics.median(seconds[variant]), ", ".join(sorted(counts[variant])))
            for variant in variants}


def beside(arguments, variant, data, cwd, mnist_root: Path, *, neighbour_first: bool,
           delay: float) -> tuple[float, str]:
    """The job's training seconds beside an endless mnist training with the same variant, started before it
    (neighbour_first) or `delay` seconds after it starts training; and the thread counts it said."""
    neighbour = job = None
    try:
        if neighbour_first:
            neighbour = Job(NEIGHBOUR, variant, mnist_root, cwd)
            neighbour.wait_training()
            time.sleep(delay)
            job = Job(arguments, variant, data, cwd)
        else:
            job = Job(arguments, variant, data, cwd)
            job.wait_training()
            time.sleep(delay)
            neighbour = Job(NEIGHBOUR, variant, mnist_root, cwd)
        return job.seconds(), "->".join(job.threads)
    finally:
        for process in filter(None, (neighbour, job)):
            if process.process.poll() is None:
                process.stop()


def course_ratio(task: str, data: Path, cifar: Path, epochs: int) -> str:
    """benchmarks/vision.py's speed ratio (course loop / torchtools per epoch), at PyTorch's thread count."""
    arguments = [sys.executable, str(REPO / "benchmarks" / "vision.py"), "--task", task, "--epochs", str(epochs),
                 "--data", str(data), "--cifar-batches", str(cifar)]
    completed = subprocess.run(arguments, env=environment("torchtools", None), capture_output=True, text=True)
    found = re.search(r"speed ratio \(course / torchtools per epoch\): ([\d.]+)x", completed.stdout)
    if completed.returncode != 0 or found is None:
        raise RuntimeError(f"vision.py --task {task} failed: {(completed.stdout + completed.stderr)[-400:]}")
    return f"{found.group(1)}x"


# A training-like loop (matmul, conv forward and backward) for 3 s per count, in one process started with
# OMP_NUM_THREADS=<first>: steps/s, CPU use (cores) and the process's threads, as torch.set_num_threads moves.
POOL_CHECK = """
import os, sys, time, torch
x, conv, image = torch.randn(512, 512), torch.nn.Conv2d(16, 32, 3), torch.randn(32, 16, 28, 28)
for count in map(int, sys.argv[1:]):
    torch.set_num_threads(count)
    started, cpu, steps = time.perf_counter(), sum(os.times()[:2]), 0
    while time.perf_counter() - started < 3:
        (x @ x).sum(); conv(image).sum().backward(); steps += 1
    wall = time.perf_counter() - started
    status = dict(line.split(':', 1) for line in open('/proc/self/status'))
    print(count, torch.get_num_threads(), f'{steps / wall:.1f}', f'{(sum(os.times()[:2]) - cpu) / wall:.2f}',
          status['Threads'].strip())
"""


def pool_check() -> None:
    """Does the pool follow torch.set_num_threads mid-run, and is one started narrow as fast once widened?"""
    print("| started with | set to | torch.get_num_threads() | steps/s | CPU use (cores) | threads |")
    print("|---|---|---|---|---|---|")
    for first, counts in ((CORES, [CORES, 1, CORES]), (1, [1, CORES, 1, CORES])):
        env = {**environment("torchtools", None), "OMP_NUM_THREADS": str(first)}
        completed = subprocess.run([sys.executable, "-c", POOL_CHECK, *map(str, counts)], env=env, check=True,
                                   capture_output=True, text=True)
        for line in completed.stdout.splitlines():
            print(f"| OMP_NUM_THREADS={first} | " + " | ".join(line.split()) + " |")


def build_cifar(data: Path, cifar: Path) -> None:
    if (cifar / "cifar-10-batches-py").is_dir():
        return
    print(f"building {cifar}/cifar-10-batches-py from {data / 'cifar10-jpg.tar.gz'} (not timed)", flush=True)
    subprocess.run([sys.executable, str(TOOLS / "cifar10_jpg_to_batches.py"), str(data / "cifar10-jpg.tar.gz"),
                    str(cifar)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="data root holding MNIST/raw (the neighbour trains on it), names and CIFAR-10's JPEGs")
    parser.add_argument("--cifar", type=Path, default=Path("/tmp/cifar-batches"),
                        help="root holding cifar-10-batches-py (built there from --data when absent)")
    parser.add_argument("--commands", default=",".join(COMMANDS))
    parser.add_argument("--variants", default=",".join(VARIANTS), help="alone")
    parser.add_argument("--beside-variants", default="torchtools", help="beside a neighbour, before and after")
    parser.add_argument("--delay", type=float, default=2.0,
                        help="seconds between the first job's start of training and the second's start")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case, alone and beside (their median)")
    parser.add_argument("--course", action=argparse.BooleanOptionalAction, default=True,
                        help="also the course-loop ratios of benchmarks/vision.py (cifar quick, mnist CNN)")
    parser.add_argument("--quick", action="store_true",
                        help="the script end to end at tiny sizes: diabetes, one run each, torchtools and threads=1 "
                             "(threads=<cores> beside other jobs can take minutes), no course loops")
    parser.add_argument("--pool-check", action="store_true",
                        help="only check that torch.set_num_threads resizes the pool mid-run, both ways (30 s)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    args.data, args.cifar = args.data.resolve(), args.cifar.resolve()  # the jobs run in a folder of their own
    if args.pool_check:
        return pool_check()
    commands = QUICK if args.quick else {name: COMMANDS[name] for name in args.commands.split(",")}
    repeats, delay = (1, 0.5) if args.quick else (args.repeats, args.delay)
    variants = ["torchtools", "threads=1"] if args.quick else args.variants.split(",")
    beside_variants = [variant for variant in args.beside_variants.split(",") if variant]
    if "cifar" in commands:
        build_cifar(args.data, args.cifar)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        for name, (arguments, root) in commands.items():
            data = {"data": args.data, "cifar": args.cifar, None: None}[root]
            row = {"command": name, "size": " ".join(arguments[1:]), "alone": {}, "before": {}, "after": {}}
            row["alone"] = alone(arguments, list(dict.fromkeys(variants + beside_variants)), data, cwd, repeats)
            for variant, (seconds, counts) in row["alone"].items():
                print(f"{name:10} {variant:11} alone  {seconds:7.2f} s  threads {counts}", flush=True)
            for variant in beside_variants:
                base = row["alone"][variant]
                for case, first in (("before", True), ("after", False)):
                    runs = [beside(arguments, variant, data, cwd, args.data, neighbour_first=first, delay=delay)
                            for _ in range(repeats)]
                    seconds = statistics.median(run[0] for run in runs)
                    counts = ", ".join(sorted({run[1] for run in runs}))
                    row[case][variant] = (seconds, counts)
                    print(f"{name:10} {variant:11} {case:6} {seconds:7.2f} s  {seconds / base[0]:4.2f}x  threads "
                          f"{counts}", flush=True)
            rows.append(row)
    course = {}
    if args.course and not args.quick:
        build_cifar(args.data, args.cifar)
        course = {"cifar quick": course_ratio("cifar", args.data, args.cifar, 1),
                  "mnist course CNN": course_ratio("mnist", args.data, args.cifar, 1)}
    print_table(rows, course, variants, beside_variants)
    if args.out is not None:
        args.out.write_text(json.dumps({"rows": rows, "course": course}, indent=2))


def print_table(rows: list[dict], course: dict[str, str], variants: list[str], beside_variants: list[str]) -> None:
    from torchtools.core.devices import cpu_name

    full = f"threads={CORES}"
    print(f"\n{cpu_name()}, {CORES} CPUs; training seconds (--json train_seconds), threads as each run said\n")
    header = ["command", *[f"{variant} alone" for variant in variants]]
    if "torchtools" in variants and full in variants:
        header.append(f"torchtools / {full}")
    for variant in beside_variants:
        header += [f"{variant}: beside one started before", f"{variant}: beside one started after"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cells = [f"{row['command']} ({row['size']})"]
        cells += [f"{row['alone'][variant][0]:.2f} s ({row['alone'][variant][1]})" for variant in variants]
        if "torchtools" in variants and full in variants:
            cells.append(f"{row['alone']['torchtools'][0] / row['alone'][full][0]:.2f}x")
        for variant in beside_variants:
            base = row["alone"][variant][0]
            for case in ("before", "after"):
                seconds, counts = row[case][variant]
                cells.append(f"{seconds:.2f} s, {seconds / base:.2f}x ({counts})")
        print("| " + " | ".join(cells) + " |")
    if course:
        print("\ncourse loop / torchtools per epoch (benchmarks/vision.py, 1 epoch, PyTorch's thread count): "
              + ", ".join(f"{name} {ratio}" for name, ratio in course.items()))


if __name__ == "__main__":
    main()
