"""Errors a user can cause. The CLI turns them into one line on stderr and exit code 2."""

import os
import stat


class UserError(Exception):
    """A problem with the user's input, files or machine: reported without a traceback."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint stays."""


def first_line(error: BaseException) -> str:
    """An exception's first line, for a one-line message (its type where it says nothing)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    # "Error(s) in loading state_dict for ResNet:" says what failed; the line after it says why
    return f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def not_a_file(path, option: str | None = None) -> UserError:
    """The error for an input that is not a readable regular file: missing, or a folder, FIFO or device."""
    named = f"{option} {path}" if option else str(path)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return UserError(f"{named}: file not found")
    kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
        "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file"
    return UserError(f"{named} is {kind}, not a regular file; give a file")
