"""The perturbed parameters of a live model, their centre, and exact restore.

``ParameterSpace`` owns three things: the base weights as loaded (never modified),
the current centre (base + the committed direction, kept in fp32), and the live
model tensors that get overwritten with centre + direction one tensor at a time.
Nothing model-sized is allocated per member, so memory does not grow with the
population; restore copies the centre back, so it is bit-exact after any number of
cycles (subtracting regenerated noise would not be, in bf16).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from fnmatch import fnmatchcase

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


class ParameterSpace:
    def __init__(
        self,
        model: torch.nn.Module,
        noise: NoiseSource,
        include: Sequence[str] = ("*",),
        exclude: Sequence[str] = (),
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

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.params]

    # -- materialisation ------------------------------------------------------------
    def _write(self, start: dict[str, torch.Tensor], direction: Direction, targets: dict[str, torch.Tensor]) -> None:
        """targets[name] = start[name] + sum_k c_k * eps(seed_k)[name], tensor by tensor, in fp32."""
        seeds, coeffs = direction.seeds.tolist(), direction.coeffs.tolist()
        with torch.no_grad():
            for name, param in self.params:
                n = param.numel()
                eps = self._noise_buf[:n].view(param.shape)
                target = targets[name]
                if len(seeds) == 1 and target.dtype == torch.float32:  # a plain member: one fused pass
                    self.noise.noise(seeds[0], name, param.shape, device=param.device, out=eps)
                    torch.add(start[name], eps, alpha=coeffs[0], out=target)
                    continue
                acc = self._acc_buf[:n].view(param.shape)
                acc.copy_(start[name])
                for seed, coeff in zip(seeds, coeffs):
                    self.noise.noise(seed, name, param.shape, device=param.device, out=eps)
                    acc.add_(eps, alpha=coeff)
                target.copy_(acc)

    def _live(self) -> dict[str, torch.Tensor]:
        return {n: p.data for n, p in self.params}

    def apply(self, direction: Direction) -> None:
        """Set the live model to centre + ``direction``."""
        self._write(self._centre, direction, self._live())

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
