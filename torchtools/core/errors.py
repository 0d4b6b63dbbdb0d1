"""Errors a user can cause. The CLI turns them into one line on stderr and exit code 2."""


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
