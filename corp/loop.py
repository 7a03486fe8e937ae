"""The round loop: propose -> score -> update -> commit -> record, on Lightning Fabric.

Each rank holds one model replica and scores its share of every population (through the
``Evaluator``); only the reward matrices cross processes, and every rank then runs the same
deterministic operator update and commits it locally (no weight broadcast). What a round did
goes to the observers as one ``RoundEnded`` record; a checkpoint after each round holds seeds
and coefficients only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from corp.consolidate.base import Operator, Population
from corp.evaluate import Evaluator, decode_totals
from corp.files import atomic_write_json
from corp.observe.callbacks import Callbacks, RoundEnded
from corp.observe.rounds import population_entry
from corp.perturb.direction import Direction
from corp.scores import PopulationScores, Scores
from corp.store import save_scored

log = logging.getLogger(__name__)


@dataclass
class RoundRecord:
    round_idx: int
    population: Population | None
    scores: PopulationScores | None
    metrics: dict[str, Any] = field(default_factory=dict)
    committed: bool = False
    centre: Direction = field(default_factory=Direction.zero)  # the committed direction the population was drawn around
    details: dict[str, Any] = field(default_factory=dict)  # the operator's non-scalar observations


class RoundLoop:
    """Drives an operator round by round; every point it needs is scored by ``evaluator``."""

    def __init__(self, evaluator: Evaluator, operator: Operator, output_dir: Path, callbacks: Callbacks) -> None:
        self.evaluator, self.operator, self.output_dir = evaluator, operator, output_dir
        self.fabric, self.space = evaluator.fabric, evaluator.space
        self.callbacks = callbacks if self.fabric.is_global_zero else Callbacks()  # only rank 0 observes
        self.history: list[RoundRecord] = []

    @property
    def budget(self):
        return self.evaluator.budget

    def run(self, max_rounds: int = 1000) -> list[RoundRecord]:
        ev = self.evaluator
        for round_idx in range(max_rounds):
            start, decoded_before = time.perf_counter(), decode_totals(self.fabric, ev.scorer)
            draws_before = self.space.noise.draws
            ev.start_round(round_idx)
            centre = self.space.committed
            pop = self.operator.propose(round_idx)
            scores = ev.population(pop) if pop is not None else None
            upd = self.operator.update(round_idx, pop, scores, _OperatorEvaluate(ev))
            ev.end_round()
            committed = upd.step is not None and len(upd.step) > 0
            if committed:
                self.space.commit(upd.step)
            self.budget.rounds = round_idx + 1
            self.budget.noise_draws = self.space.noise.draws
            raced = ev.race.observations() if pop is not None else ({}, {})  # empty unless the population raced
            record = RoundRecord(round_idx, pop, scores, {**upd.metrics, **raced[0]}, committed, centre,
                                 {**upd.details, **raced[1]})  # fmt: skip
            self.history.append(record)
            decoded = decode_totals(self.fabric, ev.scorer)
            draws = self.space.noise.draws - draws_before
            self._record(record, time.perf_counter() - start, decoded_before, decoded, draws)
            self._checkpoint(round_idx)
            if upd.done:
                break
        return self.history

    def _record(self, record: RoundRecord, seconds: float, before: np.ndarray, after: np.ndarray, draws: float) -> None:
        """The round's scalars and its rounds.jsonl line, to the observers (rank 0).
        ``before``/``after``: ``decode_totals`` around the round."""
        if not self.fabric.is_global_zero:
            return
        metrics = {k: float(v) for k, v in record.metrics.items() if isinstance(v, (int, float, bool, np.number))}
        population = None
        if record.scores is not None:
            population = population_entry(record.population, record.scores)
            r = record.scores.mean_rewards
            metrics.update({"population/reward_mean": float(r.mean()), "population/reward_std": float(r.std()),
                            "population/reward_min": float(r.min()), "population/reward_max": float(r.max()),
                            "population/size": len(r)})  # fmt: skip
            if len(population["reward_by_sigma"]) > 1:  # a population drawn at one scale has nothing to compare
                for row in population["reward_by_sigma"]:
                    metrics[f"population/sigma_{row['sigma']:g}/reward_mean"] = row["reward_mean"]
        examples, tokens, decode_seconds = (float(x) for x in after - before)
        b = self.budget
        metrics.update({
            "round/committed": float(record.committed),
            "round/seconds": seconds,
            "budget/members_scored": b.members_scored,
            "budget/example_evals": b.example_evals,
            "budget/noise_draws": b.noise_draws,
            "budget/noise_draws_round": draws,
            "budget/failed_points": b.failed_points,
            "perturb/dense_hits": self.space.dense.hits,
            "throughput/examples": examples,
            "throughput/examples_per_s": examples / max(seconds, 1e-9),
            "throughput/decode_seconds": decode_seconds,
            "throughput/tokens_generated": float(after[1]),
            "throughput/tokens_per_s": tokens / max(seconds, 1e-9),
        })  # fmt: skip
        entry = {
            "round": record.round_idx,
            "committed": record.committed,
            "metrics": metrics,
            "population": population,
            "details": record.details,
        }
        self.callbacks.round_end(RoundEnded(record.round_idx, metrics, entry))

    def _checkpoint(self, round_idx: int) -> None:
        """Seeds and coefficients only: enough to rebuild the centre and continue."""
        partial = self.evaluator.partial_path(round_idx)
        if not self.fabric.is_global_zero:
            partial.unlink(missing_ok=True)  # rank 0 has the whole round (after the gather) ...
            return
        state = {
            "round": round_idx,
            "committed": self.space.committed.to_json(),
            "operator": self.operator.state_dict(),
            "budget": asdict(self.budget),
        }
        ckpt_dir = self.output_dir / "checkpoints"
        atomic_write_json(ckpt_dir / f"round_{round_idx:03d}.json", state)
        atomic_write_json(ckpt_dir / "last.json", state)
        record = self.history[-1]
        if record.population is not None and record.scores is not None:
            identity = self.evaluator.store.identity(record.population.split, record.population.indices)
            save_population(self.output_dir / "populations" / f"round_{round_idx:03d}.npz", record, identity)
        partial.unlink(missing_ok=True)  # ... and saves it before dropping its partial file


class _OperatorEvaluate:
    """What an operator gets as ``evaluate``: candidate scoring and prefetch hints, nothing else."""

    def __init__(self, evaluator: Evaluator) -> None:
        self._evaluator = evaluator

    def __call__(self, direction: Direction, split: str, indices: np.ndarray | None = None) -> Scores:
        return self._evaluator.candidate(direction, split, indices)

    def prefetch(self, directions: list[Direction], basis: bool = False) -> None:
        self._evaluator.prefetch(directions, basis)


def save_population(path: Path, record: RoundRecord, identity: str) -> None:
    """A scored population: seeds, sigmas, its centre and the per-example scores (kilobytes)."""
    pop = record.population
    save_scored(
        path, identity, record.centre, pop.members, record.scores, pop.split, pop.indices, pop.seeds, pop.sigmas
    )
