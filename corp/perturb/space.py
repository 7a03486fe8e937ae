"""The perturbed parameters of a live model, their centre, and exact restore.

``ParameterSpace`` owns four things: the base weights as loaded (never modified),
the current centre (base + the committed direction, kept in fp32), a few dense
directions within a fixed byte budget (``corp.perturb.dense``), and the live model
tensors that get overwritten with centre + direction one tensor at a time. Nothing
model-sized is allocated per member, so memory does not grow with the population;
restore copies the centre back, so it is bit-exact after any number of cycles
(subtracting regenerated noise would not be, in bf16).

Evaluations may read dense rows (equal to the seed-by-seed sum up to fp32 rounding,
~1e-7 relative); ``commit`` always rebuilds the centre from seeds, so a saved
``direction.json`` reproduces it bit-exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fnmatch import fnmatchcase

import numpy as np
import torch

from corp.perturb.dense import DenseSlots, Plan, decompose, scale_ratio
from corp.perturb.direction import Direction
from corp.perturb.noise import NoiseSource


def select_parameters(
    model: torch.nn.Module, include: Sequence[str], exclude: Sequence[str]
) -> list[tuple[str, torch.nn.Parameter]]:
    """Parameters whose name matches an ``include`` glob and no ``exclude`` glob."""
    named = list(model.named_parameters())  # tied weights appear once
    chosen = [
        (n, p)
        for n, p in named
        if any(fnmatchcase(n, pat) for pat in include) and not any(fnmatchcase(n, pat) for pat in exclude)
    ]
    if not chosen:
        sample = ", ".join(n for n, _ in named[:4])
        raise ValueError(
            f"perturbation.include={list(include)} / perturbation.exclude={list(exclude)} select no parameters; "
            f"names look like: {sample}, ..."
        )
    return chosen


class ParameterSpace:
    """Which weights are perturbed, the centre they are perturbed around, and how to get there.

    ``noise_cache_mb`` is the byte budget of dense direction rows (whole-model fp32 each);
    with ``dense_cache`` there is at least one row even without a budget, so a rescaled
    direction never regenerates its seeds, and ``dense_cache=False`` builds every direction
    from its seeds (the reference path). ``prefetch`` lets the caller announce what comes next:
    directions about to be evaluated (built in groups, one noise pass per group) or a
    ``basis`` that upcoming directions are combinations of (kept dense until replaced).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        noise: NoiseSource,
        include: Sequence[str] = ("*",),
        exclude: Sequence[str] = (),
        dense_cache: bool = True,
        noise_cache_mb: float = 0.0,
    ) -> None:
        self.model = model
        self.noise = noise
        self.params = select_parameters(model, include, exclude)
        noise.num_tensors = len(self.params)
        self.dim = sum(p.numel() for _, p in self.params)
        with torch.no_grad():
            self._base = {n: p.detach().to(torch.float32, copy=True) for n, p in self.params}
        self._centre = self._base  # shares storage until the first commit
        self.committed = Direction.zero()
        largest = max(p.numel() for _, p in self.params)
        device = self.params[0][1].device
        self._noise_buf = torch.empty(largest, dtype=torch.float32, device=device)
        self._acc_buf = torch.empty(largest, dtype=torch.float32, device=device)
        self._offsets: dict[str, tuple[int, int]] = {}  # each tensor's slice of a flat whole-model vector
        start = 0
        for name, p in self.params:
            self._offsets[name] = (start, p.numel())
            start += p.numel()
        slots = int(noise_cache_mb * 2**20) // (4 * self.dim)
        self.dense = DenseSlots(max(slots, 1) if dense_cache else 0, self.dim, device)

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.params]

    # -- announcing what comes next ---------------------------------------------------
    def prefetch(self, directions: Sequence[Direction], basis: bool = False) -> None:
        """Directions that will be evaluated soon, or (``basis``) combined into upcoming ones.

        Evaluations are built lazily in groups as large as the free rows allow: all the
        group's seeds are drawn once per tensor and added into every row that uses them.
        A basis is built now, as much of it as leaves one row free, and replaces the previous
        one; a direction uses it only where that needs fewer draws than its own seeds.
        """
        if not self.dense.slots:
            return
        if basis:
            self.dense.release_basis()
            # Leading directions first (callers pass them by decreasing eigenvalue); a row stays free
            # for evaluations. A partial basis still pays when directions have few seeds each.
            group = [d for d in directions if len(d)][: self.dense.slots - 1]
            if group:
                self.dense.set_basis(self._materialise(group, use_basis=False))
            return
        pending: list[Direction] = []
        for d in directions:
            if (
                len(d) >= 2
                and self.dense.find_scaled(d) is None
                and not any(scale_ratio(d, p) is not None for p in pending)
            ):
                pending.append(d)
        self.dense.pending = pending

    # -- materialisation ------------------------------------------------------------
    def _basis_plan(self, direction: Direction) -> Plan:
        """``direction`` as basis rows + residual seeds, or all seeds when the basis does not help."""
        rows = [
            s
            for s in self.dense.basis
            if self.dense.keys[s] is not None and np.intersect1d(self.dense.keys[s].seeds, direction.seeds).size
        ]
        if not rows:
            return Plan.from_seeds(direction)
        found = decompose(direction, [self.dense.keys[s] for s in rows])
        if found is None or len(found[1]) >= len(direction):
            return Plan.from_seeds(direction)
        alphas, residual = found
        used = [(s, float(a)) for s, a in zip(rows, alphas) if a != 0.0]
        return Plan(tuple(s for s, _ in used), tuple(a for _, a in used), residual)

    def _materialise(self, group: list[Direction], use_basis: bool = True) -> list[int]:
        """Build ``group`` into free dense rows in one pass over their seeds; returns the rows used."""
        rows = self.dense.free_rows(len(group), keep=set())
        group = group[: len(rows)]
        if not group:
            return []
        plans = [self._basis_plan(d) if use_basis else Plan.from_seeds(d) for d in group]
        users: dict[int, list[tuple[int, float]]] = {}  # seed -> [(row, coeff)]
        for row, plan in zip(rows, plans):
            for seed, coeff in zip(plan.residual.seeds.tolist(), plan.residual.coeffs.tolist()):
                users.setdefault(seed, []).append((row, coeff))
        data = self.dense.data
        with torch.no_grad():
            for name, _ in self.params:
                offset, n = self._offsets[name]
                for row, plan in zip(rows, plans):
                    dest = data[row, offset : offset + n]
                    if plan.slots:
                        self._combine(plan, offset, n, out=dest)
                    else:
                        dest.zero_()
                for seed, targets in users.items():
                    rows_of_seed = [(data[row, offset : offset + n], coeff, None) for row, coeff in targets]
                    self.noise.add_noise(seed, name, rows_of_seed, scratch=self._noise_buf)
        for row, d in zip(rows, group):
            self.dense.store(row, d)
        return rows

    def _combine(self, plan: Plan, offset: int, n: int, out: torch.Tensor, start: torch.Tensor | None = None) -> None:
        """out = start + sum_j alphas[j] * row[slots[j]] over one tensor's slice (flat views)."""
        data = self.dense.data
        if len(plan.slots) == 1:
            row = data[plan.slots[0], offset : offset + n]
            if start is None:
                torch.mul(row, plan.alphas[0], out=out)
            else:
                torch.add(start, row, alpha=plan.alphas[0], out=out)
            return
        # One matrix-vector product per block of consecutive rows: a single pass over memory
        # instead of one axpy (read + write of the output) per row. Only the plan's own rows are
        # read: another row in between may hold anything, and 0 * NaN is NaN.
        order = sorted(zip(plan.slots, plan.alphas))
        runs: list[list[tuple[int, float]]] = []
        for slot, alpha in order:
            if runs and slot == runs[-1][-1][0] + 1:
                runs[-1].append((slot, alpha))
            else:
                runs.append([(slot, alpha)])
        for k, run in enumerate(runs):
            mat = data[run[0][0] : run[-1][0] + 1, offset : offset + n].t()
            vec = torch.tensor([a for _, a in run], dtype=torch.float32).to(data.device)
            if k > 0:
                torch.addmv(out, mat, vec, out=out)
            elif start is None:
                torch.mv(mat, vec, out=out)
            else:
                torch.addmv(start, mat, vec, out=out)

    def _plan(self, direction: Direction) -> Plan:
        """The cheapest known way to build ``direction``, building dense rows where that pays."""
        if not self.dense.slots:
            return Plan.from_seeds(direction)
        hit = self.dense.find_scaled(direction)
        if hit is None:
            i = self.dense.pending_index(direction)
            if i is not None:  # announced: build it with the next few announced ones
                free = self.dense.slots - len(self.dense.basis)
                group, self.dense.pending = (
                    self.dense.pending[i : i + free],
                    self.dense.pending[:i] + self.dense.pending[i + free :],
                )
                self._materialise(group)
                hit = self.dense.find_scaled(direction)
        if hit is not None:
            self.dense.touch(hit[0])
            self.dense.hits += 1
            return Plan((hit[0],), (hit[1],), Direction.zero())
        plan = self._basis_plan(direction)
        if len(plan.residual) >= 2 and len(direction) >= 2:
            rows = self._materialise([direction])  # multi-seed and unannounced: keep it for its rescalings
            if rows:
                return Plan((rows[0],), (1.0,), Direction.zero())
        return plan

    def _build(self, plan: Plan, targets: dict[str, torch.Tensor]) -> None:
        """targets[name] = centre[name] + plan, tensor by tensor (fp32 arithmetic)."""
        seeds, coeffs = plan.residual.seeds.tolist(), plan.residual.coeffs.tolist()
        with torch.no_grad():
            for name, _ in self.params:
                offset, n = self._offsets[name]
                centre, target = self._centre[name].view(-1), targets[name]
                direct = target.dtype == torch.float32 and target.is_contiguous()
                acc = target.view(-1) if direct else self._acc_buf[:n]
                k = 0
                if plan.slots:
                    self._combine(plan, offset, n, out=acc, start=centre)
                elif seeds:  # first seed fused with the centre copy: one pass
                    self.noise.add_noise(seeds[0], name, [(acc, coeffs[0], centre)], scratch=self._noise_buf)
                    k = 1
                else:
                    acc.copy_(centre)
                for seed, coeff in zip(seeds[k:], coeffs[k:]):
                    self.noise.add_noise(seed, name, [(acc, coeff, None)], scratch=self._noise_buf)
                if not direct:
                    target.copy_(acc.view(target.shape))

    def _write_from_seeds(
        self, start: dict[str, torch.Tensor], direction: Direction, targets: dict[str, torch.Tensor]
    ) -> None:
        """targets[name] = start[name] + sum_k c_k * eps(seed_k)[name], seed by seed in fp32.

        The arithmetic (order of additions included) is what defines a committed centre;
        it must not change, or a saved ``direction.json`` would rebuild a different model.
        """
        seeds, coeffs = direction.seeds.tolist(), direction.coeffs.tolist()
        with torch.no_grad():
            for name, param in self.params:
                n = param.numel()
                target, begin = targets[name], start[name].view(-1)
                if len(seeds) == 1 and target.dtype == torch.float32 and target.is_contiguous():
                    self.noise.add_noise(seeds[0], name, [(target.view(-1), coeffs[0], begin)], self._noise_buf)
                    continue
                acc = self._acc_buf[:n]
                acc.copy_(begin)
                for seed, coeff in zip(seeds, coeffs):
                    self.noise.add_noise(seed, name, [(acc, coeff, None)], scratch=self._noise_buf)
                target.copy_(acc.view(param.shape))

    def centre_state(self) -> dict[str, torch.Tensor]:
        """The fp32 centre of every perturbed parameter (shared storage: do not modify)."""
        return dict(self._centre)

    def _live(self) -> dict[str, torch.Tensor]:
        return {n: p.data for n, p in self.params}

    def apply(self, direction: Direction) -> None:
        """Set the live model to centre + ``direction``."""
        if not len(direction):
            self.restore()
            return
        self._build(self._plan(direction), self._live())

    def restore(self) -> None:
        """Set the live model back to the centre, bit-exactly."""
        with torch.no_grad():
            for name, param in self.params:
                param.data.copy_(self._centre[name])

    @contextmanager
    def perturbed(self, direction: Direction) -> Iterator[None]:
        self.apply(direction)
        try:
            yield
        finally:
            self.restore()

    def commit(self, step: Direction) -> None:
        """Move the centre by ``step``: centre = base + (committed + step).

        The centre is rebuilt from the base rather than incremented, so rebuilding a
        model from ``direction.json`` reproduces it bit-exactly.
        """
        self.committed = self.committed + step
        if self._centre is self._base:
            self._centre = {n: torch.empty_like(t) for n, t in self._base.items()}
        self._write_from_seeds(self._base, self.committed, self._centre)
        self.restore()

    def load_committed(self, direction: Direction) -> None:
        """Rebuild the centre from the base and a saved committed direction."""
        self.committed = Direction.zero()
        self.commit(direction)
