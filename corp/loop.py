"""The round loop: sample -> score -> aggregate -> commit, on Lightning Fabric.

Each rank holds one model replica and scores its share of every population; only
the reward matrices cross processes, and every rank then runs the same
deterministic operator update and commits it locally (no weight broadcast).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric import Fabric
from tqdm.auto import tqdm

from corp.consolidate.base import Operator, Population, PopulationScores, Scores
from corp.observe.callbacks import Callbacks, PointScored, RoundEnded
from corp.observe.rounds import RoundsFile, population_entry, reward_by_sigma
from corp.perturb.direction import Direction
from corp.perturb.space import ParameterSpace
from corp.scoring.scorer import Scorer
from corp.store import Scored, ScoreStore, direction_key, save_scored

log = logging.getLogger(__name__)


@dataclass
class Budget:
    """What the run spent; the unit of every matched-budget comparison."""

    members_scored: int = 0  # population members the method consumed (scored here or reused)
    members_reused: int = 0  # ... of which taken from saved scores (population.load)
    example_evals: int = 0  # examples decoded while training (members + candidate evaluations)
    example_evals_reused: int = 0  # ... of which taken from saved scores
    candidate_evals: int = 0  # evaluate() calls made by the operator
    failed_points: int = 0  # members or candidates whose rewards were NaN/inf, scored as failed
    noise_draws: float = 0.0  # whole-model noise vectors generated
    rounds: int = 0


@dataclass
class RoundRecord:
    round_idx: int
    population: Population | None
    scores: PopulationScores | None
    metrics: dict[str, Any] = field(default_factory=dict)
    committed: bool = False
    centre: Direction = field(default_factory=Direction.zero)  # the committed direction the population was drawn around
    details: dict[str, Any] = field(default_factory=dict)  # the operator's non-scalar observations


def contain_nonfinite(row: Scored) -> tuple[Scored, bool]:
    """A NaN or infinite reward fails the whole model point: reward 0, nothing solved, so a broken
    reward function can never steer an update. Returns the row and whether it failed."""
    if np.all(np.isfinite(row.rewards)):
        return row, False
    log.warning("non-finite reward from the task: this model point is scored as failed (reward 0)")
    return Scored(np.zeros_like(row.rewards), np.zeros_like(row.correct), row.answers, row.completions), True


def decode_totals(fabric: Fabric, scorer: Scorer) -> np.ndarray:
    """(examples decoded, new tokens, decode seconds) so far, summed over the ranks.

    A collective when there are several ranks: every rank must call it at the same point."""
    local = [scorer.example_evals, scorer.tokens_generated, scorer.decode_seconds]
    if fabric.world_size == 1:
        return np.asarray(local, dtype=np.float64)
    totals = fabric.all_reduce(torch.tensor(local, dtype=torch.float64, device=fabric.device), reduce_op="sum")
    return totals.cpu().numpy()


class LoopEvaluate:
    """The evaluate callback the operator gets: scores through the loop, and passes the operator's
    prefetch hints (what it evaluates next, or the basis of its next members) on to the parameter
    space. Hints change how much noise is regenerated, never a score."""

    def __init__(self, loop: RoundLoop) -> None:
        self._loop = loop

    def __call__(self, direction: Direction, split: str, indices: np.ndarray | None = None) -> Scores:
        return self._loop.evaluate(direction, split, indices)

    def prefetch(self, directions: list[Direction], basis: bool = False) -> None:
        self._loop.space.prefetch(directions, basis=basis)


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON via a temp file + rename, so a crash never leaves a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


class RoundLoop:
    """Drives an operator round by round; every decoded point goes through the score store, is
    saved as soon as it exists, and so survives a crash (a rerun replays it instead of decoding)."""

    def __init__(
        self,
        fabric: Fabric,
        space: ParameterSpace,
        scorer: Scorer,
        operator: Operator,
        output_dir: Path,
        store: ScoreStore,
        free_points: set[tuple] | None = None,
        checkpoint_every_s: float = 60.0,
        callbacks: Callbacks | None = None,
        samples: int = 0,
    ) -> None:
        self.fabric, self.space, self.scorer, self.operator = fabric, space, scorer, operator
        # observers of every scored point and round (rank 0 only), with ``samples`` completions per member
        self.callbacks = callbacks if callbacks is not None and fabric.is_global_zero else Callbacks()
        self.samples = samples
        self.rounds_file = RoundsFile(output_dir / "rounds.jsonl") if fabric.is_global_zero else None
        self.output_dir = output_dir
        self.store = store
        self.free_points = free_points or set()  # (identity, centre, direction) evaluated outside training
        self.checkpoint_every_s = checkpoint_every_s
        self.budget = Budget()
        self.decoded_points = 0  # members and candidates decoded here (not replayed), failed ones included
        self._last_failed = False
        self._observed_examples = 0  # examples behind the points observed so far: a live x-axis
        self.history: list[RoundRecord] = []
        self._round = 0
        self._evals_this_round = 0
        self._eval_bar: tqdm | None = None  # progress of the operator's candidate evaluations

    # -- scoring ----------------------------------------------------------------------
    def evaluate(self, direction: Direction, split: str, indices: np.ndarray | None = None) -> Scores:
        """Scores of centre + ``direction`` (the operator's callback), through the store."""
        if split == "test":
            raise ValueError("operators may not look at the test split")
        identity, centre = self.store.identity(split, indices), self.space.committed
        row = self.store.get(identity, centre, direction)
        if row is None:
            row = self._decode_on_rank_zero(direction, split, indices)
            self.store.put(identity, centre, direction, row)
            if self.fabric.is_global_zero:
                path = self.output_dir / "evals" / f"round_{self._round:03d}" / f"eval_{self._evals_this_round:03d}.npz"
                save_scored(path, identity, centre, [direction], [row], split, indices)
        self._evals_this_round += 1
        scores = Scores(row.rewards, row.correct)
        free = (identity, *_keys(centre, direction)) in self.free_points
        if not free:
            self.budget.candidate_evals += 1
            self.budget.example_evals += len(scores.rewards)
            if row.source == "loaded":
                self.budget.example_evals_reused += len(scores.rewards)
        if self.callbacks and not free:  # a free point (e.g. the base model on probe) was observed as such
            self._observed_examples += len(scores.rewards)
            self.callbacks.point(PointScored("candidate", self._round, self._evals_this_round - 1, split,
                                             scores.mean_reward, scores.accuracy, self._observed_examples,
                                             replayed=row.source == "resumed"))  # fmt: skip
        if self._eval_bar is None:
            self._eval_bar = tqdm(
                desc=f"round {self._round}: candidate evaluations",
                unit="eval",
                disable=not self.fabric.is_global_zero,
                leave=False,
                dynamic_ncols=True,
            )
        self._eval_bar.update(1)
        self._eval_bar.set_postfix(split=split, accuracy=f"{scores.accuracy:.3f}")
        return scores

    def _decode_on_rank_zero(self, direction: Direction, split: str, indices: np.ndarray | None) -> Scored:
        """Rank 0 decodes a candidate and every rank gets its scores: the operator's decisions then
        cannot drift apart between ranks, even where float paths of cached noise differ."""
        row = None
        if self.fabric.is_global_zero:
            with self.space.perturbed(direction):
                decoded = self.scorer.score(split, indices)
            row = self._contain(Scored(decoded.scores.rewards, decoded.scores.correct, decoded.answers))
        if self.fabric.world_size > 1:
            row = self.fabric.broadcast(row, src=0)
        return row

    def _contain(self, row: Scored) -> Scored:
        row, failed = contain_nonfinite(row)
        self._last_failed = failed
        self.decoded_points += 1
        self.budget.failed_points += int(failed)
        return row

    def score_population(self, pop: Population, round_idx: int) -> PopulationScores:
        """Every member on ``pop.split``. Members already in the store are not decoded again;
        ranks take the rest round-robin and all-gather their rows."""
        identity, centre = self.store.identity(pop.split, pop.indices), self.space.committed
        rows: list[Scored | None] = [self.store.get(identity, centre, m) for m in pop.members]
        todo = [i for i, row in enumerate(rows) if row is None]
        for i, row in enumerate(rows):
            if row is not None:
                self._observe_member(pop, round_idx, i, row, row.source == "resumed")
        for i, row in zip(todo, self._score_members(pop, todo, round_idx, identity), strict=True):
            rows[i] = row
            self.store.put(identity, centre, pop.members[i], row)
        n_examples = len(rows[0].rewards) if rows else 0
        reused = sum(r.source == "loaded" for r in rows)
        self.budget.members_scored += len(pop)
        self.budget.members_reused += reused
        self.budget.example_evals += len(pop) * n_examples
        self.budget.example_evals_reused += reused * n_examples
        return PopulationScores(
            np.stack([r.rewards for r in rows]), np.stack([r.correct for r in rows]), [list(r.answers) for r in rows]
        )

    def _observe_member(self, pop: Population, round_idx: int, i: int, row: Scored, replayed: bool,
                        completions: list[str] | None = None) -> None:  # fmt: skip
        if not self.callbacks:
            return
        samples = []
        if completions is not None and self.samples:
            examples = self.scorer.splits[pop.split]
            order = pop.indices if pop.indices is not None else range(len(examples))
            for k, j in enumerate(list(order)[: self.samples]):
                samples.append({"prompt": examples[j].prompt, "answer": examples[j].answer,
                                "completion": completions[k], "extracted": row.answers[k],
                                "reward": float(row.rewards[k])})  # fmt: skip
        failed = completions is not None and self._last_failed  # decoded here and contained as failed
        self._observed_examples += len(row.rewards)
        self.callbacks.point(PointScored("member", round_idx, i, pop.split, float(row.rewards.mean()),
                                         float(row.correct.mean()), self._observed_examples,
                                         sigma=float(pop.sigmas[i]), failed=failed, replayed=replayed,
                                         samples=samples))  # fmt: skip

    def _partial_path(self, round_idx: int) -> Path:
        return self.output_dir / "populations" / f"round_{round_idx:03d}.rank{self.fabric.global_rank}.partial.npz"

    def _score_members(self, pop: Population, todo: list[int], round_idx: int, identity: str) -> list[Scored]:
        """Decode members ``todo`` of ``pop``, spread over the ranks; every rank gets all rows.

        Each rank saves the rows it has so far every ``checkpoint_every_s`` seconds, so a crash
        in a long population costs at most that much decoding."""
        rank, world = self.fabric.global_rank, self.fabric.world_size
        mine = todo[rank::world]
        per_rank = -(-len(todo) // world)
        n_examples = len(pop.indices) if pop.indices is not None else len(self.scorer.splits[pop.split])
        rewards = torch.zeros(per_rank, n_examples, dtype=torch.float64)
        correct = torch.zeros(per_rank, n_examples, dtype=torch.bool)
        bar = tqdm(
            mine,
            desc=f"round {round_idx}: scoring {len(todo)} of {len(pop)} members on {n_examples} {pop.split} examples",
            disable=not self.fabric.is_global_zero or not todo,
            leave=False,
            dynamic_ncols=True,
        )
        done: list[Scored] = []
        last_save = time.monotonic()

        def save_partial() -> None:
            members = [pop.members[m] for m in mine[: len(done)]]
            save_scored(self._partial_path(round_idx), identity, self.space.committed, members, done, pop.split,
                        pop.indices)  # fmt: skip

        try:
            for row, member in enumerate(bar):
                with self.space.perturbed(pop.members[member]):
                    decoded = self.scorer.score(pop.split, pop.indices)
                scored = self._contain(Scored(decoded.scores.rewards, decoded.scores.correct, decoded.answers))
                rewards[row], correct[row] = torch.from_numpy(scored.rewards), torch.from_numpy(scored.correct)
                done.append(scored)
                self._observe_member(pop, round_idx, member, scored, False, decoded.completions)
                bar.set_postfix(mean_reward=f"{scored.rewards.mean():.3f}")
                if time.monotonic() - last_save >= self.checkpoint_every_s:
                    save_partial()
                    last_save = time.monotonic()
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (corp.errors.Interrupted): keep what was scored
            if done:
                save_partial()
            raise
        if world > 1 and todo:
            rewards = self.fabric.all_gather(rewards).cpu()  # (world, per_rank, E)
            correct = self.fabric.all_gather(correct).cpu()
            gathered: list[list] = [None] * world  # type: ignore[list-item]
            torch.distributed.all_gather_object(gathered, [r.answers for r in done])
            order = [(j % world, j // world) for j in range(len(todo))]  # todo[j] went to rank j % world
            return [Scored(rewards[r, k].numpy(), correct[r, k].numpy(), gathered[r][k]) for r, k in order]
        return done

    # -- the loop -------------------------------------------------------------------
    def run(self, max_rounds: int = 1000) -> list[RoundRecord]:
        if self.rounds_file is not None:
            self.rounds_file.start()  # a resumed run replays every round: rewrite, never duplicate
        evaluate = LoopEvaluate(self)
        for round_idx in range(max_rounds):
            start, decoded_before = time.perf_counter(), decode_totals(self.fabric, self.scorer)
            draws_before = self.space.noise.draws
            self._round, self._evals_this_round = round_idx, 0
            centre = self.space.committed
            pop = self.operator.propose(round_idx)
            scores = self.score_population(pop, round_idx) if pop is not None else None
            upd = self.operator.update(round_idx, pop, scores, evaluate)
            if self._eval_bar is not None:
                self._eval_bar.close()
                self._eval_bar = None
            committed = upd.step is not None and len(upd.step) > 0
            if committed:
                self.space.commit(upd.step)
            self.budget.rounds = round_idx + 1
            self.budget.noise_draws = self.space.noise.draws
            record = RoundRecord(round_idx, pop, scores, dict(upd.metrics), committed, centre, dict(upd.details))
            self.history.append(record)
            decoded = decode_totals(self.fabric, self.scorer)
            draws = self.space.noise.draws - draws_before
            self._log_round(record, time.perf_counter() - start, decoded_before, decoded, draws)
            self._checkpoint(round_idx)
            if upd.done:
                break
        return self.history

    def _log_round(
        self, record: RoundRecord, seconds: float, before: np.ndarray, after: np.ndarray, draws: float
    ) -> None:
        """Scalars to every logger; on rank 0 also the round's line in rounds.jsonl and, with W&B,
        its tables and histograms. ``before``/``after``: ``decode_totals`` around the round."""
        metrics: dict[str, float] = {
            k: float(v) for k, v in record.metrics.items() if isinstance(v, (int, float, bool, np.number))
        }
        if record.scores is not None:
            r = record.scores.mean_rewards
            metrics.update(
                {
                    "population/reward_mean": float(r.mean()),
                    "population/reward_std": float(r.std()),
                    "population/reward_min": float(r.min()),
                    "population/reward_max": float(r.max()),
                    "population/size": len(r),
                }
            )
            by_sigma = reward_by_sigma(np.asarray(record.population.sigmas), r)
            if len(by_sigma) > 1:  # a population drawn at one scale has nothing to compare
                for row in by_sigma:
                    metrics[f"population/sigma_{row['sigma']:g}/reward_mean"] = row["reward_mean"]
        examples, tokens, decode_seconds = (float(x) for x in after - before)
        metrics.update(
            {
                "round/committed": float(record.committed),
                "round/seconds": seconds,
                "budget/members_scored": self.budget.members_scored,
                "budget/example_evals": self.budget.example_evals,
                "budget/noise_draws": self.budget.noise_draws,
                "budget/noise_draws_round": draws,
                "budget/failed_points": self.budget.failed_points,
                "perturb/dense_hits": self.space.dense.hits,
                "throughput/examples": examples,
                "throughput/examples_per_s": examples / max(seconds, 1e-9),
                "throughput/decode_seconds": decode_seconds,
                "throughput/tokens_generated": float(after[1]),
                "throughput/tokens_per_s": tokens / max(seconds, 1e-9),
            }
        )
        if not self.fabric.is_global_zero:
            return
        entry = {
            "round": record.round_idx,
            "committed": record.committed,
            "metrics": metrics,
            "population": population_entry(record.population, record.scores) if record.scores is not None else None,
            "details": record.details,
        }
        self.rounds_file.append(entry)
        self.callbacks.round_end(RoundEnded(record.round_idx, metrics, entry))
        pop_part = ""
        if record.scores is not None:
            pop_part = (
                f" population reward {metrics['population/reward_mean']:.3f}±{metrics['population/reward_std']:.3f}"
            )
        log.info(
            "round %d:%s committed=%s (%.1fs, %d example evals so far, %.1f examples/s, %.0f noise draws)",
            record.round_idx,
            pop_part,
            record.committed,
            seconds,
            self.budget.example_evals,
            metrics["throughput/examples_per_s"],
            draws,
        )

    def _checkpoint(self, round_idx: int) -> None:
        """Seeds and coefficients only: enough to rebuild the centre and continue."""
        partial = self._partial_path(round_idx)
        if not self.fabric.is_global_zero:
            partial.unlink(missing_ok=True)  # rank 0 has the whole round (after the gather) ...
            return
        state = {
            "round": round_idx,
            "committed": self.space.committed.to_json(),
            "operator": self.operator.state_dict(),
            "budget": vars(self.budget),
        }
        ckpt_dir = self.output_dir / "checkpoints"
        atomic_write_json(ckpt_dir / f"round_{round_idx:03d}.json", state)
        atomic_write_json(ckpt_dir / "last.json", state)
        record = self.history[-1]
        if record.population is not None and record.scores is not None:
            identity = self.store.identity(record.population.split, record.population.indices)
            save_population(self.output_dir / "populations" / f"round_{round_idx:03d}.npz", record, identity)
        partial.unlink(missing_ok=True)  # ... and saves it before dropping its partial file


def _keys(centre: Direction, direction: Direction) -> tuple[str, str]:
    return direction_key(centre), direction_key(direction)


def save_population(path: Path, record: RoundRecord, identity: str) -> None:
    """A scored population: seeds, sigmas, its centre and the per-example scores (kilobytes)."""
    pop, scores = record.population, record.scores
    rows = [Scored(scores.rewards[i], scores.correct[i], scores.answers[i]) for i in range(len(pop))]
    save_scored(path, identity, record.centre, pop.members, rows, pop.split, pop.indices, pop.seeds, pop.sigmas)
