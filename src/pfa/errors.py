"""The exceptions entry points turn into one line: mistakes a user can fix, and runs stopped by a signal."""

import signal


class UserError(Exception):
    """A problem with the user's input; entry points print its message on one line and exit non-zero."""


class Interrupted(Exception):
    """Work stopped by SIGINT or SIGTERM; entry points print its message on one line and exit 128 + the signal."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or f"{signal.Signals(signum).name} received")
        self.signum = signum
