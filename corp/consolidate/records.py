"""What a CoRP round observed, as typed records the stage code returns.

``corp.consolidate.observations`` turns a record into the round's metrics and tables;
nothing else reads a record, and the operator's decisions never depend on one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corp.consolidate.stage1 import Candidate
from corp.scores import Scores


@dataclass(frozen=True)
class Stage1Record:
    """Stage 1 (round 0): the population collapsed into candidates, probed, one committed or not."""

    rewards: np.ndarray  # each member's mean support reward
    sigmas: np.ndarray  # each member's noise scale
    candidates: list[Candidate]  # in grid order, duplicates dropped
    duplicates: int
    probe: list[Scores]  # each candidate's probe scores
    best: int  # index into candidates
    centre: Scores  # the centre's probe scores before the round
    committed: bool
    elite_cloud: np.ndarray  # the best merge's elite members (members x seeds coefficients)
    search_eigenvalues: np.ndarray  # of the search distribution fitted for stage 2
    evaluate_calls: int
    centre_probe_acc: float | None  # the centre's probe accuracy after the round, where known

    @property
    def chosen(self) -> Candidate:
        return self.candidates[self.best]


@dataclass(frozen=True)
class Selection:
    """Stage-2 proposals scored on the selection half, the one chosen, and its gate on the other half
    (``gate_mode=best``: the best on selection; ``filter``: the best among those passing the gate)."""

    scores: list[float]  # each proposal's constructive score on the selection half
    reward_gains: list[float]  # each proposal's mean reward gain over the centre there
    best: int
    gate_score: float  # constructive score of the chosen proposal on the gate half
    gate_mean: float  # its mean paired accuracy difference to the centre there
    gate_lcb: float  # lower confidence bound of that difference (-inf with < 2 examples; NaN: gate not scored)
    gate_scores: list[float] | None = None  # gate_mode=filter: every proposal's gate score ...
    gate_lcbs: list[float] | None = None  # ... and bound

    @property
    def gated(self) -> bool:
        return self.gate_score > 0 and self.gate_lcb > 0


@dataclass(frozen=True)
class LineSearch:
    """The gated proposal tried at each alpha on probe, the pick and whether it was committed."""

    alphas: list[float]
    probe: list[Scores]
    bounds: list[float]  # paired lower confidence bound of each try against the centre
    pick: int
    centre: Scores  # the centre's probe scores
    accepted: bool


@dataclass(frozen=True)
class PooledTest:
    """``stage2_test=pooled_sign``: the line search's pick against the centre on the gate half and the
    probe together."""

    examples: int
    fixes: int
    regressions: int
    score: float  # constructive score over the pooled examples
    p_value: float  # one-sided exact sign test on the fixes and regressions
    passed: bool


@dataclass(frozen=True)
class Refit:
    """The search distribution refitted from the round's positive members (unchanged without any)."""

    ess_target: float
    positive: np.ndarray  # indices of members with a constructive score > 0
    weights: np.ndarray | None  # their softmax weights (None: no positive member, nothing refitted)
    inv_temperature: float
    eigenvalues: np.ndarray  # of the refitted search distribution
    cloud: np.ndarray | None  # the positive members (members x seeds coefficients)


@dataclass(frozen=True)
class Stage2Record:
    """One gated stage-2 round."""

    round: int  # stage-2 rounds before this one
    sigma: float  # member scale (before sqrt(lam)), mixing weight and step length the round ran with
    lam: float
    eta: float
    member_scores: np.ndarray  # each member's constructive score on the selection half
    sigmas: np.ndarray
    proposals: list[Candidate]
    duplicates: int
    selection: Selection
    line_search: LineSearch | None  # None when the gate refused
    pooled: PooledTest | None  # stage2_test=pooled_sign: the test that decided the round
    refit: Refit
    accepted_total: int
    consecutive_rejections: int
    evaluate_calls: int
    centre_probe_acc: float | None

    @property
    def chosen(self) -> Candidate:
        return self.proposals[self.selection.best]
