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
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from lightning.fabric import Fabric
from tqdm.auto import tqdm

from corp.consolidate.base import Population
from corp.debugging import MemberProfile
from corp.observe.callbacks import Callbacks, PointScored
from corp.perturb.direction import Direction
from corp.perturb.space import ParameterSpace
from corp.racing import Race, RacingConfig
from corp.results import Budget
from corp.scores import PopulationScores, Scores
from corp.scoring.scorer import Scorer
from corp.store import ScoreStore, direction_key, save_scored

log = logging.getLogger(__name__)


def contain_nonfinite(scores: Scores) -> tuple[Scores, bool]:
    """A NaN or infinite reward fails the whole model point: reward 0, nothing solved, so a broken
    reward function can never steer an update. Returns the scores and whether the point failed."""
    if np.all(np.isfinite(scores.rewards)):
        return scores, False
    log.warning("non-finite reward from the task: this model point is scored as failed (reward 0)")
    return scores.failed(), True


def decode_totals(fabric: Fabric, *scorers: Scorer) -> np.ndarray:
    """(examples decoded, new tokens, decode seconds) so far by ``scorers``, summed over the ranks.

    A collective when there are several ranks: every rank must call it at the same point."""
    local = [sum(s.examples_decoded for s in set(scorers)), sum(s.tokens_generated for s in set(scorers)),
             sum(s.decode_seconds for s in set(scorers))]  # fmt: skip
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
        racing: RacingConfig | None = None,
    ) -> None:
        self.fabric, self.space, self.scorer, self.store = fabric, space, scorer, store
        self.racing = racing if racing is not None else RacingConfig()
        self.race: Race | None = None  # the last population's race (the loop records it)
        self.output_dir = output_dir
        self.callbacks = callbacks if callbacks is not None and fabric.is_global_zero else Callbacks()
        self.samples = samples  # completions per member handed to observers
        self.checkpoint_every_s = checkpoint_every_s
        self.budget = Budget()
        self.decoded_points = 0  # training points decoded here (not replayed), failed ones included
        self.round = 0
        self._free: set[tuple[str, str, str]] = set()  # points evaluated outside training: never charged
        self._candidates = 0  # candidate evaluations in this round (saved file names)
        self._bar: tqdm | None = None
        self.profile = MemberProfile(None)  # profile=true: Session.build points it at the run folder

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
            self._charge_examples(scores)
            self.callbacks.point(PointScored("candidate", self.round, self._candidates - 1, split, scores.mean_reward,
                                             scores.accuracy, self.budget.example_evals,
                                             replayed=scores.source == "resumed", parts=scores.part_means()))  # fmt: skip
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
        whole = hit is not None and not np.isnan(hit.rewards).any()  # a raced-out member's row is no whole point
        if whole and (hit.completions is not None or not completions):
            return hit, key, False
        scores = None
        if self.fabric.is_global_zero:  # rank 0 decodes, every rank gets the same scores
            with self.space.perturbed(direction):
                scores = self.scorer.score(split, indices)
            if not completions:
                scores = replace(scores, completions=None)
            scores, _ = self._contain(scores, training)
        if self.fabric.world_size > 1:
            scores = self.fabric.broadcast(scores, src=0)
        self.store.put(identity, centre, direction, scores)
        if self.fabric.is_global_zero:
            save_scored(self.output_dir / "evals" / f"{name}.npz", identity, centre, [direction],
                        PopulationScores.stack([scores]), split, indices)  # fmt: skip
        return scores, key, True

    def _contain(self, scores: Scores, training: bool) -> tuple[Scores, bool]:
        """``contain_nonfinite``, with a training point counted as decoded (and failed, if it did)."""
        scores, failed = contain_nonfinite(scores)
        if training:
            self.decoded_points += 1
            self.budget.failed_points += int(failed)
        return scores, failed

    def _charge_examples(self, scores: Scores) -> None:
        self.budget.example_evals += len(scores.rewards)
        if scores.source == "loaded":
            self.budget.example_evals_reused += len(scores.rewards)

    # -- populations --------------------------------------------------------------------
    def population(self, pop: Population) -> PopulationScores:
        """Every member on ``pop.split``, charged to the budget, raced by ``racing`` (corp/racing.py):
        the survivors are decoded block by block, and a member raced out keeps a partial row (NaN
        where nothing was decoded). Examples already in the store are not decoded again; the ranks
        take the rest round-robin and all-gather their entries."""
        identity, centre = self.store.identity(pop.split, pop.indices), self.space.committed
        n_examples = len(pop.indices) if pop.indices is not None else len(self.scorer.splits[pop.split])
        scores = PopulationScores.empty(len(pop), n_examples)
        loaded = np.zeros((len(pop), n_examples), dtype=bool)  # entries reused from another run's scores
        for i, member in enumerate(pop.members):
            hit = self.store.get(identity, centre, member)
            if hit is not None:
                scores.set(i, hit)
                loaded[i] = scores.mask[i] & (hit.source == "loaded")
                self._observe_member(pop, i, hit, failed=False)
        self.race = race = Race(self.racing, len(pop), n_examples, pop.keep)
        start, done = 0, []  # done: the members this rank has decoded, in order (its partial file)
        for upto in race.points:  # racing=none: one block, the whole split
            alive = np.flatnonzero(race.alive)
            todo = [int(i) for i in alive if not scores.mask[i, :upto].all()]
            block = (start, upto, loaded)
            for i in set(alive.tolist()) - set(todo):  # held already: charged now
                self._charge_member(i, block)
            missing = [np.flatnonzero(~scores.mask[i, :upto]) for i in todo]
            scores = self._decode_members(pop, todo, missing, identity, scores, block, done)
            for i in todo:
                self.store.put(identity, centre, pop.members[i], _copy(scores.row(i)))
            race.decide(upto, scores.rewards)
            start = upto
        for i in np.flatnonzero(race.reach < n_examples):  # the operator sees what the race read
            scores.truncate(i, int(race.reach[i]))
        self.budget.members_reused += int(sum(loaded[i, : race.reach[i]].all() for i in range(len(pop))))
        return scores

    def _charge_member(self, i: int, block: tuple[int, int, np.ndarray]) -> None:
        """Budget member ``i``'s entries of the race's ``block`` (start, end, loaded entries) as soon as
        this rank holds them, so that every observation record carries the budget spent up to it."""
        start, end, loaded = block
        self.budget.members_scored += start == 0
        self.budget.example_evals += end - start
        self.budget.example_evals_reused += int(loaded[i, start:end].sum())

    def partial_path(self, round_idx: int) -> Path:
        """Where this rank keeps the members of a round it has decoded so far."""
        return self.output_dir / "populations" / f"round_{round_idx:03d}.rank{self.fabric.global_rank}.partial.npz"

    def _decode_members(self, pop: Population, todo: list[int], missing: list[np.ndarray], identity: str,
                        scores: PopulationScores, block: tuple[int, int, np.ndarray],
                        done: list[int]) -> PopulationScores:  # fmt: skip
        """Decode members ``todo`` of ``pop`` on their ``missing`` example positions into ``scores``,
        spread over the ranks; every rank gets all entries. A member that fails (non-finite rewards)
        fails its whole row, as in a full decode.

        Each rank saves the rows it has decoded so far in this population (``done``, earlier blocks
        included) every ``checkpoint_every_s`` seconds, so a crash in a long population costs at most
        that much decoding."""
        rank, world = self.fabric.global_rank, self.fabric.world_size
        mine, positions = todo[rank::world], missing[rank::world]
        n_examples = scores.rewards.shape[1]
        decoding = max((len(p) for p in missing), default=0)
        bar = tqdm(mine, desc=f"round {self.round}: scoring {len(todo)} of {len(pop)} members on {decoding} "
                   f"{pop.split} examples", disable=not self.fabric.is_global_zero or not todo, leave=False,
                   dynamic_ncols=True)  # fmt: skip
        last_save = time.monotonic()

        def save_partial() -> None:
            save_scored(self.partial_path(self.round), identity, self.space.committed, [pop.members[m] for m in done],
                        PopulationScores.stack([scores.row(m) for m in done]), pop.split, pop.indices)  # fmt: skip

        try:
            for member, pos in zip(bar, positions):
                indices = _split_indices(pop, pos, n_examples)
                with self.space.perturbed(pop.members[member]), self.profile.member():
                    decoded = self.scorer.score(pop.split, indices)
                row, failed = self._contain(replace(decoded, completions=None), True)
                if failed:
                    scores.set(member, Scores(np.zeros(n_examples), np.zeros(n_examples, dtype=bool)))
                else:
                    scores.set(member, row, pos)
                if member not in done:
                    done.append(member)
                self._charge_member(member, block)
                self._observe_member(pop, member, row, failed, decoded.completions, indices)
                bar.set_postfix(mean_reward=f"{row.mean_reward:.3f}")
                if time.monotonic() - last_save >= self.checkpoint_every_s:
                    save_partial()
                    last_save = time.monotonic()
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (corp.errors.Interrupted): keep what was scored
            if done:
                save_partial()
            raise
        if world > 1 and todo:
            scores = self._gather(scores)
            for member in todo:
                if member not in mine:  # decoded by another rank: charged here once it arrives
                    self._charge_member(member, block)
        return scores

    def _gather(self, scores: PopulationScores) -> PopulationScores:
        """Every rank's decoded rows, on every rank (a collective)."""
        world = self.fabric.world_size
        rewards, correct, mask = (self.fabric.all_gather(t).cpu() for t in scores.to_tensors())  # (world, M, E)
        answers: list[list] = [None] * world  # type: ignore[list-item]
        torch.distributed.all_gather_object(answers, scores.answers)
        return PopulationScores.merge([PopulationScores.from_tensors(rewards[r], correct[r], mask[r], answers[r])
                                       for r in range(world)])  # fmt: skip

    def _observe_member(self, pop: Population, i: int, scores: Scores, failed: bool,
                        completions: list[str] | None = None, indices: np.ndarray | None = None) -> None:  # fmt: skip
        """A ``PointScored`` for member ``i`` on the examples ``scores`` holds (split ``indices``; None:
        the population's own)."""
        if not self.callbacks:
            return
        decoded = ~np.isnan(scores.rewards)
        if not decoded.all():  # a partial row from the store: what it holds
            scores = Scores(scores.rewards[decoded], scores.correct[decoded], None, None, scores.source)
        samples = []
        if completions is not None and self.samples:
            examples = self.scorer.splits[pop.split]
            if indices is None:
                indices = pop.indices if pop.indices is not None else np.arange(len(examples))
            for k, j in enumerate(list(indices)[: self.samples]):
                samples.append({"prompt": examples[j].prompt, "answer": examples[j].answer,
                                "completion": completions[k], "extracted": scores.answers[k],
                                "reward": float(scores.rewards[k])})  # fmt: skip
        self.callbacks.point(PointScored("member", self.round, i, pop.split, scores.mean_reward, scores.accuracy,
                                         self.budget.example_evals, sigma=float(pop.sigmas[i]), failed=failed,
                                         replayed=scores.source == "resumed", samples=samples,
                                         parts=scores.part_means()))  # fmt: skip


def _split_indices(pop: Population, positions: np.ndarray, n_examples: int) -> np.ndarray | None:
    """The split indices of a population's example ``positions``; all of them: the population's own
    (``None`` for the whole split), so an unraced member is decoded exactly as it always was."""
    if len(positions) == n_examples:
        return pop.indices
    return positions if pop.indices is None else np.asarray(pop.indices)[positions]


def _copy(row: Scores) -> Scores:
    """A row the store keeps, detached from the population's matrices (a race truncates them)."""
    return Scores(row.rewards.copy(), row.correct.copy(), list(row.answers), None, row.source)
