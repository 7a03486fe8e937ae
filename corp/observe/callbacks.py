"""Observation as callbacks: the run and the loop emit typed records, observers (loggers) consume them.

Only rank 0 emits. An observer never feeds anything back into a decision. Loggers are callbacks
registered in ``LOGGERS`` and built from their ``logger.<name>`` configs (see ``corp.observe.loggers``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corp.errors import disk_full
from corp.registry import Registry
from corp.results import Results

log = logging.getLogger(__name__)


@dataclass
class RunStarted:
    output_dir: Path
    config: dict[str, Any]  # the run's config, as config.json holds it
    resumed: bool  # continuing an earlier attempt in the same folder
    mode: str  # train | eval


@dataclass
class PointScored:
    """A member or a candidate of a training round, scored (or replayed from this run's own saves)."""

    kind: str  # "member" | "candidate"
    round: int
    index: int  # the member's place in its population, or the candidate's number in its round
    split: str
    reward: float  # mean reward over the examples
    accuracy: float
    example_evals: int  # the budget's example evaluations so far
    sigma: float | None = None  # a member's noise scale
    failed: bool = False  # non-finite rewards: scored as failed
    replayed: bool = False  # from this run's earlier attempt (a resume): already observed then
    samples: list[dict[str, Any]] = field(default_factory=list)  # the first examples: prompt, completion, ...
    parts: dict[str, float] = field(default_factory=dict)  # each reward function's mean (Task.reward_parts)


@dataclass
class EvalScored:
    """A whole-split evaluation of the base or the final model."""

    label: str  # "base" | "final"
    split: str
    accuracy: float
    reward: float


@dataclass
class RoundEnded:
    round: int
    metrics: dict[str, float]  # the round's scalars
    entry: dict[str, Any]  # its rounds.jsonl line: population, the operator's details


@dataclass
class SamplesReady:
    key: str  # e.g. "samples/start", "samples/end"
    rows: list[dict[str, Any]]
    round: int


@dataclass
class RunEnded:
    results: Results  # what results.json holds
    plots: list[Path] = field(default_factory=list)


class Callback:
    """Override the hooks you need. ``finish`` always runs, with "success", "failed", "refused" or
    "interrupted". A logger is a callback registered with ``@LOGGERS.register("<name>")``, whose
    ``config_class`` holds its ``logger.<name>.*`` keys."""

    name: str = ""  # a logger's, set by the registry
    config_class: type

    @classmethod
    def from_config(cls, cfg: Any) -> Callback:
        """A logger from its ``logger.<name>`` config (the registry builds every logger this way)."""
        return cls(cfg)

    def on_run_start(self, rec: RunStarted) -> None: ...
    def on_point(self, rec: PointScored) -> None: ...
    def on_eval(self, rec: EvalScored) -> None: ...
    def on_round_end(self, rec: RoundEnded) -> None: ...
    def on_samples(self, rec: SamplesReady) -> None: ...
    def on_run_end(self, rec: RunEnded) -> None: ...
    def finish(self, status: str) -> None: ...


class Callbacks:
    """Every observer, called in order; an observer that raises is logged and dropped, never ends the run."""

    def __init__(self, callbacks: list[Callback] | None = None) -> None:
        self.callbacks = list(callbacks or [])

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def _call(self, hook: str, *args: Any) -> None:
        for cb in list(self.callbacks):
            try:
                getattr(cb, hook)(*args)
            except Exception as err:  # observation must not end a run that is otherwise fine
                if disk_full(err) and hook != "finish":  # but a full disk ends it (every observer still finishes)
                    raise
                log.warning("%s.%s failed (%s: %s); the run goes on without it", type(cb).__name__, hook,
                            type(err).__name__, err)  # fmt: skip
                self.callbacks.remove(cb)

    def start(self, rec: RunStarted) -> None:
        """Start every observer; one that cannot start (e.g. W&B refuses) is dropped, with a warning."""
        started = []
        for cb in self.callbacks:
            try:
                cb.on_run_start(rec)
                started.append(cb)
            except Exception as err:
                if disk_full(err):
                    raise
                log.warning("%s could not start (%s: %s); the run goes on without it", type(cb).__name__,
                            type(err).__name__, err)  # fmt: skip
        self.callbacks = started

    def point(self, rec: PointScored) -> None:
        self._call("on_point", rec)

    def eval(self, rec: EvalScored) -> None:
        self._call("on_eval", rec)

    def round_end(self, rec: RoundEnded) -> None:
        self._call("on_round_end", rec)

    def samples(self, rec: SamplesReady) -> None:
        self._call("on_samples", rec)

    def end(self, rec: RunEnded) -> None:
        self._call("on_run_end", rec)

    def finish(self, status: str) -> None:
        self._call("finish", status)


LOGGERS: Registry[Callback] = Registry("logger", "logger", Callback, several=True)  # corp/observe/__init__.py fills it


def build_callbacks(loggers: dict[str, Any]) -> list[Callback]:
    """The loggers of ``logger.*``, each built from its config; one that cannot be built (an unknown
    name, a missing package) raises a ValueError naming its key."""
    built = []
    for name, cfg in loggers.items():
        cls = LOGGERS[name]
        try:
            built.append(cls.from_config(cfg))
        except (ImportError, TypeError, ValueError) as err:
            raise ValueError(f"logger.{name}: {err}") from None
    return built
