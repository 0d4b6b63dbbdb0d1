"""CPU threads for a machine that may be shared: set in the environment before torch is first imported.

PyTorch's CPU kernels run on an OpenMP pool sized, by default, from the machine's cores, and idle
OpenMP threads spin (busy-wait) for a while before they sleep. Beside another job on the same cores
that spinning takes the cores the other job's threads need, and both slow down many times over. So
`configure`, called by the command line's `main` before anything imports torch (OpenMP reads its
environment once, when torch loads it), sets:

- OMP_NUM_THREADS: the cores this process may use: the CPUs of its affinity mask (taskset, cgroup
  cpusets), at most the container's CPU quota (cgroup cpu.max), one per physical core (hyper-threads
  share a core's arithmetic units);
- OMP_WAIT_POLICY=PASSIVE (GNU OpenMP, which PyTorch's wheels use) and KMP_BLOCKTIME=0 (Intel's):
  idle threads sleep at once instead of spinning.

A variable already set is kept: the user's choice wins, and torchrun's OMP_NUM_THREADS=1 too.
No torch import here: this module must load before torch does.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
_CPU_QUOTA = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "QUOTA PERIOD" or "max PERIOD"
_TOPOLOGY = "/sys/devices/system/cpu/cpu{}/topology/thread_siblings_list"


def configure(environ=os.environ) -> dict[str, str]:
    """Set the thread variables not set yet; returns those it set (for tests and --verbose reports)."""
    chosen = {"OMP_NUM_THREADS": str(usable_cores()), **WAIT_POLICY}
    added = {name: value for name, value in chosen.items() if not environ.get(name, "").strip()}
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
