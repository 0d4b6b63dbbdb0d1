"""Errors a user can cause. The CLI turns them into one line on stderr and exit code 2."""


class UserError(Exception):
    """A problem with the user's input, files or machine: reported without a traceback."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint stays."""
