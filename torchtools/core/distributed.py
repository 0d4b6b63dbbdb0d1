"""Multi-process training under torchrun: join the job, wrap the model in DDP, add up metrics across processes.

torchrun starts one process per device and tells each its place through the environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT: `launch_environment`). `Run.start` calls `start`; after that the
engine wraps the model, TensorBatches take their share of the data, metrics are summed over all
processes, and only process 0 prints, logs and saves; each process ends through `leave`. Outside torchrun
(or with one process) every function here is a no-op, so single-process runs take exactly the path they
always did.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from torchtools.core import output, stopping
from torchtools.core.errors import UserError

TIMEOUT_VARIABLE = "TORCHTOOLS_DIST_TIMEOUT"
# Seconds a collective waits for the other processes before this one gives up. Long enough for
# process 0 to write a large checkpoint while the others wait; short enough that a dead or stuck
# process ends the job instead of hanging it.
DEFAULT_TIMEOUT = 300


class LostPeers(UserError):
    """Another process of the job failed or stopped answering; reported in one line, exit 2."""


@dataclass(frozen=True)
class _Job:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    timeout: float = DEFAULT_TIMEOUT
    cpu_group: Any = None  # a gloo group beside NCCL, for host-side agreements; None: the default (gloo) group


_job = _Job()


def rank() -> int:
    return _job.rank


def world_size() -> int:
    return _job.world_size


def is_main() -> bool:
    """True in the process that prints, writes TensorBoard and saves checkpoints (rank 0, or the only one)."""
    return _job.rank == 0


@dataclass(frozen=True)
class Launch:
    """This process's place in a torchrun job, from the variables torchrun sets."""

    rank: int
    world_size: int
    local_rank: int


TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_warned: set[tuple] = set()


def launch_environment() -> Launch | None:
    """The torchrun job this process was started in, or None (one process).

    torchrun sets all of RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT. A WORLD_SIZE without
    the others is left over from something else (a scheduler's script, a shell profile): it is ignored
    with a warning, and the command trains in one process. All five set but not numbers is a broken
    launch: an error.
    """
    present = {name: os.environ[name] for name in TORCHRUN_VARIABLES if os.environ.get(name, "").strip()}
    if "WORLD_SIZE" not in present:
        return None
    if len(present) < len(TORCHRUN_VARIABLES):
        missing = [name for name in TORCHRUN_VARIABLES if name not in present]
        if present["WORLD_SIZE"].strip() != "1" and tuple(present.items()) not in _warned:
            _warned.add(tuple(present.items()))
            output.warn(f"ignoring WORLD_SIZE={present['WORLD_SIZE']!r}: {', '.join(missing)} not set, so this is "
                        "not a torchrun launch (torchrun sets them all); training in one process")
        return None
    numbers = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        try:
            numbers[name] = int(present[name])
        except ValueError:
            raise UserError(f"{name}={present[name]!r} is not a number: start several processes with torchrun "
                            "(it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT)") from None
    rank, processes, local_rank = numbers["RANK"], numbers["WORLD_SIZE"], numbers["LOCAL_RANK"]
    if processes < 1 or not 0 <= rank < processes or local_rank < 0:
        raise UserError(f"RANK={rank}, LOCAL_RANK={local_rank}, WORLD_SIZE={processes} do not describe a torchrun "
                        "job: RANK must lie in 0..WORLD_SIZE-1")
    return Launch(rank, processes, local_rank) if processes > 1 else None


def start(device: torch.device) -> torch.device:
    """Join the torchrun job this process was started in, if any; return the device it trains on.

    CUDA: one GPU per process, cuda:LOCAL_RANK (devices.resolve_device chose it), with NCCL, and a gloo
    group beside it for the small host-side agreements (`all_agree`). CPU: gloo. Every process gets the
    same seed, so data splits drawn from it agree; DDP then copies process 0's weights to all.
    """
    global _job
    launch = launch_environment()
    if launch is None:
        return device
    if _job.world_size > 1:  # joined already, by an earlier session in this process
        return _job.device
    if device.type == "cuda":
        if device.index != launch.local_rank:
            raise UserError(f"under torchrun process {launch.local_rank} trains on cuda:{launch.local_rank}, "
                            f"not {device}: pass --device cuda or auto")
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise UserError(f"torchrun runs on --device cuda or cpu, not {device.type}")
    timeout = _timeout_seconds()
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout),
                                device_id=device if device.type == "cuda" else None)
        cpu_group = dist.new_group(backend="gloo") if backend != "gloo" else None
    except dist.DistError as error:
        raise LostPeers(f"could not join the torchrun job of {launch.world_size} processes within {timeout:g}s "
                        f"({_first_line(error)}); check that every node was started") from None
    _job = _Job(dist.get_rank(), dist.get_world_size(), device, timeout, cpu_group)
    atexit.register(_stop)
    if not is_main():
        output.mute()
    output.say(f"torchrun: {_job.world_size} processes, {backend} on {device.type}; --batch-size is per process")
    return device


def _timeout_seconds() -> float:
    text = os.environ.get(TIMEOUT_VARIABLE, str(DEFAULT_TIMEOUT))
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise UserError(f"{TIMEOUT_VARIABLE}={text!r}: give the collective timeout in seconds, above 0")
    return seconds


def _stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def leave(code: object) -> None:
    """End this process of a torchrun job with `code` (SystemExit's) once its command is over: the exit handlers
    run (`_stop` destroys the process group), the output is flushed, and the interpreter's own teardown is
    skipped. In it a gloo thread could outlive what it uses: 1 exit in about 200 of a 2-process job on a loaded
    2-core machine aborted ("terminate called without an active exception", SIGABRT, exit -6) after the run had
    written every file and destroyed its group (8 in 15 for a script of the core's own: tests/test_distributed.py).
    The CLI calls it for every command; a script that joins a job itself (`start`) ends with `leave(0)`, where
    PyTorch's scripts end with destroy_process_group. Outside torchrun it returns and the process ends as usual."""
    if _job.world_size == 1:
        return
    atexit._run_exitfuncs()
    if isinstance(code, str):  # as the interpreter does with SystemExit("message")
        print(code, file=sys.stderr)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a reader gone (the closed-pipe stop) has nothing left to take
            stream.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def wrap(model: nn.Module) -> nn.Module:
    """The model in DistributedDataParallel (which copies process 0's weights to all), or itself."""
    if _job.world_size == 1:
        return model

    device_ids = [_job.device.index] if _job.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def share_buffers(model: nn.Module) -> None:
    """Copy process 0's buffers (BatchNorm running statistics) to all.

    DDP does so before each training forward, so after the last one every process still holds its
    own; evaluation and the checkpoint must use the same (process 0's) statistics.
    """
    if _job.world_size == 1:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def sum_across(*values: Tensor | float | int) -> list[float]:
    """Each value summed over all processes, in one all-reduce, as Python numbers.

    Outside torchrun the values come back as they are (tensors read with .item()).
    """
    if _job.world_size == 1:
        return [value.item() if isinstance(value, Tensor) else value for value in values]
    totals = torch.tensor([float(value) for value in values], dtype=torch.float64, device=_job.device)
    dist.all_reduce(totals)
    return totals.tolist()


def gather_strided(share: Tensor | None) -> Tensor:
    """The whole tensor from every process's strided share (process r holds rows r, r + world_size, ...)."""
    shares: list[Tensor | None] = [None] * _job.world_size
    dist.all_gather_object(shares, share)
    present = [(position, part) for position, part in enumerate(shares) if part is not None]
    first = present[0][1]
    whole = first.new_empty((sum(len(part) for _, part in present), *first.shape[1:]))
    for position, part in present:
        whole[position::_job.world_size] = part
    return whole


def all_agree(flag: bool) -> bool:
    """True when `flag` is True in every process (outside torchrun: `flag`). A host-side collective over
    gloo, so under NCCL it waits on no GPU work; every process must call it at the same point."""
    if _job.world_size == 1:
        return flag
    value = torch.tensor([int(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MIN, group=_job.cpu_group)
    return bool(value.item())


def barrier() -> None:
    if _job.world_size > 1:
        dist.barrier()


def train_sampler(dataset, *, seed: int):
    """For a DataLoader over a training Dataset: this process's shuffled share of every epoch.

    None outside torchrun (then build the DataLoader with shuffle=True as usual). `fit` calls
    `set_epoch` on it, so each epoch is reshuffled from the shared seed.
    """
    if _job.world_size == 1:
        return None

    return DistributedSampler(dataset, num_replicas=_job.world_size, rank=_job.rank, shuffle=True, seed=seed,
                              drop_last=True)


@contextlib.contextmanager
def reporting_lost_peers() -> Iterator[None]:
    """Turn the error a collective raises when another process died or hung into one clear line; where that
    process was stopped (a signal, a closed pipe: `announce_stop`), stop the same way, through the stop path
    (core/stopping.py). A decorator (`@reporting_lost_peers()`) or a `with` block.

    gloo raises a plain RuntimeError naming its transport, NCCL a DistBackendError; the process that
    failed first prints its own error, so this one only says it stopped because of it.
    """
    try:
        yield
    except RuntimeError as error:
        if _job.world_size == 1 or not _is_communication_error(error):
            raise
        stopped = _stopped_peer()
        if stopped is not None:
            stopping.follow(stopped[1], f"process {stopped[0]} of {_job.world_size}")
        raise LostPeers(
            f"process {_job.rank} of {_job.world_size} stopped: another process failed or did not answer "
            f"within {_job.timeout:g}s ({TIMEOUT_VARIABLE}); its error is in the log. "
            f"{_first_line(error)}") from None


STOPPED_KEY = "torchtools/stopped"  # in the job's store: "RANK SIGNUM" of a process the stop path ended


def announce_stop(signum: int) -> None:
    """Say in the job's store that this process stops by `signum` (the stop path calls this, before the process
    ends and its peers' collectives fail). A store already gone (its host process ended) says nothing."""
    if _job.world_size == 1 or not dist.is_initialized():
        return
    with contextlib.suppress(RuntimeError), _native_stderr_quiet():  # the store's own errors among them
        dist.distributed_c10d._get_default_store().set(STOPPED_KEY, f"{_job.rank} {signum}")


def _stopped_peer() -> tuple[int, int] | None:
    """(rank, signal) of a process of this job that the stop path ended, or None (none did, or none can say)."""
    try:
        with _native_stderr_quiet():
            store = dist.distributed_c10d._get_default_store()
            if not store.check([STOPPED_KEY]):
                return None
            rank, signum = map(int, store.get(STOPPED_KEY).decode().split())
    except (RuntimeError, ValueError):
        return None
    return rank, signum


@contextlib.contextmanager
def _native_stderr_quiet() -> Iterator[None]:
    """The store's C++ client logs a failed read or write on stderr with its whole native stack (60 frames:
    "[W TCPStore.cpp] recvValue failed ... frame #0: ...") before it raises, as it does where the store lived in
    the process that ended (process 0, launched without torchrun's agent). Its error is this module's to say:
    file descriptor 2 points at /dev/null for the few milliseconds the store is asked."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _is_communication_error(error: RuntimeError) -> bool:
    text = str(error)
    return isinstance(error, dist.DistError) or "gloo" in text or "pair closure" in text


def _first_line(error: BaseException) -> str:
    """The message's first sentence, without the source location gloo puts first ([/path/pair.cc:561])."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", str(error).strip())
    return text.splitlines()[0].split(". ")[0] if text else type(error).__name__
