"""What every consolidation operator sees: populations, scores and an evaluator.

Operators are pure logic. They never touch weights or call ``generate``: they
propose populations of directions (relative to the current centre), receive the
members' per-example scores, may ask ``evaluate`` to score any other direction on a
split, and return the step the loop should commit (or None to keep the centre).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from corp.perturb.direction import Direction
from corp.registry import Registry
from corp.results import Results
from corp.scores import PopulationScores, Scores


@dataclass
class Population:
    """Members to score: directions relative to the centre at sampling time."""

    members: list[Direction]
    seeds: np.ndarray  # the fresh seed each member was drawn with
    sigmas: np.ndarray  # the scale of each member's fresh noise
    split: str = "support"
    indices: np.ndarray | None = None  # subset of the split to score on (None: all)
    # How many of the best members the operator reads in full; racing (corp/racing.py) may stop
    # decoding the others. None: the operator reads every member, and the population is never raced.
    keep: int | None = None

    def __len__(self) -> int:
        return len(self.members)


class Evaluate(Protocol):
    def __call__(self, direction: Direction, split: str, indices: np.ndarray | None = None) -> Scores:
        """Scores of centre + ``direction`` on ``split`` (optionally on a subset of it)."""


def member_seed(run_seed: int, round_idx: int, index: int) -> int:
    """Seed of member ``index`` of round ``round_idx``: independent of the population size,
    so a larger population's first N members are exactly the smaller population."""
    digest = hashlib.blake2b(f"member/{run_seed}/{round_idx}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x3FFF_FFFF_FFFF_FFFF


def isotropic_population(
    run_seed: int, round_idx: int, size: int, sigmas: Sequence[float], antithetic: bool = False
) -> Population:
    """``size`` members sigma_i * eps(seed_i); sigmas cycle through the list.

    ``antithetic`` (mirrored sampling): members 2j and 2j + 1 are +sigma_j * eps(seed_j) and
    -sigma_j * eps(seed_j), with the seed and sigma of member j of the plain population, so each
    member is still (seed, +-sigma) and a population of N is the first N members of a larger one.
    """
    draws = np.arange(size) // 2 if antithetic else np.arange(size)
    signs = np.where(antithetic & (np.arange(size) % 2 == 1), -1.0, 1.0)
    seeds = np.array([member_seed(run_seed, round_idx, int(j)) for j in draws], dtype=np.int64)
    sig = np.array([sigmas[j % len(sigmas)] for j in draws], dtype=np.float64)
    members = [Direction.from_seed(s, sign * c) for s, sign, c in zip(seeds, signs, sig, strict=True)]
    return Population(members, seeds, sig)


def rank_members(rewards: np.ndarray) -> np.ndarray:
    """Member indices by mean reward, best first; ties go to the lower index (the earlier seed)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    return np.lexsort((np.arange(len(rewards)), -rewards))


@dataclass
class Ensemble:
    """Models an operator wants scored together on test by majority vote (e.g. RandOpt's top K).

    ``members`` are directions relative to the base model, best first; ``ks`` the ensemble
    sizes to report (each uses the first k members, k forward passes per test example).
    """

    members: list[Direction]
    ks: list[int]


@dataclass
class Update:
    """What an operator returns after a round."""

    step: Direction | None  # committed relative to the current centre; None keeps it
    metrics: dict[str, Any] = field(default_factory=dict)  # scalars for the logger (and results.json)
    done: bool = False  # no further rounds
    # What a scalar cannot hold, for rounds.jsonl, W&B and the plots (never results.json): a list of
    # row dicts becomes a table, a list of numbers a histogram. Observations only: nothing reads them back.
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportRow:
    """One line a finished run adds to a sweep report's table (``python -m corp.report``)."""

    label: str  # e.g. "CoRP (N=8)"
    accuracy: float  # test accuracy
    passes: int = 1  # forward passes per test example
    block: int = 0  # a method's rows are listed block by block, each block by setting ...
    sort: tuple = ()  # ... then by this (e.g. (N, K))
    role: str = ""  # REFERENCE or ENSEMBLE: what the compared methods are set against (see ``Operator.compared``)


REFERENCE = "reference"  # a single model: "<compared method> vs <this row>"
ENSEMBLE = "ensemble"  # several models voting: the share of its gain over the base a compared method recovers


def report_row(name: str, results: Results, config: dict[str, Any]) -> ReportRow:
    """The one row most methods add: their final model, labelled with the population size."""
    return ReportRow(f"{name} (N={config['perturbation']['population_size']})", results.splits["test"].final)


class Operator(ABC):
    """A consolidation method, driven round by round by the loop; registered with
    ``@OPERATORS.register("<name>")`` (which sets ``name``) and built by ``from_config``."""

    name: str = ""  # set by the registry
    config_class: type[ConsolidationConfig]  # its ``consolidation.*`` dataclass
    display_name: str = ""  # how reports name the method (default: ``name``)
    compared: bool = False  # reports set this method's rows against the base and the REFERENCE/ENSEMBLE rows

    @classmethod
    def from_config(cls, cfg: Any) -> Operator:
        """The operator from the whole typed config: its ``consolidation.*`` group and the population it
        draws (``perturbation.*``, ``seed``). Operators that need other keys override this."""
        p = cfg.perturbation
        return cls(cfg.consolidation, p.population_size, list(p.sigmas), cfg.seed, p.antithetic)

    @classmethod
    def report_rows(cls, results: Results, config: dict[str, Any]) -> list[ReportRow]:
        """The rows one finished run adds to a sweep report, from its ``results.json`` and its
        ``config.json`` (the resolved config as plain values)."""
        return [report_row(cls.display_name or cls.name, results, config)]

    @abstractmethod
    def propose(self, round_idx: int) -> Population | None:
        """The population to score this round, or None when the operator needs none."""

    @abstractmethod
    def update(
        self, round_idx: int, population: Population | None, scores: PopulationScores | None, evaluate: Evaluate
    ) -> Update:
        """Fold the scored population into a step; may call ``evaluate`` on candidates."""

    def test_ensemble(self) -> Ensemble | None:
        """Members to evaluate on test and vote over after training; None: the final model only."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state for checkpoints (seeds and coefficients, no tensors)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


@dataclass
class ConsolidationConfig:
    """Fields every ``consolidation.*`` config has; each operator subclasses it."""

    name: str = "corp"


# consolidation=<name>; corp/consolidate/__init__.py fills it, and reports list methods in its order
OPERATORS: Registry[Operator] = Registry("consolidation", "operator", Operator)
