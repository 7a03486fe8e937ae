"""The one path from a model point to its scores, and the budget they cost.

A *point* is the committed centre plus a direction. Every score a run needs goes through
``Evaluator``: the base and final evaluations, ``mode=eval``, the vote members, the operator's
candidates and every population member. Each is looked up in the score store, else decoded on
the perturbed weights, its non-finite rewards contained, then stored and saved at once (so a
crash loses nothing already decoded). What training spends is counted here and nowhere else.

Rank rule: a single point is decoded by rank 0 and its scores broadcast, so every rank's
operator takes the same decisions; a population is dealt round-robin over the ranks and
all-gathered.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lightning.fabric import Fabric
from tqdm.auto import tqdm

from corp.consolidate.base import Population, PopulationScores, Scores
from corp.observe.callbacks import Callbacks, PointScored
from corp.perturb.direction import Direction
from corp.perturb.space import ParameterSpace
from corp.scoring.scorer import Scorer
from corp.store import ScoreStore, direction_key, save_scored

log = logging.getLogger(__name__)


@dataclass
class Budget:
    """What training spent; the unit of every matched-budget comparison."""

    members_scored: int = 0  # population members the method consumed (scored here or reused)
    members_reused: int = 0  # ... of which taken from saved scores (population.load)
    example_evals: int = 0  # examples decoded while training (members + candidate evaluations)
    example_evals_reused: int = 0  # ... of which taken from saved scores
    candidate_evals: int = 0  # evaluate() calls made by the operator
    failed_points: int = 0  # members or candidates whose rewards were NaN/inf, scored as failed
    noise_draws: float = 0.0  # whole-model noise vectors generated
    rounds: int = 0


def contain_nonfinite(row: Scores) -> tuple[Scores, bool]:
    """A NaN or infinite reward fails the whole model point: reward 0, nothing solved, so a broken
    reward function can never steer an update. Returns the row and whether it failed."""
    if np.all(np.isfinite(row.rewards)):
        return row, False
    log.warning("non-finite reward from the task: this model point is scored as failed (reward 0)")
    return Scores(np.zeros_like(row.rewards), np.zeros_like(row.correct), row.answers, row.completions), True


def decode_totals(fabric: Fabric, scorer: Scorer) -> np.ndarray:
    """(examples decoded, new tokens, decode seconds) so far, summed over the ranks.

    A collective when there are several ranks: every rank must call it at the same point."""
    local = [scorer.example_evals, scorer.tokens_generated, scorer.decode_seconds]
    if fabric.world_size == 1:
        return np.asarray(local, dtype=np.float64)
    totals = fabric.all_reduce(torch.tensor(local, dtype=torch.float64, device=fabric.device), reduce_op="sum")
    return totals.cpu().numpy()


class Evaluator:
    """Scores model points through the store; see the module docstring.

    ``round`` is the training round now running (the loop sets it): it names saved files and
    observation records. Observers get a ``PointScored`` for every member and charged candidate."""

    def __init__(
        self,
        fabric: Fabric,
        space: ParameterSpace,
        scorer: Scorer,
        store: ScoreStore,
        output_dir: Path,
        callbacks: Callbacks | None = None,
        samples: int = 0,
        checkpoint_every_s: float = 60.0,
    ) -> None:
        self.fabric, self.space, self.scorer, self.store = fabric, space, scorer, store
        self.output_dir = output_dir
        self.callbacks = callbacks if callbacks is not None and fabric.is_global_zero else Callbacks()
        self.samples = samples  # completions per member handed to observers
        self.checkpoint_every_s = checkpoint_every_s
        self.budget = Budget()
        self.decoded_points = 0  # training points decoded here (not replayed), failed ones included
        self.round = 0
        self._free: set[tuple[str, str, str]] = set()  # points evaluated outside training: never charged
        self._candidates = 0  # candidate evaluations in this round (saved file names)
        self._observed_examples = 0  # examples behind the points observed so far: a live x-axis
        self._bar: tqdm | None = None

    # -- single points ------------------------------------------------------------------
    def evaluation(self, split: str, label: str, direction: Direction | None = None) -> Scores:
        """A whole-split evaluation outside training (base, final, votes, ``mode=eval``), with its
        completions; never charged to the budget, and free for the operator to look at again."""
        direction = Direction.zero() if direction is None else direction
        t = time.perf_counter()
        scores, key, decoded = self._point(direction, split, None, f"{label}_{split}", completions=True)
        self._free.add(key)
        if self.fabric.is_global_zero:
            took = f"{time.perf_counter() - t:.1f}s" if decoded else "saved scores"
            log.info("%s on %s: accuracy %.3f (%s)", label, split, scores.accuracy, took)
        return scores

    def candidate(self, direction: Direction, split: str, indices: np.ndarray | None = None) -> Scores:
        """The operator's ``evaluate``: charged unless the point was already evaluated outside training."""
        if split == "test":
            raise ValueError("operators may not look at the test split")
        name = f"round_{self.round:03d}/eval_{self._candidates:03d}"
        scores, key, decoded = self._point(direction, split, indices, name, completions=False, training=True)
        self._candidates += 1
        if key not in self._free:
            self.budget.candidate_evals += 1
            self.budget.example_evals += len(scores.rewards)
            if scores.source == "loaded":
                self.budget.example_evals_reused += len(scores.rewards)
            self._observed_examples += len(scores.rewards)
            self.callbacks.point(PointScored("candidate", self.round, self._candidates - 1, split, scores.mean_reward,
                                             scores.accuracy, self._observed_examples,
                                             replayed=scores.source == "resumed"))  # fmt: skip
        if self._bar is None:
            self._bar = tqdm(desc=f"round {self.round}: candidate evaluations", unit="eval", leave=False,
                             disable=not self.fabric.is_global_zero, dynamic_ncols=True)  # fmt: skip
        self._bar.update(1)
        self._bar.set_postfix(split=split, accuracy=f"{scores.accuracy:.3f}")
        return scores

    def prefetch(self, directions: list[Direction], basis: bool = False) -> None:
        """The operator's hint of what it evaluates next (or the basis of its next members): changes
        how much noise is regenerated, never a score."""
        self.space.prefetch(directions, basis=basis)

    def start_round(self, round_idx: int) -> None:
        self.round, self._candidates = round_idx, 0

    def end_round(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _point(
        self, direction: Direction, split: str, indices: np.ndarray | None, name: str, completions: bool,
        training: bool = False,
    ) -> tuple[Scores, tuple[str, str, str], bool]:  # fmt: skip
        """The point's scores (from the store, or decoded, stored and saved as ``evals/<name>.npz``),
        its store key, and whether it was decoded now."""
        identity, centre = self.store.identity(split, indices), self.space.committed
        key = (identity, direction_key(centre), direction_key(direction))
        hit = self.store.get(identity, centre, direction)
        if hit is not None and (hit.completions is not None or not completions):
            return hit, key, False
        row = None
        if self.fabric.is_global_zero:  # rank 0 decodes, every rank gets the same row
            with self.space.perturbed(direction):
                row = self.scorer.score(split, indices)
            if not completions:
                row = Scores(row.rewards, row.correct, row.answers)
            row, _ = self._contain(row, training)
        if self.fabric.world_size > 1:
            row = self.fabric.broadcast(row, src=0)
        self.store.put(identity, centre, direction, row)
        if self.fabric.is_global_zero:
            save_scored(self.output_dir / "evals" / f"{name}.npz", identity, centre, [direction], [row], split, indices)
        return row, key, True

    def _contain(self, row: Scores, training: bool) -> tuple[Scores, bool]:
        """``contain_nonfinite``, with a training point counted as decoded (and failed, if it did)."""
        row, failed = contain_nonfinite(row)
        if training:
            self.decoded_points += 1
            self.budget.failed_points += int(failed)
        return row, failed

    # -- populations --------------------------------------------------------------------
    def population(self, pop: Population) -> PopulationScores:
        """Every member on ``pop.split``, charged to the budget. Members already in the store are not
        decoded again; the ranks take the rest round-robin and all-gather their rows."""
        identity, centre = self.store.identity(pop.split, pop.indices), self.space.committed
        rows: list[Scores | None] = [self.store.get(identity, centre, m) for m in pop.members]
        todo = [i for i, row in enumerate(rows) if row is None]
        for i, row in enumerate(rows):
            if row is not None:
                self._observe_member(pop, i, row, failed=False)
        for i, row in zip(todo, self._decode_members(pop, todo, identity), strict=True):
            rows[i] = row
            self.store.put(identity, centre, pop.members[i], row)
        n_examples = len(rows[0].rewards) if rows else 0
        reused = sum(r.source == "loaded" for r in rows)
        self.budget.members_scored += len(pop)
        self.budget.members_reused += reused
        self.budget.example_evals += len(pop) * n_examples
        self.budget.example_evals_reused += reused * n_examples
        answers = [list(r.answers) for r in rows]
        return PopulationScores(np.stack([r.rewards for r in rows]), np.stack([r.correct for r in rows]), answers)

    def partial_path(self, round_idx: int) -> Path:
        """Where this rank keeps the members of a round it has decoded so far."""
        return self.output_dir / "populations" / f"round_{round_idx:03d}.rank{self.fabric.global_rank}.partial.npz"

    def _decode_members(self, pop: Population, todo: list[int], identity: str) -> list[Scores]:
        """Decode members ``todo`` of ``pop``, spread over the ranks; every rank gets all rows.

        Each rank saves the rows it has so far every ``checkpoint_every_s`` seconds, so a crash
        in a long population costs at most that much decoding."""
        rank, world = self.fabric.global_rank, self.fabric.world_size
        mine = todo[rank::world]
        per_rank = -(-len(todo) // world)
        n_examples = len(pop.indices) if pop.indices is not None else len(self.scorer.splits[pop.split])
        rewards = torch.zeros(per_rank, n_examples, dtype=torch.float64)
        correct = torch.zeros(per_rank, n_examples, dtype=torch.bool)
        bar = tqdm(mine, desc=f"round {self.round}: scoring {len(todo)} of {len(pop)} members on {n_examples} "
                   f"{pop.split} examples", disable=not self.fabric.is_global_zero or not todo, leave=False,
                   dynamic_ncols=True)  # fmt: skip
        done: list[Scores] = []
        last_save = time.monotonic()

        def save_partial() -> None:
            members = [pop.members[m] for m in mine[: len(done)]]
            save_scored(self.partial_path(self.round), identity, self.space.committed, members, done, pop.split,
                        pop.indices)  # fmt: skip

        try:
            for row, member in enumerate(bar):
                with self.space.perturbed(pop.members[member]):
                    decoded = self.scorer.score(pop.split, pop.indices)
                scored, failed = self._contain(Scores(decoded.rewards, decoded.correct, decoded.answers), True)
                rewards[row], correct[row] = torch.from_numpy(scored.rewards), torch.from_numpy(scored.correct)
                done.append(scored)
                self._observe_member(pop, member, scored, failed, decoded.completions)
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
            return [Scores(rewards[r, k].numpy(), correct[r, k].numpy(), gathered[r][k]) for r, k in order]
        return done

    def _observe_member(self, pop: Population, i: int, row: Scores, failed: bool,
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
        self._observed_examples += len(row.rewards)
        self.callbacks.point(PointScored("member", self.round, i, pop.split, row.mean_reward, row.accuracy,
                                         self._observed_examples, sigma=float(pop.sigmas[i]), failed=failed,
                                         replayed=row.source == "resumed", samples=samples))  # fmt: skip
