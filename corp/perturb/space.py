"""The perturbed parameters of a live model, their centre, and exact restore.

``ParameterSpace`` owns three things: the base weights as loaded (never modified),
the current centre (base + the committed direction, kept in fp32), and the live
model tensors that get overwritten with centre + direction one tensor at a time.
Nothing model-sized is allocated per member, so memory does not grow with the
population; restore copies the centre back, so it is bit-exact after any number of
cycles (subtracting regenerated noise would not be, in bf16).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fnmatch import fnmatchcase

import numpy as np
import torch

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


class SeedNoiseCache:
    """Whole-model noise of recently used seeds (LRU), within a fixed number of slots.

    CoRP re-reads the same elite seeds many times (every merged candidate, every local
    member of stage 2); a cached seed costs an axpy instead of a regeneration. The cache
    size is fixed by a byte budget, so memory still does not grow with the population.
    """

    def __init__(self, slots: int, dim: int, device: torch.device) -> None:
        self.slots, self.dim, self.device = max(0, slots), dim, device
        self._store: OrderedDict[int, torch.Tensor] = OrderedDict()
        self.hits = 0

    def __contains__(self, seed: int) -> bool:
        return seed in self._store

    def reserve(self, seeds: list[int]) -> dict[int, torch.Tensor]:
        """Buffers for ``seeds``: cached ones (hits) and newly admitted ones (to be filled)."""
        out: dict[int, torch.Tensor] = {}
        for seed in seeds:
            if seed in self._store:
                self._store.move_to_end(seed)
                out[seed] = self._store[seed]
                self.hits += 1
        for seed in seeds:
            if seed in out or self.slots == 0:
                continue
            if len(self._store) + sum(s not in self._store for s in out) >= self.slots:
                victim = next((s for s in self._store if s not in out), None)
                if victim is None:
                    break
                out[seed] = self._store.pop(victim)  # reuse the evicted buffer
            else:
                out[seed] = torch.empty(self.dim, dtype=torch.float32, device=self.device)
        return out

    def commit(self, reserved: dict[int, torch.Tensor]) -> None:
        for seed, buf in reserved.items():
            self._store[seed] = buf
            self._store.move_to_end(seed)

    def discard(self, reserved: dict[int, torch.Tensor]) -> None:
        for seed in reserved:
            self._store.pop(seed, None)


class ParameterSpace:
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
        # One dense multi-seed direction, kept so that its rescalings (a step-size grid, a
        # line search) cost one axpy per tensor instead of regenerating every seed.
        self.dense_cache = dense_cache
        self._offsets: dict[str, tuple[int, int]] = {}  # each tensor's slice of a flat whole-model vector
        start = 0
        for name, p in self.params:
            self._offsets[name] = (start, p.numel())
            start += p.numel()
        self.seed_cache = SeedNoiseCache(int(noise_cache_mb * 2**20) // (4 * self.dim), self.dim, device)
        self._dense_key: Direction | None = None
        self._dense: dict[str, torch.Tensor] = {}

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.params]

    # -- materialisation ------------------------------------------------------------
    def _write(self, start: dict[str, torch.Tensor], direction: Direction, targets: dict[str, torch.Tensor]) -> None:
        """targets[name] = start[name] + sum_k c_k * eps(seed_k)[name], tensor by tensor, in fp32."""
        seeds, coeffs = direction.seeds.tolist(), direction.coeffs.tolist()
        cached = self.seed_cache.reserve(seeds)
        try:
            with torch.no_grad():
                for name, param in self.params:
                    offset, n = self._offsets[name]
                    target = targets[name]
                    acc = None
                    for seed, coeff in zip(seeds, coeffs):
                        if seed in cached:
                            eps = cached[seed][offset : offset + n].view(param.shape)
                            if seed not in self.seed_cache:  # admitted now: fill it once
                                self.noise.noise(seed, name, param.shape, device=param.device, out=eps)
                        else:
                            eps = self.noise.noise(
                                seed, name, param.shape, device=param.device, out=self._noise_buf[:n].view(param.shape)
                            )
                        if len(seeds) == 1 and target.dtype == torch.float32:  # a plain member: one fused pass
                            torch.add(start[name], eps, alpha=coeff, out=target)
                            break
                        if acc is None:
                            acc = self._acc_buf[:n].view(param.shape)
                            acc.copy_(start[name])
                        acc.add_(eps, alpha=coeff)
                    else:
                        target.copy_(acc if acc is not None else start[name].expand_as(target))
        except BaseException:
            self.seed_cache.discard(cached)  # half-written entries must never be read
            raise
        self.seed_cache.commit(cached)

    def _live(self) -> dict[str, torch.Tensor]:
        return {n: p.data for n, p in self.params}

    def apply(self, direction: Direction) -> None:
        """Set the live model to centre + ``direction``.

        Multi-seed directions go through the dense cache: a rescaled copy of the cached
        direction costs one axpy per tensor. It equals the seed-by-seed sum up to float
        rounding (~1e-7 relative), so only evaluations use it; ``commit`` always rebuilds
        from seeds, which keeps ``direction.json`` bit-exact.
        """
        if not self.dense_cache or len(direction) < 2:
            self._write(self._centre, direction, self._live())
            return
        ratio = self._cached_ratio(direction)
        if ratio is None:
            if not self._dense:
                self._dense = {n: torch.empty_like(t) for n, t in self._base.items()}
            zero = {n: torch.zeros((), device=t.device) for n, t in self._base.items()}
            self._write(zero, direction, self._dense)
            self._dense_key, ratio = direction, 1.0
        with torch.no_grad():
            for name, param in self.params:
                if param.dtype == torch.float32:
                    torch.add(self._centre[name], self._dense[name], alpha=ratio, out=param.data)
                else:
                    param.data.copy_(torch.add(self._centre[name], self._dense[name], alpha=ratio))

    def _cached_ratio(self, direction: Direction) -> float | None:
        """r such that direction == r * cached direction, or None."""
        key = self._dense_key
        if key is None or not np.array_equal(key.seeds, direction.seeds) or key.coeffs[0] == 0:
            return None
        ratio = float(direction.coeffs[0] / key.coeffs[0])
        return ratio if np.allclose(direction.coeffs, ratio * key.coeffs, rtol=1e-12, atol=0.0) else None

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
        self._write(self._base, self.committed, self._centre)
        self.restore()

    def load_committed(self, direction: Direction) -> None:
        """Rebuild the centre from the base and a saved committed direction."""
        self.committed = Direction.zero()
        self.commit(direction)
