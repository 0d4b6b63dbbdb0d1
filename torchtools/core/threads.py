"""CPU threads chosen from what the machine is doing: every usable core alone, a fair share beside other jobs.

PyTorch's CPU kernels run on an OpenMP pool, and idle OpenMP threads spin (busy-wait) between kernels.
A training step is kernels back to back, so a pool as wide as the machine is fastest alone, but beside
another job on the same cores the threads of both spin on cores the other needs and both slow down many
times over (16x for diabetes beside a second training on 2 cores); making idle threads sleep
(OMP_WAIT_POLICY=PASSIVE) costs a wake-up per kernel, worse alone than one thread fewer. A fixed half of
the cores keeps a shared machine fair but costs a job alone up to 1.8x.

So the count follows the machine's load. `configure`, called by the command line's `main` before torch
loads (OpenMP reads its environment once, then), takes a first reading and sets OMP_NUM_THREADS from the
processes that stay runnable over a few milliseconds. `summary` (the run's device line, as training starts) and then
`adjust`, called by the training loop between batches and at most once a `INTERVAL`, measure the other
processes' load over the time since the last reading: the busy time of this process's CPUs in
/proc/stat, less this process's own CPU time, in cores. Threads = usable cores - that load (at least 1),
yielding a core sooner than taking one back: the scheduler shares the cores by thread, so a one-thread
neighbour beside a full pool on 2 cores gets only 2/3 of a core, under a half-way point (`YIELD_AT`); a
core comes back only when the others' use is well under it (`WIDEN_AT`), so a neighbour's pause for a
checkpoint does not make the count flap. Two jobs on 2 cores settle at 1 thread each; a job alone, or
left alone when its neighbour ends, takes both. Decoding workers of this run's own are other
processes too: their cores are not the pool's.

`torch.set_num_threads` mid-run is honoured by the OpenMP pool (GNU OpenMP, as in PyTorch's Linux wheels):
narrowed, the surplus thread stays parked without spinning (the process's CPU use falls to 1 core);
widened, the next kernel runs on the new width. /proc/pressure/cpu is not used: its stall share mixes this
process's own waits with the others' and does not say how many cores they take.

The usable cores are those of the affinity mask (taskset, cgroup cpusets), one per physical core
(hyper-threads share a core's arithmetic units), at most the container's CPU quota (cgroup cpu.max); with
a quota, the other processes of the same cgroup count against it (cpu.stat). A value the user sets is
kept and never adjusted: OMP_NUM_THREADS=2 for a machine of one's own, torchrun's OMP_NUM_THREADS=1.
No torch import here: this module must load before torch does.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

_CGROUP = Path("/sys/fs/cgroup")  # cgroup v2: cpu.max "QUOTA PERIOD" or "max PERIOD"; cpu.stat usage_usec
_CPU_QUOTA = _CGROUP / "cpu.max"
_PROC_STAT = Path("/proc/stat")
_TOPOLOGY = "/sys/devices/system/cpu/cpu{}/topology/thread_siblings_list"
INTERVAL = 1.0  # seconds between readings: a neighbour that starts is seen within a second or two
# A count n is kept while the cores left to the pool are at least n - YIELD_AT, and taken up from below once
# they are at least n - WIDEN_AT. On 2 cores: one thread yielded when the others use over 0.4 of a core
# (the old symmetric 0.75 never saw a neighbour starved to 0.67 by this pool's spinning threads: mnist
# beside one started after it took 2.1-2.8x its time alone), taken back when they use under 0.25.
YIELD_AT = 0.4
WIDEN_AT = 0.25
HINT_READINGS = 5
_SHORTEST = 0.25  # seconds: a shorter interval's busy time is too coarse (jiffies of 10 ms) to read


@dataclass(frozen=True)
class Reading:
    """CPU seconds spent so far, at `at` (time.monotonic)."""
    at: float
    busy: float | None  # by everything on this process's CPUs (/proc/stat); None where unreadable
    own: float  # by this process, all its threads
    group: float | None = None  # by this cgroup, where it has a CPU quota (cpu.stat usage_usec)


@dataclass
class _Auto:
    """The threads of a run whose count torchtools chooses (none set by the user)."""
    limit: int  # usable cores (usable_cores)
    quota: int | None  # the cgroup's CPU limit, whole CPUs
    threads: int
    last: Reading
    others: float | None = None  # the other processes' cores at the last reading


_auto: _Auto | None = None  # set by configure where the count is torchtools' to choose


def configure(environ=os.environ) -> dict[str, str]:
    """Set OMP_NUM_THREADS unless the user did; returns what it set (for tests). Called again, nothing changes.

    A value OpenMP cannot read (abc, 0, -1, 2.5) it ignores, with a raw `libgomp:` line, and torch takes its
    default: the user's count does not hold, so it is ignored here too, with one warning, and chosen as if unset."""
    global _auto
    given = environ.get("OMP_NUM_THREADS", "")
    if _auto is not None or _is_count(given):
        return {}
    if given.strip():
        from torchtools.core.output import warn

        warn(f"ignoring OMP_NUM_THREADS={given!r}: not a number of threads (a whole number above 0, or one per "
             "nesting level as in 4,2); choosing the count as if it were not set")
    limit = usable_cores()
    threads = choose(None, limit, _others_running())
    _auto = _Auto(limit, cpu_quota(), threads, read())
    added = {"OMP_NUM_THREADS": str(threads)}
    environ.update(added)
    return added


_COUNT_MAX = 2**63 - 1  # libgomp reads each count as a C long: a larger one is invalid to it, as abc is


def _is_count(text: str) -> bool:
    """OMP_NUM_THREADS as OpenMP reads it: whole numbers above 0 (a C long), one per nesting level ("4", "4,2")."""
    return all(part.strip().isascii() and part.strip().isdigit() and 0 < int(part) <= _COUNT_MAX
               for part in text.split(","))


def choose(current: int | None, limit: int, others: float, group_others: float = 0.0, quota: int | None = None) \
        -> int:
    """The thread count for `limit` usable cores while other processes keep `others` cores busy (and, in a
    cgroup with a `quota`, `group_others` of it): what is left, at least 1. From `current`, it narrows as
    soon as what is left falls YIELD_AT under the count, and widens only to counts WIDEN_AT within reach."""
    free = limit - others
    if quota is not None:
        free = min(free, quota - group_others)
    kept = max(1, min(limit, math.floor(free + YIELD_AT)))
    if current is None or kept < current:
        return kept
    return max(current, min(limit, math.floor(free + WIDEN_AT)))


def adjust(*, force: bool = False) -> None:
    """Between batches: every INTERVAL, measure the other processes' load and resize the pool to what is
    left, saying so on stderr. Costs a clock read when no reading is due; nothing where the user set it."""
    if _auto is None or not force and time.monotonic() - _auto.last.at < INTERVAL:
        return
    before = _auto.threads
    if _update(_auto) and before != _auto.threads:
        from torchtools.core.output import say

        say(f"threads: {before} -> {_auto.threads} ({_others_text(_auto.others)})")


def summary() -> str:
    """The threads part of the run's device line, measured now: "2 threads", "1 thread (other processes use
    1.0 core)", "1 thread (OMP_NUM_THREADS)" where the user's value holds."""
    if _auto is None:
        import torch

        users = " (OMP_NUM_THREADS)" if os.environ.get("OMP_NUM_THREADS", "").strip() else ""
        return _count_text(torch.get_num_threads()) + users
    _update(_auto)
    shared = _auto.others is not None and _auto.threads < _auto.limit
    return _count_text(_auto.threads) + (f" ({_others_text(_auto.others)})" if shared else "")


def _update(auto: _Auto) -> bool:
    """Take a reading, choose the count from the interval since the last one and apply it; False when the
    interval was too short or unreadable."""
    now = read()
    seconds = now.at - auto.last.at
    if seconds < _SHORTEST or now.busy is None or auto.last.busy is None:
        return False
    own = (now.own - auto.last.own) / seconds
    auto.others = max(0.0, (now.busy - auto.last.busy) / seconds - own)
    group_others = 0.0
    if auto.quota is not None and now.group is not None and auto.last.group is not None:
        group_others = max(0.0, (now.group - auto.last.group) / seconds - own)
    auto.last = now
    threads = choose(auto.threads, auto.limit, auto.others, group_others, auto.quota)
    if threads != auto.threads:
        import torch  # loaded by now: readings are taken as training runs

        auto.threads = threads
        torch.set_num_threads(threads)
    return True


def _count_text(count: int) -> str:
    return f"{count} thread" + ("" if count == 1 else "s")


def _others_text(others: float) -> str:
    return f"other processes use {others:.1f} core" + ("" if f"{others:.1f}" == "1.0" else "s")


def read(stat: Path = _PROC_STAT, cgroup: Path = _CGROUP) -> Reading:
    """The CPU seconds spent so far by this process's CPUs, this process, and its cgroup."""
    times = os.times()
    return Reading(time.monotonic(), _busy(stat), times.user + times.system, _group_usage(cgroup))


def _busy(stat: Path) -> float | None:
    """Busy CPU seconds since boot of the CPUs this process may run on (user, nice, system, irq, softirq)."""
    cpus = {f"cpu{cpu}" for cpu in _affinity()}
    ticks = 0
    try:
        for line in stat.read_text().splitlines():
            name, *fields = line.split()
            if name in cpus:
                ticks += sum(int(fields[index]) for index in (0, 1, 2, 5, 6))
    except (OSError, ValueError, IndexError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK") if ticks else None


def _others_running() -> int:
    """Runnable tasks besides this process, the fewest of up to HINT_READINGS a millisecond apart: the hint until
    the first measured interval. One reading saw a process passing through (a shell, the previous job ending)
    in 1 of 6 starts on a quiet machine, and a pool started at 1 thread runs 15-25% slower once widened to 2
    (benchmarks/shared_machine.py --pool-check; mnist alone took 1.14-1.18x OMP_NUM_THREADS=2). A neighbour's
    training is runnable at every reading. Alone, the first reading is 0: nothing more is read or waited."""
    others = max(0, _procs_running() - 1)
    for _ in range(HINT_READINGS - 1):
        if others == 0:
            break
        time.sleep(0.001)
        others = min(others, max(0, _procs_running() - 1))
    return others


def _procs_running(stat: Path = _PROC_STAT) -> int:
    try:
        for line in stat.read_text().splitlines():
            if line.startswith("procs_running "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 1


def _group_usage(cgroup: Path) -> float | None:
    try:
        for line in (cgroup / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
    except (OSError, ValueError):
        pass
    return None


def _affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        return list(range(os.cpu_count() or 1))


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on; at least 1."""
    cpus = _affinity()
    return len({_siblings(cpu) for cpu in cpus}) or len(cpus) or 1


def usable_cores() -> int:
    """Physical cores among the CPUs this process may run on, capped by a container's CPU quota; at least 1."""
    cores, quota = physical_cores(), cpu_quota()
    return max(1, min(cores, quota) if quota else cores)


def _siblings(cpu: int) -> str:
    """The hyper-threads sharing `cpu`'s core ("0,64" or "0-1"); the CPU itself where the topology is unknown."""
    try:
        return Path(_TOPOLOGY.format(cpu)).read_text().strip()
    except OSError:
        return str(cpu)


def cpu_quota(path: Path = _CPU_QUOTA) -> int | None:
    """The cgroup v2 CPU limit in whole CPUs (rounded up), or None where there is none."""
    try:
        quota, period = path.read_text().split()[:2]
        return math.ceil(int(quota) / int(period)) if quota != "max" else None
    except (OSError, ValueError):
        return None
