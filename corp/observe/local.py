"""Observers of the run's own files and console: ``rounds.jsonl`` and one log line per round.

The run adds them ahead of the configured loggers, so they get every record the loggers get.
"""

from __future__ import annotations

import logging
from pathlib import Path

from corp.observe.callbacks import Callback, RoundEnded, RunStarted
from corp.observe.rounds import RoundsFile

log = logging.getLogger("corp.loop")


class RoundsLog(Callback):
    """``rounds.jsonl``: one line per round. A resumed run replays its rounds from the first, so the
    file is started afresh with each training run rather than appended to twice."""

    def __init__(self, path: Path) -> None:
        self.file = RoundsFile(path)

    def on_run_start(self, rec: RunStarted) -> None:
        if rec.mode == "train":
            self.file.start()

    def on_round_end(self, rec: RoundEnded) -> None:
        self.file.append(rec.entry)


class ConsoleLog(Callback):
    """One line per round: the population's reward, whether it committed, time and budget."""

    def on_round_end(self, rec: RoundEnded) -> None:
        m = rec.metrics
        pop = ""
        if "population/reward_mean" in m:
            pop = f" population reward {m['population/reward_mean']:.3f}±{m['population/reward_std']:.3f}"
        log.info("round %d:%s committed=%s (%.1fs, %d example evals so far, %.1f examples/s, %.0f noise draws)",
                 rec.round, pop, bool(m["round/committed"]), m["round/seconds"], m["budget/example_evals"],
                 m["throughput/examples_per_s"], m["budget/noise_draws_round"])  # fmt: skip
