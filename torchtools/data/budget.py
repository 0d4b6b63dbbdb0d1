"""--loader auto: decode an image folder into memory when it fits a budget, else stream it from disk.

The budget is for the decoded set (uint8, count x channels x size x size, what `--loader memory`
keeps). It is TORCHTOOLS_MEMORY_BUDGET when set (bytes, or with a K/M/G/T suffix in powers of 1024:
"500M", "2G", "1.5GiB"), else a quarter of this machine's memory, at most 8 GiB. A quarter leaves room
for the brief second copy decoding makes (the list of images, then the stacked tensor), the model and
the rest of the machine's work; within a container the container's memory limit counts as the machine's.

When the decoded set goes to a GPU (the memory loader keeps it on the training device), the budget is
also at most a quarter of that GPU's free memory: the rest is for the model, its activations and the
optimizer state. TORCHTOOLS_MEMORY_BUDGET, when set, is the budget for whichever device holds the set.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from torchtools.core import numbers
from torchtools.core.errors import UserError

BUDGET_VARIABLE = "TORCHTOOLS_MEMORY_BUDGET"
GIB = 1024 ** 3
DEFAULT_SHARE, DEFAULT_CAP = 0.25, 8 * GIB
GPU_SHARE = 0.25  # of the GPU's free memory
# Where the machine's memory cannot be read (neither sysconf nor a cgroup limit): a budget that any
# machine able to train a CNN has.
UNKNOWN_MEMORY_BUDGET = 2 * GIB
_UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}
_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def decoded_bytes(count: int, channels: int, size: int) -> int:
    """Bytes of `count` decoded uint8 images of channels x size x size."""
    return count * channels * size * size


def choose_loader(requested: str, count: int, channels: int, size: int, *, device=None) -> tuple[str, str]:
    """("memory" or "stream", a one-line reason with the figures), for --loader auto|memory|stream.

    `device`: where the memory loader would keep the set (a torch.device; None or the CPU: host memory only).
    """
    needed = decoded_bytes(count, channels, size)
    figures = f"{count:,} images x {channels}x{size}x{size} = {numbers.size(needed)}"
    if requested != "auto":
        return requested, f"{requested}: --loader {requested} ({figures} decoded)"
    budget, source = memory_budget(device)
    if needed <= budget:
        return "memory", f"memory: {figures}, within the {numbers.size(budget)} budget ({source})"
    return "stream", f"stream: {figures}, over the {numbers.size(budget)} budget ({source})"


def memory_budget(device=None) -> tuple[int, str]:
    """(bytes, where the figure came from) for --loader auto; the smaller of host and GPU budget on CUDA."""
    text = os.environ.get(BUDGET_VARIABLE, "").strip()
    if text:
        return parse_bytes(text), f"{BUDGET_VARIABLE}={text}"
    total = total_memory()
    if total is None:
        budget, source = UNKNOWN_MEMORY_BUDGET, f"memory size unknown; set {BUDGET_VARIABLE}"
    else:
        budget = min(int(total * DEFAULT_SHARE), DEFAULT_CAP)
        source = f"a quarter of {numbers.size(total)} memory, at most 8 GiB; {BUDGET_VARIABLE} overrides"
    if device is not None and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if int(free * GPU_SHARE) < budget:
            budget = int(free * GPU_SHARE)
            source = f"a quarter of {device}'s {numbers.size(free)} free memory; {BUDGET_VARIABLE} overrides"
    return budget, source


def parse_bytes(text: str, *, variable: str = BUDGET_VARIABLE) -> int:
    """'2G' -> 2 GiB, '500M', '1.5GiB', '123456' (bytes); a UserError naming the variable otherwise."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", text.strip().upper())
    if not match or float(match[1]) <= 0:
        raise UserError(f"{variable}={text!r}: give a size in bytes above 0, e.g. 4G, 500M or 1073741824")
    return int(float(match[1]) * _UNITS[match[2]])


def total_memory() -> int | None:
    """This machine's memory in bytes, or its container's limit where that is lower; None if unknown."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        physical = None
    limits = [limit for limit in map(_cgroup_limit, _CGROUP_LIMITS) if limit is not None]
    known = [value for value in (physical, *limits) if value and value > 0]
    return min(known) if known else None


def _cgroup_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    # "max" (v2) means no limit; v1 writes "no limit" as a huge number, which min() then ignores.
    return int(text) if text.isdigit() else None
