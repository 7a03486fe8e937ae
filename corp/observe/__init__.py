"""What a run shows while and after it runs: the per-round record (``rounds.jsonl``) and the
loggers' content built from it. Observation only: nothing here feeds back into a decision.

Importing this package registers the built-in loggers in ``corp.observe.callbacks.LOGGERS``."""

from corp.observe import loggers  # noqa: F401  (registration)
