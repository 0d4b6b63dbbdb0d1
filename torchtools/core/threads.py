"""CPU threads for a machine that may be shared: set in the environment before torch is first imported.

PyTorch's CPU kernels run on an OpenMP pool sized, by default, from the machine's cores, and idle
OpenMP threads spin (busy-wait) between kernels. A training step is kernels back to back, so beside
another job on the same cores the threads of both spin on cores the other needs, and both slow down
many times over. Making idle threads sleep (OMP_WAIT_POLICY=PASSIVE) frees the cores but costs a
wake-up per kernel, which alone is worse than one thread fewer. Measured (benchmarks/shared_machine.py,
AMD EPYC with 2 cores, seconds of training alone -> beside a second training with the same settings):

| command | torch's default (2 threads, spinning) | 2 threads, PASSIVE | 1 thread |
|---|---|---|---|
| diabetes | 1.88 -> 30.1 (16.0x) | 3.71 -> 2.03 | 1.88 -> 1.98 (1.1x) |
| names-rnn (1 epoch) | 2.83 -> 20.3 (7.2x) | 4.26 -> 4.67 | 4.10 -> 3.93 (1.0x) |
| mnist (1 epoch) | 4.22 -> 28.4 (6.7x) | 8.62 -> 11.9 | 5.86 -> 5.65 (1.0x) |

So `configure`, called by the command line's `main` before anything imports torch (OpenMP reads its
environment once, when torch loads it), sets OMP_NUM_THREADS to half the cores this process may use,
at least one: two jobs then fill the machine without a spinning thread on a core the other needs, at
a cost alone of 1.0-1.45x here. The cores are those of its affinity mask (taskset, cgroup cpusets), at
most the container's CPU quota (cgroup cpu.max), one per physical core (hyper-threads share a core's
arithmetic units).

A variable already set is kept: the user's choice wins (OMP_NUM_THREADS=2 for a machine of one's own),
and torchrun's OMP_NUM_THREADS=1 too. No torch import here: this module must load before torch does.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

_CPU_QUOTA = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "QUOTA PERIOD" or "max PERIOD"
_TOPOLOGY = "/sys/devices/system/cpu/cpu{}/topology/thread_siblings_list"


def configure(environ=os.environ) -> dict[str, str]:
    """Set OMP_NUM_THREADS unless it is set; returns what it set (for tests)."""
    if environ.get("OMP_NUM_THREADS", "").strip():
        return {}
    added = {"OMP_NUM_THREADS": str(max(1, usable_cores() // 2))}
    environ.update(added)
    return added


def usable_cores() -> int:
    """Physical cores among the CPUs this process may run on, capped by a container's CPU quota; at least 1."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        cpus = list(range(os.cpu_count() or 1))
    cores = len({_siblings(cpu) for cpu in cpus}) or len(cpus)
    quota = cpu_quota()
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
