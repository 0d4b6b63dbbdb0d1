"""Errors a user can cause. The CLI turns them into one line on stderr and exit code 2."""


class UserError(Exception):
    """A problem with the user's input, files or machine: reported without a traceback."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint stays."""


def first_line(error: BaseException) -> str:
    """An exception's first line, for a one-line message (its type where it says nothing)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
