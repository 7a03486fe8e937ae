"""Errors that mean "the input is wrong", not "the code is wrong".

``train.py`` turns any of them into one line on stderr and exit status 2 (in a multirun: a
failed job, the sweep goes on); anything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """Bad input (a config value, a file, a user's reward function), with a message naming it."""


class RunFailed(UserError):
    """A run that ran but produced nothing usable (e.g. every scored point failed)."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the run saved what it had scored and stops; a rerun continues it."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(self.signal_name)
