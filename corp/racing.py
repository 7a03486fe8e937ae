"""Racing: decode a population's examples block by block and stop decoding members that cannot be kept.

Every operator but ES reads only the best few members of a population in full (RandOpt its top K,
soup its top k, CoRP the largest elite its quantile grid can reach); it states that number as
``Population.keep``. A race decodes every surviving member on the same next block of examples
(paired), then drops the members that cannot reach the top ``keep``. Survivors end with complete
rows; a dropped member keeps the partial row it had (NaN where nothing was decoded). Racing changes
which examples are decoded, never which members exist.

Decision points are cumulative example counts ``first_block, first_block * growth, ...`` below the
number of examples, then all of them. Rules (docs/method.md §4.5):

- ``none``: one block, every member on every example (no race).
- ``halving``: keep the best ``fraction`` of the survivors by mean reward on the shared examples
  (ties to the lower index, as ``rank_members``).
- ``paired``: drop a member when at least ``keep`` other members beat it with a one-sided exact sign
  test on the shared examples at level ``1 - confidence``: fixes (examples where the other member's
  reward is higher) against regressions (where it is lower). For 0/1 rewards this is McNemar's exact
  test of equal means; a truly top-``keep`` member is beaten by ``keep`` members only if at least one
  of those comparisons is a false positive, each of which has probability at most ``1 - confidence``.

Every rule keeps at least ``max(keep, floor)`` members. Pure numpy: nothing here decodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import binom

RULES = ("none", "halving", "paired")


@dataclass
class RacingConfig:
    """``racing.*``: how a population's examples are spent (conf/racing/)."""

    rule: str = "none"  # none | halving | paired (see corp/racing.py)
    first_block: int = 8  # examples every member is decoded on before the first decision
    growth: float = 2.0  # each later decision point is this many times the previous one
    fraction: float = 0.5  # halving: the share of survivors kept at each decision point
    confidence: float = 0.8  # paired: one-sided confidence of each sign test that drops a member (BENCHMARKS §3)
    floor: int = 2  # never fewer survivors than this (nor than what the operator keeps)

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"racing.rule={self.rule!r}; allowed: {', '.join(RULES)}")
        if not isinstance(self.first_block, int) or self.first_block < 1:
            raise ValueError(f"racing.first_block={self.first_block!r}: must be an integer >= 1")
        if not self.growth > 1.0:
            raise ValueError(f"racing.growth={self.growth!r}: must be > 1")
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"racing.fraction={self.fraction!r}: must be in (0, 1)")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"racing.confidence={self.confidence!r}: must be in [0.5, 1)")
        if not isinstance(self.floor, int) or self.floor < 1:
            raise ValueError(f"racing.floor={self.floor!r}: must be an integer >= 1")

    @property
    def on(self) -> bool:
        return self.rule != "none"


def decision_points(cfg: RacingConfig, n_examples: int) -> list[int]:
    """Cumulative example counts after which the race decides, ending with ``n_examples``."""
    points: list[int] = []
    t = float(cfg.first_block)
    while cfg.on and round(t) < n_examples:
        if not points or round(t) > points[-1]:
            points.append(round(t))
        t *= cfg.growth
    return [*points, n_examples]


def ranking(rewards: np.ndarray) -> np.ndarray:
    """Rows by mean reward, best first; ties to the lower index (``corp.consolidate.base.rank_members``)."""
    means = np.asarray(rewards, dtype=np.float64).mean(axis=1)
    return np.lexsort((np.arange(len(means)), -means))


def sign_test(rewards: np.ndarray) -> np.ndarray:
    """``p[j, i]``: one-sided exact sign-test p-value that row j beats row i on the shared columns,
    from its fixes (columns where j's reward is higher) against its regressions (where it is lower)."""
    r = np.asarray(rewards, dtype=np.float64)
    diff = r[:, None, :] - r[None, :, :]
    fixes, regressions = (diff > 0).sum(axis=2), (diff < 0).sum(axis=2)
    return binom.sf(fixes - 1, fixes + regressions, 0.5)  # P(Bin(f + r, 1/2) >= f); 1 when f + r = 0


def survivors(cfg: RacingConfig, rewards: np.ndarray, keep: int) -> np.ndarray:
    """Which rows of ``rewards`` (survivors x shared examples) stay in the race; a bool mask."""
    n = len(rewards)
    least = min(n, max(keep, cfg.floor))
    order = ranking(rewards)
    stay = np.zeros(n, dtype=bool)
    if cfg.rule == "halving":
        stay[order[: max(least, math.ceil(cfg.fraction * n))]] = True
        return stay
    if cfg.rule == "paired":
        beaten = (sign_test(rewards) <= 1.0 - cfg.confidence).sum(axis=0)
        stay = beaten < keep
        if stay.sum() < least:  # the tests are not transitive: never fall below the floor
            stay[order[:least]] = True
        return stay
    return np.ones(n, dtype=bool)


@dataclass
class Race:
    """One population's race: who is still decoded, and what each decision did.

    The caller decodes the survivors up to each decision point, in order, then calls ``decide`` with
    the whole (members x examples) reward matrix; columns past the decision point are not read."""

    cfg: RacingConfig
    members: int
    examples: int
    keep: int | None  # the operator's need (Population.keep); None: every member, no race
    alive: np.ndarray = field(init=False)
    reach: np.ndarray = field(init=False)  # per member: the examples it was raced on (its row's first ones)
    points: list[int] = field(init=False)
    stages: list[dict[str, int]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.alive = np.ones(self.members, dtype=bool)
        self.reach = np.full(self.members, self.examples, dtype=np.int64)
        racing = self.cfg.on and self.keep is not None and self.keep < self.members
        self.points = decision_points(self.cfg, self.examples) if racing else [self.examples]

    def decide(self, upto: int, rewards: np.ndarray) -> None:
        """Drop members after the survivors have been decoded on the first ``upto`` examples."""
        idx = np.flatnonzero(self.alive)
        if upto < self.examples:
            stay = survivors(self.cfg, np.asarray(rewards)[idx, :upto], int(self.keep))
            self.alive[idx[~stay]] = False
            self.reach[idx[~stay]] = upto
        self.stages.append({"examples": upto, "scored": len(idx), "survivors": int(self.alive.sum())})

    @property
    def decoded(self) -> int:
        """Member x example evaluations the race reads (what it decodes from scratch)."""
        return int(self.reach.sum())

    def observations(self) -> tuple[dict[str, float], dict[str, list[dict[str, int]]]]:
        """The round's scalars (results.json, the loggers) and its table of stages (rounds.jsonl, W&B,
        plots/racing_survivors.png); both empty when the population was not raced."""
        if len(self.points) == 1:
            return {}, {}
        full = self.members * self.examples
        metrics = {"racing/examples_decoded": float(self.decoded), "racing/examples_saved": float(full - self.decoded),
                   "racing/decoded_share": self.decoded / full, "racing/survivors": float(self.alive.sum())}  # fmt: skip
        for stage in self.stages:
            metrics[f"racing/scored_on_{stage['examples']}"] = float(stage["scored"])
        return metrics, {"racing/stages": list(self.stages)}
