"""Errors that mean "the input is wrong", not "the code is wrong".

``train.py`` turns any of them into one line on stderr and exit status 2 (in a multirun: a
failed job, the sweep goes on); anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """Bad input (a config value, a file, a user's reward function), with a message naming it."""


class RunFailed(UserError):
    """A run that ran but produced nothing usable (e.g. every scored point failed)."""


def disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or what it wraps) is a full disk or quota: the run stops, keeping what it
    saved, and the same command continues it once there is space."""
    import errno

    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(err):  # wrapped by a library (safetensors, PIL)
            return True
        err = err.__cause__ or err.__context__
    return False


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the run saved what it had scored and stops; a rerun continues it."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(self.signal_name)
