"""Directions in seed space.

A direction is a sparse vector ``sum_i c_i * eps(seed_i)`` where ``eps(seed)`` is the
model-sized Gaussian noise regenerated from ``seed``. Noise vectors of distinct seeds
are treated as orthogonal with equal squared norm D (the number of perturbed
weights); that holds to O(1/sqrt(D)) relative error in millions of dimensions. All
algebra is therefore done on the small coefficient vectors, in units where each
noise vector has unit norm: the true dot product is ``D * a.dot(b)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Direction:
    """Sorted unique ``seeds`` with float64 ``coeffs``; immutable."""

    seeds: np.ndarray
    coeffs: np.ndarray

    def __post_init__(self) -> None:
        seeds = np.asarray(self.seeds, dtype=np.int64).reshape(-1)
        coeffs = np.asarray(self.coeffs, dtype=np.float64).reshape(-1)
        if seeds.shape != coeffs.shape:
            raise ValueError(f"{len(seeds)} seeds but {len(coeffs)} coefficients")
        if len(seeds) and np.any(np.diff(seeds) <= 0):
            # Merge duplicates and sort, so every Direction is canonical.
            uniq, inverse = np.unique(seeds, return_inverse=True)
            coeffs = np.bincount(inverse, weights=coeffs, minlength=len(uniq))
            seeds = uniq
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "coeffs", coeffs)

    # -- construction -------------------------------------------------------------
    @classmethod
    def zero(cls) -> Direction:
        return cls(np.zeros(0, np.int64), np.zeros(0))

    @classmethod
    def from_seed(cls, seed: int, coeff: float = 1.0) -> Direction:
        return cls(np.array([seed]), np.array([coeff]))

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[int, float]]) -> Direction:
        pairs = list(pairs)
        if not pairs:
            return cls.zero()
        seeds, coeffs = zip(*pairs)
        return cls(np.array(seeds), np.array(coeffs))

    @classmethod
    def combine(cls, directions: Sequence[Direction], weights: Sequence[float]) -> Direction:
        """``sum_k weights[k] * directions[k]`` in one pass."""
        if len(directions) != len(weights):
            raise ValueError(f"{len(directions)} directions but {len(weights)} weights")
        if not directions:
            return cls.zero()
        seeds = np.concatenate([d.seeds for d in directions])
        coeffs = np.concatenate([w * d.coeffs for d, w in zip(directions, weights)])
        return cls(seeds, coeffs)

    # -- algebra --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.seeds)

    def __add__(self, other: Direction) -> Direction:
        return Direction(np.concatenate([self.seeds, other.seeds]), np.concatenate([self.coeffs, other.coeffs]))

    def __sub__(self, other: Direction) -> Direction:
        return self + (-1.0) * other

    def __mul__(self, scale: float) -> Direction:
        return Direction(self.seeds, self.coeffs * float(scale))

    __rmul__ = __mul__

    def __neg__(self) -> Direction:
        return self * -1.0

    def dot(self, other: Direction) -> float:
        _, ia, ib = np.intersect1d(self.seeds, other.seeds, assume_unique=True, return_indices=True)
        return float(self.coeffs[ia] @ other.coeffs[ib])

    def norm(self) -> float:
        return float(np.linalg.norm(self.coeffs))

    def cosine(self, other: Direction) -> float:
        denom = self.norm() * other.norm()
        return self.dot(other) / denom if denom > 0 else 0.0

    def project(self, onto: Direction) -> Direction:
        """The component of ``self`` along ``onto``."""
        nn = onto.dot(onto)
        return onto * (self.dot(onto) / nn) if nn > 0 else Direction.zero()

    def coefficient_vector(self, seeds: np.ndarray) -> np.ndarray:
        """Coefficients on a given sorted seed basis (seeds not in ``self`` get 0)."""
        out = np.zeros(len(seeds))
        idx = np.searchsorted(seeds, self.seeds)
        if len(idx) and (np.any(idx >= len(seeds)) or np.any(seeds[np.minimum(idx, len(seeds) - 1)] != self.seeds)):
            raise ValueError("direction has seeds outside the given basis")
        out[idx] = self.coeffs
        return out

    def pruned(self, atol: float = 0.0) -> Direction:
        keep = np.abs(self.coeffs) > atol
        return Direction(self.seeds[keep], self.coeffs[keep])

    # -- serialisation ----------------------------------------------------------------
    def to_json(self) -> dict:
        return {"seeds": [int(s) for s in self.seeds], "coeffs": [float(c) for c in self.coeffs]}

    @classmethod
    def from_json(cls, data: dict) -> Direction:
        return cls(np.array(data["seeds"], dtype=np.int64), np.array(data["coeffs"], dtype=np.float64))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Direction):
            return NotImplemented
        return np.array_equal(self.seeds, other.seeds) and np.array_equal(self.coeffs, other.coeffs)

    def __hash__(self) -> int:
        return hash((self.seeds.tobytes(), self.coeffs.tobytes()))

    def __repr__(self) -> str:
        return f"Direction({len(self)} seeds, norm={self.norm():.4g})"


def seed_basis(directions: Sequence[Direction]) -> np.ndarray:
    """Sorted union of the seeds used by ``directions``."""
    if not directions:
        return np.zeros(0, np.int64)
    return np.unique(np.concatenate([d.seeds for d in directions]))


def stack(directions: Sequence[Direction]) -> tuple[np.ndarray, np.ndarray]:
    """Coefficient matrix (n x S) of ``directions`` on their common seed basis."""
    basis = seed_basis(directions)
    return np.stack([d.coefficient_vector(basis) for d in directions]) if directions else np.zeros((0, 0)), basis


def weighted_svd(
    directions: Sequence[Direction],
    weights: Sequence[float] | None = None,
    rank: int | None = None,
    center: bool = True,
) -> tuple[list[Direction], np.ndarray, Direction]:
    """Principal directions of a weighted cloud of directions.

    Returns ``(components, eigenvalues, mean)``: unit-norm principal directions in
    decreasing order of eigenvalue of the weighted covariance
    ``sum_i w_i (a_i - m)(a_i - m)^T`` (weights normalised to sum to one), and the
    weighted mean ``m``. With ``center=False`` the second moment is used and ``m`` is
    still returned.
    """
    n = len(directions)
    if n == 0:
        raise ValueError("weighted_svd needs at least one direction")
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be non-negative, one per direction, with a positive sum")
    w = w / w.sum()
    matrix, basis = stack(directions)
    mean = w @ matrix
    centred = matrix - mean if center else matrix
    _, sv, vt = np.linalg.svd(np.sqrt(w)[:, None] * centred, full_matrices=False)
    k = len(sv) if rank is None else min(rank, len(sv))
    components = [Direction(basis, vt[i]) for i in range(k)]
    return components, sv[:k] ** 2, Direction(basis, mean)
