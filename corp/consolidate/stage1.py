"""CoRP stage 1: the constructive collapse of a scored population into one direction.

Pure numpy on the members' coefficient matrix (members x seeds, see
``corp.perturb.direction.stack``); nothing here evaluates a model. Stage 2 reuses
``merge`` on its local members with constructive scores in place of rewards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from corp.perturb.direction import Direction
from corp.scores import Scores

# A spread smaller than this fraction of the largest |value| is rounding noise, not signal:
# z-scoring it would blow float error up to +-1.
_ZSCORE_RTOL = 1e-9


def min_elite_size(n: int, q: float) -> int:
    """Smallest elite ``elite_indices`` can return for ``n`` distinct rewards at quantile ``q``.

    With linear interpolation the q-quantile sits at sorted position q*(n-1); every member
    at or above position ceil(q*(n-1)) reaches it.
    """
    return n - math.ceil(q * (n - 1) - 1e-9)


def elite_reach(n: int, quantiles: list[float]) -> int:
    """How many of the best members stage 1 reads in full (``Population.keep``, for racing): the
    elite of the smallest quantile and the member below it, which the interpolated quantile reads too."""
    return min(n, n - math.floor(min(quantiles) * (n - 1) + 1e-9))


def elite_indices(rewards: np.ndarray, q: float) -> np.ndarray:
    """Sorted indices of members with reward >= the q-quantile (ties all enter).

    Never fewer than ``min(2, n)`` members: if float rounding in the quantile drops the
    elite below two, the best two by (reward, lower index) are taken instead.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    elite = np.flatnonzero(rewards >= np.quantile(rewards, q))
    if len(elite) < min(2, len(rewards)):
        order = np.lexsort((np.arange(len(rewards)), -rewards))
        elite = np.sort(order[:2])
    return elite


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def zscore(x: np.ndarray) -> np.ndarray:
    """Population z-score; all zeros when the values do not (meaningfully) differ."""
    x = np.asarray(x, dtype=np.float64)
    scale = float(np.max(np.abs(x))) if len(x) else 0.0
    std = float(x.std())
    if scale == 0.0 or std <= _ZSCORE_RTOL * scale:
        return np.zeros_like(x)
    return (x - x.mean()) / std


@dataclass(frozen=True)
class Merge:
    """One (q, beta) collapse of a population: who entered, with what weights, and the result."""

    q: float
    beta: float
    elite: np.ndarray  # member indices, sorted
    first_pass: np.ndarray  # w1 over the elite
    weights: np.ndarray  # w2 over the elite
    alignment: np.ndarray  # cos(a_i, m) over the elite
    dispersion: np.ndarray  # ||a_i||^2 - (a_i . m_hat)^2 over the elite
    direction: Direction  # d = sum w2_i a_i
    member_norm: float  # sum w2_i ||a_i||: the natural length of one elite member

    @property
    def ess(self) -> float:
        return float(1.0 / np.sum(self.weights**2))

    @property
    def relative_dispersion(self) -> float:
        """Mean dispersion as a share of each member's energy (1 = orthogonal to m)."""
        return float(np.mean(1.0 - self.alignment**2))


def merge(matrix: np.ndarray, basis: np.ndarray, rewards: np.ndarray, q: float, beta: float) -> Merge:
    """Two-pass reward- and compatibility-weighted merge (docs/method.md §4.2).

    Rewards are shifted by the elite's best before multiplying by beta; softmax does not
    care, but it makes equal-reward elites give bit-identical weights for every beta, so
    duplicate candidates can be recognised by exact equality.
    """
    elite = elite_indices(rewards, q)
    a = matrix[elite]
    r = np.asarray(rewards, dtype=np.float64)[elite]
    base = beta * (r - r.max())
    w1 = softmax(base)
    m = w1 @ a
    m_norm = float(np.linalg.norm(m))
    norms = np.linalg.norm(a, axis=1)
    dots = a @ m
    if m_norm > 0:
        proj = dots / m_norm
        alignment = np.divide(proj, norms, out=np.zeros_like(proj), where=norms > 0)
    else:
        proj = np.zeros(len(elite))
        alignment = np.zeros(len(elite))
    dispersion = np.maximum(norms**2 - proj**2, 0.0)
    w2 = softmax(base + zscore(alignment) - zscore(dispersion))
    direction = Direction(basis, w2 @ a).pruned()  # no noise regeneration for zero coefficients
    return Merge(q, beta, elite, w1, w2, alignment, dispersion, direction, float(w2 @ norms))


def step_unit(m: Merge, scale_unit: str) -> float | None:
    """Factor f so that a candidate is ``s * f * d``; None when d vanishes.

    "member": ||f*d|| equals the w2-weighted mean elite member norm, so s counts member
    lengths whatever the elite size or beta (a spread elite has ||d|| ~ sigma/sqrt(k)).
    "raw": f = 1, the published stage-1 convention (s multiplies d itself).
    "absolute": ||f*d|| = 1, so s is a length in coefficient norm (published stage-2 steps).
    """
    norm = m.direction.norm()
    if norm == 0.0:
        return None
    return {"member": m.member_norm / norm, "raw": 1.0, "absolute": 1.0 / norm}[scale_unit]


def cloud_spectrum(matrix: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Eigenvalues of the weighted covariance of a cloud of directions (members x seeds), largest first."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mean = w @ matrix
    sv = np.linalg.svd(np.sqrt(w)[:, None] * (matrix - mean), compute_uv=False)
    return sv**2


def cloud_stats(matrix: np.ndarray, weights: np.ndarray, eig: np.ndarray) -> tuple[float, float] | None:
    """(effective rank, kappa) of a weighted cloud with spectrum ``eig`` (``cloud_spectrum``); None
    for a degenerate cloud.

    Effective rank = exp(entropy of the normalised eigenvalues of the weighted covariance);
    kappa = ||weighted mean||^2 / trace(covariance), the coherence of the mean direction.
    """
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mean = w @ matrix
    trace = float(eig.sum())
    if trace <= 0:
        return None
    p = eig[eig > 0] / trace
    return float(np.exp(-np.sum(p * np.log(p)))), float(mean @ mean) / trace


def best_sigma(sigmas: np.ndarray, rewards: np.ndarray) -> float:
    """The member scale whose members have the best mean reward (ties: the first in member order), as
    the published code picks stage 2's initial sigma."""
    sigmas = np.asarray(sigmas, dtype=np.float64)
    levels = list(dict.fromkeys(sigmas.tolist()))
    means = [float(np.mean(np.asarray(rewards)[sigmas == s])) for s in levels]
    return levels[int(np.argmax(means))]


@dataclass(frozen=True)
class Candidate:
    """A merged direction scaled to one grid point: what stage 1 probes and stage 2 proposes."""

    direction: Direction
    merge: Merge
    scale: float  # s (stage 1) or eta * g (stage 2), in the scale_unit
    grid: float  # s (stage 1) or g (stage 2): the grid value that produced it


def candidate_grid(
    matrix: np.ndarray,
    basis: np.ndarray,
    scores: np.ndarray,
    quantiles: list[float],
    betas: list[float],
    scale_unit: str,
    eta: float,
    grid: list[float],
) -> tuple[list[Candidate], int]:
    """Merged directions for every (q, beta, grid value), in grid order, and how many duplicates were dropped."""
    candidates: list[Candidate] = []
    seen: set[Direction] = set()
    duplicates = 0
    for q in quantiles:
        for beta in betas:
            m = merge(matrix, basis, scores, q, beta)
            unit = step_unit(m, scale_unit)
            if unit is None:
                continue
            for g in grid:
                direction = m.direction * (eta * g * unit)
                if direction in seen:
                    duplicates += 1
                    continue
                seen.add(direction)
                candidates.append(Candidate(direction, m, eta * g, g))
    if not candidates:
        raise RuntimeError("every merged direction vanished: the population has no usable members")
    return candidates, duplicates


def best_on_probe(candidates: list[Candidate], results: list[Scores]) -> int:
    """Best probe accuracy; ties: higher probe reward, then the shorter step, then grid order."""
    return min(
        range(len(candidates)),
        key=lambda i: (-results[i].accuracy, -results[i].mean_reward, candidates[i].direction.norm(), i),
    )
