"""Gaussian noise regenerated from (seed, tensor name).

Each tensor gets its own stream, derived by hashing the member seed together with the
tensor's name, so tensors of equal shape in different layers get independent noise.
The published RandOpt/ES/CoRP code re-seeds one generator with the same seed for every
tensor instead; ``mode="shared"`` reproduces that for comparison only.
"""

from __future__ import annotations

import hashlib

import torch

NOISE_MODES = ("independent", "shared")


def tensor_seed(seed: int, name: str, mode: str = "independent") -> int:
    """The generator seed of tensor ``name`` for member ``seed`` (63-bit)."""
    if mode == "shared":
        return int(seed) & 0x7FFF_FFFF_FFFF_FFFF
    digest = hashlib.blake2b(f"{int(seed)}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


class NoiseSource:
    """Regenerates eps(seed) one tensor at a time and counts what it generates.

    ``tensor_draws`` counts (seed, tensor) generations; ``draws`` converts that to
    whole-model noise vectors (generations divided by the number of tensors seen in a
    full pass), which is the unit the published recipes are costed in.
    """

    def __init__(self, mode: str = "independent", num_tensors: int = 1) -> None:
        if mode not in NOISE_MODES:
            raise ValueError(f"perturbation.noise_mode={mode!r}; allowed: {', '.join(NOISE_MODES)}")
        self.mode = mode
        self.num_tensors = max(1, num_tensors)
        self.tensor_draws = 0
        self.elements = 0
        self._generators: dict[torch.device, torch.Generator] = {}

    @property
    def draws(self) -> float:
        return self.tensor_draws / self.num_tensors

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device)
        return self._generators[device]

    def noise(
        self,
        seed: int,
        name: str,
        shape: torch.Size,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """eps(seed)[name]: standard normal, identical on every call and machine of one device type."""
        gen = self._generator(torch.device(device))
        gen.manual_seed(tensor_seed(seed, name, self.mode))
        self.tensor_draws += 1
        self.elements += int(torch.Size(shape).numel())
        if out is not None:
            return torch.randn(shape, generator=gen, out=out)
        return torch.randn(shape, generator=gen, device=device, dtype=dtype)
