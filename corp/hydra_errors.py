"""Hydra's own errors (an override it cannot parse, an option or key that does not exist, a value of
the wrong type, a run folder it cannot create) as one line naming the bad value and what exists, exit
status 2, like the project's own refusals.

``train.py`` runs Hydra with ``HYDRA_FULL_ERROR=1`` so that these errors reach ``guard`` as exceptions
instead of Hydra's multi-line report; an exception raised once the run has started is the run's own
and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from typing import Any

_started = False


def job_started() -> None:
    """Called first thing in the task function: from here on an exception is the run's, not Hydra's."""
    global _started
    _started = True


def guard(main: Callable[[], Any]) -> None:
    """Run Hydra's ``main``; an error Hydra raises before the run starts is printed as one line and
    exits with status 2."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from corp.cli import REFUSED

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        main()
    except (HydraException, OmegaConfBaseException, NotADirectoryError, FileExistsError, PermissionError) as err:
        if _started:  # raised by the run itself: its own traceback
            raise
        print(f"config error: {one_line(err)}", file=sys.stderr, flush=True)
        sys.exit(REFUSED)


def one_line(err: BaseException) -> str:
    """The one line for an error raised while Hydra parses the overrides, composes the config or
    creates the run folder."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause = err.__cause__
    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        group, _, name = err.missing_cfg_file.rpartition("/")
        allowed = ", ".join(err.options or []) or "none"
        return f"{group}={name}: no such option in conf/{group}/; allowed: {allowed}"
    if isinstance(err, OverrideParseException):
        return f"{err.override!r}: not a valid override ({_first(err.message)}); the form is key=value"
    if isinstance(err, ConfigCompositionException) and cause is not None and hasattr(cause, "full_key"):
        key = cause.full_key
        if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):  # an unknown key
            return f"{key}: no such key{_keys_of(getattr(cause, 'object_type', None))}"
        override = str(err).removeprefix("Error merging override ").strip()
        where = "" if override.lstrip("+~").startswith(f"{key}=") else f"{key}: "  # the list item, e.g. sigmas[0]
        return f"{override}: {where}{_first(str(cause))}"
    if isinstance(err, OSError) and err.filename:  # Hydra creating the run folder or its log
        return f"hydra.run.dir: cannot create {err.filename} ({err.strerror or type(err).__name__})"
    text = _first(str(err)) or type(err).__name__
    return f"{text} ({_first(str(cause))})" if cause is not None else text


def _first(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _keys_of(schema: Any) -> str:
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        return ""
    return "; allowed: " + ", ".join(f.name for f in dataclasses.fields(schema) if not f.name.startswith("_"))
