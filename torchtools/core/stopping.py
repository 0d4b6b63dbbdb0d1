"""The one stop path: Ctrl-C (SIGINT), SIGTERM and a closed output pipe end a command the same way.

`handling()` wraps every command (cli.py). A signal raises `Stop` where the program is (a KeyboardInterrupt,
so every `except KeyboardInterrupt` and `finally` on the way runs), unless it lands inside `deferred()` (an
epoch's record and save): there it is held back and raised as the block ends, so a file or an epoch is done
whole or not begun. A closed stdout/stderr pipe (`2>&1 | head -1`) silences the output and stops the run at
the end of the next such block (the epoch in progress, saved), or when the command ends: a reader that
went away does not cost the epoch. Once a stop is raised, later signals are ignored, so its own save is not
torn. At the end every child process is ended (DataLoader workers, the fork server, pools), one line says
what was saved (`note`, kept up to date by the training engine), and the command exits 128 + the signal:
130 (SIGINT), 143 (SIGTERM), 141 (SIGPIPE, a closed pipe). Under torchrun, a process stopped so tells the
others, and one that learns of it when a collective fails stops the same way (`follow`): process 0 saves the
epoch under way as partial, as one process would, and its line names the process that was stopped.

Nothing here imports torch: `torchtools --help` stays fast.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PIPE = getattr(signal, "SIGPIPE", 13)  # a closed stdout/stderr pipe ends the run as SIGPIPE would: 141
SIGNALS = (signal.SIGINT, signal.SIGTERM)
CAUSES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM", PIPE: "a closed output pipe"}
CHILDREN_GRACE = 3.0  # seconds children have to end after SIGTERM before SIGKILL


class Stop(KeyboardInterrupt):
    """A stop requested by a signal or a closed pipe; `signum` gives the exit code, 128 + signum. `process`
    names the other process of a torchrun job whose stop this one follows (`follow`); None: this one's own."""

    def __init__(self, signum: int, process: str | None = None):
        super().__init__(signum)
        self.signum, self.process = signum, process


@dataclass
class _State:
    received: list[int] = field(default_factory=list)  # every stop request of this command, in order
    depth: int = 0  # deferred() blocks open
    pending: int | None = None  # a stop held back: a signal inside deferred(), or a closed pipe
    stopping: bool = False  # a Stop was raised: what comes after is ignored
    ignored: list[int] = field(default_factory=list)  # requests that came once the stop was under way
    note: str | None = None  # what a stop now leaves saved, for its one line


_state = _State()


def note(text: str) -> None:
    """Say what a stop at this point leaves (e.g. "model.pt holds epoch 3 complete"), for the stop's line."""
    _state.note = text


def received() -> list[int]:
    """The stop requests (signal numbers) this command has had, in order."""
    return list(_state.received)


def request(signum: int) -> None:
    """Stop: raise Stop now, or at the end of the deferred() block this is in; a closed pipe (PIPE) waits
    for the end of the next deferred() block or of the command. Ignored once a stop is under way."""
    _state.received.append(signum)
    if _state.stopping or _state.pending not in (None, PIPE):
        _state.ignored.append(signum)  # a stop is under way, or held back: this one changes nothing
    elif signum == PIPE:
        _state.pending = PIPE
    elif _state.depth or threading.current_thread() is not threading.main_thread():
        _state.pending = signum  # over a closed pipe's: a signal stops at the block's end, with its exit code
    else:
        _raise(signum)


def follow(signum: int, process: str) -> None:
    """Stop as another process of the job did (it was stopped by `signum`, and this one learnt so when their
    collective failed): the same path, its save, its line and exit code, the line naming that process."""
    _state.received.append(signum)
    _raise(signum, process)


def _raise(signum: int, process: str | None = None) -> None:
    _state.stopping, _state.pending = True, None
    _keep_child_exits_quiet()
    raise Stop(signum, process)


def _keep_child_exits_quiet() -> None:
    """torch's SIGCHLD handler raises "DataLoader worker exited unexpectedly" in the main thread as workers
    end (on Ctrl-C a terminal signals them too): during a stop that would tear its save."""
    if hasattr(signal, "SIGCHLD") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a stop back until the block ends: what it does (a save, an epoch's record) is done whole."""
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1
    if not _state.depth and _state.pending is not None:
        _raise(_state.pending)


def _on_signal(signum: int, _frame) -> None:
    request(signum)


def _on_broken_pipe() -> None:
    """The console's stderr was closed (`2>&1 | head -1`): its output goes nowhere from now on."""
    from torchtools.core import output

    output.console.quiet = True
    _silence(output.console.file)
    request(PIPE)


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """Run one command with the stop path: a stop ends its children, prints one line and exits 128 + signum."""
    from torchtools.core import output  # here, not at the top: cli.py imports this module for --help too

    global _state
    _state = _State()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, _on_signal) for signum in SIGNALS}
    output.console.on_broken_pipe = _on_broken_pipe  # rich's own exits 1, after silencing the wrong stream
    try:
        yield
        if _state.pending is not None:  # a pipe closed after the last epoch's save: the command is done
            _raise(_state.pending)
    except (KeyboardInterrupt, BrokenPipeError) as error:
        if isinstance(error, BrokenPipeError) and not any(map(_reader_gone, (sys.stdout, sys.stderr))):
            raise  # a socket's or a child's pipe, not the output's: an error, not a stop
        raise SystemExit(_finish(error)) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        vars(output.console).pop("on_broken_pipe", None)


def _finish(error: BaseException) -> int:
    """End the children, say what the stop left, and give the exit code."""
    from torchtools.core import output

    signum = error.signum if isinstance(error, Stop) else PIPE if isinstance(error, BrokenPipeError) \
        else signal.SIGINT
    process = error.process if isinstance(error, Stop) else None
    _state.stopping = True
    if process is None:
        _announce(signum)
    for stream in (sys.stdout, sys.stderr):
        if _reader_gone(stream):
            _silence(stream)
    end_children()
    later = sorted({CAUSES.get(other, f"signal {other}") for other in _state.ignored})
    ignored = f" ({' and '.join(later)} while stopping: ignored)" if later else ""
    cause = CAUSES.get(signum, f"signal {signum}") + (f" in {process}" if process else "")
    output.notice(f"stopped by {cause}: {_state.note or 'nothing saved'}{ignored}")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a pipe closed since: what is left goes nowhere
            _silence(stream)
    return 128 + signum


def _announce(signum: int) -> None:
    """Under torchrun, tell the job's other processes why this one stops (core/distributed.py): a collective
    of theirs fails once it is gone, and they stop the same way instead of reporting a failure."""
    distributed = sys.modules.get("torchtools.core.distributed")
    if distributed is not None:
        distributed.announce_stop(signum)


def end_children() -> None:
    """End every process this one started, and theirs: DataLoader workers first, shut down as DataLoader
    does it, then whatever is left (the fork server, its workers, pools), SIGTERM then SIGKILL.

    The multiprocessing resource tracker is left to end by itself: it does once this process exits and
    the workers are gone (nothing else holds its pipe), after removing what they left in /dev/shm.
    """
    _keep_child_exits_quiet()
    dataloader = sys.modules.get("torch.utils.data.dataloader")
    if dataloader is not None:
        # Every DataLoader's workers, whoever made the loader: its iterators are found among the live objects.
        for item in gc.get_objects():
            if issubclass(type(item), dataloader._MultiProcessingDataLoaderIter):  # type(): never a proxy's
                item._shutdown_workers()
    tracker = getattr(sys.modules.get("multiprocessing.resource_tracker"), "_resource_tracker", None)
    left = [pid for pid in descendants(os.getpid()) if pid != getattr(tracker, "_pid", None)]
    for kill in (signal.SIGTERM, getattr(signal, "SIGKILL", signal.SIGTERM)):
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, kill)
        deadline = time.monotonic() + CHILDREN_GRACE
        while left and time.monotonic() < deadline:
            time.sleep(0.01)
            left = [pid for pid in left if _alive(pid)]
        if not left:
            return


def descendants(root: int) -> list[int]:
    """The living processes under `root`, from /proc (none where there is no /proc)."""
    parents = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                fields = _stat(int(entry.name))
                if fields and fields[0] != "Z":
                    parents[int(entry.name)] = int(fields[1])
    found, frontier = [], {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier}
        found.extend(frontier)
    return found


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: state, ppid, pgrp, session, ...; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"  # a zombie has ended; its parent or init reaps it


def _reader_gone(stream) -> bool:
    """True when `stream` writes to a pipe whose reading end is closed (poll reports an error on its end)."""
    try:
        poller = select.poll()
        poller.register(stream.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no file descriptor, or a closed one
        return False


def _silence(stream) -> None:
    """Point `stream`'s file descriptor at /dev/null: later writes (and the flush at exit) go nowhere
    instead of failing."""
    with contextlib.suppress(AttributeError, OSError, ValueError):  # an in-memory stream (tests) has none
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
