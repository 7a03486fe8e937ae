"""CoRP stage 2 building blocks: split halves, local members, scores, gate statistics, and the
round's selection, gate and line search.

``corp.consolidate.corp.CorpOperator`` keeps the state between rounds and strings these into
gated rounds. Only ``select_and_gate`` and ``line_search`` call ``evaluate``; the rest is numpy.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from corp.consolidate.base import Evaluate, Population, member_seed
from corp.consolidate.records import LineSearch, PooledTest, Selection
from corp.consolidate.stage1 import Candidate, softmax
from corp.perturb.direction import Direction, weighted_svd
from corp.scores import Scores

LAMBDA_MIN, LAMBDA_MAX = 0.15, 0.95  # clip range of lambda's target (docs/method.md §4.3)


def split_support(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(selection, gate) halves of range(size), each sorted; the gate gets the odd example."""
    perm = np.random.default_rng(seed).permutation(size)
    return np.sort(perm[: size // 2]), np.sort(perm[size // 2 :])


def _stream(run_seed: int, round_idx: int) -> np.random.Generator:
    """A numpy generator private to (run, round), independent of member seeds."""
    digest = hashlib.blake2b(f"corp-local-z/{run_seed}/{round_idx}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


@dataclass
class LocalPopulation(Population):
    """Stage-2 members with their structure kept, so a scorer can cache the shared components:
    ``members[i] == fresh_coeff * eps(seeds[i]) + sum_k coords[i, k] * components[k]``."""

    components: list[Direction] = field(default_factory=list)
    coords: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # members x components
    fresh_coeff: float = 0.0


def local_population(
    run_seed: int,
    round_idx: int,
    size: int,
    sigma: float,
    lam: float,
    components: Sequence[Direction],
    eigenvalues: np.ndarray,
    indices: np.ndarray,
    sampler: str = "normalised",
) -> LocalPopulation:
    """Members a_i = sigma * (sqrt(lam) eps_i + sqrt(1 - lam) sum_k sqrt(L_k) z_ik u_k).

    ``sampler="normalised"``: ``eigenvalues`` sum to one (``fit_cloud``), so both parts have unit
    expected squared norm and E||a_i||^2 = sigma^2 for every lam; without components the members
    are isotropic at sigma. ``"published"``: the isotropic part is sigma * sqrt(lam) with or without
    components, and ``eigenvalues`` are absolute (of order sigma^2), as in the published sampler.
    Scored on ``indices`` of the support split (the selection half).
    """
    seeds = np.array([member_seed(run_seed, round_idx, i) for i in range(size)], dtype=np.int64)
    components = list(components)
    k = len(components)
    z = _stream(run_seed, round_idx).standard_normal((size, k))
    fresh = sigma * (math.sqrt(lam) if k or sampler == "published" else 1.0)
    coords = sigma * math.sqrt(1.0 - lam) * np.sqrt(np.asarray(eigenvalues, dtype=np.float64)) * z
    members = [
        Direction.combine([Direction.from_seed(int(s)), *components], [fresh, *coords[i]]).pruned()
        for i, s in enumerate(seeds)
    ]
    return LocalPopulation(
        members,
        seeds,
        np.full(size, sigma),
        split="support",
        indices=np.asarray(indices),
        components=components,
        coords=coords,
        fresh_coeff=fresh,
    )


def fit_cloud(
    directions: Sequence[Direction], weights: np.ndarray, rank: int, sampler: str = "normalised"
) -> tuple[list[Direction], np.ndarray]:
    """Top-``rank`` principal directions of a weighted cloud and their eigenvalues.

    ``"normalised"``: of the uncentred second moment, eigenvalues summing to one. Uncentred, as in
    CMA-ES's rank-mu update: the directions are displacements from the centre they were drawn
    around, so the mean displacement (the direction of progress) stays in the subspace instead of
    being projected out. ``"published"``: of the centred covariance, eigenvalues in absolute units.
    """
    published = sampler == "published"
    components, eig, _ = weighted_svd(directions, weights, rank=rank, center=published)
    keep = eig > 0
    eig = eig[keep]
    if not len(eig):
        return [], np.zeros(0)
    return [c.pruned() for c, k in zip(components, keep, strict=True) if k], eig if published else eig / eig.sum()


def constructive_scores(centre: np.ndarray, correct: np.ndarray, lambda_reg: float) -> np.ndarray:
    """(fixes - lambda_reg * regressions) / n per row of ``correct``, relative to ``centre``."""
    centre = np.asarray(centre, dtype=bool)
    correct = np.asarray(correct, dtype=bool)
    fixes = np.sum(~centre & correct, axis=-1)
    regressions = np.sum(centre & ~correct, axis=-1)
    return (fixes - lambda_reg * regressions) / centre.shape[-1]


def paired_lcb(centre: np.ndarray, other: np.ndarray, z: float) -> tuple[float, float]:
    """(mean, mean - z * SE) of the per-example difference other - centre.

    With fewer than two examples there is no standard error: the bound is -inf.
    """
    diff = np.asarray(other, dtype=np.float64) - np.asarray(centre, dtype=np.float64)
    mean = float(diff.mean())
    if len(diff) < 2:
        return mean, -math.inf
    return mean, mean - z * float(diff.std(ddof=1)) / math.sqrt(len(diff))


def sign_p_value(fixes: int, regressions: int) -> float:
    """One-sided exact p-value of ``fixes`` or more fixes among the fixes + regressions examples where a
    candidate and the centre disagree, if each were a fix with probability 1/2 (no gain); 1 when none do."""
    m = fixes + regressions
    return sum(math.comb(m, j) for j in range(fixes, m + 1)) / 2**m


def pooled_sign_test(centre: np.ndarray, correct: np.ndarray, lambda_reg: float, level: float) -> PooledTest:
    """``stage2_test=pooled_sign`` on one set of examples: passes when the constructive score is > 0 and
    the sign test's p-value is <= ``level``. For a candidate fixed before these examples were scored, a
    step without gain passes with probability <= ``level`` (exactly, given how many examples changed)."""
    centre = np.asarray(centre, dtype=bool)
    correct = np.asarray(correct, dtype=bool)
    fixes, regressions = int(np.sum(~centre & correct)), int(np.sum(centre & ~correct))
    score = float(constructive_scores(centre, correct, lambda_reg))
    p = sign_p_value(fixes, regressions)
    return PooledTest(len(centre), fixes, regressions, score, p, score > 0 and p <= level)


def ess(weights: np.ndarray) -> float:
    w = np.asarray(weights, dtype=np.float64)
    return float(w.sum() ** 2 / np.sum(w**2))


def ess_weights(scores: np.ndarray, target: float, iterations: int = 100) -> tuple[np.ndarray, float]:
    """Softmax weights softmax(b * scores) whose ESS = 1/sum w^2 hits ``target``; returns (w, b).

    ESS falls monotonically from n (b = 0) to the number of tied best scores (b -> inf), so
    b is found by doubling then bisection. Targets outside that range are clipped to it.
    """
    s = np.asarray(scores, dtype=np.float64)
    s = s - s.max()
    n = len(s)
    top = int(np.sum(s == 0))
    if target >= n or top == n:
        return np.full(n, 1.0 / n), 0.0
    if target <= top:
        return (s == 0) / top, math.inf
    lo, hi = 0.0, 1.0
    while ess(softmax(hi * s)) > target:
        lo, hi = hi, 2.0 * hi
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if ess(softmax(mid * s)) > target:
            lo = mid
        else:
            hi = mid
    b = 0.5 * (lo + hi)
    return softmax(b * s), b


def ess_target(round_k: int, rounds: int, start: float, end: float, schedule: str = "linear") -> float:
    """Target ESS for stage-2 round ``round_k``, from ``start`` (first) to ``end`` (last): linear, or
    geometric with ``schedule="published"``."""
    if rounds <= 1:
        return float(start)
    t = min(round_k, rounds - 1) / (rounds - 1)
    if schedule == "published":
        return float(math.exp((1.0 - t) * math.log(start) + t * math.log(end)))
    return float(start + (end - start) * t)


def ess_asked(target: float, positive: int, schedule: str = "linear") -> float:
    """The ESS the refit asks of ``positive`` members: the target, or min(positive, 2 x target) as published."""
    return float(min(positive, 2.0 * target)) if schedule == "published" else float(target)


def next_lambda(lam: float, share_positive: float) -> float:
    """Halfway toward clip(0.15 + 0.8 (1 - share), 0.15, 0.95): few improving members -> more isotropy."""
    target = min(max(LAMBDA_MIN + 0.8 * (1.0 - share_positive), LAMBDA_MIN), LAMBDA_MAX)
    return 0.5 * (lam + target)


def select_and_gate(
    proposals: list[Candidate],
    centre: Scores,
    selection: np.ndarray,
    gate: np.ndarray,
    lambda_reg: float,
    gate_z: float,
    evaluate: Evaluate,
    mode: str = "best",
) -> Selection:
    """Score every proposal on the selection half and pick one for the gate half.

    Best: the highest constructive score; ties go to the larger mean reward gain, then the
    shorter step, then grid order. ``mode="best"`` tries only the best on the gate half;
    ``mode="filter"`` (published) tries every proposal there and keeps the best among those
    that pass (the best overall when none does); ``mode="select"`` leaves the gate half unscored
    (the pooled test scores the line search's pick there). ``centre`` holds the centre's scores
    on the whole support.
    """
    c_sel, c_gate = centre.correct[selection], centre.correct[gate]
    sel = [evaluate(p.direction, "support", selection) for p in proposals]
    scores = [float(constructive_scores(c_sel, s.correct, lambda_reg)) for s in sel]
    r_sel = centre.rewards[selection]
    gains = [float(np.mean(s.rewards - r_sel)) for s in sel]
    order = sorted(range(len(proposals)), key=lambda i: (-scores[i], -gains[i], proposals[i].direction.norm(), i))

    def gate_of(i: int) -> tuple[float, float, float]:
        res = evaluate(proposals[i].direction, "support", gate)
        return (float(constructive_scores(c_gate, res.correct, lambda_reg)), *paired_lcb(c_gate, res.correct, gate_z))

    if mode == "filter":
        gates = [gate_of(i) for i in range(len(proposals))]
        passing = [i for i in order if gates[i][0] > 0 and gates[i][2] > 0]
        best = passing[0] if passing else order[0]
        return Selection(scores, gains, best, *gates[best], gate_scores=[g[0] for g in gates],
                         gate_lcbs=[g[2] for g in gates])  # fmt: skip
    if mode == "select":
        return Selection(scores, gains, order[0], math.nan, math.nan, math.nan)
    return Selection(scores, gains, order[0], *gate_of(order[0]))


def line_search(
    direction: Direction, centre: Scores, alphas: list[float], gate_z: float, evaluate: Evaluate
) -> LineSearch:
    """``direction`` scaled by each alpha on probe; the pick has the best accuracy (ties: the higher
    bound, then alpha closest to 1, then the smaller), accepted when its bound is > 0 and it is no worse."""
    tries = [evaluate(direction * alpha, "probe") for alpha in alphas]
    bounds = [paired_lcb(centre.correct, res.correct, gate_z)[1] for res in tries]
    pick = min(
        range(len(tries)),
        key=lambda i: (-tries[i].accuracy, -bounds[i], abs(math.log(alphas[i])), alphas[i]),
    )
    accepted = bounds[pick] > 0 and tries[pick].accuracy >= centre.accuracy
    return LineSearch(list(alphas), tries, bounds, pick, centre, accepted)
