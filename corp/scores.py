"""The scores of model points: the one type every layer passes around (the bottom of the house).

A ``Scores`` is one point's per-example outcomes on a list of examples; a ``PopulationScores``
holds many points (members x examples) with a mask of the entries actually decoded, so a
population scored in part (a rank's share, a crashed round, a race stopped early) is the same
type as a whole one. Each has one conversion to and from the ``.npz`` arrays the store saves, and
``PopulationScores`` one to and from the tensors that cross ranks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Scores:
    """One model point's per-example outcomes: what the scorer returns, the score store keeps and the
    operators see (they read ``rewards`` and ``correct`` only)."""

    rewards: np.ndarray  # float, task reward per example
    correct: np.ndarray  # bool, whether the example counts as solved
    answers: list[str | None] | None = None  # extracted answers (for votes)
    completions: list[str] | None = None  # kept for whole-split evaluations, not for population members
    source: str = "scored"  # "scored" here, "resumed" from this run's own folder, "loaded" from population.load
    parts: dict[str, np.ndarray] | None = None  # the reward's named components (Task.reward_parts); not saved

    def part_means(self) -> dict[str, float]:
        """Each reward component's mean, for the logs."""
        return {name: float(v.mean()) for name, v in (self.parts or {}).items() if len(v)}

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if len(self.correct) else 0.0

    @property
    def mean_reward(self) -> float:
        return float(self.rewards.mean()) if len(self.rewards) else 0.0

    def failed(self) -> Scores:
        """The same point scored as failed: reward 0, nothing solved (see ``corp.evaluate``)."""
        return Scores(np.zeros_like(self.rewards), np.zeros_like(self.correct), self.answers, self.completions,
                      self.source)  # fmt: skip


@dataclass
class PopulationScores:
    """Members x examples reward and correctness matrices, with ``mask`` marking the entries decoded.

    Entries not decoded hold NaN rewards, ``False`` and ``None`` answers; a decoded reward is always
    finite (``corp.evaluate.contain_nonfinite``), so a row's NaN marks what was not decoded. A member
    raced out (corp/racing.py) keeps such a partial row. ``completions`` is kept for whole-split
    evaluations only."""

    rewards: np.ndarray  # float64, members x examples
    correct: np.ndarray  # bool, members x examples
    answers: list[list[str | None]] | None = None  # members x examples, for votes (None: not extracted)
    mask: np.ndarray | None = None  # bool, members x examples: decoded (None: every entry with a reward)
    completions: list[list[str]] | None = None

    def __post_init__(self) -> None:
        if self.answers is None:
            self.answers = [[None] * self.rewards.shape[1] for _ in range(len(self.rewards))]
        if self.mask is None:
            self.mask = ~np.isnan(self.rewards)

    @classmethod
    def empty(cls, members: int, examples: int) -> PopulationScores:
        return cls(np.full((members, examples), np.nan), np.zeros((members, examples), dtype=bool),
                   [[None] * examples for _ in range(members)], np.zeros((members, examples), dtype=bool))  # fmt: skip

    @classmethod
    def stack(cls, rows: Sequence[Scores]) -> PopulationScores:
        """One row per member, NaN where not decoded (completions kept when every row has them)."""
        completions = [list(r.completions) for r in rows] if all(r.completions is not None for r in rows) else None
        rewards = np.stack([np.asarray(r.rewards, dtype=np.float64) for r in rows])
        answers = [list(r.answers) if r.answers is not None else [None] * rewards.shape[1] for r in rows]
        return cls(rewards, np.stack([r.correct for r in rows]).astype(bool), answers, completions=completions)

    def __len__(self) -> int:
        return len(self.rewards)

    def set(self, i: int, row: Scores, positions: np.ndarray | None = None) -> None:
        """Member ``i``'s entries at example ``positions`` from ``row`` (one value per position); without
        ``positions``, ``row`` is whole-width and its entries with a reward are set (a partial row from
        the store sets what it holds). Entries not named keep what they had."""
        if positions is None:
            positions = np.flatnonzero(~np.isnan(row.rewards))
            row = Scores(row.rewards[positions], row.correct[positions],
                         None if row.answers is None else [row.answers[k] for k in positions])  # fmt: skip
        self.rewards[i, positions], self.correct[i, positions], self.mask[i, positions] = row.rewards, row.correct, True
        for k, p in enumerate(positions):
            self.answers[i][p] = row.answers[k] if row.answers is not None else None

    def truncate(self, i: int, upto: int) -> None:
        """Forget member ``i``'s entries from example ``upto`` on (what a race did not read)."""
        self.rewards[i, upto:], self.correct[i, upto:], self.mask[i, upto:] = np.nan, False, False
        self.answers[i][upto:] = [None] * (self.rewards.shape[1] - upto)

    def complete(self, i: int) -> bool:
        return bool(self.mask[i].all())

    def row(self, i: int, source: str = "scored") -> Scores:
        """Member ``i`` as one point's ``Scores`` (views of the matrices)."""
        completions = None if self.completions is None else self.completions[i]
        return Scores(self.rewards[i], self.correct[i], self.answers[i], completions, source)

    @property
    def mean_rewards(self) -> np.ndarray:
        """Each member's mean reward over the examples it was decoded on (NaN: none)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.mask, self.rewards, 0.0).sum(axis=1) / self.mask.sum(axis=1)

    @property
    def accuracies(self) -> np.ndarray:
        """Each member's share of solved examples among those it was decoded on (NaN: none)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.correct & self.mask).sum(axis=1) / self.mask.sum(axis=1)

    @property
    def selection_rewards(self) -> np.ndarray:
        """What operators rank members by: the mean reward of a complete row, -inf for a member decoded
        in part (raced out), so it never ranks above, or enters an elite before, one that finished."""
        return np.where(self.mask.all(axis=1), self.mean_rewards, -np.inf)

    # -- the store's .npz arrays --------------------------------------------------------------
    def to_npz(self) -> dict[str, np.ndarray]:
        """The arrays a score file holds; ``mask`` only where some entry was not decoded."""
        out = {"rewards": self.rewards, "correct": self.correct, "answers": np.array(json.dumps(self.answers))}
        if not self.mask.all():
            out["mask"] = self.mask
        if self.completions is not None:
            out["completions"] = np.array(json.dumps(self.completions))
        return out

    @classmethod
    def from_npz(cls, data) -> PopulationScores:
        """From a loaded score file (``np.load``); a file without ``mask`` was decoded in full."""
        rewards, correct = np.asarray(data["rewards"], dtype=np.float64), np.asarray(data["correct"], dtype=bool)
        answers = json.loads(str(data["answers"]))
        mask = np.asarray(data["mask"], dtype=bool) if "mask" in data.files else None
        completions = json.loads(str(data["completions"])) if "completions" in data.files else None
        if not (len(rewards) == len(correct) == len(answers)):
            raise ValueError("row counts disagree")
        if mask is not None:
            rewards[~mask] = np.nan  # what was not decoded reads as such, whatever the file held there
        return cls(rewards, correct, answers, mask if mask is not None else np.ones(rewards.shape, dtype=bool),
                   completions)  # fmt: skip

    # -- across ranks -------------------------------------------------------------------------
    def to_tensors(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rewards, correct, mask) as tensors, for a collective; answers travel as objects."""
        return (torch.from_numpy(self.rewards).to(device), torch.from_numpy(self.correct).to(device),
                torch.from_numpy(self.mask).to(device))  # fmt: skip

    @classmethod
    def from_tensors(cls, rewards: torch.Tensor, correct: torch.Tensor, mask: torch.Tensor,
                     answers: list[list[str | None]]) -> PopulationScores:  # fmt: skip
        return cls(rewards.cpu().numpy(), correct.cpu().numpy(), answers, mask.cpu().numpy())

    @classmethod
    def merge(cls, parts: Sequence[PopulationScores]) -> PopulationScores:
        """One population from parts that each decoded some entries (the ranks' shares, perhaps of the
        same member on different blocks of a race): each entry comes from the first part that decoded it."""
        out = cls.empty(*parts[0].rewards.shape)
        for part in parts:
            new = part.mask & ~out.mask
            out.rewards[new], out.correct[new], out.mask[new] = part.rewards[new], part.correct[new], True
            for i, k in zip(*np.nonzero(new)):
                out.answers[i][k] = part.answers[i][k]
        return out
