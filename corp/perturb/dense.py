"""Dense whole-model copies of seed-space directions, kept within a fixed memory budget.

Regenerating a direction costs one noise draw per seed; CoRP evaluates many directions
built from the same seeds (every (q, beta) merge of one elite, every local member of a
stage-2 round sharing r principal directions). ``DenseSlots`` holds a few directions as
dense fp32 rows of one (slots x D) tensor, so that a direction that is

- a rescaling of a held row costs one axpy (the step-size grid, the line search, the gate);
- a combination of the held *basis* rows plus a few other seeds costs those seeds' draws
  plus one matrix-vector product (a stage-2 member: one fresh seed + r principal directions).

This module only does the bookkeeping in seed space (which rows exist, which to evict,
how a direction decomposes onto them); ``ParameterSpace`` fills and reads the rows.
The slot count is fixed by the byte budget (and capped at ``MAX_SLOTS``), so memory never
grows with the population.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from corp.perturb.direction import Direction, seed_basis

# A decomposition must reproduce the direction to this relative accuracy per seed; what is
# left below it is dropped. fp32 materialisation itself is only ~1e-7 accurate.
RESIDUAL_RTOL = 1e-9
# A decomposition whose terms are much longer than the direction cancels in fp32: refuse it.
MAX_CANCELLATION = 4.0
# Rows beyond this hardly ever pay: the most a run announces at once is its stage-1 grid (21 merges
# in the published one) or a rank-r basis plus a stage-2 round's proposals, and every lookup
# scans all rows. Without the cap a small ``perturbation.include`` turns a byte budget meant
# for whole models into millions of rows of bookkeeping.
MAX_SLOTS = 64


def scale_ratio(direction: Direction, held: Direction) -> float | None:
    """r with ``direction == r * held`` (same seeds, proportional coefficients), else None."""
    if len(direction) != len(held) or not len(held) or not np.array_equal(direction.seeds, held.seeds):
        return None
    k = int(np.argmax(np.abs(held.coeffs)))
    if held.coeffs[k] == 0:
        return None
    ratio = float(direction.coeffs[k] / held.coeffs[k])
    return ratio if np.allclose(direction.coeffs, ratio * held.coeffs, rtol=1e-12, atol=0.0) else None


@dataclass(frozen=True)
class Plan:
    """How to build a direction: ``sum(alphas[j] * row[slots[j]]) + residual`` (residual from seeds)."""

    slots: tuple[int, ...]
    alphas: tuple[float, ...]
    residual: Direction

    @classmethod
    def from_seeds(cls, direction: Direction) -> Plan:
        return cls((), (), direction)


def decompose(direction: Direction, basis: list[Direction]) -> tuple[np.ndarray, Direction] | None:
    """Least-squares coefficients of ``direction`` on ``basis`` and the seed-space residual.

    None when the terms would be much longer than the direction itself (their fp32 sum
    would cancel). The residual keeps only seeds where the basis does not already
    reproduce the direction to ``RESIDUAL_RTOL``.
    """
    if not basis:
        return np.zeros(0), direction
    seeds = seed_basis([direction, *basis])
    a = np.stack([b.coefficient_vector(seeds) for b in basis], axis=1)
    target = direction.coefficient_vector(seeds)
    alphas = np.linalg.lstsq(a, target, rcond=None)[0]
    scale = float(np.max(np.abs(target))) if len(target) else 0.0
    alphas[np.abs(alphas) * np.array([b.norm() for b in basis]) <= RESIDUAL_RTOL * max(scale, 1e-300)] = 0.0
    rest = target - a @ alphas
    keep = np.abs(rest) > RESIDUAL_RTOL * scale
    length = float(np.sum(np.abs(alphas) * np.array([b.norm() for b in basis])))
    if length > MAX_CANCELLATION * direction.norm() + 1e-300:
        return None
    return alphas, Direction(seeds[keep], rest[keep])


class DenseSlots:
    """A fixed number of dense direction rows (at most ``MAX_SLOTS``): an LRU pool plus a protected basis group.

    Rows are allocated lazily in one (slots x D) fp32 tensor on the parameters' device.
    ``pending`` holds directions announced by ``prefetch`` but not yet built: they are
    built in groups, as many as the free rows allow, when the first of a group is needed.
    """

    def __init__(self, slots: int, dim: int, device: torch.device) -> None:
        self.slots, self.dim, self.device = min(max(0, int(slots)), MAX_SLOTS), dim, device
        self.keys: list[Direction | None] = [None] * self.slots
        self.basis: list[int] = []  # rows of the protected basis group
        self.pending: list[Direction] = []
        self._clock = 0
        self._used = [0] * self.slots
        self._data: torch.Tensor | None = None
        self.hits = 0  # evaluations served from a row

    @property
    def data(self) -> torch.Tensor:
        if self._data is None:  # pages are only committed as rows are written
            self._data = torch.empty((self.slots, self.dim), dtype=torch.float32, device=self.device)
        return self._data

    def touch(self, slot: int) -> None:
        self._clock += 1
        self._used[slot] = self._clock

    def find_scaled(self, direction: Direction) -> tuple[int, float] | None:
        for slot, key in enumerate(self.keys):
            if key is not None:
                ratio = scale_ratio(direction, key)
                if ratio is not None:
                    return slot, ratio
        return None

    def pending_index(self, direction: Direction) -> int | None:
        for i, d in enumerate(self.pending):
            if scale_ratio(direction, d) is not None:
                return i
        return None

    def free_rows(self, count: int, keep: set[int]) -> list[int]:
        """Up to ``count`` rows to overwrite: empty ones first, then least recently used (basis and ``keep`` spared)."""
        spare = set(self.basis) | keep
        empty = [s for s in range(self.slots) if self.keys[s] is None and s not in spare]
        used = sorted(
            (s for s in range(self.slots) if self.keys[s] is not None and s not in spare), key=self._used.__getitem__
        )
        rows = (empty + used)[:count]
        for s in rows:
            self.keys[s] = None
        return rows

    def set_basis(self, rows: list[int]) -> None:
        self.basis = list(rows)

    def release_basis(self) -> None:
        """The old basis becomes ordinary LRU rows (oldest first)."""
        for s in self.basis:
            self._used[s] = 0
        self.basis = []

    def store(self, slot: int, direction: Direction) -> None:
        self.keys[slot] = direction
        self.touch(slot)
